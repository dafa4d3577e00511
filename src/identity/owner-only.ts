import { execFile } from 'node:child_process';
import { chmod } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { promisify } from 'node:util';

/** Runs a program with its arguments and resolves once it exited 0 (rejects otherwise). */
export type RunProgram = (file: string, args: string[]) => Promise<void>;

const runProgram: RunProgram = async (file, args) => {
  await promisify(execFile)(file, args, { windowsHide: true });
};

/**
 * icacls arguments that leave `path` readable and writable by `account` only: `/inheritance:r` drops the
 * permissions inherited from the folder (Users, Authenticated Users...), `/grant:r` replaces the account's
 * own with full control (Microsoft Learn, "icacls"). The equivalent of POSIX mode 0600.
 */
export function ownerOnlyAclArgs(path: string, account: string): string[] {
  return [path, '/inheritance:r', '/grant:r', `${account}:F`];
}

/**
 * Makes `path` private to the account relay365 runs as: mode 0600 on POSIX; on Windows, where a mode
 * means nothing beyond the read-only flag (Node's fs.chmod docs), an ACL granting that account alone,
 * set with icacls. `platform`, `account` and `run` are for tests of the Windows branch.
 */
export async function restrictToOwner(
  path: string,
  options: { platform?: NodeJS.Platform; account?: string; run?: RunProgram } = {},
): Promise<void> {
  if ((options.platform ?? process.platform) !== 'win32') {
    await chmod(path, 0o600);
    return;
  }
  await (options.run ?? runProgram)('icacls', ownerOnlyAclArgs(path, options.account ?? userInfo().username));
}
