import { isIPv6 } from 'node:net';

/** Settings of {@link LoginLockout}, from `smtp.lockout*`. */
export interface LockoutSettings {
  /** Wrong logins for one user from one address within the window that lock that user there. */
  failures: number;
  windowMs: number;
  /** How long a lock lasts. */
  lockMs: number;
}

/**
 * An address that fails this many times `failures` within the window, across every user name (a
 * spray of guesses over many accounts), is locked for all of them.
 */
export const ADDRESS_FAILURES_FACTOR = 5;

/**
 * Past this many tracked records, the ones neither locked nor with a login in progress are dropped,
 * least recently failing first. Locks are never dropped for room (a flood of new addresses must not
 * free a guesser): they end only when their time is up. IPv6 clients are tracked per /64, the
 * smallest block one customer is given (RFC 6177), so an address spray cannot grow the map cheaply.
 */
const MAX_TRACKED = 10_000;

interface LockRecord {
  /** Times (ms) of failures inside the window, oldest first. */
  failures: number[];
  /** Logins checked right now: they count before their verdict, so parallel guesses cannot pass the limit. */
  pending: number;
  lockedUntil: number;
}

/** One AUTH attempt under way: settle it with its verdict. */
export interface LoginAttempt {
  /** Records the verdict; returns true when this failure started a lock. */
  settle(ok: boolean): boolean;
  /** Ends the attempt without a verdict (the check itself failed): it counts neither way. */
  release(): void;
}

/**
 * The client's address as the lockout counts it: IPv4 as is, IPv6 by its /64 prefix.
 */
export function lockoutAddress(address: string): string {
  if (!isIPv6(address)) return address;
  const [head, tail] = address.split('::') as [string, string | undefined];
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return `${groups
    .slice(0, 4)
    .map((g) => (g === '' ? '0' : g).toLowerCase().replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}

/**
 * Counts wrong logins per user and client address, and per address across users. A user who fails
 * `failures` times within `windowMs` from one address is locked there for `lockMs` (every AUTH
 * refused, the right password too); other users behind the same address (a NAT) keep logging in.
 * An address failing {@link ADDRESS_FAILURES_FACTOR} times as often, whatever the names, is locked
 * for everyone. Unknown user names share one record per address, so guessing names locks only
 * names that do not exist, and counts toward the address's limit. Attempts count from their start:
 * of twenty logins sent at once with a limit of ten, ten are checked; with {@link beginWhenFree} the
 * rest wait for those verdicts (guesses that failed have locked the user by then; right passwords
 * let the waiting logins of thirty printers behind one NAT through), with {@link begin} they are refused.
 */
export class LoginLockout {
  private readonly records = new Map<string, LockRecord>();
  /** Logins waiting in {@link beginWhenFree} for the verdicts of attempts under way. */
  private readonly waiters = new Set<() => void>();

  constructor(
    private readonly settings: LockoutSettings,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * The time a lock that refuses `user` from `address` ends, or undefined when none does. Without a
   * user, only the address's own lock counts.
   */
  lockedUntil(address: string, user?: string): Date | undefined {
    const now = this.now();
    const until = Math.max(...this.keys(address, user).map((k) => this.records.get(k)?.lockedUntil ?? 0));
    return until > now ? new Date(until) : undefined;
  }

  /**
   * Starts a login of `user` (undefined: a name no user has) from `address`. Returns the lock's end
   * instead when the user or the address is locked, or when the attempts already under way would
   * reach the limit.
   */
  begin(address: string, user: string | undefined): LoginAttempt | { lockedUntil: Date } {
    const started = this.tryBegin(address, user);
    return 'busyUntil' in started ? { lockedUntil: started.busyUntil } : started;
  }

  /**
   * As {@link begin}, but when only the attempts under way stand in the way (no lock, the failures so
   * far below the limit), waits for their verdicts instead of refusing, up to `maxWaitMs`; then refuses.
   * At most the limit's worth of checks run at once whatever the client sends, so guessing gains nothing,
   * and legitimate logins sent together from one address are not turned away.
   */
  async beginWhenFree(address: string, user: string | undefined, maxWaitMs = 10_000): Promise<LoginAttempt | { lockedUntil: Date }> {
    const deadline = this.now() + maxWaitMs;
    for (;;) {
      const started = this.tryBegin(address, user);
      if (!('busyUntil' in started)) return started;
      const left = deadline - this.now();
      if (left <= 0) return { lockedUntil: started.busyUntil };
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.waiters.delete(wake);
          resolve();
        }, left);
        const wake = (): void => {
          clearTimeout(timer);
          resolve();
        };
        this.waiters.add(wake);
      });
    }
  }

  /** Wakes every waiting login to look again: an attempt under way has its verdict. */
  private wakeWaiters(): void {
    const waiting = [...this.waiters];
    this.waiters.clear();
    for (const wake of waiting) wake();
  }

  private tryBegin(address: string, user: string | undefined): LoginAttempt | { lockedUntil: Date } | { busyUntil: Date } {
    const now = this.now();
    const [addressKey, userKey] = this.keys(address, user ?? '') as [string, string];
    const limits: Array<[string, number]> = [
      [userKey, this.settings.failures],
      [addressKey, this.settings.failures * ADDRESS_FAILURES_FACTOR],
    ];
    const records = limits.map(([key, limit]) => ({ key, limit, record: this.record(key, now) }));
    for (const { limit, record } of records) {
      if (record.lockedUntil > now) return { lockedUntil: new Date(record.lockedUntil) };
      // The failures a verdict still to come may add: not checked now (refused, or waiting for those verdicts).
      if (record.failures.length + record.pending >= limit) {
        return record.failures.length >= limit ? { lockedUntil: new Date(now + this.settings.lockMs) } : { busyUntil: new Date(now + this.settings.lockMs) };
      }
    }
    for (const { record } of records) record.pending += 1;
    let settled = false;
    return {
      release: (): void => {
        if (settled) return;
        settled = true;
        for (const { key, record } of records) {
          record.pending -= 1;
          this.touch(key, record, this.now());
        }
        this.wakeWaiters();
      },
      settle: (ok: boolean): boolean => {
        if (settled) return false;
        settled = true;
        const at = this.now();
        let locked = false;
        for (const { key, limit, record } of records) {
          record.pending -= 1;
          record.failures = record.failures.filter((t) => t > at - this.settings.windowMs);
          if (ok) {
            // A right password clears that user's count; the address's stays (it may be spraying).
            if (key === userKey) record.failures = [];
          } else {
            record.failures.push(at);
            if (record.failures.length >= limit && record.lockedUntil <= at) {
              record.lockedUntil = at + this.settings.lockMs;
              record.failures = [];
              locked = true;
            }
          }
          this.touch(key, record, at);
        }
        this.wakeWaiters();
        return locked;
      },
    };
  }

  /** How many records are tracked (for tests and metrics). */
  get size(): number {
    return this.records.size;
  }

  private keys(address: string, user: string | undefined): string[] {
    const a = lockoutAddress(address);
    // NUL cannot appear in an address or a configured user name: the keys cannot collide.
    return user === undefined ? [`a\0${a}`] : [`a\0${a}`, `u\0${a}\0${user}`];
  }

  private record(key: string, now: number): LockRecord {
    let record = this.records.get(key);
    if (!record) {
      record = { failures: [], pending: 0, lockedUntil: 0 };
      this.records.set(key, record);
      if (this.records.size > MAX_TRACKED) this.sweep(now);
    }
    record.failures = record.failures.filter((t) => t > now - this.settings.windowMs);
    return record;
  }

  /** Moves the record to the end (the map iterates least recently failing first). */
  private touch(key: string, record: LockRecord, now: number): void {
    this.records.delete(key);
    if (record.failures.length > 0 || record.pending > 0 || record.lockedUntil > now) this.records.set(key, record);
  }

  private sweep(now: number): void {
    for (const [key, record] of this.records) {
      if (this.records.size <= MAX_TRACKED) break;
      const live = record.pending > 0 || record.lockedUntil > now;
      if (!live) this.records.delete(key);
    }
  }
}
