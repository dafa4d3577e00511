import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Relay365Error } from '../errors.js';

/**
 * Where serialized token caches live. The file store is the embedded default; a shared store
 * (PostgreSQL) implements the same two calls so that several nodes share one cache.
 */
export interface TokenCacheStore {
  read(key: string): Promise<string | undefined>;
  write(key: string, value: string): Promise<void>;
  /**
   * Runs `fn` while no other node (or caller) holds the lock of `key`. A shared store implements it so
   * that one node at a time refreshes the tokens of a cache entry, and the next one finds the new token
   * instead of asking again. Optional: a store used by one process (the file store) does without; the
   * token provider already sends one request at a time per token within a process.
   */
  withLock?<T>(key: string, fn: () => Promise<T>): Promise<T>;
}

const MAGIC = Buffer.from('R365C1'); // format marker and version
const IV_BYTES = 12; // AES-GCM's standard nonce length (NIST SP 800-38D)
const TAG_BYTES = 16;

/** AES-256-GCM with the cache key as associated data, so a file renamed to another key fails to open. */
export function encrypt(key: Buffer, name: string, plaintext: string): Buffer {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(name));
  const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return Buffer.concat([MAGIC, iv, body, cipher.getAuthTag()]);
}

/** @throws Relay365Error `R365_TOKEN_CACHE_UNREADABLE` when the key is wrong or the file damaged. */
export function decrypt(key: Buffer, name: string, data: Buffer, where: string): string {
  if (data.length < MAGIC.length + IV_BYTES + TAG_BYTES || !data.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw new Relay365Error(
      'R365_TOKEN_CACHE_UNREADABLE',
      `${where} is not a relay365 token cache (damaged or written by something else). Move it away and sign in again.`,
    );
  }
  const iv = data.subarray(MAGIC.length, MAGIC.length + IV_BYTES);
  const tag = data.subarray(data.length - TAG_BYTES);
  const body = data.subarray(MAGIC.length + IV_BYTES, data.length - TAG_BYTES);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, iv);
    decipher.setAAD(Buffer.from(name));
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(body), decipher.final()]).toString('utf8');
  } catch (cause) {
    throw new Relay365Error(
      'R365_TOKEN_CACHE_UNREADABLE',
      `Cannot decrypt ${where}: RELAY365_SECRET_KEY (or the key file) is not the key it was written with. ` +
        'Restore the original key, or move the cache away and sign in again (relay365 login).',
      { cause },
    );
  }
}

/** One encrypted file per cache key under `dir`, mode 0600, replaced atomically (write then rename). */
export class EncryptedFileCacheStore implements TokenCacheStore {
  constructor(
    private readonly dir: string,
    private readonly key: Buffer,
  ) {}

  private path(name: string): string {
    return join(this.dir, `${name.replace(/[^A-Za-z0-9._-]/g, '_')}.cache`);
  }

  async read(name: string): Promise<string | undefined> {
    let data: Buffer;
    try {
      data = await readFile(this.path(name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    return decrypt(this.key, name, data, this.path(name));
  }

  async write(name: string, value: string): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const target = this.path(name);
    const tmp = `${target}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    await writeFile(tmp, encrypt(this.key, name, value), { mode: 0o600 });
    await rename(tmp, target);
  }
}
