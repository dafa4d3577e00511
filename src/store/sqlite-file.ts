import { chmod, mkdir, open } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * Makes `path` a private file (0600, its folder 0700) before SQLite opens it, which would otherwise
 * create it with the umask's mode. Call it only before this process's first connection to the file.
 *
 * A file that exists is never opened here, only chmod'ed by name. Under POSIX, closing *any*
 * descriptor of a file drops every fcntl lock the process holds on it (POSIX.1-2017, fcntl(),
 * "all locks associated with a file for a given process shall be removed when a file descriptor for
 * that file is closed"), SQLite's included: an `open()` + `close()` beside a live connection makes
 * the next outside reader (a `sqlite3` shell, a backup) believe it is the last connection, checkpoint
 * and delete the live write-ahead log (SQLite, "How To Corrupt An SQLite Database File", 2.2).
 */
export async function createPrivateFile(path: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  try {
    // 'wx': only when the file does not exist yet, so no connection of this process can hold it.
    await (await open(path, 'wx', 0o600)).close();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    // An existing file keeps its mode on open: tighten it, by name (no descriptor opened).
    await chmod(path, 0o600);
  }
}
