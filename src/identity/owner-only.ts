import { execFile } from 'node:child_process';
import { chmod } from 'node:fs/promises';
import { promisify } from 'node:util';

/** Runs a program with its arguments and resolves with its stdout once it exited 0 (rejects otherwise). */
export type RunProgram = (file: string, args: string[]) => Promise<string>;

const runProgram: RunProgram = async (file, args) => (await promisify(execFile)(file, args, { windowsHide: true })).stdout;

/**
 * The security identifier (SID) in `whoami /user /fo csv /nh`'s answer (`"nt authority\local service","S-1-5-19"`).
 * A SID names every kind of account the same way (LocalSystem, LocalService, a virtual `NT SERVICE\x`
 * account, a domain user), where a name such as `%USERNAME%` does not (LocalSystem's is `COMPUTER$`).
 */
export function sidFromWhoami(output: string): string | undefined {
  return /"(S-1-[0-9-]+)"/.exec(output)?.[1];
}

/**
 * icacls arguments that leave `path` readable and writable by the account `sid` only: `/inheritance:r`
 * drops the permissions inherited from the folder (Users, Authenticated Users...), `/grant:r` replaces
 * the account's own with full control; `*` marks a SID (Microsoft Learn, "icacls"). The equivalent of
 * POSIX mode 0600.
 */
export function ownerOnlyAclArgs(path: string, sid: string): string[] {
  return [path, '/inheritance:r', '/grant:r', `*${sid}:F`];
}

/**
 * Makes `path` private to the account relay365 runs as: mode 0600 on POSIX; on Windows, where a mode
 * means nothing beyond the read-only flag (Node's fs.chmod docs), an ACL granting that account alone,
 * set with icacls. `platform` and `run` are for tests of the Windows branch.
 */
export async function restrictToOwner(path: string, options: { platform?: NodeJS.Platform; run?: RunProgram } = {}): Promise<void> {
  if ((options.platform ?? process.platform) !== 'win32') {
    await chmod(path, 0o600);
    return;
  }
  const run = options.run ?? runProgram;
  const sid = sidFromWhoami(await run('whoami', ['/user', '/fo', 'csv', '/nh']));
  if (sid === undefined) throw new Error('whoami /user printed no SID');
  await run('icacls', ownerOnlyAclArgs(path, sid));
}
