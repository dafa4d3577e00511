import { hostname as osHostname } from 'node:os';
import { createAdmission, type Refusal } from '../admission/index.js';
import { loadConfig, parseConfig, type Config, type ConfigInput } from '../config/index.js';
import { composeMessage, type MessageInput } from '../delivery/index.js';
import { Relay365Error } from '../errors.js';
import type { Logger, RelayEvent } from '../observe/index.js';

/** The events `subscribe` gives (and webhooks carry). */
export type { RelayEvent };
import type { MessageState, RecipientRecord, StoredMessage } from '../outbox/index.js';
import { startRelay, type Relay, type RelayDeps } from './relay.js';

/** Options of {@link createRelay}. */
export interface CreateRelayOptions {
  logger?: Logger;
  env?: NodeJS.ProcessEnv;
  /**
   * Keep the config's front doors (SMTP listeners, HTTP API) as it sets them. Default false: the
   * library runs the outbox, the worker and the webhooks in this process and opens no port.
   */
  frontDoors?: boolean;
}

/** {@link QueuedRelay.send}'s answer: queued (on disk), or refused by the admission checks every door runs. */
export type QueueResult =
  | {
      ok: true;
      /** The outbox id: `status(id)`, `outcome(id)`, `relay365 queue show <id>`, `GET /v1/messages/<id>`. */
      id: string;
      state: 'queued';
      /** The message's Message-ID (relay365 adds one when the message has none). */
      messageId: string | undefined;
      mailbox: string | undefined;
      pool: string | undefined;
    }
  | {
      ok: false;
      /** The same code the HTTP API gives for it (`R365_SUPPRESSED`, `R365_MESSAGE_TOO_LARGE`, ...). */
      code: Refusal['code'];
      /** What was refused and how to fix it. */
      message: string;
      /** The SMTP door's reply line for the same message. */
      reply: string;
    };

/** Where a queued message stands, with each recipient's outcome. */
export interface MessageStatus {
  id: string;
  state: MessageState;
  mailbox: string | undefined;
  messageId: string | undefined;
  attempts: number;
  /** The last reply (Exchange's, or relay365's own when nothing was sent). */
  lastReply: string | undefined;
  recipients: RecipientRecord[];
  tags: string[];
  metadata: Record<string, string>;
  /** The time it was scheduled for, if it was. */
  sendAt: Date | undefined;
}

/** {@link QueuedRelay.send}'s options, as the HTTP API's send fields. */
export interface QueueOptions {
  /** Send from this configured mailbox (default: the one whose address or alias is the From). */
  mailbox?: string;
  /** Send to suppressed recipients too (docs/bounces.md). */
  ignoreSuppression?: boolean;
  /** Do not send before this time (a scheduled send; `cancel(id)` before it keeps it from going). */
  sendAt?: Date;
  /** Up to 10 labels to find the message by (`relay365 queue list --tag`, `GET /v1/messages?tag=`), echoed in its webhooks. */
  tags?: string[];
  /** Your own data (up to 20 keys to strings of at most 500 characters), stored and echoed in its webhooks. */
  metadata?: Record<string, string>;
}

/** States a message does not leave by itself. */
const FINAL: ReadonlySet<MessageState> = new Set(['sent', 'failed', 'cancelled']);

/** The library's relay: messages queue through the outbox (limits, retries, durability) and leave from the worker. */
export interface QueuedRelay {
  /**
   * Runs the admission checks (the ones the SMTP and HTTP doors run) and commits the message to the
   * outbox; resolves once it is on disk, before anything is sent. Throws only when the outbox cannot
   * be written (`R365_OUTBOX_UNAVAILABLE`).
   */
  send(message: MessageInput, options?: QueueOptions): Promise<QueueResult>;
  /** The message's state and recipients now; undefined for an id the outbox does not hold. */
  status(id: string): Promise<MessageStatus | undefined>;
  /** Cancels a message not yet sent (queued, scheduled, deferred or failed): true when it was; false when it is sent, being sent or unknown. */
  cancel(id: string): Promise<boolean>;
  /**
   * Calls `listener` with every event of this relay (`message.sent`, `message.failed`,
   * `message.recipient.refused`, `message.bounced`, `mailbox.paused`, ...: docs/webhooks.md lists them,
   * with the same fields as a webhook's `data`); returns the unsubscribe.
   */
  subscribe(listener: (event: RelayEvent) => void): () => void;
  /**
   * Resolves when the message reaches a state it does not leave by itself (`sent`, `failed`,
   * `cancelled`): `sent` means Exchange answered 250 for its recipients; an NDR read back later
   * (`bounces.read`) can still mark a recipient bounced. Rejects after `timeoutMs` (default 10 minutes).
   */
  outcome(id: string, options?: { timeoutMs?: number }): Promise<MessageStatus>;
  /** The running parts (store, worker, events, metrics) for callers that want more. */
  readonly relay: Relay;
  /** Stops taking messages, lets sends in flight finish, closes the store. Queued messages stay on disk for the next start. */
  close(): Promise<void>;
}

async function resolveConfig(config: string | Config | ConfigInput, env: NodeJS.ProcessEnv | undefined): Promise<Config> {
  if (typeof config === 'string') return loadConfig({ path: config, ...(env ? { env } : {}) });
  return parseConfig(config, { source: 'The relay config', ...(env ? { env } : {}) });
}

/**
 * Starts relay365 inside this process: the outbox (SQLite under `dataDir` by default, PostgreSQL with
 * `queue.url`), the worker within Microsoft's limits, retries, webhooks and NDR readers, as `relay365
 * serve` runs them, with no port open unless `frontDoors` is set. `config` is a config object or the
 * path of a relay365.yaml.
 * @example
 * ```ts
 * import { createRelay } from 'relay365';
 * const relay = await createRelay({ dataDir: './relay365-data', auth: { ... }, mailboxes: [{ address: 'relay@contoso.com' }] });
 * const queued = await relay.send({ from: 'relay@contoso.com', to: 'you@example.net', subject: 'Hi', text: 'Hello' });
 * if (!queued.ok) throw new Error(queued.message);
 * const done = await relay.outcome(queued.id);
 * console.log(done.state, done.recipients);
 * await relay.close();
 * ```
 */
export async function createRelay(config: string | Config | ConfigInput, options: CreateRelayOptions = {}): Promise<QueuedRelay> {
  const loaded = await resolveConfig(config, options.env);
  const cfg: Config = options.frontDoors ? loaded : { ...loaded, smtp: { ...loaded.smtp, enabled: false }, http: { ...loaded.http, enabled: false } };
  const deps: RelayDeps = { ...(options.logger ? { logger: options.logger } : {}), ...(options.env ? { env: options.env } : {}) };
  const relay = await startRelay(cfg, deps);
  const admission = createAdmission({
    // Read at each message, so a reload through `relay.reload` applies at the next one.
    limits: () => relay.config.limits,
    router: relay.router,
    mailboxes: () => relay.config.mailboxes.map((m) => m.address.toLowerCase()),
    suppressions: relay.store,
    enqueue: (message) => relay.enqueue(message),
    hostname: relay.config.smtp.hostname ?? osHostname(),
  });
  let closed = false;

  const status = async (id: string): Promise<MessageStatus | undefined> => {
    const stored: StoredMessage | undefined = await relay.store.get(id);
    if (!stored) return undefined;
    return {
      id: stored.id,
      state: stored.state,
      mailbox: stored.mailbox,
      messageId: stored.messageId,
      attempts: stored.attempts,
      lastReply: stored.lastReply,
      recipients: await relay.store.recipients(id),
      tags: stored.tags,
      metadata: stored.metadata,
      sendAt: stored.sendAt,
    };
  };

  return {
    relay,
    async send(message, sendOptions = {}) {
      if (closed) throw new Relay365Error('R365_RELAY_CLOSED', 'This relay is closed: create a new one with createRelay().');
      const outgoing = await composeMessage(message);
      const verdict = await admission.admit(
        {
          raw: outgoing.raw,
          envelope: outgoing.envelope,
          mailbox: sendOptions.mailbox,
          ignoreSuppression: sendOptions.ignoreSuppression,
          sendAt: sendOptions.sendAt,
          tags: sendOptions.tags,
          metadata: sendOptions.metadata,
        },
        { source: { kind: 'library' }, display: 'The library' },
      );
      if (!verdict.ok) {
        // The store's own error (and its fix) is an outage, not a verdict on the message.
        if (verdict.reason === 'store-unavailable' && verdict.cause instanceof Error) throw verdict.cause;
        return { ok: false, code: verdict.code, message: verdict.message, reply: verdict.smtp };
      }
      const stored = verdict.stored!;
      return { ok: true, id: stored.id, state: 'queued', messageId: stored.messageId, mailbox: stored.mailbox, pool: stored.pool };
    },
    status,
    cancel: (id) => relay.store.cancel(id),
    subscribe: (listener) => relay.events.subscribe((event) => listener(event)),
    async outcome(id, outcomeOptions = {}) {
      const timeoutMs = outcomeOptions.timeoutMs ?? 600_000;
      return new Promise<MessageStatus>((resolve, reject) => {
        let done = false;
        const finish = (err: Error | undefined, value?: MessageStatus): void => {
          if (done) return;
          done = true;
          unsubscribe();
          clearTimeout(timer);
          if (err) reject(err);
          else resolve(value!);
        };
        const check = (): void => {
          status(id).then(
            (s) => {
              if (!s) finish(new Relay365Error('R365_MESSAGE_NOT_FOUND', `The outbox holds no message ${id}.`));
              else if (FINAL.has(s.state)) finish(undefined, s);
            },
            (err: unknown) => finish(err instanceof Error ? err : new Error(String(err))),
          );
        };
        // Each state change of this message is an event; the store says where it stands.
        const unsubscribe = relay.events.subscribe((event) => {
          if ('id' in event && event.id === id) check();
        });
        const timer = setTimeout(
          () => finish(new Relay365Error('R365_OUTCOME_TIMEOUT', `Message ${id} reached no final state within ${timeoutMs} ms; it stays queued (status(id)).`)),
          timeoutMs,
        );
        timer.unref();
        check();
      });
    },
    async close() {
      if (closed) return;
      closed = true;
      await relay.close();
    },
  };
}
