import { randomUUID } from 'node:crypto';
import type Database from 'better-sqlite3';
import { Relay365Error } from '../errors.js';
import { applySqliteMigrations } from './sqlite-ledger.js';
import { explainSqliteError, openSqliteFile } from './sqlite-database.js';
import { API_KEY_SCOPES, type ApiKeyScope } from './api-keys.js';
import type { NewWebhookDelivery, WebhookDelivery, WebhookDeliveryOutcome, WebhookOutbox } from '../observe/index.js';


/** What `createApiKey` stores. */
export interface NewApiKeyRecord {
  name: string;
  hash: string;
  prefix: string;
  /** Default: send and read. */
  scopes?: readonly ApiKeyScope[];
  /** Sender rules (`noreply@contoso.com`, `@contoso.com`) the key may send as; default any the relay routes. */
  senders?: readonly string[];
  now?: Date;
}

/** An API key as stored: never the key itself, only its SHA-256 hash. */
export interface ApiKeyRecord {
  id: string;
  name: string;
  /** The key's first characters (`r365_abcd1234`), to tell keys apart in lists; not enough to use it. */
  prefix: string;
  scopes: ApiKeyScope[];
  /** Undefined: any sender the relay routes. */
  senders: string[] | undefined;
  createdAt: Date;
  lastUsedAt: Date | undefined;
  revokedAt: Date | undefined;
}

/** The answer to {@link IntegrationStore.reserveIdempotencyKey}. */
export type IdempotencyReservation =
  /** The key is new (or its earlier attempt was abandoned): process the request, then save or release. */
  | { outcome: 'reserved' }
  /** The key was used with the same request: answer exactly as then. */
  | { outcome: 'replay'; status: number; body: string }
  /** The key was used with a different request. */
  | { outcome: 'mismatch' }
  /** The first request with this key is still being processed. */
  | { outcome: 'in-progress' };

export interface IdempotencyRequest {
  /** Keys are per API key (as Stripe's are per account): two clients never collide. */
  scope: string;
  /** SHA-256 of the client's Idempotency-Key. */
  keyHash: string;
  /** SHA-256 of the request (method, route, canonical body). */
  fingerprint: string;
  now: Date;
  /** How long a saved response is kept (24 h). */
  ttlMs: number;
  /** After this long without a saved response, a reservation is taken to be abandoned (a crash) and may be taken over. */
  lockMs: number;
}

/**
 * What relay365 keeps about the programs it works with, besides the outbox: the API keys they call
 * with and the idempotency keys of their requests (the HTTP front door), and the webhook deliveries
 * made to them (the webhook dispatcher, which runs with the HTTP door off too). It lives where the
 * outbox does: {@link SqliteIntegrationStore} in the outbox's SQLite file, `PgIntegrationStore`
 * (pg-integration-store.ts) in its PostgreSQL schema, shared by every node. Both pass the contract
 * suite in test/contract/integration-store.ts. Its tables keep their first names (`http_*`, ledger
 * part `http`): renaming them would take a migration and buys nothing.
 */
export interface IntegrationStore extends WebhookOutbox {
  /** Creates or upgrades this store's tables (its own numbered migrations). */
  migrate(): Promise<void>;
  createApiKey(input: NewApiKeyRecord): Promise<ApiKeyRecord>;
  listApiKeys(): Promise<ApiKeyRecord[]>;
  /** The active (not revoked) key with this hash. */
  findApiKey(hash: string): Promise<ApiKeyRecord | undefined>;
  /** Records that the key was used (at most once a minute per key, to spare the disk). */
  touchApiKey(id: string, now?: Date): Promise<void>;
  /** Revokes the active key with this id, name or prefix; undefined when none matches. */
  revokeApiKey(idNameOrPrefix: string, now?: Date): Promise<ApiKeyRecord | undefined>;
  reserveIdempotencyKey(request: IdempotencyRequest): Promise<IdempotencyReservation>;
  /** Saves the response of a reserved key, for replays until the key expires. */
  saveIdempotentResponse(scope: string, keyHash: string, status: number, body: string): Promise<void>;
  /** Drops a reservation whose request failed, so that the client may try again with the same key. */
  releaseIdempotencyKey(scope: string, keyHash: string): Promise<void>;
  /** Throws when the database cannot be read (for `/readyz`). */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** One schema step of this store; versions only grow (recorded as part `http` of the file's one ledger, numbered apart from the outbox's). */
interface Migration {
  version: number;
  description: string;
  sql: string;
}

/** The HTTP tables' steps (also for `relay365 db migrate --print`). */
export const SQLITE_INTEGRATION_MIGRATIONS: ReadonlyArray<{ version: number; description: string; sql: string }> = [
  {
    version: 1,
    description: 'API keys, idempotency keys and webhook deliveries',
    sql: `
      CREATE TABLE http_api_keys (
        id           TEXT    PRIMARY KEY,
        name         TEXT    NOT NULL,
        prefix       TEXT    NOT NULL,
        hash         TEXT    NOT NULL UNIQUE,  -- hex SHA-256 of the whole key
        created_at   INTEGER NOT NULL,
        last_used_at INTEGER,
        revoked_at   INTEGER
      ) STRICT;

      CREATE TABLE http_idempotency_keys (
        scope        TEXT    NOT NULL,         -- the API key's id
        key_hash     TEXT    NOT NULL,         -- hex SHA-256 of the Idempotency-Key header
        fingerprint  TEXT    NOT NULL,         -- hex SHA-256 of the request
        status       INTEGER,                  -- NULL while the first request is processed
        body         TEXT,
        created_at   INTEGER NOT NULL,
        expires_at   INTEGER NOT NULL,
        locked_until INTEGER,
        PRIMARY KEY (scope, key_hash)
      ) STRICT;
      CREATE INDEX http_idempotency_keys_expires ON http_idempotency_keys (expires_at);

      CREATE TABLE http_webhook_deliveries (
        id              INTEGER PRIMARY KEY,
        event_id        TEXT    NOT NULL,
        event_type      TEXT    NOT NULL,
        receiver        TEXT    NOT NULL,      -- the receiver's URL
        body            TEXT    NOT NULL,      -- the exact JSON POSTed on every attempt
        state           TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'abandoned')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        created_at      INTEGER NOT NULL,
        next_attempt_at INTEGER NOT NULL,
        lease_owner     TEXT,
        lease_until     INTEGER,
        last_error      TEXT,
        finished_at     INTEGER,
        UNIQUE (event_id, receiver)
      ) STRICT;
      CREATE INDEX http_webhook_deliveries_due ON http_webhook_deliveries (state, next_attempt_at, id);
      CREATE INDEX http_webhook_deliveries_finished ON http_webhook_deliveries (finished_at) WHERE finished_at IS NOT NULL;
    `,
  },
  {
    version: 2,
    description: 'API key scopes and senders',
    // Keys made before scopes existed keep what they could do (everything); new keys get send and read.
    sql: `
      ALTER TABLE http_api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT 'send read admin';
      ALTER TABLE http_api_keys ADD COLUMN senders TEXT;  -- JSON array of sender rules; NULL: any
    `,
  },
];
const MIGRATIONS: readonly Migration[] = SQLITE_INTEGRATION_MIGRATIONS;

/** Finished webhook deliveries are kept this long (to look into a receiver's complaint), then pruned. */
export const FINISHED_RETENTION_MS = 7 * 86_400_000;

/** Every SQL statement of the SQLite integration store. Times are integer milliseconds since the epoch. */
const SQL = {
  pragmas: {
    /** FULL: an API key, an idempotent response or a webhook delivery survives a power cut once written. */
    synchronous: 'synchronous = FULL',
  },
  insertApiKey: `INSERT INTO http_api_keys (id, name, prefix, hash, scopes, senders, created_at) VALUES (@id, @name, @prefix, @hash, @scopes, @senders, @createdAt)`,
  listApiKeys: `SELECT id, name, prefix, scopes, senders, created_at, last_used_at, revoked_at FROM http_api_keys ORDER BY created_at, id`,
  findApiKey: `SELECT id, name, prefix, scopes, senders, created_at, last_used_at, revoked_at FROM http_api_keys WHERE hash = ? AND revoked_at IS NULL`,
  touchApiKey: `UPDATE http_api_keys SET last_used_at = @now WHERE id = @id AND (last_used_at IS NULL OR last_used_at < @now - 60000)`,
  findActiveKeyByRef: `SELECT id, name, prefix, scopes, senders, created_at, last_used_at, revoked_at FROM http_api_keys
    WHERE revoked_at IS NULL AND (id = @ref OR name = @ref OR prefix = @ref) ORDER BY created_at`,
  revokeApiKey: `UPDATE http_api_keys SET revoked_at = @now WHERE id = @id AND revoked_at IS NULL`,

  pruneIdempotencyKeys: `DELETE FROM http_idempotency_keys WHERE expires_at <= @now`,
  getIdempotencyKey: `SELECT fingerprint, status, body, locked_until FROM http_idempotency_keys WHERE scope = @scope AND key_hash = @keyHash`,
  insertIdempotencyKey: `INSERT INTO http_idempotency_keys (scope, key_hash, fingerprint, created_at, expires_at, locked_until)
    VALUES (@scope, @keyHash, @fingerprint, @now, @expiresAt, @lockedUntil)`,
  relockIdempotencyKey: `UPDATE http_idempotency_keys SET locked_until = @lockedUntil WHERE scope = @scope AND key_hash = @keyHash AND status IS NULL`,
  saveIdempotentResponse: `UPDATE http_idempotency_keys SET status = @status, body = @body, locked_until = NULL WHERE scope = @scope AND key_hash = @keyHash`,
  releaseIdempotencyKey: `DELETE FROM http_idempotency_keys WHERE scope = @scope AND key_hash = @keyHash AND status IS NULL`,

  insertWebhookDelivery: `INSERT INTO http_webhook_deliveries (event_id, event_type, receiver, body, state, created_at, next_attempt_at)
    VALUES (@eventId, @eventType, @receiver, @body, 'pending', @createdAt, @createdAt)
    ON CONFLICT (event_id, receiver) DO NOTHING`,
  /** Pending and due, or leased by a worker whose lease ran out (it crashed). */
  dueWebhookDeliveries: `SELECT id, event_id, event_type, receiver, body, attempts, created_at, next_attempt_at FROM http_webhook_deliveries
    WHERE state = 'pending' AND next_attempt_at <= @now AND (lease_until IS NULL OR lease_until < @now)
    ORDER BY next_attempt_at, id LIMIT @limit`,
  leaseWebhookDelivery: `UPDATE http_webhook_deliveries SET lease_owner = @owner, lease_until = @leaseUntil WHERE id = @id`,
  deliveredWebhook: `UPDATE http_webhook_deliveries SET state = 'delivered', attempts = attempts + 1, finished_at = @at, last_error = NULL,
      lease_owner = NULL, lease_until = NULL
    WHERE id = @id AND lease_owner = @owner AND state = 'pending'`,
  retryWebhook: `UPDATE http_webhook_deliveries SET attempts = attempts + 1, next_attempt_at = @nextAttemptAt, last_error = @error,
      lease_owner = NULL, lease_until = NULL
    WHERE id = @id AND lease_owner = @owner AND state = 'pending'`,
  abandonWebhook: `UPDATE http_webhook_deliveries SET state = 'abandoned', attempts = attempts + 1, finished_at = @at, last_error = @error,
      lease_owner = NULL, lease_until = NULL
    WHERE id = @id AND lease_owner = @owner AND state = 'pending'`,
  /** The earliest moment a pending delivery may be sent: its next attempt, or the end of its lease. */
  nextWebhookDue: `SELECT min(max(next_attempt_at, coalesce(lease_until + 1, 0))) AS t FROM http_webhook_deliveries WHERE state = 'pending'`,
  pruneFinishedWebhooks: `DELETE FROM http_webhook_deliveries WHERE finished_at IS NOT NULL AND finished_at < @before`,
  ping: `SELECT 1`,
} as const;

/** A row of `http_api_keys`, the same in SQLite and PostgreSQL. */
export interface ApiKeyRow {
  id: string;
  name: string;
  prefix: string;
  /** Space-separated {@link ApiKeyScope}s. */
  scopes: string;
  /** JSON array of sender rules, or NULL. */
  senders: string | null;
  created_at: number;
  last_used_at: number | null;
  revoked_at: number | null;
}

/** A row of `http_webhook_deliveries` as a claim reads it, the same in SQLite and PostgreSQL. */
export interface WebhookRow {
  id: number;
  event_id: string;
  event_type: string;
  receiver: string;
  body: string;
  attempts: number;
  created_at: number;
  next_attempt_at: number;
}

/**
 * Opens the integration store in the SQLite file of the outbox (`resolve(config.dataDir, config.queue.path)`):
 * WAL lets this connection and the outbox's share the file. Its tables are prefixed `http_` and its
 * migrations, numbered apart from the outbox's (part `http` of the file's ledger, store/sqlite-ledger.ts).
 *
 * @throws Relay365Error `R365_OUTBOX_UNAVAILABLE` when the file cannot be opened or migrated.
 * @example
 * ```ts
 * const store = await openSqliteIntegrationStore(resolve(config.dataDir, config.queue.path));
 * const key = await store.findApiKey(hashApiKey(bearer));
 * ```
 */
export async function openSqliteIntegrationStore(path: string, options: { busyTimeoutMs?: number; migrate?: boolean } = {}): Promise<SqliteIntegrationStore> {
  let db: Database.Database | undefined;
  try {
    // Same care as the outbox: the file holds API key hashes and webhook bodies. The outbox's
    // connection is usually open already: the file is never opened outside SQLite then.
    db = await openSqliteFile(path, { busyTimeoutMs: options.busyTimeoutMs ?? 5000 });
    db.pragma(SQL.pragmas.synchronous);
    const store = new SqliteIntegrationStore(db, path);
    if (options.migrate !== false) await store.migrate();
    return store;
  } catch (err) {
    db?.close();
    if (err instanceof Relay365Error) throw err;
    throw new Relay365Error(
      'R365_OUTBOX_UNAVAILABLE',
      `Cannot open the HTTP tables in ${path}: ${(err as Error).message}. Check that its folder is writable by this user (queue.path).`,
      {
        cause: err,
        details: { path },
      },
    );
  }
}

/** {@link IntegrationStore} in SQLite. better-sqlite3 is synchronous: each method is one short transaction. */
export class SqliteIntegrationStore implements IntegrationStore {
  private statements: ReturnType<typeof prepare> | undefined;

  constructor(
    private readonly db: Database.Database,
    readonly path: string,
  ) {}

  private get s(): ReturnType<typeof prepare> {
    return (this.statements ??= prepare(this.db));
  }

  async migrate(): Promise<void> {
    await this.applyMigrations();
  }

  /** Applies the steps not yet in the file's ledger (part `http` of `schema_migrations`), in one transaction; reports which (`relay365 db migrate`). */
  applyMigrations(): Promise<{ applied: number[]; version: number }> {
    return this.run('apply the integration store migrations', () =>
      this.db.transaction(() => applySqliteMigrations(this.db, { part: 'http', what: 'the HTTP tables', path: this.path, migrations: MIGRATIONS })).immediate(),
    );
  }

  createApiKey(input: NewApiKeyRecord): Promise<ApiKeyRecord> {
    return this.run('store an API key', () => {
      const row = newApiKeyRow(input);
      this.s.insertApiKey.run({ id: row.id, name: row.name, prefix: row.prefix, hash: input.hash, scopes: row.scopes, senders: row.senders, createdAt: row.created_at });
      return toApiKey(row);
    });
  }

  listApiKeys(): Promise<ApiKeyRecord[]> {
    return this.run('list API keys', () => this.s.listApiKeys.all().map(toApiKey));
  }

  findApiKey(hash: string): Promise<ApiKeyRecord | undefined> {
    return this.run('look up an API key', () => {
      const row = this.s.findApiKey.get(hash);
      return row === undefined ? undefined : toApiKey(row);
    });
  }

  touchApiKey(id: string, now: Date = new Date()): Promise<void> {
    return this.run('record the use of an API key', () => void this.s.touchApiKey.run({ id, now: now.getTime() }));
  }

  revokeApiKey(idNameOrPrefix: string, now: Date = new Date()): Promise<ApiKeyRecord | undefined> {
    return this.run('revoke an API key', () =>
      this.db
        .transaction(() => {
          const row = theActiveKey(this.s.findActiveKeyByRef.all({ ref: idNameOrPrefix }), idNameOrPrefix);
          if (row === undefined) return undefined;
          this.s.revokeApiKey.run({ id: row.id, now: now.getTime() });
          return toApiKey({ ...row, revoked_at: now.getTime() });
        })
        .immediate(),
    );
  }

  reserveIdempotencyKey(request: IdempotencyRequest): Promise<IdempotencyReservation> {
    return this.run('reserve an idempotency key', () =>
      this.db
        .transaction((): IdempotencyReservation => {
          const now = request.now.getTime();
          const params = { scope: request.scope, keyHash: request.keyHash };
          this.s.pruneIdempotencyKeys.run({ now });
          const row = this.s.getIdempotencyKey.get(params);
          if (row === undefined) {
            this.s.insertIdempotencyKey.run({
              ...params,
              fingerprint: request.fingerprint,
              now,
              expiresAt: now + request.ttlMs,
              lockedUntil: now + request.lockMs,
            });
            return { outcome: 'reserved' };
          }
          if (row.fingerprint !== request.fingerprint) return { outcome: 'mismatch' };
          if (row.status !== null && row.body !== null) return { outcome: 'replay', status: row.status, body: row.body };
          if (row.locked_until !== null && row.locked_until > now) return { outcome: 'in-progress' };
          this.s.relockIdempotencyKey.run({ ...params, lockedUntil: now + request.lockMs });
          return { outcome: 'reserved' };
        })
        .immediate(),
    );
  }

  saveIdempotentResponse(scope: string, keyHash: string, status: number, body: string): Promise<void> {
    return this.run('save an idempotent response', () => void this.s.saveIdempotentResponse.run({ scope, keyHash, status, body }));
  }

  releaseIdempotencyKey(scope: string, keyHash: string): Promise<void> {
    return this.run('release an idempotency key', () => void this.s.releaseIdempotencyKey.run({ scope, keyHash }));
  }

  addWebhookDeliveries(deliveries: readonly NewWebhookDelivery[]): Promise<void> {
    return this.run('store webhook deliveries', () =>
      this.db
        .transaction(() => {
          for (const d of deliveries)
            this.s.insertWebhookDelivery.run({
              eventId: d.eventId,
              eventType: d.eventType,
              receiver: d.receiver,
              body: d.body,
              createdAt: d.createdAt.getTime(),
            });
        })
        .immediate(),
    );
  }

  claimWebhookDeliveries(request: { owner: string; now: Date; leaseMs: number; limit: number }): Promise<WebhookDelivery[]> {
    return this.run('claim webhook deliveries', () =>
      this.db
        .transaction((): WebhookDelivery[] => {
          const now = request.now.getTime();
          this.s.pruneFinishedWebhooks.run({ before: now - FINISHED_RETENTION_MS });
          const rows = this.s.dueWebhookDeliveries.all({ now, limit: request.limit });
          for (const row of rows) this.s.leaseWebhookDelivery.run({ id: row.id, owner: request.owner, leaseUntil: now + request.leaseMs });
          return rows.map(toWebhookDelivery);
        })
        .immediate(),
    );
  }

  completeWebhookDelivery(id: number, owner: string, outcome: WebhookDeliveryOutcome): Promise<boolean> {
    return this.run('record a webhook attempt', () => {
      switch (outcome.state) {
        case 'delivered':
          return this.s.deliveredWebhook.run({ id, owner, at: outcome.at.getTime() }).changes === 1;
        case 'retry':
          return this.s.retryWebhook.run({ id, owner, nextAttemptAt: outcome.nextAttemptAt.getTime(), error: outcome.error }).changes === 1;
        case 'abandoned':
          return this.s.abandonWebhook.run({ id, owner, at: Date.now(), error: outcome.error }).changes === 1;
      }
    });
  }

  nextWebhookDue(): Promise<Date | undefined> {
    return this.run('read the next webhook due time', () => {
      const t = this.s.nextWebhookDue.get()?.t ?? null;
      return t === null ? undefined : new Date(t);
    });
  }

  ping(): Promise<void> {
    return this.run('read the database', () => void this.s.ping.get());
  }

  close(): Promise<void> {
    if (this.db.open) this.db.close();
    return Promise.resolve();
  }

  /** Runs one operation, turning SQLite's failures (locked, full, damaged) into `R365_OUTBOX_UNAVAILABLE`. */
  private run<T>(doing: string, operation: () => T): Promise<T> {
    try {
      return Promise.resolve(operation());
    } catch (err) {
      return Promise.reject(err instanceof Relay365Error ? err : explainSqliteError(err, doing, this.path));
    }
  }
}

function prepare(db: Database.Database) {
  return {
    insertApiKey: db.prepare<{ id: string; name: string; prefix: string; hash: string; scopes: string; senders: string | null; createdAt: number }>(SQL.insertApiKey),
    listApiKeys: db.prepare<[], ApiKeyRow>(SQL.listApiKeys),
    findApiKey: db.prepare<[string], ApiKeyRow>(SQL.findApiKey),
    touchApiKey: db.prepare<{ id: string; now: number }>(SQL.touchApiKey),
    findActiveKeyByRef: db.prepare<{ ref: string }, ApiKeyRow>(SQL.findActiveKeyByRef),
    revokeApiKey: db.prepare<{ id: string; now: number }>(SQL.revokeApiKey),
    pruneIdempotencyKeys: db.prepare<{ now: number }>(SQL.pruneIdempotencyKeys),
    getIdempotencyKey: db.prepare<
      { scope: string; keyHash: string },
      { fingerprint: string; status: number | null; body: string | null; locked_until: number | null }
    >(SQL.getIdempotencyKey),
    insertIdempotencyKey: db.prepare<{ scope: string; keyHash: string; fingerprint: string; now: number; expiresAt: number; lockedUntil: number }>(
      SQL.insertIdempotencyKey,
    ),
    relockIdempotencyKey: db.prepare<{ scope: string; keyHash: string; lockedUntil: number }>(SQL.relockIdempotencyKey),
    saveIdempotentResponse: db.prepare<{ scope: string; keyHash: string; status: number; body: string }>(SQL.saveIdempotentResponse),
    releaseIdempotencyKey: db.prepare<{ scope: string; keyHash: string }>(SQL.releaseIdempotencyKey),
    insertWebhookDelivery: db.prepare<{ eventId: string; eventType: string; receiver: string; body: string; createdAt: number }>(SQL.insertWebhookDelivery),
    dueWebhookDeliveries: db.prepare<{ now: number; limit: number }, WebhookRow>(SQL.dueWebhookDeliveries),
    leaseWebhookDelivery: db.prepare<{ id: number; owner: string; leaseUntil: number }>(SQL.leaseWebhookDelivery),
    deliveredWebhook: db.prepare<{ id: number; owner: string; at: number }>(SQL.deliveredWebhook),
    retryWebhook: db.prepare<{ id: number; owner: string; nextAttemptAt: number; error: string }>(SQL.retryWebhook),
    abandonWebhook: db.prepare<{ id: number; owner: string; at: number; error: string }>(SQL.abandonWebhook),
    nextWebhookDue: db.prepare<[], { t: number | null }>(SQL.nextWebhookDue),
    pruneFinishedWebhooks: db.prepare<{ before: number }>(SQL.pruneFinishedWebhooks),
    ping: db.prepare<[], unknown>(SQL.ping),
  };
}

/** A new API key's id: `key_` and 16 hex digits of a random UUID, short enough to type in `relay365 apikey revoke`. */
export function newApiKeyId(): string {
  return `key_${randomUUID().replaceAll('-', '').slice(0, 16)}`;
}

/** The row a new key is stored as, the same in SQLite and PostgreSQL. */
export function newApiKeyRow(input: NewApiKeyRecord): ApiKeyRow {
  const scopes = input.scopes ?? ['send', 'read'];
  return {
    id: newApiKeyId(),
    name: input.name,
    prefix: input.prefix,
    scopes: API_KEY_SCOPES.filter((s) => scopes.includes(s)).join(' '),
    senders: input.senders === undefined ? null : JSON.stringify(input.senders),
    created_at: (input.now ?? new Date()).getTime(),
    last_used_at: null,
    revoked_at: null,
  };
}

/** A row of either store's `http_api_keys` as a record. */
/**
 * The one active key an id, a name or a prefix names, for a revoke; undefined when none does.
 *
 * @throws Relay365Error `R365_API_KEY_UNKNOWN` when several active keys share the name.
 */
export function theActiveKey<R>(rows: readonly R[], idNameOrPrefix: string): R | undefined {
  if (rows.length > 1) {
    throw new Relay365Error('R365_API_KEY_UNKNOWN', `${rows.length} active API keys are named ${idNameOrPrefix}: revoke one by its id (relay365 apikey list).`);
  }
  return rows[0];
}

export function toApiKey(row: ApiKeyRow): ApiKeyRecord {
  return {
    id: row.id,
    name: row.name,
    prefix: row.prefix,
    scopes: row.scopes.split(' ').filter((s): s is ApiKeyScope => (API_KEY_SCOPES as readonly string[]).includes(s)),
    senders: row.senders === null ? undefined : (JSON.parse(row.senders) as string[]),
    createdAt: new Date(row.created_at),
    lastUsedAt: row.last_used_at === null ? undefined : new Date(row.last_used_at),
    revokedAt: row.revoked_at === null ? undefined : new Date(row.revoked_at),
  };
}

/** A row of either store's `http_webhook_deliveries` as a delivery. */
export function toWebhookDelivery(row: WebhookRow): WebhookDelivery {
  return {
    id: row.id,
    eventId: row.event_id,
    eventType: row.event_type as WebhookDelivery['eventType'],
    receiver: row.receiver,
    body: row.body,
    attempts: row.attempts,
    createdAt: new Date(row.created_at),
    nextAttemptAt: new Date(row.next_attempt_at),
  };
}
