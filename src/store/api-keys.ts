import { createHash, randomBytes } from 'node:crypto';

/** Every API key starts with this, so secret scanners (and people) recognise one. */
export const API_KEY_PREFIX = 'r365_';

/** An API key's shape: the prefix, then 32 random bytes in base64url (43 characters). */
const API_KEY_PATTERN = /^r365_[A-Za-z0-9_-]{43}$/;

/** A new API key: shown once, stored only as {@link hashApiKey}'s digest. */
export interface NewApiKey {
  /** The key itself, e.g. `r365_3q2-...`. */
  key: string;
  hash: string;
  /** The first characters, to tell keys apart in `apikey list` (12 of the 256 random bits show). */
  prefix: string;
}

/** Makes a key of 256 random bits. */
export function generateApiKey(): NewApiKey {
  const key = API_KEY_PREFIX + randomBytes(32).toString('base64url');
  return { key, hash: hashApiKey(key), prefix: key.slice(0, API_KEY_PREFIX.length + 8) };
}

/**
 * SHA-256 of the key, in hex. A fast hash is enough here (unlike for passwords): the key has 256
 * random bits, so no dictionary or brute force can invert the digest. Looking the digest up by
 * equality in the database leaks no timing worth having, since the attacker does not choose it.
 */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/** The key in an `Authorization: Bearer <key>` header, when it has an API key's shape. */
export function bearerApiKey(authorization: string | undefined): string | undefined {
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization ?? '');
  const key = m?.[1];
  return key !== undefined && API_KEY_PATTERN.test(key) ? key : undefined;
}

/**
 * What an API key may do: `send` messages (only as its `senders`, when it has them), `read` messages
 * and mailboxes, `admin`: retry and cancel messages and run the doctor.
 */
export type ApiKeyScope = 'send' | 'read' | 'admin';
export const API_KEY_SCOPES: readonly ApiKeyScope[] = ['send', 'read', 'admin'];
