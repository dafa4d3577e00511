/**
 * What the SQLite stores share (the outbox and the HTTP and webhook tables, in one file): how the file
 * is opened and how SQLite's failures become `R365_OUTBOX_UNAVAILABLE` with the fix.
 */
import Database from 'better-sqlite3';
import { Relay365Error } from '../errors.js';
import { createPrivateFile } from './sqlite-file.js';

/**
 * Opens the relay's SQLite file at `path` (creating it 0600, its folder 0700) in WAL mode, which every
 * store in it needs for durable, concurrent writes; each store then sets its own `synchronous` level.
 *
 * @throws Relay365Error `R365_OUTBOX_UNAVAILABLE` when SQLite keeps another journal mode (a network file system).
 */
export async function openSqliteFile(path: string, options: { busyTimeoutMs: number }): Promise<Database.Database> {
  const inMemory = path === ':memory:';
  if (!inMemory) await createPrivateFile(path);
  const db = new Database(path, { timeout: options.busyTimeoutMs });
  try {
    const mode = db.pragma('journal_mode = WAL', { simple: true });
    if (!inMemory && mode !== 'wal') {
      throw new Relay365Error(
        'R365_OUTBOX_UNAVAILABLE',
        `The outbox database ${path} cannot use write-ahead logging (SQLite kept journal mode "${String(mode)}"), which relay365 needs for durable, concurrent writes. ` +
          'This happens on network file systems: put queue.path on a local disk.',
        { details: { path } },
      );
    }
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

/**
 * SQLite failures that come from the environment (lock held too long, disk full, file damaged) as
 * `R365_OUTBOX_UNAVAILABLE`, with the fix; anything else (a bug) is passed on untouched.
 */
/**
 * A failure of the database itself (locked past the busy timeout, a full or failing disk, a file that
 * cannot be used), not of one statement's data: trying again at once, or another write, meets it too.
 */
export function isSqliteEnvironmentError(err: unknown): boolean {
  return err instanceof Database.SqliteError && /^SQLITE_(BUSY|LOCKED|FULL|IOERR|CANTOPEN|READONLY|PERM|NOTADB|CORRUPT)/.test(err.code);
}

export function explainSqliteError(err: unknown, doing: string, path: string): Error {
  if (!(err instanceof Database.SqliteError)) return err instanceof Error ? err : new Error(String(err));
  const details = { path, sqlite: err.code };
  if (/^SQLITE_(BUSY|LOCKED)/.test(err.code)) {
    return new Relay365Error(
      'R365_OUTBOX_UNAVAILABLE',
      `Could not ${doing}: the outbox database ${path} stayed locked by another connection for the whole busy timeout. ` +
        'Another process holds a write transaction open (a SQLite shell, a backup tool); close it. Several relay365 nodes should share PostgreSQL, not one SQLite file.',
      { cause: err, retryable: true, details },
    );
  }
  if (/^SQLITE_(FULL|IOERR)/.test(err.code)) {
    return new Relay365Error(
      'R365_OUTBOX_UNAVAILABLE',
      `Could not ${doing}: writing the outbox database ${path} failed (${err.code}): the disk is full or failing. Free space on its file system or move queue.path.`,
      { cause: err, retryable: true, details },
    );
  }
  if (/^SQLITE_(CANTOPEN|READONLY|PERM|NOTADB|CORRUPT)/.test(err.code)) {
    return new Relay365Error(
      'R365_OUTBOX_UNAVAILABLE',
      `Could not ${doing}: the outbox database ${path} cannot be used (${err.code}: ${err.message}). ` +
        'Check that the file and its folder are writable by this user; a damaged file must be restored from a backup.',
      { cause: err, details },
    );
  }
  return err;
}
