/** Settings of {@link LoginLockout}, from `smtp.lockout*`. */
export interface LockoutSettings {
  /** Wrong logins within the window that lock the address. */
  failures: number;
  windowMs: number;
  /** How long a locked address stays locked. */
  lockMs: number;
}

/**
 * Past this many tracked addresses, entries without recent failures are swept, then the least
 * recently failing ones, so a spray of addresses (IPv6 makes that cheap) cannot grow the map
 * without bound.
 */
const MAX_TRACKED = 10_000;

interface AddressRecord {
  /** Times (ms) of failures inside the window, oldest first. */
  failures: number[];
  lockedUntil: number;
}

/**
 * Counts wrong logins per client address and locks an address out once it has `failures` of them
 * within `windowMs`: for `lockMs` every AUTH from it is refused, with the right password too, so a
 * password cannot be guessed faster than `failures` tries per `lockMs`.
 */
export class LoginLockout {
  private readonly records = new Map<string, AddressRecord>();

  constructor(
    private readonly settings: LockoutSettings,
    private readonly now: () => number = Date.now,
  ) {}

  /** The time the lock on `address` ends, or undefined when it is not locked. */
  lockedUntil(address: string): Date | undefined {
    const record = this.records.get(address);
    return record && record.lockedUntil > this.now() ? new Date(record.lockedUntil) : undefined;
  }

  /** Records a wrong login; returns true when this failure locked the address. */
  fail(address: string): boolean {
    const now = this.now();
    const record = this.records.get(address) ?? { failures: [], lockedUntil: 0 };
    record.failures = record.failures.filter((t) => t > now - this.settings.windowMs);
    record.failures.push(now);
    let locked = false;
    if (record.failures.length >= this.settings.failures && record.lockedUntil <= now) {
      record.lockedUntil = now + this.settings.lockMs;
      record.failures = [];
      locked = true;
    }
    this.records.delete(address); // re-insert: the map iterates least recently failed first
    this.records.set(address, record);
    if (this.records.size > MAX_TRACKED) this.sweep(now);
    return locked;
  }

  private sweep(now: number): void {
    for (const [address, record] of this.records) {
      if (record.lockedUntil <= now && !record.failures.some((t) => t > now - this.settings.windowMs)) this.records.delete(address);
    }
    for (const address of this.records.keys()) {
      if (this.records.size <= MAX_TRACKED) break;
      this.records.delete(address);
    }
  }
}
