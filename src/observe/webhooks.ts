import { createHmac, randomUUID } from 'node:crypto';
import type { EventBus, RelayEvent, RelayEventType } from './events.js';
import { silentLogger, type Logger } from './logger.js';
import { WEBHOOK_EVENT_TYPES, type WebhookEventType } from '../config/index.js';

/** The events a webhook receiver may subscribe to: the config's list (`http.webhooks[].events`), so a receiver may name each one. */
export { WEBHOOK_EVENT_TYPES, type WebhookEventType };
// Each is an event the bus publishes: a type error here means the config names an event nobody sends.
const _everyWebhookEventIsPublished: readonly RelayEventType[] = WEBHOOK_EVENT_TYPES;
void _everyWebhookEventIsPublished;

/** The signature header; see docs/webhooks.md for its format and how to verify it. */
export const SIGNATURE_HEADER = 'X-Relay365-Signature';

/** A configured receiver, its secret already resolved. */
export interface WebhookReceiver {
  url: string;
  secret: string;
  /** Only these types; undefined: all of {@link WEBHOOK_EVENT_TYPES}. */
  events?: readonly WebhookEventType[] | undefined;
}

/** One event for one receiver, as written to the webhook outbox before anything is sent. */
export interface NewWebhookDelivery {
  /** The event's id, the same for every receiver and every retry: receivers dedupe on it. */
  eventId: string;
  eventType: WebhookEventType;
  /** The receiver's URL. */
  receiver: string;
  /** The exact JSON body to POST, built once so that every retry sends the same bytes. */
  body: string;
  createdAt: Date;
}

/** A delivery as the outbox keeps it. */
export interface WebhookDelivery extends NewWebhookDelivery {
  id: number;
  attempts: number;
  nextAttemptAt: Date;
}

/** How one attempt ended. */
export type WebhookDeliveryOutcome =
  { state: 'delivered'; at: Date } | { state: 'retry'; nextAttemptAt: Date; error: string } | { state: 'abandoned'; error: string };

/**
 * The durable store behind webhook delivery (implemented by the integration store, SQLite or PostgreSQL).
 * A delivery row is written before the first POST, so an event survives a receiver that is down and
 * a restart of relay365.
 */
export interface WebhookOutbox {
  /** Stores the deliveries in one transaction; a repeated (eventId, receiver) pair is ignored. */
  addWebhookDeliveries(deliveries: readonly NewWebhookDelivery[]): Promise<void>;
  /** Leases up to `limit` pending deliveries due at `now`, oldest first. */
  claimWebhookDeliveries(request: { owner: string; now: Date; leaseMs: number; limit: number }): Promise<WebhookDelivery[]>;
  /** Records one attempt (the lease is released); false when `owner` no longer holds the lease. */
  completeWebhookDelivery(id: number, owner: string, outcome: WebhookDeliveryOutcome): Promise<boolean>;
  /** When the next pending delivery becomes due (or its lease expires). */
  nextWebhookDue(): Promise<Date | undefined>;
}

export interface WebhookDispatcherOptions {
  outbox: WebhookOutbox;
  receivers: readonly WebhookReceiver[];
  logger?: Logger;
  /** First retry delay; doubles each attempt up to `backoffMaxMs`, with jitter (default 10 s, 1 h). */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** Stop retrying a delivery this long after its event (default 3 days, as Stripe). */
  giveUpAfterMs?: number;
  /** Timeout of one POST (default 10 s). */
  timeoutMs?: number;
  /** Deliveries in flight at once, over all receivers (default 8). */
  concurrency?: number;
  /** Longest sleep when nothing wakes the loop (default 5 s). */
  pollMs?: number;
  /** Told about every attempt, e.g. for metrics. */
  onAttempt?: (attempt: { receiver: string; eventType: string; outcome: WebhookDeliveryOutcome['state'] }) => void;
  /**
   * The tags and metadata of a message (the outbox's), echoed in the data of its `message.*` events;
   * undefined when the outbox no longer holds it.
   */
  labelsOf?: (id: string) => Promise<MessageLabels | undefined>;
}

/** What a caller attached to a message, as its webhooks echo it. */
export interface MessageLabels {
  tags: readonly string[];
  metadata: Readonly<Record<string, string>>;
}

/**
 * The signature of a webhook body: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, as
 * Stripe signs its webhooks. The timestamp is inside the MAC so a captured request cannot be replayed
 * later with a fresh `t`.
 */
export function signWebhook(body: string, secret: string, at: Date = new Date()): string {
  const t = Math.floor(at.getTime() / 1000);
  const v1 = createHmac('sha256', secret).update(`${t}.${body}`).digest('hex');
  return `t=${t},v1=${v1}`;
}

/**
 * The JSON body of an event: `{ id, type, createdAt, data }`; dates as ISO 8601 strings. A message's
 * event carries the message's `tags` and `metadata` in its data when they are given.
 */
export function webhookBody(eventId: string, event: RelayEvent, labels?: MessageLabels): string {
  // An event's own id and replay flag are the envelope's business (`id`), not its data.
  const { type, at, eventId: _eventId, replay: _replay, ...data } = event as RelayEvent & { eventId?: string; replay?: boolean };
  const echoed = labels === undefined ? data : { ...data, tags: labels.tags, metadata: labels.metadata };
  return JSON.stringify({ id: eventId, type, createdAt: at.toISOString(), data: echoed });
}

function isWebhookEvent(event: RelayEvent): event is Extract<RelayEvent, { type: WebhookEventType }> {
  return (WEBHOOK_EVENT_TYPES as readonly string[]).includes(event.type);
}

/**
 * Delivers relay events to the configured webhook receivers, at least once each: every event is
 * written to the durable outbox (one row per receiver) before any POST, then POSTed with an HMAC
 * signature and retried with exponential backoff until the receiver answers 2xx or
 * `giveUpAfterMs` has passed. Pending deliveries left by a previous run are sent after `start()`.
 *
 * @example
 * ```ts
 * const webhooks = new WebhookDispatcher({ outbox: integrationStore, receivers: [{ url, secret }] });
 * webhooks.follow(relay.events);
 * webhooks.start();
 * ```
 */
export class WebhookDispatcher {
  private readonly owner = `webhooks-${randomUUID()}`;
  private readonly logger: Logger;
  private readonly inflight = new Set<Promise<void>>();
  private running = false;
  private loopDone: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private woken = false;

  constructor(private options: WebhookDispatcherOptions) {
    this.logger = options.logger ?? silentLogger();
  }

  /**
   * The receivers of a reloaded config, for events from now on and for deliveries still to make: a
   * stored delivery to a receiver no longer configured is given up, as after any other config change.
   */
  updateReceivers(receivers: readonly WebhookReceiver[]): void {
    this.options = { ...this.options, receivers };
  }

  /**
   * Subscribes to the bus: each matching event is stored for each receiver that wants it, under the
   * event's own `eventId` when it has one (an event raised again, as a bounce read again after a
   * restart, is then stored once), else a new one. {@link EventBus.publishAndWait} waits for the
   * store. Returns the unsubscribe.
   */
  follow(events: EventBus): () => void {
    return events.subscribe((event, waitFor) => {
      if (!isWebhookEvent(event)) return;
      const receivers = this.options.receivers.filter((r) => r.events === undefined || r.events.includes(event.type));
      if (receivers.length === 0) return;
      const eventId = 'eventId' in event ? event.eventId : `evt_${randomUUID()}`;
      const labelsOf = this.options.labelsOf;
      // A message's labels are read from the outbox; if it cannot be read the event still goes, without them.
      const labels =
        labelsOf !== undefined && event.type.startsWith('message.') && 'id' in event
          ? labelsOf(event.id).catch((err: unknown) => {
              this.logger.warn({ err, eventId, id: event.id }, "could not read a message's tags and metadata for its webhook; sent without them");
              return undefined;
            })
          : Promise.resolve(undefined);
      const stored = labels.then((found) => {
        const body = webhookBody(eventId, event, found);
        const rows = receivers.map((r) => ({ eventId, eventType: event.type, receiver: r.url, body, createdAt: event.at }));
        return this.options.outbox.addWebhookDeliveries(rows);
      });
      stored.then(
        () => this.notify(),
        (err: unknown) => this.logger.error({ err, eventId, type: event.type }, 'could not store a webhook delivery; the event is not sent to the receivers'),
      );
      waitFor?.(stored);
    });
  }

  /** Starts the delivery loop (sending what a previous run left pending first). */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.loopDone = this.loop();
  }

  /** Wakes the loop now (a delivery was stored). */
  notify(): void {
    this.woken = true;
    this.wake?.();
  }

  /** Stops the loop and waits for the POSTs in flight (each bounded by `timeoutMs`); the rest stays pending. */
  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loopDone;
    await Promise.all([...this.inflight]);
  }

  private sleep(ms: number): Promise<void> {
    if (this.woken) return Promise.resolve();
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined = undefined;
      const done = (): void => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
      timer = setTimeout(done, Math.max(0, ms));
      this.wake = done;
    });
  }

  private async loop(): Promise<void> {
    const { outbox } = this.options;
    const concurrency = this.options.concurrency ?? 8;
    const pollMs = this.options.pollMs ?? 5_000;
    const leaseMs = (this.options.timeoutMs ?? 10_000) + 30_000;
    while (this.running) {
      this.woken = false;
      const free = concurrency - this.inflight.size;
      if (free <= 0) {
        // Every slot is busy: a finishing delivery wakes the loop.
        await this.sleep(pollMs);
        continue;
      }
      let claimed: WebhookDelivery[];
      try {
        claimed = await outbox.claimWebhookDeliveries({ owner: this.owner, now: new Date(), leaseMs, limit: free });
      } catch (err) {
        this.logger.error({ err }, 'could not read the webhook outbox; trying again');
        await this.sleep(pollMs);
        continue;
      }
      for (const delivery of claimed) {
        const p = this.deliver(delivery).finally(() => {
          this.inflight.delete(p);
          this.notify();
        });
        this.inflight.add(p);
      }
      if (claimed.length === free) continue;
      const next = await outbox.nextWebhookDue().catch(() => undefined);
      await this.sleep(next === undefined ? pollMs : Math.min(pollMs, next.getTime() - Date.now()));
    }
  }

  private async deliver(delivery: WebhookDelivery): Promise<void> {
    const receiver = this.options.receivers.find((r) => r.url === delivery.receiver);
    let outcome: WebhookDeliveryOutcome;
    if (!receiver) {
      outcome = { state: 'abandoned', error: 'the receiver is no longer configured (http.webhooks)' };
    } else {
      const error = await this.post(receiver, delivery);
      if (error === undefined) outcome = { state: 'delivered', at: new Date() };
      else if (Date.now() - delivery.createdAt.getTime() >= (this.options.giveUpAfterMs ?? 3 * 86_400_000)) outcome = { state: 'abandoned', error };
      else outcome = { state: 'retry', error, nextAttemptAt: new Date(Date.now() + this.backoff(delivery.attempts + 1)) };
    }
    const log = { eventId: delivery.eventId, type: delivery.eventType, receiver: delivery.receiver, attempts: delivery.attempts + 1 };
    if (outcome.state === 'delivered') this.logger.debug(log, 'webhook delivered');
    else if (outcome.state === 'retry')
      this.logger.warn({ ...log, error: outcome.error, nextAttemptAt: outcome.nextAttemptAt }, 'webhook delivery failed; will retry');
    else this.logger.error({ ...log, error: outcome.error }, 'webhook delivery abandoned');
    try {
      await this.options.outbox.completeWebhookDelivery(delivery.id, this.owner, outcome);
    } catch (err) {
      // The lease expires and the delivery is tried again: at least once, never lost.
      this.logger.error({ err, ...log }, 'could not record a webhook attempt');
    }
    this.options.onAttempt?.({ receiver: delivery.receiver, eventType: delivery.eventType, outcome: outcome.state });
  }

  /** POSTs one delivery; undefined when the receiver answered 2xx, else what went wrong. */
  private async post(receiver: WebhookReceiver, delivery: WebhookDelivery): Promise<string | undefined> {
    try {
      const response = await fetch(receiver.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'relay365-webhooks',
          [SIGNATURE_HEADER]: signWebhook(delivery.body, receiver.secret),
          'x-relay365-event-id': delivery.eventId,
          'x-relay365-event-type': delivery.eventType,
        },
        body: delivery.body,
        // A redirect is not followed: the signed body would go to a URL nobody configured.
        redirect: 'manual',
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 10_000),
      });
      // The body is not needed; reading it frees the connection for reuse.
      await response.arrayBuffer().catch(() => undefined);
      return response.status >= 200 && response.status < 300 ? undefined : `the receiver answered ${response.status}`;
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause?.code;
      return `${(err as Error).name === 'TimeoutError' ? 'timed out' : (err as Error).message}${cause ? ` (${cause})` : ''}`;
    }
  }

  /** Exponential backoff with jitter in [delay/2, delay] (AWS Architecture Blog, "Exponential Backoff And Jitter"). */
  private backoff(attempt: number): number {
    const base = this.options.backoffBaseMs ?? 10_000;
    const max = this.options.backoffMaxMs ?? 3_600_000;
    const delay = Math.min(max, base * 2 ** Math.min(30, attempt - 1));
    return delay / 2 + Math.random() * (delay / 2);
  }
}
