import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { isUnknownReply, parseReply } from '../catalogue/index.js';
import type { EventBus, FrontDoorEvent, RelayEvent } from './events.js';

/**
 * The state of the queue and the mailboxes at one scrape, read from the outbox by the caller (the
 * metrics do not know the store: observe depends on nothing).
 */
export interface QueueSnapshot {
  /** Messages by mailbox and state; `mailbox` is `(pool)` for pool messages no member holds. */
  messages: ReadonlyArray<{ mailbox: string; state: string; count: number }>;
  /** Messages waiting to be sent (queued and deferred). */
  waiting: number;
  /** Age of the oldest waiting message, 0 when none waits. */
  oldestWaitingSeconds: number;
  mailboxes: ReadonlyArray<{
    mailbox: string;
    messagesLeftThisMinute: number;
    recipientsLeftToday: number;
    paused: boolean;
    /** Seconds until the held token expires; undefined when none is held. */
    tokenExpiresInSeconds: number | undefined;
  }>;
}

export interface RelayMetricsOptions {
  /** Registry to use (default: a new one, so two relays in one process do not mix). */
  registry?: Registry;
  /**
   * Also export Node's process metrics (CPU, memory, event loop lag); default true. They keep
   * prom-client's standard names (`process_cpu_seconds_total`, `nodejs_eventloop_lag_seconds`), without
   * the `relay365_` prefix, so stock Node.js dashboards find them.
   */
  processMetrics?: boolean;
  /** relay365's version, for `relay365_build_info` (default `unknown`). */
  version?: string;
  /** The configured mailboxes: their per-mailbox counters start at 0, so `increase()` sees the first event. */
  mailboxes?: readonly string[];
}

/** Label values each counter starts with at 0: a series born with its first event hides that event from `increase()`. */
const MESSAGE_EVENTS = ['queued', 'sent', 'deferred', 'failed'] as const;
const MAILBOX_EVENTS = ['paused', 'resumed', 'throttled'] as const;
const TOKEN_OUTCOMES = ['success', 'failure'] as const;
const SMTP_CONNECTION_OUTCOMES = ['accepted', 'refused'] as const;
const SMTP_AUTH_FAILURE_REASONS = ['invalid', 'locked'] as const;
/** `relay365_bounces_total`'s classes (src/bounces/classify.ts: RFC 3463 class and subject). */
const BOUNCE_METRIC_CLASSES = ['hard', 'soft', 'delayed'] as const;

/** Seconds; one SMTP submission to Exchange takes from ~100 ms to a few seconds, a slow one 30 s or more. */
const SEND_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/**
 * relay365's Prometheus metrics. Counters and the latency histogram follow the event bus; the gauges
 * (messages by state, queue depth and age, quota left, paused mailboxes, token lifetime) are set from a
 * {@link QueueSnapshot} at each scrape, so they are never stale.
 *
 * @example
 * ```ts
 * const metrics = new RelayMetrics();
 * metrics.follow(relay.events);
 * const text = await metrics.render(await snapshot());
 * ```
 */
export class RelayMetrics {
  readonly registry: Registry;
  private readonly events: Counter<'event'>;
  private readonly replies: Counter<'code' | 'enhanced'>;
  private readonly unknownReplies: Counter<'code' | 'enhanced'>;
  private readonly sendDuration: Histogram<'mailbox'>;
  private readonly mailboxEvents: Counter<'mailbox' | 'event'>;
  private readonly tokenRequests: Counter<'mailbox' | 'outcome'>;
  private readonly bounces: Counter<'mailbox' | 'class'>;
  private readonly webhookAttempts: Counter<'outcome' | 'type'>;
  private readonly smtpConnections: Counter<'outcome'>;
  private readonly smtpAuthFailures: Counter<'reason'>;
  private readonly smtpLockouts: Counter;
  private readonly smtpSendersRefused: Counter;
  private readonly smtpMessagesAccepted: Counter;
  private readonly httpRequests: Counter<'method' | 'route' | 'status'>;
  private readonly messages: Gauge<'mailbox' | 'state'>;
  private readonly queueDepth: Gauge;
  private readonly queueAge: Gauge;
  private readonly quotaMessages: Gauge<'mailbox'>;
  private readonly quotaRecipients: Gauge<'mailbox'>;
  private readonly paused: Gauge<'mailbox'>;
  private readonly tokenExpiry: Gauge<'mailbox'>;
  private readonly credentialExpiry: Gauge<'mailbox' | 'kind'>;

  constructor(options: RelayMetricsOptions = {}) {
    this.registry = options.registry ?? new Registry();
    const registers = [this.registry];
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
    this.events = new Counter({
      name: 'relay365_message_events_total',
      help: 'Message state changes since start, by event (queued, sent, deferred, failed).',
      labelNames: ['event'],
      registers,
    });
    this.replies = new Counter({
      name: 'relay365_smtp_replies_total',
      help: 'Final replies of delivery attempts by basic and enhanced code ("none": the connection failed before a reply).',
      labelNames: ['code', 'enhanced'],
      registers,
    });
    this.unknownReplies = new Counter({
      name: 'relay365_unknown_replies_total',
      help: 'Replies the Microsoft reply catalogue has no row for, by basic and enhanced code (the log line "reply not in the catalogue" has the text: please report it).',
      labelNames: ['code', 'enhanced'],
      registers,
    });
    this.sendDuration = new Histogram({
      name: 'relay365_send_duration_seconds',
      help: 'Duration of successful sends to Microsoft 365, by sending mailbox.',
      labelNames: ['mailbox'],
      buckets: SEND_BUCKETS,
      registers,
    });
    this.mailboxEvents = new Counter({
      name: 'relay365_mailbox_events_total',
      help: 'Mailbox pauses, resumptions and throttling replies since start.',
      labelNames: ['mailbox', 'event'],
      registers,
    });
    this.tokenRequests = new Counter({
      name: 'relay365_token_requests_total',
      help: 'Token requests to the Microsoft identity platform, by outcome (success, failure).',
      labelNames: ['mailbox', 'outcome'],
      registers,
    });
    this.webhookAttempts = new Counter({
      name: 'relay365_webhook_attempts_total',
      help: 'Webhook POSTs by outcome (delivered, retry, abandoned) and event type.',
      labelNames: ['outcome', 'type'],
      registers,
    });
    this.smtpConnections = new Counter({
      name: 'relay365_smtp_connections_total',
      help: 'SMTP connections by outcome: accepted, or refused at once (too many connections, shutting down).',
      labelNames: ['outcome'],
      registers,
    });
    this.smtpAuthFailures = new Counter({
      name: 'relay365_smtp_auth_failures_total',
      help: 'SMTP AUTH attempts refused, by reason: invalid (wrong name or password), locked (client locked out).',
      labelNames: ['reason'],
      registers,
    });
    this.smtpLockouts = new Counter({
      name: 'relay365_smtp_lockouts_total',
      help: 'Lockouts started by repeated failed SMTP logins (smtp.lockoutFailures within smtp.lockoutWindowSeconds).',
      registers,
    });
    this.smtpSendersRefused = new Counter({
      name: 'relay365_smtp_senders_refused_total',
      help: 'SMTP senders refused because the login or allowlist entry may not send as them (550 5.7.1).',
      registers,
    });
    this.smtpMessagesAccepted = new Counter({
      name: 'relay365_smtp_messages_accepted_total',
      help: 'Messages accepted over SMTP (committed to the outbox before the 250).',
      registers,
    });
    this.httpRequests = new Counter({
      name: 'relay365_http_requests_total',
      help: 'HTTP requests answered, by method, route pattern ("unmatched" for no route) and status code.',
      labelNames: ['method', 'route', 'status'],
      registers,
    });
    new Gauge({
      name: 'relay365_build_info',
      help: 'Always 1; its labels are the relay365 version and the Node.js version running it.',
      labelNames: ['version', 'node'],
      registers,
    }).set({ version: options.version ?? 'unknown', node: process.versions.node }, 1);
    this.bounces = new Counter({
      name: 'relay365_bounces_total',
      help: 'Recipients reported back by a non-delivery report read from the mailbox (class hard: the address does not exist, soft: another permanent or transient failure, delayed: a delay notification).',
      labelNames: ['mailbox', 'class'],
      registers,
    });
    for (const event of MESSAGE_EVENTS) this.events.inc({ event }, 0);
    for (const outcome of SMTP_CONNECTION_OUTCOMES) this.smtpConnections.inc({ outcome }, 0);
    for (const reason of SMTP_AUTH_FAILURE_REASONS) this.smtpAuthFailures.inc({ reason }, 0);
    this.smtpLockouts.inc(0);
    this.smtpSendersRefused.inc(0);
    this.smtpMessagesAccepted.inc(0);
    this.addMailboxes(options.mailboxes ?? []);
    this.messages = new Gauge({
      name: 'relay365_messages',
      help: 'Messages in the outbox by sending mailbox and state.',
      labelNames: ['mailbox', 'state'],
      registers,
    });
    this.queueDepth = new Gauge({ name: 'relay365_queue_depth', help: 'Messages waiting to be sent (queued or deferred).', registers });
    this.queueAge = new Gauge({ name: 'relay365_queue_oldest_age_seconds', help: 'Age of the oldest waiting message (0 when none waits).', registers });
    this.quotaMessages = new Gauge({
      name: 'relay365_quota_messages_left',
      help: 'Messages the mailbox may still send in the current minute window.',
      labelNames: ['mailbox'],
      registers,
    });
    this.quotaRecipients = new Gauge({
      name: 'relay365_quota_recipients_left',
      help: 'Recipients the mailbox may still send to in the current 24-hour window.',
      labelNames: ['mailbox'],
      registers,
    });
    this.paused = new Gauge({
      name: 'relay365_mailbox_paused',
      help: '1 while the mailbox is paused (an authentication failure, or a cause that blocks it until an admin acts).',
      labelNames: ['mailbox'],
      registers,
    });
    this.tokenExpiry = new Gauge({
      name: 'relay365_token_expires_in_seconds',
      help: 'Seconds until the held access token of the mailbox expires (absent when none is held).',
      labelNames: ['mailbox'],
      registers,
    });
    // Not reset by render(): the credential monitor sets it when it reads the files (hourly).
    this.credentialExpiry = new Gauge({
      name: 'relay365_credential_expiry_timestamp_seconds',
      help: "When the mailbox's app credential (kind client-secret or certificate) expires, in seconds since the epoch (absent when unknown).",
      labelNames: ['mailbox', 'kind'],
      registers,
    });
  }

  /** Counts the bus's events; returns the unsubscribe. */
  follow(events: EventBus): () => void {
    return events.subscribe((event) => this.record(event));
  }

  /** Counts one event (what {@link follow} does for each). */
  record(event: RelayEvent): void {
    switch (event.type) {
      case 'message.queued':
        this.events.inc({ event: 'queued' });
        break;
      case 'message.sent':
        this.events.inc({ event: 'sent' });
        this.sendDuration.observe({ mailbox: event.mailbox }, event.durationMs / 1000);
        this.countReply(event.reply);
        break;
      case 'message.deferred':
      case 'message.failed':
        this.events.inc({ event: event.type === 'message.failed' ? 'failed' : 'deferred' });
        this.countReply(event.reply);
        if (event.reply !== undefined && event.explanation !== undefined && isUnknownReply(event.explanation)) {
          const parsed = parseReply(event.reply);
          this.unknownReplies.inc({ code: parsed ? String(parsed.code) : 'unparsable', enhanced: parsed?.enhanced ?? 'none' });
        }
        break;
      case 'mailbox.paused':
      case 'mailbox.resumed':
      case 'mailbox.throttled':
        this.mailboxEvents.inc({ mailbox: event.mailbox, event: event.type.slice('mailbox.'.length) });
        break;
      // A replay was counted when its entry was first applied.
      case 'message.bounced':
        if (!event.replay) this.bounces.inc({ mailbox: event.mailbox, class: event.bounceClass });
        break;
      case 'message.delayed':
        if (!event.replay) this.bounces.inc({ mailbox: event.mailbox, class: 'delayed' });
        break;
    }
  }

  /**
   * Starts the per-mailbox counters of these mailboxes at 0 (a mailbox a reload adds; one already
   * counted keeps its values), so `increase()` sees their first event.
   */
  addMailboxes(mailboxes: readonly string[]): void {
    for (const mailbox of mailboxes) {
      for (const event of MAILBOX_EVENTS) this.mailboxEvents.inc({ mailbox, event }, 0);
      for (const outcome of TOKEN_OUTCOMES) this.tokenRequests.inc({ mailbox, outcome }, 0);
      for (const cls of BOUNCE_METRIC_CLASSES) this.bounces.inc({ mailbox, class: cls }, 0);
    }
  }

  /** Sets when a mailbox's client secret or certificate expires (wire to the credential monitor). */
  credentialExpires(mailbox: string, kind: 'client-secret' | 'certificate', expiresAtSeconds: number): void {
    this.credentialExpiry.set({ mailbox, kind }, expiresAtSeconds);
  }

  /** Counts one token request (wire to `TokenProvider.onRefresh`). */
  tokenRequest(mailbox: string, ok: boolean): void {
    this.tokenRequests.inc({ mailbox, outcome: ok ? 'success' : 'failure' });
  }

  /** Counts one front-door event (wire to the SMTP ingress's `observe`). */
  frontDoor(event: FrontDoorEvent): void {
    switch (event.type) {
      case 'smtp.connection':
        this.smtpConnections.inc({ outcome: event.outcome });
        break;
      case 'smtp.auth_failed':
        this.smtpAuthFailures.inc({ reason: event.reason });
        break;
      case 'smtp.lockout':
        this.smtpLockouts.inc();
        break;
      case 'smtp.sender_refused':
        this.smtpSendersRefused.inc();
        break;
      case 'smtp.message_accepted':
        this.smtpMessagesAccepted.inc();
        break;
    }
  }

  /** Counts one answered HTTP request (wire to the HTTP app's `onResponse`); `route` is the pattern, never the path. */
  httpRequest(method: string, route: string | undefined, status: number): void {
    this.httpRequests.inc({ method, route: route ?? 'unmatched', status: String(status) });
  }

  /** Counts one webhook POST (wire to `WebhookDispatcher`'s `onAttempt`). */
  webhookAttempt(type: string, outcome: string): void {
    this.webhookAttempts.inc({ type, outcome });
  }

  /** The Prometheus text exposition of every metric, the gauges set from `snapshot`. */
  async render(snapshot: QueueSnapshot): Promise<string> {
    // Reset first: a mailbox removed from the config or a state now empty must not linger.
    for (const gauge of [this.messages, this.quotaMessages, this.quotaRecipients, this.paused, this.tokenExpiry]) gauge.reset();
    for (const m of snapshot.messages) this.messages.set({ mailbox: m.mailbox, state: m.state }, m.count);
    this.queueDepth.set(snapshot.waiting);
    this.queueAge.set(snapshot.oldestWaitingSeconds);
    for (const m of snapshot.mailboxes) {
      this.quotaMessages.set({ mailbox: m.mailbox }, Math.max(0, m.messagesLeftThisMinute));
      this.quotaRecipients.set({ mailbox: m.mailbox }, Math.max(0, m.recipientsLeftToday));
      this.paused.set({ mailbox: m.mailbox }, m.paused ? 1 : 0);
      if (m.tokenExpiresInSeconds !== undefined) this.tokenExpiry.set({ mailbox: m.mailbox }, m.tokenExpiresInSeconds);
    }
    return this.registry.metrics();
  }

  /** The Content-Type of {@link render}'s output. */
  get contentType(): string {
    return this.registry.contentType;
  }

  private countReply(reply: string | undefined): void {
    const parsed = reply === undefined ? undefined : parseReply(reply);
    this.replies.inc({ code: parsed ? String(parsed.code) : 'none', enhanced: parsed?.enhanced ?? '' });
  }
}
