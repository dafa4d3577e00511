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

/** What prom-client needs to declare a metric; the registry is added when the metrics are made. */
interface MetricDeclaration {
  readonly name: string;
  readonly help: string;
  readonly labelNames?: readonly string[];
}

/** The label names of a declaration, as prom-client's type parameter (`never`: a metric without labels). */
type LabelsOf<D> = D extends { readonly labelNames: readonly (infer L extends string)[] } ? L : never;

/** The counters: they follow the event bus, the front doors, the token provider and the webhooks. */
const COUNTERS = {
  events: {
    name: 'relay365_message_events_total',
    help: 'Message state changes since start, by event (queued, sent, deferred, failed).',
    labelNames: ['event'],
  },
  replies: {
    name: 'relay365_smtp_replies_total',
    help: 'Final replies of delivery attempts by basic and enhanced code ("none": the connection failed before a reply).',
    labelNames: ['code', 'enhanced'],
  },
  unknownReplies: {
    name: 'relay365_unknown_replies_total',
    help: 'Replies the Microsoft reply catalogue has no row for, by basic and enhanced code (the log line "reply not in the catalogue" has the text: please report it).',
    labelNames: ['code', 'enhanced'],
  },
  mailboxEvents: {
    name: 'relay365_mailbox_events_total',
    help: 'Mailbox pauses, resumptions and throttling replies since start.',
    labelNames: ['mailbox', 'event'],
  },
  tokenRequests: {
    name: 'relay365_token_requests_total',
    help: 'Token requests to the Microsoft identity platform, by outcome (success, failure).',
    labelNames: ['mailbox', 'outcome'],
  },
  webhookAttempts: {
    name: 'relay365_webhook_attempts_total',
    help: 'Webhook POSTs by outcome (delivered, retry, abandoned) and event type.',
    labelNames: ['outcome', 'type'],
  },
  smtpConnections: {
    name: 'relay365_smtp_connections_total',
    help: 'SMTP connections by outcome: accepted, or refused at once (too many connections, shutting down).',
    labelNames: ['outcome'],
  },
  smtpAuthFailures: {
    name: 'relay365_smtp_auth_failures_total',
    help: 'SMTP AUTH attempts refused, by reason: invalid (wrong name or password), locked (client locked out).',
    labelNames: ['reason'],
  },
  smtpLockouts: {
    name: 'relay365_smtp_lockouts_total',
    help: 'Lockouts started by repeated failed SMTP logins (smtp.lockoutFailures within smtp.lockoutWindowSeconds).',
  },
  smtpSendersRefused: {
    name: 'relay365_smtp_senders_refused_total',
    help: 'SMTP senders refused because the login or allowlist entry may not send as them (550 5.7.1).',
  },
  smtpMessagesAccepted: {
    name: 'relay365_smtp_messages_accepted_total',
    help: 'Messages accepted over SMTP (committed to the outbox before the 250).',
  },
  httpRequests: {
    name: 'relay365_http_requests_total',
    help: 'HTTP requests answered, by method, route pattern ("unmatched" for no route) and status code.',
    labelNames: ['method', 'route', 'status'],
  },
  bounces: {
    name: 'relay365_bounces_total',
    help: 'Recipients reported back by a non-delivery report read from the mailbox (class hard: the address does not exist, soft: another permanent or transient failure, delayed: a delay notification).',
    labelNames: ['mailbox', 'class'],
  },
} as const satisfies Record<string, MetricDeclaration>;

/** The gauges: set from a {@link QueueSnapshot} at each scrape, except `buildInfo` (once) and `credentialExpiry`. */
const GAUGES = {
  buildInfo: {
    name: 'relay365_build_info',
    help: 'Always 1; its labels are the relay365 version and the Node.js version running it.',
    labelNames: ['version', 'node'],
  },
  messages: {
    name: 'relay365_messages',
    help: 'Messages in the outbox by sending mailbox and state.',
    labelNames: ['mailbox', 'state'],
  },
  queueDepth: {
    name: 'relay365_queue_depth',
    help: 'Messages waiting to be sent (queued or deferred).',
  },
  queueAge: {
    name: 'relay365_queue_oldest_age_seconds',
    help: 'Age of the oldest waiting message (0 when none waits).',
  },
  quotaMessages: {
    name: 'relay365_quota_messages_left',
    help: 'Messages the mailbox may still send in the current minute window.',
    labelNames: ['mailbox'],
  },
  quotaRecipients: {
    name: 'relay365_quota_recipients_left',
    help: 'Recipients the mailbox may still send to in the current 24-hour window.',
    labelNames: ['mailbox'],
  },
  paused: {
    name: 'relay365_mailbox_paused',
    help: '1 while the mailbox is paused (an authentication failure, or a cause that blocks it until an admin acts).',
    labelNames: ['mailbox'],
  },
  tokenExpiry: {
    name: 'relay365_token_expires_in_seconds',
    help: 'Seconds until the held access token of the mailbox expires (absent when none is held).',
    labelNames: ['mailbox'],
  },
  // Not reset by render(): the credential monitor sets it when it reads the files (hourly).
  credentialExpiry: {
    name: 'relay365_credential_expiry_timestamp_seconds',
    help: "When the mailbox's app credential (kind client-secret or certificate) expires, in seconds since the epoch (absent when unknown).",
    labelNames: ['mailbox', 'kind'],
  },
} as const satisfies Record<string, MetricDeclaration>;

type Counters = { readonly [K in keyof typeof COUNTERS]: Counter<LabelsOf<(typeof COUNTERS)[K]>> };
type Gauges = { readonly [K in keyof typeof GAUGES]: Gauge<LabelsOf<(typeof GAUGES)[K]>> };

/** The object with each of `declarations` made into a metric by `make`, under the same key. */
function mapValues<D extends Record<string, MetricDeclaration>, M>(declarations: D, make: (declaration: MetricDeclaration) => M): { [K in keyof D]: M } {
  return Object.fromEntries(Object.entries(declarations).map(([key, declaration]) => [key, make(declaration)])) as { [K in keyof D]: M };
}

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
  private readonly counters: Counters;
  private readonly gauges: Gauges;
  private readonly sendDuration: Histogram<'mailbox'>;

  constructor(options: RelayMetricsOptions = {}) {
    this.registry = options.registry ?? new Registry();
    const registers = [this.registry];
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
    this.counters = mapValues(COUNTERS, (declaration) => new Counter({ ...declaration, registers }));
    this.sendDuration = new Histogram({
      name: 'relay365_send_duration_seconds',
      help: 'Duration of successful sends to Microsoft 365, by sending mailbox.',
      labelNames: ['mailbox'],
      buckets: SEND_BUCKETS,
      registers,
    });
    this.gauges = mapValues(GAUGES, (declaration) => new Gauge({ ...declaration, registers }));
    this.gauges.buildInfo.set({ version: options.version ?? 'unknown', node: process.versions.node }, 1);
    for (const event of MESSAGE_EVENTS) this.counters.events.inc({ event }, 0);
    for (const outcome of SMTP_CONNECTION_OUTCOMES) this.counters.smtpConnections.inc({ outcome }, 0);
    for (const reason of SMTP_AUTH_FAILURE_REASONS) this.counters.smtpAuthFailures.inc({ reason }, 0);
    this.counters.smtpLockouts.inc(0);
    this.counters.smtpSendersRefused.inc(0);
    this.counters.smtpMessagesAccepted.inc(0);
    this.addMailboxes(options.mailboxes ?? []);
  }

  /** Counts the bus's events; returns the unsubscribe. */
  follow(events: EventBus): () => void {
    return events.subscribe((event) => this.record(event));
  }

  /** Counts one event (what {@link follow} does for each). */
  record(event: RelayEvent): void {
    switch (event.type) {
      case 'message.queued':
        this.counters.events.inc({ event: 'queued' });
        break;
      case 'message.sent':
        this.counters.events.inc({ event: 'sent' });
        this.sendDuration.observe({ mailbox: event.mailbox }, event.durationMs / 1000);
        this.countReply(event.reply);
        break;
      case 'message.deferred':
      case 'message.failed':
        this.counters.events.inc({ event: event.type === 'message.failed' ? 'failed' : 'deferred' });
        this.countReply(event.reply);
        if (event.reply !== undefined && event.explanation !== undefined && isUnknownReply(event.explanation)) {
          const parsed = parseReply(event.reply);
          this.counters.unknownReplies.inc({ code: parsed ? String(parsed.code) : 'unparsable', enhanced: parsed?.enhanced ?? 'none' });
        }
        break;
      case 'mailbox.paused':
      case 'mailbox.resumed':
      case 'mailbox.throttled':
        this.counters.mailboxEvents.inc({ mailbox: event.mailbox, event: event.type.slice('mailbox.'.length) });
        break;
      // A replay was counted when its entry was first applied.
      case 'message.bounced':
        if (!event.replay) this.counters.bounces.inc({ mailbox: event.mailbox, class: event.bounceClass });
        break;
      case 'message.delayed':
        if (!event.replay) this.counters.bounces.inc({ mailbox: event.mailbox, class: 'delayed' });
        break;
    }
  }

  /**
   * Starts the per-mailbox counters of these mailboxes at 0 (a mailbox a reload adds; one already
   * counted keeps its values), so `increase()` sees their first event.
   */
  addMailboxes(mailboxes: readonly string[]): void {
    for (const mailbox of mailboxes) {
      for (const event of MAILBOX_EVENTS) this.counters.mailboxEvents.inc({ mailbox, event }, 0);
      for (const outcome of TOKEN_OUTCOMES) this.counters.tokenRequests.inc({ mailbox, outcome }, 0);
      for (const cls of BOUNCE_METRIC_CLASSES) this.counters.bounces.inc({ mailbox, class: cls }, 0);
    }
  }

  /** Sets when a mailbox's client secret or certificate expires (wire to the credential monitor). */
  credentialExpires(mailbox: string, kind: 'client-secret' | 'certificate', expiresAtSeconds: number): void {
    this.gauges.credentialExpiry.set({ mailbox, kind }, expiresAtSeconds);
  }

  /** Counts one token request (wire to `TokenProvider.onRefresh`). */
  tokenRequest(mailbox: string, ok: boolean): void {
    this.counters.tokenRequests.inc({ mailbox, outcome: ok ? 'success' : 'failure' });
  }

  /** Counts one front-door event (wire to the SMTP ingress's `observe`). */
  frontDoor(event: FrontDoorEvent): void {
    switch (event.type) {
      case 'smtp.connection':
        this.counters.smtpConnections.inc({ outcome: event.outcome });
        break;
      case 'smtp.auth_failed':
        this.counters.smtpAuthFailures.inc({ reason: event.reason });
        break;
      case 'smtp.lockout':
        this.counters.smtpLockouts.inc();
        break;
      case 'smtp.sender_refused':
        this.counters.smtpSendersRefused.inc();
        break;
      case 'smtp.message_accepted':
        this.counters.smtpMessagesAccepted.inc();
        break;
    }
  }

  /** Counts one answered HTTP request (wire to the HTTP app's `onResponse`); `route` is the pattern, never the path. */
  httpRequest(method: string, route: string | undefined, status: number): void {
    this.counters.httpRequests.inc({ method, route: route ?? 'unmatched', status: String(status) });
  }

  /** Counts one webhook POST (wire to `WebhookDispatcher`'s `onAttempt`). */
  webhookAttempt(type: string, outcome: string): void {
    this.counters.webhookAttempts.inc({ type, outcome });
  }

  /** The Prometheus text exposition of every metric, the gauges set from `snapshot`. */
  async render(snapshot: QueueSnapshot): Promise<string> {
    // Reset first: a mailbox removed from the config or a state now empty must not linger.
    for (const gauge of [this.gauges.messages, this.gauges.quotaMessages, this.gauges.quotaRecipients, this.gauges.paused, this.gauges.tokenExpiry]) gauge.reset();
    for (const m of snapshot.messages) this.gauges.messages.set({ mailbox: m.mailbox, state: m.state }, m.count);
    this.gauges.queueDepth.set(snapshot.waiting);
    this.gauges.queueAge.set(snapshot.oldestWaitingSeconds);
    for (const m of snapshot.mailboxes) {
      this.gauges.quotaMessages.set({ mailbox: m.mailbox }, Math.max(0, m.messagesLeftThisMinute));
      this.gauges.quotaRecipients.set({ mailbox: m.mailbox }, Math.max(0, m.recipientsLeftToday));
      this.gauges.paused.set({ mailbox: m.mailbox }, m.paused ? 1 : 0);
      if (m.tokenExpiresInSeconds !== undefined) this.gauges.tokenExpiry.set({ mailbox: m.mailbox }, m.tokenExpiresInSeconds);
    }
    return this.registry.metrics();
  }

  /** The Content-Type of {@link render}'s output. */
  get contentType(): string {
    return this.registry.contentType;
  }

  private countReply(reply: string | undefined): void {
    const parsed = reply === undefined ? undefined : parseReply(reply);
    this.counters.replies.inc({ code: parsed ? String(parsed.code) : 'none', enhanced: parsed?.enhanced ?? '' });
  }
}
