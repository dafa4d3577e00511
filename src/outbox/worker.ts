import { randomUUID } from 'node:crypto';
import { isUnknownReply, type Explanation } from '../catalogue/index.js';
import type { Config } from '../config/index.js';
import type { SendFailure, SendResult, Transport } from '../delivery/index.js';
import { recipientResults, type RecipientResult } from '../delivery/recipients.js';
import { silentLogger, type EventBus, type Logger } from '../observe/index.js';
import { backoffDelay } from './backoff.js';
import { composeBounce, headerBlock, isAutomatic } from './bounce.js';
import type { Router } from './routing.js';
import type { CompleteRequest, MailboxLimits, MailboxPause, OutboxStore, StoredMessage } from './types.js';

export interface WorkerOptions {
  store: OutboxStore;
  transport: Transport;
  router: Router;
  config: Pick<Config, 'mailboxes' | 'limits' | 'queue' | 'delivery'>;
  events: EventBus;
  logger?: Logger;
  /** This worker's lease owner id (default: a random one per process). */
  owner?: string;
  /** Longest sleep between claims when nothing wakes the loop (other nodes may enqueue). */
  pollMs?: number;
  /**
   * How often the worker reads the paused mailboxes from the store (default 2 s): a pause or a resume
   * made by another node, and an operator's `relay365 queue resume`, take effect within this time.
   */
  pauseSyncMs?: number;
}

/** Per-mailbox scheduling state, kept in memory (the quota itself lives in the store). */
/**
 * What the worker reads of one token request (identity's TokenRefreshOutcome, which the runtime hands
 * over: the outbox does not import identity, docs/architecture.md).
 */
export type TokenOutcome = { mailbox: string; ok: true } | { mailbox: string; ok: false; code: string; message: string; background: boolean };

interface MailboxState {
  address: string;
  pools: string[];
  limits: MailboxLimits;
  inflight: number;
  /** Lowered after `432 4.3.2` (too many connections), restored after a quiet spell. */
  connectionCap: number;
  capRestoreAt: number;
  /** No claims before this time (auth pause or throttling cooldown). */
  holdUntil: number;
  /**
   * After 554 5.2.0 SubmissionQuotaExceeded (the daily recipient limit): the recipients per day the
   * claim allows until `recipientCapUntil`, set to what the store's ledger holds, so that the claim
   * itself says when the rolling window frees (Exchange's budget may be shared with other clients).
   */
  recipientCap: number | undefined;
  recipientCapUntil: number;
  paused: boolean;
  pauseReason: Explanation | undefined;
  /** When the pause began (kept in the store, so a restart and every node know it). */
  pausedSince: number;
  /** Whether the store holds this pause: a pause missing from the store then means another node (or an operator) ended it. */
  pauseStored: boolean;
  /** The store writes of this mailbox's pause and resume, one after another, so the last word wins. */
  pauseWrites: Promise<void>;
  wake: (() => void) | undefined;
  /** mailbox.needs_login was said since the mailbox last had a token: it is said once, not at each probe. */
  loginAsked: boolean;
  /** No longer configured (a reload removed it): its loop ends once its sends in flight are done. */
  retired?: boolean;
}

/**
 * Exchange's answer for each envelope recipient (delivery's recipientResults): one it refused at RCPT
 * with its own reply; the others accepted when the message went, or refused with the message's reply
 * when the whole message was. Recipients nothing was decided for (a transient failure) are left out.
 */
function recipientAnswers(message: StoredMessage, result: SendResult): NonNullable<CompleteRequest['recipients']> {
  return recipientResults(message.envelope.to, result).filter((r): r is RecipientResult & { state: 'accepted' | 'refused' } => r.state !== 'pending');
}

function explanationUnknown(result: SendFailure): boolean {
  return result.reply !== undefined && isUnknownReply(result.explanation);
}

/**
 * The delivery loop: for each mailbox, claim what its limits allow, send it, record the outcome.
 * Transient and throttling replies defer with exponential backoff and slow the mailbox down; an auth
 * failure (after the transport's one retry with a fresh token) pauses the mailbox and defers its
 * message; a permanent failure, or a transient one past `queue.maxAgeHours`, fails the message.
 */
export class DeliveryWorker {
  readonly owner: string;
  private readonly mailboxes = new Map<string, MailboxState>();
  private readonly logger: Logger;
  private readonly inflight = new Set<Promise<void>>();
  private running = false;
  private loops: Promise<void>[] = [];
  private pauseTimer: NodeJS.Timeout | undefined;
  private pauseSync: Promise<void> | undefined;

  constructor(private options: WorkerOptions) {
    this.owner = options.owner ?? `worker-${randomUUID()}`;
    this.logger = options.logger ?? silentLogger();
    for (const m of options.config.mailboxes) this.addMailbox(m, options.config);
  }

  /** Scheduling state for a configured mailbox: its limits from `config`, no send in flight, not paused. */
  private addMailbox(m: WorkerOptions['config']['mailboxes'][number], config: WorkerOptions['config']): void {
    const address = m.address.toLowerCase();
    const maxConnections = Math.min(m.maxConnections ?? config.delivery.maxConnections, config.delivery.maxConnections);
    this.mailboxes.set(address, {
      address,
      pools: this.options.router.poolsOf(address),
      limits: {
        messagesPerMinute: m.messagesPerMinute ?? config.limits.messagesPerMinute,
        recipientsPerDay: m.recipientsPerDay ?? config.limits.recipientsPerDay,
        maxConnections,
        minuteMs: config.limits.minuteMs + config.limits.windowMarginMs,
        dayMs: config.limits.dayMs + config.limits.windowMarginMs,
      },
      inflight: 0,
      connectionCap: maxConnections,
      capRestoreAt: 0,
      holdUntil: 0,
      recipientCap: undefined,
      recipientCapUntil: 0,
      paused: false,
      pauseReason: undefined,
      pausedSince: 0,
      pauseStored: false,
      pauseWrites: Promise.resolve(),
      wake: undefined,
      loginAsked: false,
    });
  }

  /**
   * Takes the mailboxes of a reloaded config: a new one gets its loop at once, a changed one its new
   * limits and pools (sends in flight finish under the old), a removed one stops claiming once its
   * sends in flight are done (its queued messages stay, for a config that lists it again).
   */
  updateMailboxes(config: WorkerOptions['config']): void {
    this.options = { ...this.options, config };
    const listed = new Set(config.mailboxes.map((m) => m.address.toLowerCase()));
    for (const [address, m] of this.mailboxes) {
      if (listed.has(address)) continue;
      m.retired = true;
      m.wake?.();
      this.mailboxes.delete(address);
    }
    for (const mailbox of config.mailboxes) {
      const address = mailbox.address.toLowerCase();
      const existing = this.mailboxes.get(address);
      this.addMailbox(mailbox, config);
      const m = this.mailboxes.get(address)!;
      if (existing) {
        // The same loop goes on with the new limits: copy them into the state it holds.
        existing.limits = m.limits;
        existing.pools = m.pools;
        existing.connectionCap = Math.min(existing.connectionCap, m.limits.maxConnections);
        this.mailboxes.set(address, existing);
        existing.wake?.();
      } else if (this.running) {
        this.loops.push(this.loop(m));
      }
    }
  }

  /**
   * Starts one loop per mailbox, after reading the paused mailboxes from the store: a mailbox paused
   * before a restart (or by another node) stays paused, and its next attempt is a probe.
   */
  start(): void {
    if (this.running) return;
    this.running = true;
    const first = this.syncPauses();
    this.loops = [...this.mailboxes.values()].map(async (m) => {
      await first;
      return this.loop(m);
    });
    const every = this.options.pauseSyncMs ?? 2000;
    this.pauseTimer = setInterval(() => void this.syncPauses(), every);
    this.pauseTimer.unref();
  }

  /**
   * Brings this worker's pauses in line with the store's: adopts a pause another node (or a previous
   * run) recorded, honours an operator's resume request (and deletes the row, so every node resumes),
   * and resumes a mailbox whose pause another node ended. Runs every `pauseSyncMs`; the HTTP API calls
   * it at once after a resume request. A store that cannot be read changes nothing.
   */
  syncPauses(): Promise<void> {
    this.pauseSync ??= this.readPauses().finally(() => (this.pauseSync = undefined));
    return this.pauseSync;
  }

  private async readPauses(): Promise<void> {
    let rows: MailboxPause[];
    try {
      rows = await this.options.store.mailboxPauses();
    } catch (err) {
      this.logger.warn({ err }, 'could not read the paused mailboxes; trying again shortly');
      return;
    }
    const byMailbox = new Map(rows.map((r) => [r.mailbox, r]));
    for (const m of this.mailboxes.values()) {
      const row = byMailbox.get(m.address);
      if (row?.resumeRequestedAt !== undefined) {
        await this.resumeOnRequest(m, row);
      } else if (row !== undefined) {
        if (!m.paused) {
          // Paused before this process started, or by another node: hold until the next probe is due.
          m.paused = true;
          m.pausedSince = row.since.getTime();
          m.holdUntil = Math.max(m.holdUntil, row.updatedAt.getTime() + this.options.config.queue.authPauseSeconds * 1000);
          this.logger.warn(
            { mailbox: m.address, reply: row.reply, cause: row.explanation?.cause, fix: row.explanation?.fix, since: row.since, by: row.owner },
            'mailbox paused (as the outbox records it)',
          );
        }
        m.pauseReason = row.explanation ?? m.pauseReason;
        m.pausedSince = row.since.getTime();
        m.pauseStored = true;
      } else if (m.paused && m.pauseStored) {
        // Another node's probe worked (and deleted the row): this one may send again too.
        m.paused = false;
        m.pauseReason = undefined;
        m.pauseStored = false;
        m.holdUntil = 0;
        this.logger.info({ mailbox: m.address }, 'mailbox resumed (another node ended the pause)');
        m.wake?.();
      }
    }
  }

  /** An operator asked for the mailbox to resume (`relay365 queue resume`): resume it and try its queue at once. */
  private async resumeOnRequest(m: MailboxState, row: MailboxPause): Promise<void> {
    const write = m.pauseWrites.then(async () => {
      await this.options.store.resumeMailbox(m.address);
    });
    m.pauseWrites = write.catch(() => undefined);
    try {
      await write;
    } catch (err) {
      this.logger.warn({ err, mailbox: m.address }, 'could not record the resume; trying again shortly');
      return;
    }
    m.paused = false;
    m.pauseReason = undefined;
    m.pauseStored = false;
    m.holdUntil = 0;
    this.options.events.publish({ type: 'mailbox.resumed', mailbox: m.address, at: new Date() });
    this.logger.info(
      { mailbox: m.address, requestedAt: row.resumeRequestedAt, pausedSince: row.since, cause: row.explanation?.cause },
      'mailbox resumed on request; trying its queue now',
    );
    m.wake?.();
  }

  /** Wakes the loops that may send a newly queued message (its mailbox, or every member of its pool). */
  notify(target: { mailbox?: string | undefined; pool?: string | undefined } = {}): void {
    for (const m of this.mailboxes.values()) {
      if (target.mailbox === undefined && target.pool === undefined) m.wake?.();
      else if (m.address === target.mailbox?.toLowerCase() || (target.pool !== undefined && m.pools.includes(target.pool))) m.wake?.();
    }
  }

  /** Paused mailboxes and why, for the API and the dashboard. */
  status(): Array<{
    mailbox: string;
    paused: boolean;
    reason: Explanation | undefined;
    /** When the pause began. */
    pausedSince: Date | undefined;
    holdUntil: Date | undefined;
    inflight: number;
    connectionCap: number;
    limits: MailboxLimits;
  }> {
    return [...this.mailboxes.values()].map((m) => ({
      mailbox: m.address,
      paused: m.paused,
      reason: m.pauseReason,
      pausedSince: m.paused ? new Date(m.pausedSince) : undefined,
      holdUntil: m.holdUntil > Date.now() ? new Date(m.holdUntil) : undefined,
      inflight: m.inflight,
      connectionCap: m.connectionCap,
      limits: m.limits,
    }));
  }

  /** Stops claiming and waits for the sends in flight (their outcome is recorded); the rest stays queued. */
  async stop(): Promise<void> {
    this.running = false;
    clearInterval(this.pauseTimer);
    this.pauseTimer = undefined;
    for (const m of this.mailboxes.values()) m.wake?.();
    await Promise.all(this.loops);
    await Promise.all([...this.inflight]);
    await this.pauseSync;
    // The last pause or resume reaches the store before it closes.
    await Promise.all([...this.mailboxes.values()].map((m) => m.pauseWrites));
  }

  private sleep(m: MailboxState, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, Math.max(0, ms));
      function done(): void {
        clearTimeout(timer);
        m.wake = undefined;
        resolve();
      }
      m.wake = done;
    });
  }

  private async loop(m: MailboxState): Promise<void> {
    const pollMs = this.options.pollMs ?? 1000;
    const { store, config } = this.options;
    while (this.running && !m.retired) {
      const now = Date.now();
      if (now < m.holdUntil) {
        await this.sleep(m, Math.min(m.holdUntil - now, pollMs * 5));
        continue;
      }
      if (m.capRestoreAt !== 0 && now >= m.capRestoreAt) {
        m.connectionCap = Math.min(m.limits.maxConnections, m.connectionCap + 1);
        m.capRestoreAt = m.connectionCap < m.limits.maxConnections ? now + m.limits.minuteMs : 0;
      }
      if (m.recipientCap !== undefined && now >= m.recipientCapUntil) m.recipientCap = undefined;
      const free = m.connectionCap - m.inflight;
      if (free <= 0) {
        await this.sleep(m, pollMs);
        continue;
      }
      let claimed;
      try {
        claimed = await store.claim({
          mailbox: m.address,
          pools: m.pools,
          owner: this.owner,
          leaseMs: config.queue.leaseSeconds * 1000,
          limits: { ...m.limits, maxConnections: m.connectionCap, recipientsPerDay: m.recipientCap ?? m.limits.recipientsPerDay },
          max: free,
        });
      } catch (err) {
        this.logger.error({ err, mailbox: m.address }, 'claim failed; retrying');
        await this.sleep(m, pollMs);
        continue;
      }
      for (const message of claimed.messages) {
        m.inflight += 1;
        let released = false;
        const release = (): void => {
          if (released) return;
          released = true;
          m.inflight -= 1;
          m.wake?.();
        };
        // A failure here is the store's or a bug's, never the send's (deliver classifies those): the
        // message keeps its lease, which expires and makes it due again (at least once, never lost).
        const p = this.deliver(m, message, release)
          .catch((err: unknown) => {
            this.logger.error(
              { err, id: message.id, mailbox: m.address },
              'delivery could not be completed (store unavailable?); the message is tried again when its lease expires',
            );
          })
          .finally(() => {
            release();
            this.inflight.delete(p);
          });
        this.inflight.add(p);
      }
      if (claimed.messages.length > 0 && !claimed.blockedBy) continue;
      const until = claimed.blockedUntil?.getTime() ?? (await store.nextDue(m.address, m.pools).catch(() => undefined))?.getTime();
      await this.sleep(m, until === undefined ? pollMs : Math.min(pollMs, until - Date.now()));
    }
  }

  /**
   * Sends one claimed message and records the outcome. `release` frees its connection slot. With a store
   * whose claims follow the outcomes asked for before them (`claimsFollowOutcomes`: SQLite), a send that
   * worked frees it as soon as its outcome is handed over, so the loop's next claim joins that outcome's
   * transaction instead of waiting for it; elsewhere (PostgreSQL runs the two side by side, and the claim
   * could count this lease still live) the slot is freed once the outcome is stored. A failure frees it
   * only at the end, after the pause or throttling it causes is in place.
   */
  private async deliver(m: MailboxState, message: StoredMessage, release: () => void): Promise<void> {
    const { store, transport, events, config } = this.options;
    const started = Date.now();
    let result: SendResult;
    const raw = await store.getRaw(message.id);
    if (!raw) {
      this.logger.error({ id: message.id }, 'message has no body; failing it');
      result = {
        ok: false,
        class: 'permanent',
        mailbox: m.address,
        messageId: message.messageId,
        reply: undefined,
        explanation: { id: 'outbox-missing-body', class: 'permanent', cause: 'The stored message has no body.', fix: 'Resubmit it.' },
      };
    } else {
      result = await transport.send(m.address, { raw, envelope: message.envelope, ...(message.messageId ? { messageId: message.messageId } : {}) });
    }
    const recipients = recipientAnswers(message, result);
    // The store records only the recipients Exchange answered for one by one; the others take the
    // message's outcome in one statement, however many there are.
    const ownAnswers = new Set((result.rejected ?? []).map((r) => r.address.toLowerCase()));
    const answered = recipients.filter((r) => ownAnswers.has(r.address.toLowerCase()));
    // Exchange took it for no one (every recipient refused at RCPT, however the transport reported it): not sent.
    if (result.ok && recipients.every((r) => r.state === 'refused')) {
      const last = recipients.at(-1);
      result = {
        ...result,
        ok: false,
        class: 'permanent',
        reply: last?.reply ?? result.reply,
        explanation: last?.explanation ?? {
          id: 'outbox-all-recipients-refused',
          class: 'permanent',
          cause: 'Exchange refused every recipient of the message.',
          fix: "Check the recipients' addresses; the message was delivered to no one.",
        },
      };
    }
    const durationMs = Date.now() - started;
    const attempt = {
      at: new Date(),
      mailbox: m.address,
      reply: result.reply,
      class: result.class,
      explanation: result.ok ? undefined : result.explanation,
      durationMs,
      owner: this.owner,
    };
    const attempts = message.attempts + 1;
    // A scheduled message ages from its time, not from when it was queued days before.
    const age = Date.now() - Math.max(message.createdAt.getTime(), message.sendAt?.getTime() ?? 0);
    const tooOld = age > config.queue.maxAgeHours * 3_600_000;

    if (result.ok) {
      if (m.paused) this.resume(m);
      const recorded = this.record({ id: message.id, owner: this.owner, state: 'sent', attempt, recipients: answered });
      if (store.claimsFollowOutcomes === true) release();
      if (await recorded) {
        events.publish({ type: 'message.sent', id: message.id, mailbox: m.address, reply: result.reply, attempts, durationMs, at: new Date() });
        this.publishRefused(message, m.address, recipients, 'sent');
      }
      return;
    }
    if (explanationUnknown(result)) {
      // Counted by the metrics (relay365_unknown_replies_total); the whole text so that it can be reported and catalogued.
      this.logger.warn({ id: message.id, mailbox: m.address, reply: result.reply, class: result.class }, 'reply not in the catalogue');
    }
    // A blocked mailbox keeps its queue however long the block lasts: only an admin can end it.
    if (result.class === 'permanent' || (tooOld && result.class !== 'auth' && result.class !== 'blocked')) {
      if (await this.record({ id: message.id, owner: this.owner, state: 'failed', attempt, recipients: answered })) {
        events.publish({
          type: 'message.failed',
          id: message.id,
          mailbox: m.address,
          reply: result.reply,
          class: result.class,
          explanation: result.explanation,
          attempts,
          at: new Date(),
        });
        this.publishRefused(message, m.address, recipients, 'failed');
        if (tooOld)
          this.logger.warn(
            { id: message.id, mailbox: m.address, maxAgeHours: config.queue.maxAgeHours },
            'message failed: still failing after queue.maxAgeHours',
          );
        if (config.queue.bounces && raw) await this.bounce(m, message, raw, result);
      }
      return;
    }
    let nextAttemptAt: Date;
    if (result.class === 'auth' || result.class === 'blocked') {
      // auth: the transport already retried once with a fresh token: the setup is wrong. blocked:
      // Exchange refuses the whole mailbox until an admin acts (mailbox full, continuous-error
      // throttling, restricted sender). Either way: pause the mailbox, keep the message; it is tried
      // again when the pause ends (a probe, which resumes the mailbox if it works).
      const until = Date.now() + config.queue.authPauseSeconds * 1000;
      this.pause(m, until, result);
      nextAttemptAt = new Date(until);
    } else {
      if (result.class === 'throttled') await this.throttle(m, result);
      const backoff = backoffDelay(attempts, config.queue.retryBaseSeconds * 1000, config.queue.retryMaxSeconds * 1000);
      // Never earlier than Microsoft asked (Graph's Retry-After): an earlier retry only draws another 429.
      nextAttemptAt = new Date(Date.now() + Math.max(backoff, result.retryAfterMs ?? 0));
    }
    if (await this.record({ id: message.id, owner: this.owner, state: 'deferred', attempt, nextAttemptAt })) {
      events.publish({
        type: 'message.deferred',
        id: message.id,
        mailbox: m.address,
        reply: result.reply,
        class: result.class,
        explanation: result.explanation,
        nextAttemptAt,
        attempts,
        at: new Date(),
      });
    }
  }

  /** One `message.recipient.refused` per refused recipient (logged at info by the event log, with `event`). */
  private publishRefused(
    message: StoredMessage,
    mailbox: string,
    recipients: NonNullable<CompleteRequest['recipients']>,
    messageState: 'sent' | 'failed',
  ): void {
    for (const r of recipients) {
      if (r.state !== 'refused') continue;
      this.options.events.publish({
        type: 'message.recipient.refused',
        id: message.id,
        mailbox,
        recipient: r.address,
        reply: r.reply,
        explanation: r.explanation,
        messageState,
        at: new Date(),
      });
    }
  }

  /**
   * Records an attempt's outcome, retrying with backoff through a store outage (a PostgreSQL failover,
   * a cut connection, SQLITE_BUSY): the send happened and must not be repeated if the store comes back
   * in time. Gives up when the worker stops or half the lease has passed; the lease then expires and
   * the message is sent again (a duplicate at worst, never a loss). False when not recorded.
   */
  private async record(request: CompleteRequest): Promise<boolean> {
    const deadline = Date.now() + (this.options.config.queue.leaseSeconds * 1000) / 2;
    for (let delay = 100; ; delay = Math.min(delay * 2, 5000)) {
      try {
        return await this.options.store.complete(request);
      } catch (err) {
        if (!this.running || Date.now() + delay > deadline) {
          this.logger.error(
            { err, id: request.id, state: request.state },
            "could not record the delivery's outcome; the message is tried again when its lease expires",
          );
          return false;
        }
        this.logger.warn({ err, id: request.id, state: request.state, retryInMs: delay }, "recording the delivery's outcome failed; retrying");
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }

  /** Tells the envelope sender that its message failed (RFC 3464), unless it was itself automatic. */
  private async bounce(m: MailboxState, message: StoredMessage, raw: Buffer, result: SendFailure): Promise<void> {
    const headers = headerBlock(raw);
    if (!message.envelope.from || message.source.kind === 'bounce' || isAutomatic(headers)) return;
    try {
      const dsn = await composeBounce({
        mailbox: m.address,
        original: { id: message.id, envelope: message.envelope, headers, messageId: message.messageId },
        reply: result.reply,
        explanation: result.explanation,
      });
      const stored = await this.options.store.enqueue({ mailbox: m.address, envelope: dsn.envelope, raw: dsn.raw, source: { kind: 'bounce' } });
      this.logger.info({ id: stored.id, for: message.id, to: message.envelope.from }, 'bounce queued');
      this.notify({ mailbox: m.address });
    } catch (err) {
      this.logger.error({ err, id: message.id }, 'could not queue the bounce');
    }
  }

  private pause(m: MailboxState, until: number, result: SendFailure): void {
    m.holdUntil = Math.max(m.holdUntil, until);
    // In the store, so a restart keeps the pause and every node holds the mailbox too; each probe that
    // meets the cause again records when (a restart then waits for the next probe, not a whole pause).
    const pause = {
      mailbox: m.address,
      class: result.class === 'auth' ? ('auth' as const) : ('blocked' as const),
      reply: result.reply,
      explanation: result.explanation ?? m.pauseReason,
      owner: this.owner,
    };
    m.pauseWrites = m.pauseWrites.then(async () => {
      try {
        const stored = await this.options.store.pauseMailbox(pause);
        // A send that worked meanwhile ended the pause: the row must go too.
        if (!m.paused) await this.options.store.resumeMailbox(m.address);
        else {
          m.pauseStored = true;
          m.pausedSince = stored.since.getTime();
        }
      } catch (err) {
        this.logger.error({ err, mailbox: m.address }, 'could not record the paused mailbox in the outbox; this node still holds it');
      }
    });
    // A probe of a paused mailbox that meets a new cause (a full mailbox that Exchange now blocks for
    // continuous errors) says so: the operator acts on the current cause, not the first one.
    if (m.paused && (result.explanation === undefined || result.explanation.id === m.pauseReason?.id)) return;
    if (!m.paused) m.pausedSince = Date.now();
    m.paused = true;
    m.pauseReason = result.explanation;
    this.options.events.publish({
      type: 'mailbox.paused',
      mailbox: m.address,
      reason: result.reply ?? result.explanation?.cause ?? 'auth failure',
      explanation: result.explanation,
      until: new Date(until),
      at: new Date(),
    });
    this.logger.warn({ mailbox: m.address, reply: result.reply, cause: result.explanation?.cause, fix: result.explanation?.fix }, 'mailbox paused');
    // A delegated sign-in that ended (identity's R365_LOGIN_REQUIRED): only a person can fix it, so say so apart.
    if (result.explanation?.id === 'r365_login_required') this.askForLogin(m, result.explanation.cause, result.explanation.fix);
  }

  private askForLogin(m: MailboxState, cause: string, fix: string): void {
    if (m.loginAsked) return;
    m.loginAsked = true;
    this.options.events.publish({ type: 'mailbox.needs_login', mailbox: m.address, cause, fix, at: new Date() });
  }

  /**
   * What the token provider learnt of a mailbox's sign-in (its onRefresh outcomes). A delegated sign-in
   * that ended at a refresh no send waited for (AADSTS70043 after a sign-in frequency, 700082, a
   * revoke) is told at once as mailbox.needs_login: a pooled session Exchange authenticated earlier may
   * still send for a while, and the mailbox pauses only when a send meets the refusal (without telling
   * it twice). A token had again (after relay365 login) lets the next end be told.
   */
  tokenOutcome(outcome: TokenOutcome): void {
    const m = this.mailboxes.get(outcome.mailbox.toLowerCase());
    if (!m) return;
    if (outcome.ok) m.loginAsked = false;
    else if (outcome.code === 'R365_LOGIN_REQUIRED' && outcome.background) {
      this.logger.warn({ mailbox: m.address, cause: outcome.message }, 'the delegated sign-in ended; run relay365 login');
      this.askForLogin(m, outcome.message, `relay365 login --mailbox ${m.address}`);
    }
  }

  private resume(m: MailboxState): void {
    m.paused = false;
    m.pauseReason = undefined;
    m.pauseStored = false;
    m.pauseWrites = m.pauseWrites.then(async () => {
      try {
        // Unless another failure paused it again meanwhile.
        if (!m.paused) await this.options.store.resumeMailbox(m.address);
      } catch (err) {
        this.logger.error({ err, mailbox: m.address }, 'could not record the resumed mailbox in the outbox; it resumes at the next successful send');
      }
    });
    this.options.events.publish({ type: 'mailbox.resumed', mailbox: m.address, at: new Date() });
    this.logger.info({ mailbox: m.address }, 'mailbox resumed');
  }

  /**
   * Slows a mailbox that drew a throttling reply, as the catalogue row says (never from the reply's
   * text): one connection fewer after 432 4.3.2; after the daily recipient limit, no claim until the
   * store's ledger says the rolling 24-hour window has room; otherwise a short cooldown.
   */
  private async throttle(m: MailboxState, result: SendFailure): Promise<void> {
    const now = Date.now();
    const handling = result.explanation?.handling;
    if (handling?.lowerConcurrency) {
      m.connectionCap = Math.max(1, m.connectionCap - 1);
      m.capRestoreAt = now + m.limits.minuteMs;
    }
    let until: number;
    if (handling?.holdUntilRecipientWindowFrees) {
      // Exchange counts 10,000 recipients per rolling 24 h (Microsoft Learn, "Exchange Online limits"). Cap the claim at what the
      // ledger holds: the claim then waits until the oldest of them leave the window. An empty
      // ledger (the budget went to another client) knows nothing better than a whole day.
      const used = (await this.options.store.quotaUsage(m.address, m.limits).catch(() => undefined))?.recipientsLastDay ?? 0;
      m.recipientCapUntil = now + m.limits.dayMs;
      if (used > 0) {
        m.recipientCap = Math.min(used, m.limits.recipientsPerDay);
        until = now;
      } else {
        until = now + m.limits.dayMs;
      }
    } else {
      // A Retry-After (Graph) says exactly when the mailbox may send again.
      until = now + (result.retryAfterMs ?? Math.min(m.limits.minuteMs, 5_000));
    }
    m.holdUntil = Math.max(m.holdUntil, until);
    this.options.events.publish({ type: 'mailbox.throttled', mailbox: m.address, reply: result.reply, until: new Date(until), at: new Date() });
  }
}
