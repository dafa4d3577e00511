/**
 * Every SQL statement of the PostgreSQL outbox, and its numbered migrations. Nothing else in relay365
 * writes SQL for this store: read this file to know exactly what the store does to the database.
 *
 * Every table lives in one schema (`queue.schema`, default `relay365`), written into each statement
 * here, so the store never depends on a connection's `search_path`. Times are `bigint` milliseconds
 * since the epoch, as in the SQLite store, so both stores do the same arithmetic on the same numbers;
 * `to_timestamp(created_at / 1000.0)` shows one as a date in psql. Parameters are positional (`$1`):
 * each statement's TSDoc lists them in order.
 */
import { escapeIdentifier } from 'pg';

/** One schema step. Versions only grow; a released step is never edited, a new one is added. */
export interface PgMigration {
  version: number;
  description: string;
  /** The DDL, for tables in the (quoted) schema `s`. */
  sql: (s: string) => string;
}

/**
 * The schema, oldest first. `migrate()` applies, in one transaction and under an advisory lock, every
 * step whose version is not in `schema_migrations`. PostgreSQL's DDL is transactional: a step that
 * fails leaves nothing behind.
 */
export const PG_MIGRATIONS: readonly PgMigration[] = [
  {
    version: 1,
    description: 'messages, attempts and sends',
    sql: (s) => `
      -- ids are compared byte by byte (COLLATE "C"), as SQLite's BINARY does: a UUIDv7 then sorts in
      -- the order it was made, whatever the database's locale.
      -- raw goes out of line (TOAST) by itself once a row passes 2 kB, so reading the other columns
      -- never touches a message's bytes; unlike SQLite, column order does not matter here.
      CREATE TABLE ${s}.messages (
        id               text COLLATE "C" PRIMARY KEY,
        mailbox          text,
        pool             text,
        envelope_from    text    NOT NULL,
        envelope_to      jsonb   NOT NULL,  -- array of addresses
        recipients       integer NOT NULL,  -- length of envelope_to, counted against recipientsPerDay
        size             integer NOT NULL,
        message_id       text,
        source           jsonb   NOT NULL,  -- MessageSource
        state            text    NOT NULL CHECK (state IN ('queued', 'sending', 'sent', 'deferred', 'failed', 'cancelled')),
        attempts         integer NOT NULL DEFAULT 0,
        created_at       bigint  NOT NULL,
        updated_at       bigint  NOT NULL,
        next_attempt_at  bigint  NOT NULL,
        lease_owner      text,
        lease_until      bigint,
        last_reply       text,
        last_class       text,
        last_explanation jsonb,             -- Explanation
        raw              bytea   NOT NULL,
        CHECK (mailbox IS NOT NULL OR pool IS NOT NULL)
      );

      -- Claim of a mailbox's messages that wait or are being sent, oldest first; what the due test
      -- needs rides along.
      CREATE INDEX messages_mailbox_due ON ${s}.messages (mailbox, created_at, id) INCLUDE (state, next_attempt_at, lease_until)
        WHERE state IN ('queued', 'deferred', 'sending');
      -- A mailbox's leases: its open connections, and when the soonest expires.
      CREATE INDEX messages_mailbox_sending ON ${s}.messages (mailbox, lease_until) WHERE state = 'sending';
      -- Claim of pool messages no member has taken yet.
      CREATE INDEX messages_pool_due ON ${s}.messages (pool, created_at, id) INCLUDE (next_attempt_at)
        WHERE mailbox IS NULL AND state IN ('queued', 'deferred');
      -- counts(), oldestWaiting() and list() by state.
      CREATE INDEX messages_state_created ON ${s}.messages (state, created_at, id);
      -- list() unfiltered and by mailbox, newest first.
      CREATE INDEX messages_created ON ${s}.messages (created_at, id);
      CREATE INDEX messages_mailbox_created ON ${s}.messages (mailbox, created_at, id);

      CREATE TABLE ${s}.attempts (
        id          bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        message_id  text    COLLATE "C" NOT NULL REFERENCES ${s}.messages (id) ON DELETE CASCADE,
        at          bigint  NOT NULL,
        mailbox     text    NOT NULL,
        reply       text,
        class       text    NOT NULL,
        explanation jsonb,
        duration_ms integer NOT NULL,
        owner       text    NOT NULL
      );
      CREATE INDEX attempts_message ON ${s}.attempts (message_id, id);

      -- One row per claimed message: the sliding windows of messagesPerMinute and recipientsPerDay,
      -- shared by every node. complete() moves a row to the time Exchange received the message.
      -- Rows older than the day window are pruned by claim().
      CREATE TABLE ${s}.sends (
        id         bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        mailbox    text    NOT NULL,
        at         bigint  NOT NULL,
        recipients integer NOT NULL,
        message_id text    COLLATE "C"
      );
      CREATE INDEX sends_mailbox_at ON ${s}.sends (mailbox, at) INCLUDE (recipients);
      CREATE INDEX sends_message ON ${s}.sends (message_id);
    `,
  },
];

/** Message columns in `StoredMessage` order, without raw (read only by `getRaw`). */
const MESSAGE_COLUMNS = `id, mailbox, pool, envelope_from, envelope_to, recipients, size, message_id, source, state, attempts,
  created_at, updated_at, next_attempt_at, lease_owner, lease_until, last_reply, last_class, last_explanation`;

/** A row of `messages` as `MESSAGE_COLUMNS` selects it (jsonb arrives parsed, bigint as a number). */
export interface PgMessageRow {
  id: string;
  mailbox: string | null;
  pool: string | null;
  envelope_from: string;
  envelope_to: string[];
  recipients: number;
  size: number;
  message_id: string | null;
  source: unknown;
  state: string;
  attempts: number;
  created_at: number;
  updated_at: number;
  next_attempt_at: number;
  lease_owner: string | null;
  lease_until: number | null;
  last_reply: string | null;
  last_class: string | null;
  last_explanation: unknown;
}

/** A row of `attempts`. */
export interface PgAttemptRow {
  at: number;
  mailbox: string;
  reply: string | null;
  class: string;
  explanation: unknown;
  duration_ms: number;
  owner: string;
}

/** What {@link PgStatements.usage} returns: the mailbox's live leases and its two windows, read at one moment. */
export interface PgUsageRow {
  live: number;
  soonest: number | null;
  minute_n: number;
  minute_oldest: number | null;
  day_n: number;
  day_recipients: number;
}

/**
 * A schema name relay365 accepts: a plain lower-case identifier, so that it needs no quoting in psql
 * either (PostgreSQL folds unquoted names to lower case).
 */
export const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * list(): newest first, keyset pagination on (created_at, id); the row-value comparison seeks
 * straight to the cursor in the index. $1 created_at, $2 id, $3 limit, then $4 state and/or mailbox.
 */
function listSql(s: string, filter: { state: boolean; mailbox: boolean }): string {
  const where = ['(created_at, id) < ($1, $2)'];
  if (filter.state) where.push('state = $4');
  if (filter.mailbox) where.push(`mailbox = $${filter.state ? 5 : 4}`);
  return `SELECT ${MESSAGE_COLUMNS} FROM ${s}.messages WHERE ${where.join(' AND ')} ORDER BY created_at DESC, id DESC LIMIT $3`;
}

/**
 * Run on every new connection. Raises `synchronous_commit` only where a DBA turned it off: with `off`
 * a commit is acknowledged before it reaches the WAL on disk, and a crash of the server would lose
 * messages already answered 250. Stricter settings (`remote_apply`, synchronous replicas) are kept.
 */
export const DURABLE_COMMITS = `SELECT set_config('synchronous_commit', 'on', false) WHERE current_setting('synchronous_commit') = 'off'`;

/** A transaction's three statements, for {@link pgTransaction} in pg-database.ts. */
export const TRANSACTION = { begin: 'BEGIN', commit: 'COMMIT', rollback: 'ROLLBACK' } as const;

/**
 * The statements of a migration ledger in `schema`: the outbox's `schema_migrations`, and the ledgers
 * of the other tables relay365 keeps beside it (the HTTP store's `http_schema_migrations`), each with
 * its own numbered steps. All of them take the same advisory lock, so DDL in one schema never runs
 * twice at once, whichever part runs it.
 */
export function migrationLedgerStatements(schema: string, ledger: string) {
  const s = escapeIdentifier(schema);
  const t = `${s}.${escapeIdentifier(ledger)}`;
  return {
    /**
     * Serializes migrations (and the CREATE SCHEMA before them) across nodes starting at once, for the
     * rest of the transaction. The single-key form: its key space does not overlap the two-key form
     * that the mailbox locks use (PostgreSQL, 9.27.10 "Advisory Lock Functions"). $1 schema name.
     */
    lockMigrations: `SELECT pg_advisory_xact_lock(hashtext('relay365 migrate ' || $1))`,
    schemaExists: `SELECT 1 FROM pg_namespace WHERE nspname = $1`,
    /** Only when missing: CREATE SCHEMA IF NOT EXISTS checks the CREATE right on the database first, which a role owning only the schema lacks. */
    createSchema: `CREATE SCHEMA ${s}`,
    createMigrationsTable: `CREATE TABLE IF NOT EXISTS ${t} (version integer PRIMARY KEY, description text NOT NULL, applied_at bigint NOT NULL)`,
    appliedVersions: `SELECT version FROM ${t} ORDER BY version`,
    /** $1 version, $2 description, $3 applied_at. */
    recordMigration: `INSERT INTO ${t} (version, description, applied_at) VALUES ($1, $2, $3)`,
  } as const;
}

/** The statements of a migration ledger, as {@link migrationLedgerStatements} makes them. */
export type PgLedgerStatements = ReturnType<typeof migrationLedgerStatements>;

/** The statements for the tables in `schema`, as text. */
export function pgStatements(schema: string) {
  const s = escapeIdentifier(schema);
  return {
    ...TRANSACTION,
    /** Whether the server answers (an open without migrations). */
    ping: 'SELECT 1',
    ...migrationLedgerStatements(schema, 'schema_migrations'),

    /** $1 id, $2 mailbox, $3 pool, $4 envelope_from, $5 envelope_to (JSON), $6 recipients, $7 size, $8 message_id, $9 source (JSON), $10 created_at, $11 next_attempt_at, $12 raw. */
    insertMessage: `INSERT INTO ${s}.messages (id, mailbox, pool, envelope_from, envelope_to, recipients, size, message_id, source, state,
        attempts, created_at, updated_at, next_attempt_at, raw)
      VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9::jsonb, 'queued', 0, $10, $10, $11, $12)
      RETURNING ${MESSAGE_COLUMNS}`,
    /** $1 id. */
    getMessage: `SELECT ${MESSAGE_COLUMNS} FROM ${s}.messages WHERE id = $1`,
    /**
     * One slice of a message's bytes: $1 id, $2 offset (from 1), $3 length. pg reads a result row into
     * one string, hex-encoded (twice the size); 1 MB slices read a 35 MB message about 3 times faster
     * than one row, with a fraction of the memory.
     */
    getRawSlice: `SELECT substring(raw FROM $2 FOR $3) AS part FROM ${s}.messages WHERE id = $1`,
    /** $1 message id. */
    attempts: `SELECT at, mailbox, reply, class, explanation, duration_ms, owner FROM ${s}.attempts WHERE message_id = $1 ORDER BY id`,

    /**
     * Serializes the claims of one mailbox across every node until the transaction ends, so each sees
     * the quota the previous one left. complete() takes it too, before it moves a send in the windows.
     * $1 schema name, $2 mailbox.
     */
    lockMailbox: `SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))`,
    /** $1 mailbox, $2 before: sends older than the day window only take space. */
    pruneSends: `DELETE FROM ${s}.sends WHERE mailbox = $1 AND at <= $2`,
    /**
     * Live leases (open connections), the sends of the minute window and those of the day window, in
     * one statement so the numbers describe the same moment. $1 mailbox, $2 now, $3 minute start
     * (exclusive), $4 day start (exclusive).
     */
    usage: `SELECT l.live, l.soonest, m.n AS minute_n, m.oldest AS minute_oldest, d.n AS day_n, d.recipients AS day_recipients
      FROM (SELECT count(*) AS live, min(lease_until) AS soonest FROM ${s}.messages WHERE mailbox = $1 AND state = 'sending' AND lease_until >= $2) l,
           (SELECT count(*) AS n, min(at) AS oldest FROM ${s}.sends WHERE mailbox = $1 AND at > $3) m,
           (SELECT count(*) AS n, coalesce(sum(recipients), 0) AS recipients FROM ${s}.sends WHERE mailbox = $1 AND at > $4) d`,
    /**
     * When enough recipients have left the day window for `needed` more to fit: the time of the send
     * whose running total, oldest first, reaches `needed` (or of the last one). The caller adds dayMs.
     * $1 mailbox, $2 day start (exclusive), $3 needed.
     */
    recipientsFreedAt: `SELECT coalesce(
        (SELECT at FROM (SELECT at, id, sum(recipients) OVER (ORDER BY at, id) AS freed FROM ${s}.sends WHERE mailbox = $1 AND at > $2) w
          WHERE freed >= $3 ORDER BY at, id LIMIT 1),
        (SELECT max(at) FROM ${s}.sends WHERE mailbox = $1 AND at > $2)) AS at`,

    /**
     * A mailbox's due messages, oldest first, locked for this claim: queued and deferred ones from
     * their next attempt time, and ones whose lease expired (their worker died). One ordered walk of
     * `messages_mailbox_due` that stops at the limit, so the cost stays flat however long the queue is.
     * A row another node changed meanwhile is tested again in its new version (READ COMMITTED's
     * recheck); one another transaction holds is skipped, never waited for. $1 mailbox, $2 now, $3 limit.
     */
    dueForMailbox: `SELECT ${MESSAGE_COLUMNS} FROM ${s}.messages
      WHERE mailbox = $1 AND state IN ('queued', 'deferred', 'sending')
        AND ((state <> 'sending' AND next_attempt_at <= $2) OR (state = 'sending' AND lease_until < $2))
      ORDER BY created_at, id LIMIT $3
      FOR UPDATE SKIP LOCKED`,
    /**
     * A pool's due messages no member has taken, oldest first, locked for this claim (run once per pool,
     * merged by the store). SKIP LOCKED lets members on other nodes claim at the same moment: each
     * takes the oldest rows the others have not locked, instead of all queueing for the same few.
     * $1 pool, $2 now, $3 limit.
     */
    dueForPool: `SELECT ${MESSAGE_COLUMNS} FROM ${s}.messages
      WHERE pool = $1 AND mailbox IS NULL AND state IN ('queued', 'deferred') AND next_attempt_at <= $2
      ORDER BY created_at, id LIMIT $3
      FOR UPDATE SKIP LOCKED`,
    /** $1 mailbox, $2 owner, $3 lease_until, $4 updated_at, $5 ids (text[]). */
    leaseMessages: `UPDATE ${s}.messages SET state = 'sending', mailbox = $1, lease_owner = $2, lease_until = $3, updated_at = $4 WHERE id = ANY($5::text[])`,
    /** One send per leased message. $1 mailbox, $2 at, $3 recipients (int[]), $4 message ids (text[]). */
    insertSends: `INSERT INTO ${s}.sends (mailbox, at, recipients, message_id) SELECT $1, $2, r, m FROM unnest($3::int[], $4::text[]) AS u (r, m)`,

    /**
     * Takes the lock of the mailbox that holds the message's lease, when `owner` holds it; no row
     * means the lease is lost and nothing else is done. $1 schema name, $2 id, $3 owner.
     */
    lockLeaseMailbox: `SELECT pg_advisory_xact_lock(hashtext($1), hashtext(mailbox)) FROM ${s}.messages WHERE id = $2 AND lease_owner = $3 AND state = 'sending'`,
    /**
     * Only the lease holder completes. A deferred pool message goes back to its pool, so any member
     * (not only one that may be throttled or paused) takes the retry. A claim counts a send when it
     * starts; Exchange counts it when it has received the message: the send moves to the end of the
     * attempt, keeping relay365's windows a superset of Exchange's, whatever the latency. Then the
     * attempt is recorded. One statement; its row count is 1 when the lease was held.
     * $1 id, $2 owner, $3 state, $4 next_attempt_at, $5 reply, $6 class, $7 explanation (JSON),
     * $8 at (attempt time, also updated_at), $9 attempt mailbox, $10 duration_ms, $11 attempt owner.
     */
    completeMessage: `WITH done AS (
        UPDATE ${s}.messages SET state = $3, attempts = attempts + 1, next_attempt_at = $4,
          lease_owner = NULL, lease_until = NULL, last_reply = $5, last_class = $6, last_explanation = $7::jsonb,
          updated_at = $8, mailbox = CASE WHEN $3 = 'deferred' AND pool IS NOT NULL THEN NULL ELSE mailbox END
        WHERE id = $1 AND lease_owner = $2 AND state = 'sending'
        RETURNING id),
      touched AS (
        UPDATE ${s}.sends SET at = greatest(at, $8) WHERE id = (SELECT max(id) FROM ${s}.sends WHERE message_id = $1) AND EXISTS (SELECT 1 FROM done))
      INSERT INTO ${s}.attempts (message_id, at, mailbox, reply, class, explanation, duration_ms, owner)
        SELECT id, $8, $9, $5, $6, $7::jsonb, $10, $11 FROM done`,

    /** An operator's retry: due now; a pool message goes back to its pool. $1 id, $2 now. */
    retryMessage: `UPDATE ${s}.messages SET state = 'queued', next_attempt_at = $2, updated_at = $2,
        mailbox = CASE WHEN pool IS NOT NULL THEN NULL ELSE mailbox END
      WHERE id = $1 AND state IN ('queued', 'deferred', 'failed')`,
    /** $1 id, $2 now. */
    cancelMessage: `UPDATE ${s}.messages SET state = 'cancelled', updated_at = $2 WHERE id = $1 AND state IN ('queued', 'deferred', 'failed')`,

    list: {
      all: listSql(s, { state: false, mailbox: false }),
      byState: listSql(s, { state: true, mailbox: false }),
      byMailbox: listSql(s, { state: false, mailbox: true }),
      byStateAndMailbox: listSql(s, { state: true, mailbox: true }),
    },
    counts: `SELECT state, count(*) AS n FROM ${s}.messages GROUP BY state`,
    /** $1 mailbox. */
    countsForMailbox: `SELECT state, count(*) AS n FROM ${s}.messages WHERE mailbox = $1 GROUP BY state`,
    /** One index seek per state rather than a scan: min() over a single equality range. */
    oldestWaiting: `SELECT least(
        (SELECT min(created_at) FROM ${s}.messages WHERE state = 'queued'),
        (SELECT min(created_at) FROM ${s}.messages WHERE state = 'deferred')) AS t`,
    /** A mailbox's and its pools' next due time; a live lease becomes due the millisecond after it expires. $1 mailbox, $2 pools (text[]). */
    nextDue: `SELECT least(
        (SELECT min(next_attempt_at) FROM ${s}.messages WHERE mailbox = $1 AND state = 'queued'),
        (SELECT min(next_attempt_at) FROM ${s}.messages WHERE mailbox = $1 AND state = 'deferred'),
        (SELECT min(lease_until) + 1 FROM ${s}.messages WHERE mailbox = $1 AND state = 'sending'),
        (SELECT min(next_attempt_at) FROM ${s}.messages WHERE pool = ANY($2::text[]) AND mailbox IS NULL AND state IN ('queued', 'deferred'))) AS t`,
  } as const;
}

/** The statements of one schema, as {@link pgStatements} makes them. */
export type PgStatements = ReturnType<typeof pgStatements>;
