import { randomBytes, createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { SECRET_KEY_ENV } from '../config/index.js';
import { Relay365Error } from '../errors.js';
import { restrictToOwner } from './owner-only.js';

/** Name of the environment variable holding the token cache key (the config's rules name it too). */
export { SECRET_KEY_ENV };

/**
 * The 32-byte key that encrypts tokens at rest. From `RELAY365_SECRET_KEY` when set (base64 or hex of
 * 32 bytes; any other text is hashed with SHA-256 into a key), else from `keyFile`, created with
 * mode 0600 (on Windows an ACL for this account only) and 32 random bytes on first use.
 */
export async function loadSecretKey(keyFile: string, env: NodeJS.ProcessEnv = process.env): Promise<Buffer> {
  const fromEnv = env[SECRET_KEY_ENV];
  if (fromEnv !== undefined && fromEnv !== '') return keyFromText(fromEnv);
  try {
    return keyFromText(await readFile(keyFile, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new Relay365Error(
        'R365_SECRET_KEY_UNREADABLE',
        `Cannot read the token key file ${keyFile} (${(err as NodeJS.ErrnoException).code ?? 'error'}). Fix its permissions or set ${SECRET_KEY_ENV}.`,
        {
          cause: err,
        },
      );
    }
  }
  const key = randomBytes(32);
  await mkdir(dirname(keyFile), { recursive: true, mode: 0o700 });
  // 'wx': never overwrite a key another process has just written.
  try {
    await writeFile(keyFile, key.toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return keyFromText(await readFile(keyFile, 'utf8'));
    throw err;
  }
  try {
    await restrictToOwner(keyFile);
  } catch (cause) {
    throw new Relay365Error(
      'R365_SECRET_KEY_UNREADABLE',
      `Cannot make the token key file ${keyFile} private to this account (${(cause as Error).message.split('\n')[0]}). Restrict it by hand (docs/operations.md, "Windows"), or set ${SECRET_KEY_ENV}.`,
      { cause },
    );
  }
  return key;
}

function keyFromText(text: string): Buffer {
  const t = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(t)) return Buffer.from(t, 'hex');
  const b64 = Buffer.from(t, 'base64');
  if (b64.length === 32 && /^[A-Za-z0-9+/=_-]+$/.test(t)) return b64;
  return createHash('sha256').update(t, 'utf8').digest();
}
