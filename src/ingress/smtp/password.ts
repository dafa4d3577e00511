import { createHmac, randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
// Not through config/index.js: `relay365 user add` loads this file, and the config loader (yaml) is not needed there.
import { parsePasswordHash } from '../../config/password-hash.js';

/**
 * scrypt cost for new hashes: N = 2^15, r = 8, p = 1 (the OWASP Password Storage Cheat Sheet's
 * minimum for scrypt; about 0.1 to 0.3 s and 32 MiB per verification).
 */
const NEW_HASH = { N: 2 ** 15, r: 8, p: 1 } as const;
const SALT_BYTES = 16;
const KEY_BYTES = 32;
// The hash's format is checked by the config schema, with the config's parser.
export { parsePasswordHash, type ParsedPasswordHash } from '../../config/password-hash.js';

function derive(password: string, salt: Buffer, keyLength: number, params: { N: number; r: number; p: number }): Promise<Buffer> {
  // Node refuses scrypt above `maxmem` (32 MiB by default, exactly N=2^15 r=8): leave room.
  const options: ScryptOptions = { ...params, maxmem: 2 * 128 * params.N * params.r * params.p };
  return new Promise((resolve, reject) => {
    scrypt(password.normalize('NFC'), salt, keyLength, options, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/**
 * Hashes a local SMTP user's password for the config (`smtp.users[].passwordHash`).
 *
 * @example
 * const line = await hashPassword('correct horse battery staple');
 * // scrypt$32768$8$1$<salt>$<hash>
 */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const key = await derive(password, salt, KEY_BYTES, NEW_HASH);
  return `scrypt$${NEW_HASH.N}$${NEW_HASH.r}$${NEW_HASH.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

/**
 * True when `password` matches `hash` (from {@link hashPassword}); false for a wrong password or a
 * hash it cannot read. The comparison takes the same time wherever the keys differ.
 */
export async function verifyPassword(password: string, hash: string): Promise<boolean> {
  const parsed = parsePasswordHash(hash);
  if ('problem' in parsed) return false;
  const key = await derive(password, parsed.salt, parsed.key.length, parsed);
  return timingSafeEqual(key, parsed.key);
}

/** At most this many known-good logins are remembered (oldest forgotten first). */
const CACHE_ENTRIES = 1024;

/** Key derivations waiting at most, over all clients; past it a login is refused for now (454). */
const MAX_WAITING = 256;

/** Thrown by {@link PasswordChecker} when too many logins wait for their check: answer 454 and let the client retry. */
export class LoginsBusyError extends Error {
  constructor() {
    super('too many logins are waiting for their password check');
    this.name = 'LoginsBusyError';
  }
}

/** How fast a client's record of derivations spent fades: halved every this many ms. */
const SPENT_HALF_LIFE_MS = 60_000;
/** Clients whose spending is remembered, at most (the least recent forgotten first). */
const SPENT_ENTRIES = 10_000;

/**
 * Runs key derivations one at a time, the client that has spent the least recently going next.
 * scrypt runs on libuv's thread pool (4 threads by default), which the outbox's fdatasync before
 * every 250 needs too: one derivation at a time leaves it three, however hard AUTH is flooded.
 * Least-spent first (a fair queue over client addresses, with a record that halves every minute):
 * a flooding address has spent many derivations, so a client that has not, such as a device logging
 * in for the first time today, waits for the derivation running and its own, not for one per
 * flooding address. Among equals, the longest waiting goes first.
 */
class DerivationQueue {
  private readonly waiting = new Map<string, Array<() => void>>();
  private readonly spent = new Map<string, { n: number; at: number }>();
  private count = 0;
  private running = false;

  run<T>(client: string, task: () => Promise<T>): Promise<T> {
    if (this.count >= MAX_WAITING) return Promise.reject(new LoginsBusyError());
    return new Promise<T>((resolve, reject) => {
      const start = (): void => {
        task().then(resolve, reject).finally(() => {
          this.running = false;
          this.next();
        });
      };
      const queue = this.waiting.get(client);
      if (queue) queue.push(start);
      else this.waiting.set(client, [start]);
      this.count += 1;
      this.next();
    });
  }

  /** Derivations `client` has spent, faded by their age. */
  private spentBy(client: string, now: number): number {
    const record = this.spent.get(client);
    return record ? record.n * 0.5 ** ((now - record.at) / SPENT_HALF_LIFE_MS) : 0;
  }

  private next(): void {
    if (this.running) return;
    const now = Date.now();
    let chosen: string | undefined;
    let least = Infinity;
    // Map order is arrival order: a strict `<` keeps the longest waiting first among equals.
    for (const client of this.waiting.keys()) {
      const spent = this.spentBy(client, now);
      if (spent < least) {
        least = spent;
        chosen = client;
      }
    }
    if (chosen === undefined) return;
    const queue = this.waiting.get(chosen)!;
    const start = queue.shift()!;
    this.waiting.delete(chosen);
    if (queue.length > 0) this.waiting.set(chosen, queue);
    this.spent.delete(chosen);
    this.spent.set(chosen, { n: least + 1, at: now });
    if (this.spent.size > SPENT_ENTRIES) this.spent.delete(this.spent.keys().next().value!);
    this.count -= 1;
    this.running = true;
    start();
  }
}

/**
 * Checks logins against scrypt hashes, remembering the ones that passed so that a device logging in
 * for every message pays the key derivation once. The cache holds only HMACs (under a key made at
 * random for this process) of user, hash and password: reading the process's memory tells nothing
 * about a password. Changing a user's hash in the config forgets its cached logins, since the hash is
 * part of the HMAC. Concurrent checks of the same login share one derivation. Derivations run one at
 * a time, the least-spent client first ({@link DerivationQueue}); a known user and an unknown one cost the same.
 */
export class PasswordChecker {
  private readonly key = randomBytes(32);
  private readonly known = new Set<string>();
  private readonly pending = new Map<string, Promise<boolean>>();
  private readonly queue = new DerivationQueue();
  /** Verified against when the user is unknown, so that the answer takes as long as for a known one. */
  private decoy: Promise<string> | undefined;

  /**
   * True when `password` is the password of a user whose stored hash is `hash`. `client` (its
   * address) decides its turn among waiting checks.
   *
   * @throws LoginsBusyError when too many checks wait already.
   */
  async check(user: string, password: string, hash: string, client = ''): Promise<boolean> {
    const id = createHmac('sha256', this.key)
      .update(JSON.stringify([user, hash, password]))
      .digest('base64');
    if (this.known.has(id)) {
      // Refresh its place: the set iterates oldest first.
      this.known.delete(id);
      this.known.add(id);
      return true;
    }
    let verdict = this.pending.get(id);
    if (!verdict) {
      verdict = this.queue.run(client, () => verifyPassword(password, hash)).finally(() => this.pending.delete(id));
      this.pending.set(id, verdict);
    }
    const ok = await verdict;
    if (ok) {
      this.known.add(id);
      if (this.known.size > CACHE_ENTRIES) this.known.delete(this.known.values().next().value!);
    }
    return ok;
  }

  /**
   * Spends one key derivation, in the same queue, and returns false: the answer for a user that does not exist.
   *
   * @throws LoginsBusyError when too many checks wait already.
   */
  async refuseUnknown(password: string, client = ''): Promise<false> {
    this.decoy ??= hashPassword(randomBytes(16).toString('base64'));
    const decoy = await this.decoy;
    await this.queue.run(client, () => verifyPassword(password, decoy));
    return false;
  }
}
