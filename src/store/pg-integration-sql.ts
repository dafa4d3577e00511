/**
 * Every SQL statement of the PostgreSQL store of API keys, idempotency keys and webhook deliveries (the HTTP
 * front door's records and the webhook dispatcher's), and its numbered migrations. Nothing
 * else writes SQL for these tables: read this file to know exactly what the store does to them.
 *
 * The tables sit in the outbox's schema (`queue.schema`), prefixed `http_`, as in the SQLite file,
 * and number their steps on their own (part `http` of the schema's one ledger, store/pg-database.ts),
 * so the integration store never depends on the outbox's steps. Times are `bigint` milliseconds since
 * the epoch, as in the SQLite store.
 * Parameters are positional (`$1`): each statement's TSDoc lists them in order.
 */
import { escapeIdentifier } from 'pg';
import type { PgMigration } from './pg-database.js';

/** The schema, oldest first; a released step is never edited, a new one is added. */
export const PG_INTEGRATION_MIGRATIONS: readonly PgMigration[] = [
  {
    version: 1,
    description: 'API keys, idempotency keys and webhook deliveries',
    sql: (s) => `
      -- Hashes and ids are compared byte by byte (COLLATE "C"), whatever the database's locale.
      CREATE TABLE ${s}.http_api_keys (
        id           text   COLLATE "C" PRIMARY KEY,
        name         text   NOT NULL,
        prefix       text   NOT NULL,
        hash         text   COLLATE "C" NOT NULL UNIQUE,  -- hex SHA-256 of the whole key
        created_at   bigint NOT NULL,
        last_used_at bigint,
        revoked_at   bigint
      );

      CREATE TABLE ${s}.http_idempotency_keys (
        scope        text    COLLATE "C" NOT NULL,  -- the API key's id
        key_hash     text    COLLATE "C" NOT NULL,  -- hex SHA-256 of the Idempotency-Key header
        fingerprint  text    NOT NULL,              -- hex SHA-256 of the request
        status       integer,                       -- NULL while the first request is processed
        body         text,
        created_at   bigint  NOT NULL,
        expires_at   bigint  NOT NULL,
        locked_until bigint,
        PRIMARY KEY (scope, key_hash)
      );
      CREATE INDEX http_idempotency_keys_expires ON ${s}.http_idempotency_keys (expires_at);

      CREATE TABLE ${s}.http_webhook_deliveries (
        id              bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        event_id        text    NOT NULL,
        event_type      text    NOT NULL,
        receiver        text    NOT NULL,  -- the receiver's URL
        body            text    NOT NULL,  -- the exact JSON POSTed on every attempt
        state           text    NOT NULL CHECK (state IN ('pending', 'delivered', 'abandoned')),
        attempts        integer NOT NULL DEFAULT 0,
        created_at      bigint  NOT NULL,
        next_attempt_at bigint  NOT NULL,
        lease_owner     text,
        lease_until     bigint,
        last_error      text,
        finished_at     bigint,
        UNIQUE (event_id, receiver)
      );
      -- The claim's walk: pending deliveries in the order they become due.
      CREATE INDEX http_webhook_deliveries_due ON ${s}.http_webhook_deliveries (next_attempt_at, id) WHERE state = 'pending';
      CREATE INDEX http_webhook_deliveries_finished ON ${s}.http_webhook_deliveries (finished_at) WHERE finished_at IS NOT NULL;
    `,
  },
  {
    version: 2,
    description: 'API key scopes and senders',
    // Keys made before scopes existed keep what they could do (everything); new keys get send and read.
    sql: (s) => `
      ALTER TABLE ${s}.http_api_keys ADD COLUMN scopes text NOT NULL DEFAULT 'send read admin';
      ALTER TABLE ${s}.http_api_keys ADD COLUMN senders text;  -- JSON array of sender rules; NULL: any
    `,
  },
];

/** API key columns, as `ApiKeyRow` (integration-store.ts) has them. */
const API_KEY_COLUMNS = 'id, name, prefix, scopes, senders, created_at, last_used_at, revoked_at';

/** A row of `http_idempotency_keys` as the reservation reads it. */
export interface PgIdempotencyRow {
  fingerprint: string;
  status: number | null;
  body: string | null;
  expires_at: number;
  locked_until: number | null;
}

/**
 * Rows each prune deletes at most. A prune skips the rows another transaction holds and never waits,
 * so it adds no lock wait (and no deadlock) to the operation it runs before; what one leaves, the next
 * one takes.
 */
export const PRUNE_BATCH = 500;

/** The statements for the HTTP tables in `schema`, as text. */
export function pgIntegrationStatements(schema: string) {
  const s = escapeIdentifier(schema);
  return {
    ping: 'SELECT 1',

    /** $1 id, $2 name, $3 prefix, $4 hash, $5 created_at, $6 scopes, $7 senders. */
    insertApiKey: `INSERT INTO ${s}.http_api_keys (id, name, prefix, hash, created_at, scopes, senders) VALUES ($1, $2, $3, $4, $5, $6, $7)
      RETURNING ${API_KEY_COLUMNS}`,
    listApiKeys: `SELECT ${API_KEY_COLUMNS} FROM ${s}.http_api_keys ORDER BY created_at, id`,
    /** The active key with this hash. $1 hash. */
    findApiKey: `SELECT ${API_KEY_COLUMNS} FROM ${s}.http_api_keys WHERE hash = $1 AND revoked_at IS NULL`,
    /**
     * At most once a minute per key: every request of a busy client would otherwise write a row. $1 id,
     * $2 now (cast: `$2 - 60000` alone would make PostgreSQL type it integer, too small for a time).
     */
    touchApiKey: `UPDATE ${s}.http_api_keys SET last_used_at = $2::bigint WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2::bigint - 60000)`,
    /** The active keys an operator's reference names, locked until the revocation commits. $1 id, name or prefix. */
    findActiveKeysByRef: `SELECT ${API_KEY_COLUMNS} FROM ${s}.http_api_keys
      WHERE revoked_at IS NULL AND (id = $1 OR name = $1 OR prefix = $1) ORDER BY created_at, id
      FOR UPDATE`,
    /** $1 id, $2 now. */
    revokeApiKey: `UPDATE ${s}.http_api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL
      RETURNING ${API_KEY_COLUMNS}`,

    /** Expired keys, a batch at a time (see {@link PRUNE_BATCH}). $1 now, $2 batch. */
    pruneIdempotencyKeys: `DELETE FROM ${s}.http_idempotency_keys WHERE (scope, key_hash) IN (
        SELECT scope, key_hash FROM ${s}.http_idempotency_keys WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2
        FOR UPDATE SKIP LOCKED)`,
    /**
     * The first step of a reservation: a new key is inserted and so reserved. When another node
     * inserts the same key at the same moment, this waits for its commit (the primary key's unique
     * check), then does nothing. Returns a row only when it inserted.
     * $1 scope, $2 key_hash, $3 fingerprint, $4 now, $5 expires_at, $6 locked_until.
     */
    insertIdempotencyKey: `INSERT INTO ${s}.http_idempotency_keys (scope, key_hash, fingerprint, created_at, expires_at, locked_until)
      VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (scope, key_hash) DO NOTHING RETURNING 1 AS inserted`,
    /** The key another request holds, locked until the reservation commits, so two nodes never both take it over. $1 scope, $2 key_hash. */
    lockIdempotencyKey: `SELECT fingerprint, status, body, expires_at, locked_until FROM ${s}.http_idempotency_keys
      WHERE scope = $1 AND key_hash = $2 FOR UPDATE`,
    /** An expired key (not pruned yet) starts again as new. $1 scope, $2 key_hash, $3 fingerprint, $4 now, $5 expires_at, $6 locked_until. */
    renewIdempotencyKey: `UPDATE ${s}.http_idempotency_keys SET fingerprint = $3, status = NULL, body = NULL, created_at = $4, expires_at = $5,
        locked_until = $6
      WHERE scope = $1 AND key_hash = $2`,
    /** An abandoned reservation (its request's process died) is taken over. $1 scope, $2 key_hash, $3 locked_until. */
    relockIdempotencyKey: `UPDATE ${s}.http_idempotency_keys SET locked_until = $3 WHERE scope = $1 AND key_hash = $2 AND status IS NULL`,
    /** $1 scope, $2 key_hash, $3 status, $4 body. */
    saveIdempotentResponse: `UPDATE ${s}.http_idempotency_keys SET status = $3, body = $4, locked_until = NULL WHERE scope = $1 AND key_hash = $2`,
    /** Only a reservation without a response: a saved answer stays until it expires. $1 scope, $2 key_hash. */
    releaseIdempotencyKey: `DELETE FROM ${s}.http_idempotency_keys WHERE scope = $1 AND key_hash = $2 AND status IS NULL`,

    /**
     * Many deliveries in one statement; a repeated (event_id, receiver) pair is ignored.
     * $1 event_ids (text[]), $2 event_types (text[]), $3 receivers (text[]), $4 bodies (text[]), $5 created_ats (bigint[]).
     */
    insertWebhookDeliveries: `INSERT INTO ${s}.http_webhook_deliveries (event_id, event_type, receiver, body, state, created_at, next_attempt_at)
      SELECT e, t, r, b, 'pending', c, c FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[]) AS u (e, t, r, b, c)
      ON CONFLICT (event_id, receiver) DO NOTHING`,
    /**
     * Leases up to $4 due deliveries: pending and due, and not leased, or leased by a worker whose lease
     * ran out (it died). A row another node is claiming is skipped, never waited for, and a row changed
     * meanwhile is tested again in its new version (READ COMMITTED's recheck under FOR UPDATE), so two
     * nodes never lease the same delivery at once. Rows come back in no particular order.
     * $1 owner, $2 lease_until, $3 now, $4 limit.
     */
    claimWebhookDeliveries: `UPDATE ${s}.http_webhook_deliveries d SET lease_owner = $1, lease_until = $2
      FROM (SELECT id FROM ${s}.http_webhook_deliveries
        WHERE state = 'pending' AND next_attempt_at <= $3 AND (lease_until IS NULL OR lease_until < $3)
        ORDER BY next_attempt_at, id LIMIT $4
        FOR UPDATE SKIP LOCKED) due
      WHERE d.id = due.id
      RETURNING d.id, d.event_id, d.event_type, d.receiver, d.body, d.attempts, d.created_at, d.next_attempt_at`,
    /** Only the lease holder records an attempt; its row count is 1 when it held it. $1 id, $2 owner, $3 finished_at. */
    deliveredWebhook: `UPDATE ${s}.http_webhook_deliveries SET state = 'delivered', attempts = attempts + 1, finished_at = $3, last_error = NULL,
        lease_owner = NULL, lease_until = NULL
      WHERE id = $1 AND lease_owner = $2 AND state = 'pending'`,
    /** $1 id, $2 owner, $3 next_attempt_at, $4 error. */
    retryWebhook: `UPDATE ${s}.http_webhook_deliveries SET attempts = attempts + 1, next_attempt_at = $3, last_error = $4,
        lease_owner = NULL, lease_until = NULL
      WHERE id = $1 AND lease_owner = $2 AND state = 'pending'`,
    /** $1 id, $2 owner, $3 finished_at, $4 error. */
    abandonWebhook: `UPDATE ${s}.http_webhook_deliveries SET state = 'abandoned', attempts = attempts + 1, finished_at = $3, last_error = $4,
        lease_owner = NULL, lease_until = NULL
      WHERE id = $1 AND lease_owner = $2 AND state = 'pending'`,
    /** The earliest moment a pending delivery may be sent: its next attempt, or the millisecond after its lease ends. */
    nextWebhookDue: `SELECT min(greatest(next_attempt_at, coalesce(lease_until + 1, 0))) AS t FROM ${s}.http_webhook_deliveries WHERE state = 'pending'`,
    /** Finished deliveries older than $1, a batch at a time ($2, see {@link PRUNE_BATCH}). */
    pruneFinishedWebhooks: `DELETE FROM ${s}.http_webhook_deliveries WHERE id IN (
        SELECT id FROM ${s}.http_webhook_deliveries WHERE finished_at IS NOT NULL AND finished_at < $1 LIMIT $2
        FOR UPDATE SKIP LOCKED)`,
  } as const;
}

/** The statements of one schema, as {@link pgIntegrationStatements} makes them. */
export type PgIntegrationStatements = ReturnType<typeof pgIntegrationStatements>;
