import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { environmentIssues, formatConfigIssues, resolveSecret, type Config } from '../config/index.js';
import { buildTransports } from '../delivery/index.js';
import {
  CredentialExpiryMonitor,
  SECRET_KEY_ENV,
  createIdentity,
  extraCas,
  loadSecretKey,
  publishCredentialExpiring,
  secretEndDates,
  type Identity,
} from '../identity/index.js';
import type { PgTokenCacheStore } from '../identity/pg-cache-store.js';
import type { IntegrationStore } from '../store/index.js';
import { httpListenFailed } from '../ingress/http/errors.js';
import type { SmtpIngress } from '../ingress/smtp/index.js';
import type { BounceReader } from '../bounces/index.js';
import { startBounceReaders } from './bounces.js';
import { followBounceNotices } from './bounce-notices.js';
import { reloadRelay, type ReloadReport } from './reload.js';
import { EventBus, RelayMetrics, WebhookDispatcher, logEvents, silentLogger, type Logger, type WebhookDispatcherOptions } from '../observe/index.js';
import { Relay365Error } from '../errors.js';
import {
  DeliveryWorker,
  RetentionSweeper,
  Router,
  bodyCipher,
  type BodyCipher,
  openSqliteStore,
  type NewMessage,
  type OutboxStore,
  type PgOutboxStore,
  type StoredMessage,
} from '../outbox/index.js';

export interface RelayDeps {
  logger?: Logger;
  env?: NodeJS.ProcessEnv;
  /** Use this store instead of the configured one (tests). Without it, `queue.url` selects PostgreSQL for the outbox and the token cache. */
  store?: OutboxStore;
  /** Webhook timing (tests shorten the backoff); defaults are WebhookDispatcher's. */
  webhooks?: Pick<WebhookDispatcherOptions, 'backoffBaseMs' | 'backoffMaxMs' | 'giveUpAfterMs' | 'timeoutMs' | 'pollMs'>;
}

/** A running relay: its parts, and how to stop it. */
export interface Relay {
  /** The config the relay runs with (after a reload, the one it applied). */
  readonly config: Config;
  identity: Identity;
  store: OutboxStore;
  router: Router;
  worker: DeliveryWorker;
  events: EventBus;
  smtp: SmtpIngress | undefined;
  /** Where the SMTP front door listens. */
  listeners: Array<{ host: string; port: number; tls: string }>;
  /** The HTTP front door (API, `/metrics`, health, dashboard) when `http.enabled`. */
  http: FastifyInstance | undefined;
  /** Where it listens, e.g. `http://127.0.0.1:8025`. */
  httpAddress: string | undefined;
  /** The Prometheus metrics: recorded whichever front doors are on, served at `/metrics` when `http.enabled`. */
  metrics: RelayMetrics;
  /** The NDR readers of the mailboxes with `bounces.read` (src/bounces); a reload changes this array in place. */
  bounces: BounceReader[];
  /** The one way in for every front door: commit to the outbox, announce, wake the sender. */
  enqueue(message: NewMessage): Promise<StoredMessage>;
  /**
   * Applies a reloaded config (SIGHUP): mailboxes (with their NDR readers), auth, users, allowlist, limits,
   * certificate, the dashboard's password (read again, a rotated file too), the HTTP request deadline and
   * large-body cap, webhooks, retention and log level, in full or not at all; what needs a restart is kept
   * and reported. The HTTP API reads `config` at each request.
   * @throws the refusal of the part that cannot take it (every check runs before anything changes).
   */
  reload(next: Config): Promise<ReloadReport>;
  /** Graceful stop: no new connections, finish transactions and sends in flight, close the store. */
  close(): Promise<void>;
}

/**
 * Composition root: wires identity, delivery, the outbox, the worker and the front doors from one
 * config. Nothing else in the code base builds real parts (composition happens only in src/runtime).
 */
export async function startRelay(config: Config, deps: RelayDeps = {}): Promise<Relay> {
  const logger = deps.logger ?? silentLogger();
  const events = new EventBus();
  // What has been started so far, stopped in reverse order if a later step fails: a relay that
  // cannot start leaves no store open (nor its checkpoint thread), no pool, no timer behind.
  const started: Array<() => unknown> = [];
  const undo = async (): Promise<void> => {
    for (const stop of started.reverse()) {
      try {
        await stop();
      } catch (err) {
        logger.warn({ err }, 'cleanup after a failed start failed');
      }
    }
  };
  try {
    return await assemble(config, deps, logger, events, started);
  } catch (err) {
    await undo();
    throw err;
  }
}

async function assemble(config: Config, deps: RelayDeps, logger: Logger, events: EventBus, started: Array<() => unknown>): Promise<Relay> {
  const bodies = deps.store === undefined ? await messageBodyCipher(config, deps.env ?? process.env) : undefined;
  // pg is loaded only by a relay on PostgreSQL (it costs a single node on SQLite memory and start-up time).
  const pgStore =
    deps.store === undefined && config.queue.url !== undefined
      ? await (await import('../outbox/pg-store.js')).openPgStore(config.queue.url, { schema: config.queue.schema, ...(bodies ? { bodies } : {}) })
      : undefined;
  // The PostgreSQL store's pool also carries the shared token cache: it closes last.
  if (pgStore) started.push(() => pgStore.close());
  const cacheStore = pgStore === undefined ? undefined : await sharedTokenCache(config, pgStore, deps.env ?? process.env, logger);
  const identity = await createIdentity(config, { logger, ...(deps.env ? { env: deps.env } : {}), ...(cacheStore ? { cacheStore } : {}) });
  started.push(() => identity.close());
  // Kept, not copied: a reload changes the caps in place (src/runtime/reload.ts).
  const connectionCaps = new Map(config.mailboxes.filter((m) => m.maxConnections).map((m) => [m.address.toLowerCase(), m.maxConnections!]));
  // Each mailbox leaves through its configured transport (`mailboxes[].transport`), built from the registry.
  const transport = buildTransports({
    config,
    identity,
    logger,
    ca: await extraCas(config),
    connectionCaps,
    // Open connections count against the mailbox's 3 at Exchange; idle ones on several nodes would add up.
    pool: config.delivery.reuseConnections ?? config.queue.url === undefined,
  });
  started.push(() => transport.close());
  let store: OutboxStore;
  if (deps.store ?? pgStore) {
    store = (deps.store ?? pgStore)!;
    // A store given by the caller is the relay's to close from here on, as close() does.
    if (deps.store) started.push(() => store.close());
  } else {
    store = await openSqliteStore(resolve(config.dataDir, config.queue.path), bodies ? { bodies } : {});
    started.push(() => store.close());
  }
  await store.migrate();
  const router = new Router(config.mailboxes);
  const worker = new DeliveryWorker({ store, transport, router, config, events, logger: logger.child({ component: 'worker' }) });

  const enqueue = async (message: NewMessage): Promise<StoredMessage> => {
    const stored = await store.enqueue(message);
    events.publish({ type: 'message.queued', id: stored.id, mailbox: stored.mailbox, pool: stored.pool, source: message.source.kind, at: new Date() });
    worker.notify({ mailbox: stored.mailbox, pool: stored.pool });
    return stored;
  };

  const unlogEvents = logEvents(events, logger.child({ component: 'events' }));
  started.push(unlogEvents);
  // Built whether or not /metrics is served: every front door counts into it from its first event (a
  // library user reads `relay.metrics`). Node's process metrics only where /metrics serves them: each
  // set adds an event-loop monitor and a GC observer to the process.
  const metrics = new RelayMetrics({
    version: relayVersion(),
    mailboxes: config.mailboxes.map((m) => m.address),
    processMetrics: config.http.enabled,
  });
  const unfollowMetrics = [
    metrics.follow(events),
    identity.provider.onRefresh((o) => metrics.tokenRequest(o.mailbox, o.ok)),
    // A delegated sign-in that ends at a background refresh is told at once (mailbox.needs_login).
    identity.provider.onRefresh((o) => worker.tokenOutcome(o)),
  ];
  started.push(() => unfollowMetrics.forEach((u) => u()));
  // Metrics and webhooks follow the bus before the worker starts, so no event of this run is missed.
  // The webhooks' deliveries live in the store, not in the HTTP door: they run with the door off too.
  const httpSide =
    config.http.enabled || config.http.webhooks.length > 0
      ? await prepareHttpSide(config, {
          events,
          metrics,
          logger,
          env: deps.env ?? process.env,
          outbox: store,
          ...(pgStore ? { pgStore } : {}),
          ...(deps.webhooks ? { webhooks: deps.webhooks } : {}),
        })
      : undefined;
  // After the worker has stopped: its last events are stored as webhook deliveries before the store closes.
  if (httpSide) started.push(() => httpSide.close());

  worker.start();
  started.push(() => worker.stop());
  // Every node sweeps; the store's batches never take the same rows twice (src/outbox/retention.ts).
  const retention = new RetentionSweeper({ store, retention: config.queue.retention, logger: logger.child({ component: 'retention' }) });
  retention.start();
  started.push(() => retention.stop());
  // After the webhooks follow the bus: an expiring secret or certificate is told at start, then daily.
  // With auth.secretExpiresFromGraph, the secret's end date as the app registration lists it; read with
  // the running config, so a reload that turns it on (or adds such a mailbox) applies at the next check.
  // The config the relay runs with: the one it started with until a reload applies another.
  let running = config;
  const endDates = secretEndDates(() => running, { logger: logger.child({ component: 'credentials' }), ...(deps.env ? { env: deps.env } : {}) });
  started.push(() => endDates.close());
  const credentials = new CredentialExpiryMonitor({
    auth: identity.auth,
    setExpiry: (mailbox, kind, at) => metrics.credentialExpires(mailbox, kind, at),
    onExpiring: (c) => publishCredentialExpiring(events, c),
    graphEndDate: endDates.read,
    onGraphError: (mailbox: string, err: unknown) =>
      logger.warn({ err, mailbox }, "could not read the client secret's end date through Graph (Application.Read.All?); auth.secretExpires is used"),
  });
  credentials.start((err) => logger.warn({ err }, "could not read the credentials' end dates"));
  started.push(() => credentials.stop());
  // The notice to the sender of a recipient an NDR bounced (queue.bounces), read at each event so a reload applies.
  let bouncesOn = config.queue.bounces;
  started.push(
    followBounceNotices({
      events,
      store,
      enqueue,
      enabled: () => bouncesOn,
      logger: logger.child({ component: 'bounces' }),
      reportingHost: config.smtp.hostname ?? hostname(),
    }),
  );
  // After the webhooks follow the bus: a bounce read at once is delivered like any other event.
  const bounceReaders = await startBounceReaders(config, {
    store,
    events,
    logger,
    ...(deps.env ? { env: deps.env } : {}),
    ...(cacheStore ? { cacheStore } : {}),
  });
  started.push(() => bounceReaders.stop());
  let smtp: SmtpIngress | undefined;
  let listeners: Relay['listeners'] = [];
  if (config.smtp.enabled) {
    // Loaded only when the front door is on, so a library user without it never loads smtp-server.
    const { createSmtpIngress } = await import('../ingress/smtp/index.js');
    const ingress = createSmtpIngress({
      config: config.smtp,
      limits: config.limits,
      dataDir: config.dataDir,
      router,
      outbox: { enqueue },
      suppressions: store,
      logger: logger.child({ component: 'smtp' }),
      observe: (event) => metrics.frontDoor(event),
    });
    started.push(() => ingress.close());
    listeners = await ingress.listen();
    smtp = ingress;
  }

  let http: FastifyInstance | undefined;
  let httpAddress: string | undefined;
  const httpLog = logger.child({ component: 'http' });
  // The dashboard's password, read at each request: a reload sets it (src/runtime/reload.ts).
  let adminPassword = httpSide?.adminPassword;
  if (httpSide && config.http.enabled) {
    const { buildHttpApp } = await import('../ingress/http/index.js');
    const app = await buildHttpApp({
      // The running config, read at each request: a reload's mailboxes, limits and HTTP deadline apply to the next one.
      config: () => running,
      relay: {
        enqueue,
        store,
        router,
        worker,
        tokens: identity.provider,
        credentials: () => credentials.credentials,
        doctor: async (mailbox: string) => {
          const { runDoctor, toDoctorJson } = await import('../doctor/index.js');
          return toDoctorJson(
            await runDoctor(running, { mailbox, pausedMailboxes: () => store.mailboxPauses(), logger: logger.child({ component: 'doctor' }) }),
          );
        },
      },
      integrationStore: httpSide.integrationStore,
      metrics: httpSide.metrics,
      logger: httpLog,
      secrets: { adminPassword: () => adminPassword },
    });
    started.push(() => app.close());
    await app.listen({ host: config.http.host, port: config.http.port }).catch((err: unknown) => {
      throw httpListenFailed(err, config.http.host, config.http.port);
    });
    http = app;
    const address = http.server.address() as AddressInfo;
    httpAddress = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
    httpLog.info({ event: 'listener.started', host: address.address, port: address.port, url: httpAddress }, 'HTTP listening');
  }
  httpSide?.webhooks.start();

  // One reload at a time: a second SIGHUP waits for the first, then compares with what it applied.
  let reloading: Promise<unknown> = Promise.resolve();
  const relay: Relay = {
    get config() {
      return running;
    },
    identity,
    store,
    router,
    worker,
    events,
    smtp,
    listeners,
    http,
    httpAddress,
    metrics,
    bounces: bounceReaders.readers,
    enqueue,
    reload(next) {
      const run = reloading.then(async () => {
        const report = await reloadRelay(
          {
            logger,
            env: deps.env ?? process.env,
            identity,
            router,
            worker,
            transport,
            connectionCaps,
            smtp,
            webhooks: httpSide?.webhooks,
            retention,
            bounces: bounceReaders,
            metrics,
            ...(http
              ? {
                  adminPassword: {
                    set(password: string | undefined) {
                      adminPassword = password;
                    },
                  },
                }
              : {}),
          },
          running,
          next,
        );
        running = report.config;
        bouncesOn = report.config.queue.bounces;
        // End dates read again at once (a renewed certificate file, auth.secretExpires or its Graph
        // reading turned on), not at the next hourly check; told once a day as before.
        void credentials.check().catch((err: unknown) => logger.warn({ err }, "could not read the credentials' end dates"));
        return report;
      });
      reloading = run.catch(() => undefined);
      return run;
    },
    async close() {
      if (http) {
        await http.close();
        httpLog.info({ event: 'listener.stopped', url: httpAddress }, 'HTTP listener stopped');
      }
      await smtp?.close();
      await bounceReaders.stop();
      await retention.stop();
      await worker.stop();
      // After the worker: its last events are stored as webhook deliveries before the store closes.
      await httpSide?.close();
      unlogEvents();
      unfollowMetrics.forEach((u) => u());
      await transport.close();
      identity.close();
      await store.close();
    },
  };
  return relay;
}

/**
 * With `queue.url`, the token cache lives beside the outbox in PostgreSQL, on the outbox's pool (closed
 * with the store), so every node uses one token and one node at a time refreshes it. Its entries are
 * encrypted with this node's key, which must be every node's: a node with another key refuses to start.
 */
async function sharedTokenCache(config: Config, store: PgOutboxStore, env: NodeJS.ProcessEnv, logger: Logger): Promise<PgTokenCacheStore> {
  if (!env[SECRET_KEY_ENV]) {
    logger.warn(
      { dataDir: config.dataDir },
      `queue.url is set but ${SECRET_KEY_ENV} is not: the shared token cache is encrypted with this node's key file (dataDir/secret.key), which other nodes do not have. Set the same ${SECRET_KEY_ENV} on every node.`,
    );
  }
  const key = await loadSecretKey(join(resolve(config.dataDir), 'secret.key'), env);
  const { PgTokenCacheStore } = await import('../identity/pg-cache-store.js');
  return PgTokenCacheStore.attach(store.pool, { schema: config.queue.schema, key });
}

/**
 * The cipher of stored message bodies: always built from the token cache's key, so bodies stored
 * encrypted stay readable after `queue.encryptBodies` is turned off; it encrypts new ones only when on.
 * Nodes sharing PostgreSQL read each other's bodies, so they must share the key itself, not key files.
 */
async function messageBodyCipher(config: Config, env: NodeJS.ProcessEnv): Promise<BodyCipher> {
  // loadConfig refuses this config already; the same rule again for a config built in code.
  const issues = environmentIssues(config, env);
  if (issues.length > 0)
    throw new Relay365Error('R365_CONFIG_INVALID', `The config has ${issues.length} problem(s):\n${formatConfigIssues(issues)}`, { details: { issues } });
  return bodyCipher(await loadSecretKey(join(resolve(config.dataDir), 'secret.key'), env), { encrypt: config.queue.encryptBodies });
}

/** relay365's version, from its package.json (two folders up from src/runtime and from dist/runtime). */
function relayVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/** The HTTP front door's own parts: its store, the metrics and the webhook dispatcher, following the bus. */
interface HttpSide {
  integrationStore: IntegrationStore;
  metrics: RelayMetrics;
  webhooks: WebhookDispatcher;
  adminPassword: string | undefined;
  /** Stops the webhooks (POSTs in flight finish), unsubscribes, closes the integration store. */
  close(): Promise<void>;
}

async function prepareHttpSide(
  config: Config,
  parts: {
    events: EventBus;
    /** The relay's metrics, already following the bus; served at /metrics. */
    metrics: RelayMetrics;
    logger: Logger;
    env: NodeJS.ProcessEnv;
    /** The PostgreSQL outbox (`queue.url`), whose pool and schema the integration store then shares. */
    pgStore?: PgOutboxStore;
    /** The outbox, whose messages' tags and metadata their webhooks echo. */
    outbox: Pick<OutboxStore, 'get'>;
    webhooks?: RelayDeps['webhooks'];
  },
): Promise<HttpSide> {
  // From the store, not the HTTP door: with the door off, webhooks run without loading it. By file:
  // the store's index loads pg, which a node on SQLite never needs.
  const adminPassword = config.http.adminPassword === undefined ? undefined : await resolveSecret(config.http.adminPassword, parts.env);
  const receivers = await Promise.all(
    config.http.webhooks.map(async (w) => ({ url: w.url, secret: await resolveSecret(w.secret, parts.env), events: w.events })),
  );
  // API keys, idempotency keys and webhook deliveries live beside the outbox, in tables of their own:
  // with PostgreSQL on its pool, shared by every node (one key, one idempotent answer, one delivery
  // of each webhook for the whole cluster); else in the SQLite file.
  const integrationStore =
    parts.pgStore !== undefined
      ? await (await import('../store/pg-integration-store.js')).PgIntegrationStore.attach(parts.pgStore)
      : await (await import('../store/integration-store.js')).openSqliteIntegrationStore(resolve(config.dataDir, config.queue.path));
  const { metrics } = parts;
  const webhooks = new WebhookDispatcher({
    outbox: integrationStore,
    receivers,
    logger: parts.logger.child({ component: 'webhooks' }),
    onAttempt: (a) => metrics.webhookAttempt(a.eventType, a.outcome),
    labelsOf: async (id) => {
      const message = await parts.outbox.get(id);
      return message === undefined ? undefined : { tags: message.tags, metadata: message.metadata };
    },
    ...parts.webhooks,
  });
  const unsubscribe = [webhooks.follow(parts.events)];
  return {
    integrationStore,
    metrics,
    webhooks,
    adminPassword,
    async close() {
      await webhooks.stop();
      for (const u of unsubscribe) u();
      await integrationStore.close();
    },
  };
}
