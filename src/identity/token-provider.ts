import { isRelay365Error, Relay365Error } from '../errors.js';
import { silentLogger, type Logger } from '../observe/index.js';
import type { AcquiredToken, TokenSource } from './token-source.js';
import { decodeClaims } from './claims.js';

/** A token ready for use, with the mailbox it is for. */
export interface MailboxToken {
  mailbox: string;
  accessToken: string;
  expiresOn: Date;
}

/** Which source serves a mailbox, and the key its tokens are cached under (app-only tokens share one key per app). */
export interface MailboxSource {
  source: TokenSource;
  key: string;
}

/** What is known about a mailbox's token, without fetching one (for the API, the dashboard and metrics). */
export interface TokenStatus {
  mailbox: string;
  /** True when a token is held in memory (it may be close to expiry). */
  cached: boolean;
  expiresOn: Date | undefined;
  /** A request to the identity platform is in flight. */
  refreshing: boolean;
  /** Failed requests since the last success. */
  failures: number;
  /** The last failure, when the last request failed; the message says how to fix it. */
  lastError: { code: string; message: string } | undefined;
}

/** The outcome of one token request, reported to {@link TokenProvider.onRefresh} listeners. */
export type TokenRefreshOutcome =
  | { mailbox: string; ok: true; expiresOn: Date }
  /** `message` is the error's own (relay365's words, no secret), `background` a refresh no send waited for. */
  | { mailbox: string; ok: false; code: string; message: string; background: boolean };

export interface TokenProviderOptions {
  /** Fraction of a token's lifetime after which it is refreshed ahead, in the background (default 0.7). */
  refreshAt?: number;
  /** Fraction of the lifetime, capped at `maxSafetyMs`, under which a token is no longer handed out (default 0.1). */
  safetyFraction?: number;
  maxSafetyMs?: number;
  /** Backoff after failed refreshes: base and ceiling in ms (exponential, with full jitter). */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  logger?: Logger;
  now?: () => number;
}

interface Slot {
  current?: AcquiredToken & { acquiredAt: number };
  inflight?: Promise<AcquiredToken>;
  /** The mailbox whose request started the in-flight refresh (errors name it). */
  failures: number;
  retryAt: number;
  lastError?: Relay365Error;
  stale: boolean;
  timer?: NodeJS.Timeout;
}

/**
 * Hands out access tokens per mailbox: refreshed ahead of expiry in the background, one request in
 * flight per token however many callers wait (single flight), backing off after failures, and
 * `invalidate` for a token Exchange refused (`535`), after which the caller retries once.
 */
export class TokenProvider {
  private readonly slots = new Map<string, Slot>();
  private readonly refreshAt: number;
  private readonly safetyFraction: number;
  private readonly maxSafetyMs: number;
  private readonly backoffBaseMs: number;
  private readonly backoffMaxMs: number;
  private readonly logger: Logger;
  private readonly now: () => number;
  private closed = false;
  private readonly refreshListeners = new Set<(outcome: TokenRefreshOutcome) => void>();

  constructor(
    private sources: ReadonlyMap<string, MailboxSource>,
    options: TokenProviderOptions = {},
  ) {
    this.refreshAt = options.refreshAt ?? 0.7;
    this.safetyFraction = options.safetyFraction ?? 0.1;
    this.maxSafetyMs = options.maxSafetyMs ?? 120_000;
    this.backoffBaseMs = options.backoffBaseMs ?? 1_000;
    this.backoffMaxMs = options.backoffMaxMs ?? 60_000;
    this.logger = options.logger ?? silentLogger();
    this.now = options.now ?? Date.now;
  }

  /** The configured mailboxes (lower case). */
  mailboxes(): string[] {
    return [...this.sources.keys()];
  }

  private entry(mailbox: string): MailboxSource {
    const entry = this.sources.get(mailbox.toLowerCase());
    if (!entry) throw new Relay365Error('R365_UNKNOWN_MAILBOX', `${mailbox} is not a configured mailbox; add it under mailboxes: in the config.`);
    return entry;
  }

  private slot(key: string): Slot {
    let slot = this.slots.get(key);
    if (!slot) {
      slot = { failures: 0, retryAt: 0, stale: false };
      this.slots.set(key, slot);
    }
    return slot;
  }

  private usable(token: Slot['current'], now: number): token is NonNullable<Slot['current']> {
    if (!token) return false;
    const lifetime = token.expiresOn.getTime() - token.acquiredAt;
    const safety = Math.min(this.maxSafetyMs, lifetime * this.safetyFraction);
    return token.expiresOn.getTime() - now > safety;
  }

  private dueForRefresh(token: NonNullable<Slot['current']>, now: number): boolean {
    const lifetime = token.expiresOn.getTime() - token.acquiredAt;
    return now >= token.acquiredAt + lifetime * this.refreshAt;
  }

  /**
   * A token for the mailbox, valid beyond the safety margin. Waits only when there is no usable
   * token; otherwise starts a background refresh when one is due.
   * @throws Relay365Error `R365_TOKEN_REJECTED`, `R365_TOKEN_ENDPOINT_UNAVAILABLE` (retryable), `R365_LOGIN_REQUIRED`, ...
   */
  async getToken(mailbox: string): Promise<MailboxToken> {
    const { source, key } = this.entry(mailbox);
    const slot = this.slot(key);
    const now = this.now();
    if (!slot.stale && this.usable(slot.current, now)) {
      if (this.dueForRefresh(slot.current, now) && !slot.inflight && now >= slot.retryAt) this.refreshInBackground(key, source, mailbox);
      return { mailbox, accessToken: slot.current.accessToken, expiresOn: slot.current.expiresOn };
    }
    if (!slot.inflight && now < slot.retryAt && slot.lastError) throw slot.lastError;
    const token = await this.refresh(key, source, mailbox);
    return { mailbox, accessToken: token.accessToken, expiresOn: token.expiresOn };
  }

  /** Drops the mailbox's token (Exchange refused it); the next `getToken` fetches a new one. */
  invalidate(mailbox: string): void {
    const slot = this.slots.get(this.entry(mailbox).key);
    if (slot) {
      slot.stale = true;
      slot.retryAt = 0;
    }
  }

  /**
   * The mailbox's token as held now; never starts a request. Mailboxes sharing an app-only token
   * report the same token.
   * @throws Relay365Error `R365_UNKNOWN_MAILBOX`
   */
  status(mailbox: string): TokenStatus {
    const slot = this.slots.get(this.entry(mailbox).key);
    const current = slot?.stale ? undefined : slot?.current;
    return {
      mailbox: mailbox.toLowerCase(),
      cached: current !== undefined && current.expiresOn.getTime() > this.now(),
      expiresOn: current?.expiresOn,
      refreshing: slot?.inflight !== undefined,
      failures: slot?.failures ?? 0,
      lastError: slot?.lastError ? { code: slot.lastError.code, message: slot.lastError.message } : undefined,
    };
  }

  /** Calls `listener` after every token request (success or failure), e.g. for metrics; returns the unsubscribe. */
  onRefresh(listener: (outcome: TokenRefreshOutcome) => void): () => void {
    this.refreshListeners.add(listener);
    return () => this.refreshListeners.delete(listener);
  }

  private report(outcome: TokenRefreshOutcome): void {
    for (const listener of this.refreshListeners) {
      try {
        listener(outcome);
      } catch (err) {
        // An observer's bug must not turn a good token into a failed send.
        this.logger.warn({ err }, 'token refresh listener failed');
      }
    }
  }

  /**
   * Takes the mailboxes and sources of `other` (built from a reloaded config) as its own: every holder
   * of this provider then gets tokens for the new mailboxes. A token already held for a source key that
   * is still used stays; the slots of keys no longer used are dropped with their timers.
   */
  adoptSources(other: TokenProvider): void {
    this.sources = other.sources;
    const used = new Set([...this.sources.values()].map((s) => s.key));
    for (const [key, slot] of this.slots) {
      if (used.has(key)) continue;
      clearTimeout(slot.timer);
      this.slots.delete(key);
    }
  }

  /** Every distinct source behind the configured mailboxes (e.g. to read their credentials again). */
  tokenSources(): TokenSource[] {
    return [...new Set([...this.sources.values()].map((s) => s.source))];
  }

  /** Stops the background refresh timers. */
  close(): void {
    this.closed = true;
    for (const slot of this.slots.values()) clearTimeout(slot.timer);
  }

  private refreshInBackground(key: string, source: TokenSource, mailbox: string): void {
    this.refresh(key, source, mailbox, true).catch((err: unknown) => {
      this.logger.warn({ mailbox, err }, 'background token refresh failed; the current token is still valid');
    });
  }

  private refresh(key: string, source: TokenSource, mailbox: string, background = false): Promise<AcquiredToken> {
    const slot = this.slot(key);
    if (slot.inflight) return slot.inflight;
    const force = slot.current !== undefined || slot.stale;
    const startedAt = this.now();
    const promise = source
      .acquire(mailbox, { force })
      .then((token) => {
        slot.current = { ...token, expiresOn: effectiveExpiry(token), acquiredAt: startedAt };
        slot.stale = false;
        slot.failures = 0;
        slot.retryAt = 0;
        delete slot.lastError;
        this.schedule(key, source, mailbox, slot);
        this.logger.info({ mailbox, expiresOn: token.expiresOn.toISOString() }, 'token acquired');
        this.report({ mailbox, ok: true, expiresOn: token.expiresOn });
        return token;
      })
      .catch((err: unknown) => {
        const error = isRelay365Error(err) ? err : new Relay365Error('R365_TOKEN_ENDPOINT_UNAVAILABLE', String(err), { cause: err, retryable: true });
        slot.failures += 1;
        // Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter").
        const ceiling = Math.min(this.backoffMaxMs, this.backoffBaseMs * 2 ** (slot.failures - 1));
        slot.retryAt = this.now() + ceiling / 2 + Math.random() * (ceiling / 2);
        slot.lastError = error;
        this.logger.warn({ event: 'token.failed', mailbox, code: error.code, failures: slot.failures, err: error }, 'token request failed');
        this.report({ mailbox, ok: false, code: error.code, message: error.message, background });
        throw error;
      })
      .finally(() => {
        delete slot.inflight;
      });
    slot.inflight = promise;
    return promise;
  }

  /** Refreshes ahead of expiry even when no send asks, so a send after a quiet spell does not wait. */
  private schedule(key: string, source: TokenSource, mailbox: string, slot: Slot): void {
    clearTimeout(slot.timer);
    if (this.closed || !slot.current) return;
    const lifetime = slot.current.expiresOn.getTime() - slot.current.acquiredAt;
    const delay = Math.max(0, slot.current.acquiredAt + lifetime * this.refreshAt - this.now());
    slot.timer = setTimeout(() => {
      if (!this.closed && !slot.inflight) this.refreshInBackground(key, source, mailbox);
    }, delay);
    slot.timer.unref();
  }
}

/**
 * When the token stops working: the earlier of the identity platform's `expires_in` (which MSAL turns
 * into a time rounded to the second, from when the answer arrived) and the token's own `exp` claim,
 * which is what Exchange checks. The two can differ by a second or more; for short-lived tokens that
 * is a large part of the safety margin. Opaque tokens (no JWT) keep `expires_in`.
 */
function effectiveExpiry(token: AcquiredToken): Date {
  const exp = decodeClaims(token.accessToken)?.exp;
  return typeof exp === 'number' && exp * 1000 < token.expiresOn.getTime() ? new Date(exp * 1000) : token.expiresOn;
}
