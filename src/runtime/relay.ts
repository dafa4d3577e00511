import { resolve } from 'node:path';
import type { Config } from '../config/index.js';
import { SmtpTransport } from '../delivery/index.js';
import { createIdentity, extraCas, type Identity } from '../identity/index.js';
import type { SmtpIngress } from '../ingress/smtp/index.js';
import { EventBus, silentLogger, type Logger } from '../observe/index.js';
import { DeliveryWorker, Router, openSqliteStore, type NewMessage, type OutboxStore, type StoredMessage } from '../outbox/index.js';

export interface RelayDeps {
  logger?: Logger;
  env?: NodeJS.ProcessEnv;
  /** Use this store instead of the configured one (tests, the PostgreSQL store). */
  store?: OutboxStore;
}

/** A running relay: its parts, and how to stop it. */
export interface Relay {
  config: Config;
  identity: Identity;
  store: OutboxStore;
  router: Router;
  worker: DeliveryWorker;
  events: EventBus;
  smtp: SmtpIngress | undefined;
  /** Where the SMTP front door listens. */
  listeners: Array<{ host: string; port: number; tls: string }>;
  /** The one way in for every front door: commit to the outbox, announce, wake the sender. */
  enqueue(message: NewMessage): Promise<StoredMessage>;
  /** Graceful stop: no new connections, finish transactions and sends in flight, close the store. */
  close(): Promise<void>;
}

/**
 * Composition root: wires identity, delivery, the outbox, the worker and the front doors from one
 * config. Nothing else in the code base builds real parts (STYLE.md, convention 6).
 */
export async function startRelay(config: Config, deps: RelayDeps = {}): Promise<Relay> {
  const logger = deps.logger ?? silentLogger();
  const events = new EventBus();
  const identity = await createIdentity(config, { logger, ...(deps.env ? { env: deps.env } : {}) });
  const transport = new SmtpTransport({
    cloud: identity.cloud,
    tokens: identity.provider,
    delivery: config.delivery,
    maxConnections: new Map(config.mailboxes.filter((m) => m.maxConnections).map((m) => [m.address.toLowerCase(), m.maxConnections!])),
    ca: await extraCas(config),
    logger: logger.child({ component: 'delivery' }),
  });
  const store = deps.store ?? (await openSqliteStore(resolve(config.dataDir, config.queue.path)));
  await store.migrate();
  const router = new Router(config.mailboxes);
  const worker = new DeliveryWorker({ store, transport, router, config, events, logger: logger.child({ component: 'worker' }) });

  const enqueue = async (message: NewMessage): Promise<StoredMessage> => {
    const stored = await store.enqueue(message);
    events.publish({ type: 'message.queued', id: stored.id, mailbox: stored.mailbox, pool: stored.pool, source: message.source.kind, at: new Date() });
    worker.notify({ mailbox: stored.mailbox, pool: stored.pool });
    return stored;
  };

  worker.start();
  let smtp: SmtpIngress | undefined;
  let listeners: Relay['listeners'] = [];
  if (config.smtp.enabled) {
    // Loaded only when the front door is on, so a library user without it never loads smtp-server.
    const { createSmtpIngress } = await import('../ingress/smtp/index.js');
    smtp = createSmtpIngress({ config: config.smtp, limits: config.limits, dataDir: config.dataDir, router, outbox: { enqueue }, logger: logger.child({ component: 'smtp' }) });
    try {
      listeners = await smtp.listen();
    } catch (err) {
      await worker.stop();
      await store.close();
      throw err;
    }
  }

  return {
    config,
    identity,
    store,
    router,
    worker,
    events,
    smtp,
    listeners,
    enqueue,
    async close() {
      await smtp?.close();
      await worker.stop();
      await transport.close();
      identity.close();
      await store.close();
    },
  };
}
