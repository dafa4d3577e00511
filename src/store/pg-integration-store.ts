import type pg from 'pg';
import type { NewWebhookDelivery, WebhookDelivery, WebhookDeliveryOutcome } from '../observe/index.js';
import { applyPgMigrations, checkSchemaName, explainPgError, openPgSchemaStore, pgTransaction, type PgMigrationReport } from './pg-database.js';
import {
  FINISHED_RETENTION_MS,
  newApiKeyRow,
  theActiveKey,
  toApiKey,
  toWebhookDelivery,
  type ApiKeyRecord,
  type ApiKeyRow,
  type NewApiKeyRecord,
  type IntegrationStore,
  type IdempotencyRequest,
  type IdempotencyReservation,
  type WebhookRow,
} from './integration-store.js';
import { PG_INTEGRATION_MIGRATIONS, PRUNE_BATCH, pgIntegrationStatements, type PgIntegrationStatements, type PgIdempotencyRow } from './pg-integration-sql.js';

/** Options of {@link PgIntegrationStore.open}. */
export interface PgIntegrationStoreOptions {
  /** Schema holding relay365's tables (`queue.schema`); default `relay365`. */
  schema?: string;
  /** Connections in the store's own pool (default 2: the CLI makes one query at a time). */
  poolSize?: number;
  /** How long to wait for a connection before failing with `R365_OUTBOX_UNAVAILABLE` (retryable). Default 10 s. */
  connectTimeoutMs?: number;
  /** Apply pending migrations on open (default true). */
  migrate?: boolean;
}

/**
 * A reservation meets a key that vanishes between its insert and its lock only when another request
 * released or pruned it in that instant; after this many rounds it answers in-progress (409), which the
 * client retries.
 */
const RESERVE_ROUNDS = 3;

/**
 * {@link IntegrationStore} in PostgreSQL, shared by every node: API keys, idempotency keys and the webhook
 * outbox in the outbox's schema (`queue.schema`), tables prefixed `http_`. An API key created on one
 * node is known to all; an `Idempotency-Key` sent to two nodes queues one message; a webhook delivery
 * is leased by one node at a time (`FOR UPDATE SKIP LOCKED`).
 *
 * @example
 * ```ts
 * const outbox = await openPgStore(config.queue.url, { schema: config.queue.schema });
 * const integrationStore = await PgIntegrationStore.attach(outbox);
 * const key = await integrationStore.findApiKey(hashApiKey(bearer));
 * ```
 */
export class PgIntegrationStore implements IntegrationStore {
  private readonly sql: PgIntegrationStatements;
  private closed = false;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly ownsPool: boolean,
    /** The schema holding the tables. */
    readonly schema: string,
    /** The database, for messages: the URL without its password, and the schema. */
    readonly where: string,
  ) {
    this.sql = pgIntegrationStatements(schema);
  }

  /**
   * Uses the outbox's pool, so a node keeps one set of connections; `close` leaves it open for the
   * outbox to end. Applies the pending migrations unless told not to.
   *
   * @throws Relay365Error `R365_OUTBOX_UNAVAILABLE` when the tables cannot be migrated (see {@link applyMigrations}).
   */
  static async attach(outbox: { pool: pg.Pool; schema: string; where: string }, options: { migrate?: boolean } = {}): Promise<PgIntegrationStore> {
    const store = new PgIntegrationStore(outbox.pool, false, checkSchemaName(outbox.schema), outbox.where);
    if (options.migrate !== false) await store.migrate();
    return store;
  }

  /**
   * Opens a pool of its own to `url` (ended by `close`), for commands that use only these tables
   * (`relay365 apikey`). Otherwise as {@link attach}.
   *
   * @throws Relay365Error `R365_OUTBOX_UNAVAILABLE` when the server cannot be reached or refuses the
   *   login, or the tables cannot be migrated.
   */
  static open(url: string, options: PgIntegrationStoreOptions = {}): Promise<PgIntegrationStore> {
    return openPgSchemaStore(
      url,
      { schema: options.schema, poolSize: options.poolSize ?? 2, connectTimeoutMs: options.connectTimeoutMs },
      (pool, schema, where) => new PgIntegrationStore(pool, true, schema, where),
      (store) => (options.migrate !== false ? store.migrate() : store.ping()),
    );
  }

  async migrate(): Promise<void> {
    await this.applyMigrations();
  }

  /**
   * Creates the schema when missing and applies the steps of {@link PG_INTEGRATION_MIGRATIONS} not yet in
   * the schema's one ledger (`schema_migrations`, part `http`), in one transaction under the schema's migration lock (the outbox's too).
   *
   * @throws Relay365Error `R365_OUTBOX_UNAVAILABLE` when PostgreSQL cannot be used or a newer relay365 migrated the tables.
   */
  applyMigrations(): Promise<PgMigrationReport> {
    return this.run('apply the integration store migrations', () =>
      pgTransaction(this.pool, (client) =>
        applyPgMigrations(client, { schema: this.schema, where: this.where, what: 'The HTTP tables', part: 'http', migrations: PG_INTEGRATION_MIGRATIONS }),
      ),
    );
  }

  createApiKey(input: NewApiKeyRecord): Promise<ApiKeyRecord> {
    return this.run('store an API key', async () => {
      const row = newApiKeyRow(input);
      const { rows } = await this.pool.query<ApiKeyRow>(this.sql.insertApiKey, [row.id, row.name, row.prefix, input.hash, row.created_at, row.scopes, row.senders]);
      return toApiKey(rows[0]!);
    });
  }

  listApiKeys(): Promise<ApiKeyRecord[]> {
    return this.run('list API keys', async () => (await this.pool.query<ApiKeyRow>(this.sql.listApiKeys)).rows.map(toApiKey));
  }

  findApiKey(hash: string): Promise<ApiKeyRecord | undefined> {
    return this.run('look up an API key', async () => {
      const row = (await this.pool.query<ApiKeyRow>(this.sql.findApiKey, [hash])).rows[0];
      return row === undefined ? undefined : toApiKey(row);
    });
  }

  touchApiKey(id: string, now: Date = new Date()): Promise<void> {
    return this.run('record the use of an API key', async () => void (await this.pool.query(this.sql.touchApiKey, [id, now.getTime()])));
  }

  /** @throws Relay365Error `R365_API_KEY_UNKNOWN` when several active keys have this name. */
  revokeApiKey(idNameOrPrefix: string, now: Date = new Date()): Promise<ApiKeyRecord | undefined> {
    return this.run('revoke an API key', () =>
      pgTransaction(this.pool, async (client) => {
        const row = theActiveKey((await client.query<ApiKeyRow>(this.sql.findActiveKeysByRef, [idNameOrPrefix])).rows, idNameOrPrefix);
        if (row === undefined) return undefined;
        const revoked = (await client.query<ApiKeyRow>(this.sql.revokeApiKey, [row.id, now.getTime()])).rows[0];
        return revoked === undefined ? undefined : toApiKey(revoked);
      }),
    );
  }

  /**
   * One transaction: insert the key (a new key is reserved), or else lock the row that is there and
   * decide from it. Two nodes reserving the same key at the same moment meet at the primary key: the
   * second waits for the first's commit and then finds its reservation, so exactly one is reserved.
   */
  reserveIdempotencyKey(request: IdempotencyRequest): Promise<IdempotencyReservation> {
    return this.run('reserve an idempotency key', async () => {
      const now = request.now.getTime();
      // Apart from the reservation, so the rows it deletes are not held while the reservation waits.
      await this.pool.query(this.sql.pruneIdempotencyKeys, [now, PRUNE_BATCH]);
      const key = [request.scope, request.keyHash];
      const fresh = [...key, request.fingerprint, now, now + request.ttlMs, now + request.lockMs];
      return pgTransaction(this.pool, async (client): Promise<IdempotencyReservation> => {
        for (let round = 0; round < RESERVE_ROUNDS; round++) {
          if ((await client.query(this.sql.insertIdempotencyKey, fresh)).rowCount === 1) return { outcome: 'reserved' };
          const row = (await client.query<PgIdempotencyRow>(this.sql.lockIdempotencyKey, key)).rows[0];
          if (row === undefined) continue;
          if (row.expires_at <= now) {
            await client.query(this.sql.renewIdempotencyKey, fresh);
            return { outcome: 'reserved' };
          }
          if (row.fingerprint !== request.fingerprint) return { outcome: 'mismatch' };
          if (row.status !== null && row.body !== null) return { outcome: 'replay', status: row.status, body: row.body };
          if (row.locked_until !== null && row.locked_until > now) return { outcome: 'in-progress' };
          await client.query(this.sql.relockIdempotencyKey, [...key, now + request.lockMs]);
          return { outcome: 'reserved' };
        }
        return { outcome: 'in-progress' };
      });
    });
  }

  saveIdempotentResponse(scope: string, keyHash: string, status: number, body: string): Promise<void> {
    return this.run('save an idempotent response', async () => void (await this.pool.query(this.sql.saveIdempotentResponse, [scope, keyHash, status, body])));
  }

  releaseIdempotencyKey(scope: string, keyHash: string): Promise<void> {
    return this.run('release an idempotency key', async () => void (await this.pool.query(this.sql.releaseIdempotencyKey, [scope, keyHash])));
  }

  addWebhookDeliveries(deliveries: readonly NewWebhookDelivery[]): Promise<void> {
    if (deliveries.length === 0) return Promise.resolve();
    return this.run('store webhook deliveries', async () => {
      await this.pool.query(this.sql.insertWebhookDeliveries, [
        deliveries.map((d) => d.eventId),
        deliveries.map((d) => d.eventType),
        deliveries.map((d) => d.receiver),
        deliveries.map((d) => d.body),
        deliveries.map((d) => d.createdAt.getTime()),
      ]);
    });
  }

  /** Leases up to `limit` due deliveries, oldest first; another node's claim at the same moment gets other rows. */
  claimWebhookDeliveries(request: { owner: string; now: Date; leaseMs: number; limit: number }): Promise<WebhookDelivery[]> {
    return this.run('claim webhook deliveries', async () => {
      const now = request.now.getTime();
      await this.pool.query(this.sql.pruneFinishedWebhooks, [now - FINISHED_RETENTION_MS, PRUNE_BATCH]);
      const { rows } = await this.pool.query<WebhookRow>(this.sql.claimWebhookDeliveries, [request.owner, now + request.leaseMs, now, request.limit]);
      return rows.sort((a, b) => a.next_attempt_at - b.next_attempt_at || a.id - b.id).map(toWebhookDelivery);
    });
  }

  completeWebhookDelivery(id: number, owner: string, outcome: WebhookDeliveryOutcome): Promise<boolean> {
    return this.run('record a webhook attempt', async () => {
      const done = await this.pool.query(...this.attemptQuery(id, owner, outcome));
      return done.rowCount === 1;
    });
  }

  nextWebhookDue(): Promise<Date | undefined> {
    return this.run('read the next webhook due time', async () => {
      const t = (await this.pool.query<{ t: number | null }>(this.sql.nextWebhookDue)).rows[0]?.t ?? null;
      return t === null ? undefined : new Date(t);
    });
  }

  ping(): Promise<void> {
    return this.run('reach the database', async () => void (await this.pool.query(this.sql.ping)));
  }

  /** Ends the pool when the store opened it ({@link open}); calling it again does nothing. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.ownsPool) await this.pool.end();
  }

  /** The statement that records one attempt, with its parameters. */
  private attemptQuery(id: number, owner: string, outcome: WebhookDeliveryOutcome): [string, unknown[]] {
    switch (outcome.state) {
      case 'delivered':
        return [this.sql.deliveredWebhook, [id, owner, outcome.at.getTime()]];
      case 'retry':
        return [this.sql.retryWebhook, [id, owner, outcome.nextAttemptAt.getTime(), outcome.error]];
      case 'abandoned':
        return [this.sql.abandonWebhook, [id, owner, Date.now(), outcome.error]];
    }
  }

  /** Runs one operation, turning PostgreSQL's environmental failures into `R365_OUTBOX_UNAVAILABLE` (see pg-database.ts). */
  private async run<T>(doing: string, operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (err) {
      throw explainPgError(err, doing, this.where);
    }
  }
}
