/**
 * The largest scrypt memory (128 * N * r * p bytes) a stored hash may ask for: a hash is config, but
 * one with N = 2^24 would make every login allocate gigabytes.
 */
const MAX_SCRYPT_MEMORY = 256 * 1024 * 1024;

/** `scrypt$N$r$p$saltB64$hashB64`, the format `relay365 user add` writes (ingress/smtp/password.ts). */
const HASH_FORMAT = /^scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})$/;

/** The parts of a stored scrypt hash. */
export interface ParsedPasswordHash {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  key: Buffer;
}

/**
 * Parses `scrypt$N$r$p$salt$hash` and checks its parameters; returns a reason when it is not one
 * relay365 can verify. The config schema checks `smtp.users[].passwordHash` with it, so a hash no
 * login could match never loads.
 */
export function parsePasswordHash(hash: string): ParsedPasswordHash | { problem: string } {
  const m = HASH_FORMAT.exec(hash);
  if (!m) return { problem: 'must be scrypt$N$r$p$salt$hash (base64), as `relay365 user add` prints it' };
  const [N, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (!Number.isSafeInteger(N) || N < 2 || (N & (N - 1)) !== 0) return { problem: 'scrypt N must be a power of two' };
  if (!Number.isSafeInteger(r) || r < 1 || !Number.isSafeInteger(p) || p < 1) return { problem: 'scrypt r and p must be positive integers' };
  if (128 * N * r * p > MAX_SCRYPT_MEMORY) return { problem: `scrypt parameters need more than ${MAX_SCRYPT_MEMORY / 1024 / 1024} MiB per login` };
  const salt = Buffer.from(m[4]!, 'base64');
  const key = Buffer.from(m[5]!, 'base64');
  if (salt.length < 8) return { problem: 'the salt must be at least 8 bytes' };
  if (key.length < 16) return { problem: 'the hash must be at least 16 bytes' };
  return { N, r, p, salt, key };
}
