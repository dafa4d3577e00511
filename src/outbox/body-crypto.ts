import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { Relay365Error } from '../errors.js';

/**
 * Encryption of stored message bodies (`queue.encryptBodies`): AES-256-GCM under a key derived from the
 * token cache's secret key (`RELAY365_SECRET_KEY`, else `dataDir/secret.key`) with HKDF-SHA256, so the
 * one key an operator keeps safe protects both, and neither use can stand in for the other.
 *
 * A sealed body is `01 | nonce (12) | tag (16) | ciphertext`; the message id is the additional
 * authenticated data, so a body copied onto another message's row does not open. The store keeps a flag
 * beside each body (migration 7), never a guess from the bytes: a plain message that happens to start
 * like a sealed one is still read as it was received.
 */
export interface BodyCipher {
  /** Whether new bodies are sealed (`queue.encryptBodies`); bodies already stored are read either way. */
  readonly encrypt: boolean;
  seal(id: string, raw: Buffer): Buffer;
  open(id: string, sealed: Buffer): Buffer;
}

const FORMAT = 0x01;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
/** HKDF's info: what the derived key is for (RFC 5869 3.2). */
const INFO = 'relay365 message bodies v1';

/**
 * The cipher for message bodies under `secretKey` (32 bytes, from `loadSecretKey`).
 * @example
 * const cipher = bodyCipher(await loadSecretKey(join(dataDir, 'secret.key')), { encrypt: config.queue.encryptBodies });
 * const store = await openSqliteStore(path, { bodies: cipher });
 */
export function bodyCipher(secretKey: Buffer, options: { encrypt: boolean }): BodyCipher {
  const key = Buffer.from(hkdfSync('sha256', secretKey, Buffer.alloc(0), INFO, 32));
  return {
    encrypt: options.encrypt,
    seal(id, raw) {
      const nonce = randomBytes(NONCE_BYTES);
      const cipher = createCipheriv('aes-256-gcm', key, nonce);
      cipher.setAAD(Buffer.from(id, 'utf8'));
      const body = Buffer.concat([cipher.update(raw), cipher.final()]);
      return Buffer.concat([Buffer.of(FORMAT), nonce, cipher.getAuthTag(), body]);
    },
    open(id, sealed) {
      if (sealed.length < 1 + NONCE_BYTES + TAG_BYTES || sealed[0] !== FORMAT) throw unreadable(id, 'it is not in the format relay365 writes');
      const nonce = sealed.subarray(1, 1 + NONCE_BYTES);
      const tag = sealed.subarray(1 + NONCE_BYTES, 1 + NONCE_BYTES + TAG_BYTES);
      const decipher = createDecipheriv('aes-256-gcm', key, nonce);
      decipher.setAAD(Buffer.from(id, 'utf8'));
      decipher.setAuthTag(tag);
      try {
        return Buffer.concat([decipher.update(sealed.subarray(1 + NONCE_BYTES + TAG_BYTES)), decipher.final()]);
      } catch (cause) {
        throw unreadable(id, 'the key is not the one it was encrypted with, or the bytes were changed', cause);
      }
    },
  };
}

/** The content of message `id` is stored encrypted and cannot be opened. */
function unreadable(id: string, why: string, cause?: unknown): Relay365Error {
  return new Relay365Error(
    'R365_OUTBOX_UNAVAILABLE',
    `The content of message ${id} is stored encrypted (queue.encryptBodies) and cannot be decrypted: ${why}. ` +
      'Every node must use the same RELAY365_SECRET_KEY (or dataDir/secret.key) as the node that stored it.',
    { ...(cause === undefined ? {} : { cause }), details: { id } },
  );
}

/** Reads a stored body: opened when its flag says it is sealed; without a cipher, a sealed body is an error. */
export function openBody(cipher: BodyCipher | undefined, id: string, raw: Buffer, encrypted: boolean): Buffer {
  if (!encrypted) return raw;
  if (cipher === undefined) {
    throw new Relay365Error(
      'R365_OUTBOX_UNAVAILABLE',
      `The content of message ${id} is stored encrypted (queue.encryptBodies), and this store was opened without the secret key to read it.`,
      { details: { id } },
    );
  }
  return cipher.open(id, raw);
}

/** What a store writes for a new body: sealed when the cipher encrypts, else as received. */
export function sealBody(cipher: BodyCipher | undefined, id: string, raw: Buffer): { raw: Buffer; encrypted: boolean } {
  return cipher?.encrypt === true ? { raw: cipher.seal(id, raw), encrypted: true } : { raw, encrypted: false };
}
