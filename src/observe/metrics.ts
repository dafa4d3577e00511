import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { parseReply } from '../catalogue/index.js';
import type { EventBus, RelayEvent } from './events.js';

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
  /** Also export Node's process metrics (CPU, memory, event loop lag); default true. */
  processMetrics?: boolean;
}

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
  private readonly sendDuration: Histogram<'mailbox'>;
  private readonly mailboxEvents: Counter<'mailbox' | 'event'>;
  private readonly tokenRequests: Counter<'mailbox' | 'outcome'>;
  private readonly webhookAttempts: Counter<'outcome' | 'type'>;
  private readonly messages: Gauge<'mailbox' | 'state'>;
  private readonly queueDepth: Gauge;
  private readonly queueAge: Gauge;
  private readonly quotaMessages: Gauge<'mailbox'>;
  private readonly quotaRecipients: Gauge<'mailbox'>;
  private readonly paused: Gauge<'mailbox'>;
  private readonly tokenExpiry: Gauge<'mailbox'>;

  constructor(options: RelayMetricsOptions = {}) {
    this.registry = options.registry ?? new Registry();
    const registers = [this.registry];
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: 'relay365_' });
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
      help: '1 when the mailbox is paused after an authentication failure.',
      labelNames: ['mailbox'],
      registers,
    });
    this.tokenExpiry = new Gauge({
      name: 'relay365_token_expires_in_seconds',
      help: 'Seconds until the held access token of the mailbox expires (absent when none is held).',
      labelNames: ['mailbox'],
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
        break;
      case 'mailbox.paused':
      case 'mailbox.resumed':
      case 'mailbox.throttled':
        this.mailboxEvents.inc({ mailbox: event.mailbox, event: event.type.slice('mailbox.'.length) });
        break;
    }
  }

  /** Counts one token request (wire to `TokenProvider.onRefresh`). */
  tokenRequest(mailbox: string, ok: boolean): void {
    this.tokenRequests.inc({ mailbox, outcome: ok ? 'success' : 'failure' });
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
