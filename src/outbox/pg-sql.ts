/**
 * Every SQL statement of the PostgreSQL outbox, and its numbered migrations. Nothing else in relay365
 * writes SQL for this store: read this file to know exactly what the store does to the database. The
 * message column list and the rows it returns are shared with the SQLite store (rows.ts).
 *
 * Every table lives in one schema (`queue.schema`, default `relay365`), written into each statement
 * here, so the store never depends on a connection's `search_path`. Times are `bigint` milliseconds
 * since the epoch, as in the SQLite store, so both stores do the same arithmetic on the same numbers;
 * `to_timestamp(created_at / 1000.0)` shows one as a date in psql. Parameters are positional (`$1`):
 * each statement's TSDoc lists them in order.
 */
import { escapeIdentifier } from 'pg';
import { TRANSACTION, type PgMigration } from '../store/pg-database.js';
import { pgList } from './list-sql.js';
import { MESSAGE_COLUMNS, type AttemptRow, type MessageRow, type PauseRow, type RecipientRow, type SuppressionRow } from './rows.js';

export type { PgMigration } from '../store/pg-database.js';
/** The ledger of before, kept for tests that build an old schema (see store/pg-database.ts). */
export { legacyLedgerStatements as migrationLedgerStatements } from '../store/pg-database.js';

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
  {
    // Numbered as the SQLite step that adds the same tables (versions 2 to 4 there changed SQLite's
    // own layout and have no PostgreSQL counterpart), so one number names one feature in both stores.
    version: 5,
    description: 'per-recipient state, the bounce ledger, bounce readers and the suppression list',
    sql: (s) => `
      -- One row per envelope recipient, in envelope order (position), written by enqueue in the
      -- message's own statement.
      CREATE TABLE ${s}.message_recipients (
        message_id  text    COLLATE "C" NOT NULL REFERENCES ${s}.messages (id) ON DELETE CASCADE,
        position    integer NOT NULL,
        address     text    NOT NULL,
        state       text    NOT NULL CHECK (state IN ('pending', 'accepted', 'refused', 'bounced', 'delayed')),
        reply       text,
        explanation jsonb,
        dsn_status  text,
        remote_mta  text,
        report_id   text,
        updated_at  bigint  NOT NULL,
        PRIMARY KEY (message_id, position)
      );
      -- Messages that existed before: their recipients from the envelope, in the state the message's own
      -- implies (a sent message's were taken, a failed one's refused with its last reply).
      INSERT INTO ${s}.message_recipients (message_id, position, address, state, reply, explanation, updated_at)
        SELECT m.id, e.ord - 1, e.address,
          CASE m.state WHEN 'sent' THEN 'accepted' WHEN 'failed' THEN 'refused' ELSE 'pending' END,
          CASE m.state WHEN 'failed' THEN m.last_reply END,
          CASE m.state WHEN 'failed' THEN m.last_explanation END,
          m.updated_at
        FROM ${s}.messages m, jsonb_array_elements_text(m.envelope_to) WITH ORDINALITY AS e (address, ord);
      -- recordBounce() finds the original by the Message-ID an NDR quotes.
      CREATE INDEX messages_message_id ON ${s}.messages (message_id) WHERE message_id IS NOT NULL;

      -- Every NDR entry applied (or found to match nothing), so a report read twice (a restart before
      -- the delta cursor was saved, two readers after a lost lease) changes nothing the second time.
      -- recipient is lower case; message_id is the relay365 message it matched, if any.
      CREATE TABLE ${s}.bounce_reports (
        mailbox             text   NOT NULL,
        report_id           text   NOT NULL,
        recipient           text   NOT NULL,
        original_message_id text   NOT NULL,
        action              text   NOT NULL,
        status              text   NOT NULL,
        message_id          text   COLLATE "C",
        received_at         bigint NOT NULL,
        recorded_at         bigint NOT NULL,
        PRIMARY KEY (mailbox, report_id, recipient)
      );

      -- Per mailbox: the Graph delta cursor of its Inbox reader, and which node holds the lease to read it.
      CREATE TABLE ${s}.bounce_readers (
        mailbox     text PRIMARY KEY,
        cursor      text,
        lease_owner text,
        lease_until bigint
      );

      -- address_key: the address in lower case, so one address has one entry however it is spelt.
      CREATE TABLE ${s}.suppressions (
        address_key text   COLLATE "C" PRIMARY KEY,
        address     text   NOT NULL,
        reason      text   NOT NULL,
        dsn_status  text,
        message_id  text,
        source      text   NOT NULL CHECK (source IN ('bounce', 'manual')),
        created_at  bigint NOT NULL
      );
      -- suppressions(): newest first, keyset pagination.
      CREATE INDEX suppressions_created ON ${s}.suppressions (created_at, address_key);
    `,
  },
  {
    version: 6,
    description: 'paused mailboxes, so a pause outlives a restart and every node sees it',
    sql: (s) => `
      -- One row per paused mailbox, deleted when it resumes (a send worked, or an operator's resume
      -- was honoured). since: when it paused; updated_at: when a worker last met the cause;
      -- resume_requested_at: an operator's relay365 queue resume, until a worker has acted on it.
      CREATE TABLE ${s}.mailbox_pauses (
        mailbox             text    PRIMARY KEY,
        class               text    NOT NULL CHECK (class IN ('auth', 'blocked')),
        reply               text,
        explanation         jsonb,
        since               bigint  NOT NULL,
        updated_at          bigint  NOT NULL,
        owner               text    NOT NULL,
        resume_requested_at bigint
      );
    `,
  },
  {
    version: 7,
    description: 'retention and privacy at rest: when a finished message lost its content, and which bodies are encrypted',
    sql: (s) => `
      -- body_deleted_at: when retention (queue.retention.bodies) or relay365 queue purge --bodies-only
      -- emptied raw; the message, its attempts and recipients stay. body_encrypted: raw is AES-256-GCM
      -- under the secret key (src/outbox/body-crypto.ts). Both additive: an older node ignores them.
      ALTER TABLE ${s}.messages ADD COLUMN body_deleted_at bigint, ADD COLUMN body_encrypted boolean NOT NULL DEFAULT false;
      -- The sweeps, oldest finished first: bodies still there, and every finished message.
      CREATE INDEX messages_finished_bodies ON ${s}.messages (updated_at, id)
        WHERE state IN ('sent', 'failed', 'cancelled') AND body_deleted_at IS NULL;
      CREATE INDEX messages_finished ON ${s}.messages (updated_at, id) WHERE state IN ('sent', 'failed', 'cancelled');
    `,
  },
  {
    version: 8,
    description: 'scheduled send, tags and metadata, and search by recipient and tag',
    sql: (s) => `
      -- send_at: the time a caller scheduled the message for; labels: { tags, metadata } or NULL. Additive.
      ALTER TABLE ${s}.messages ADD COLUMN send_at bigint, ADD COLUMN labels jsonb;
      -- list({ tag }): one row per tag of a message, written in the message's own statement.
      CREATE TABLE ${s}.message_tags (
        tag        text NOT NULL,
        message_id text COLLATE "C" NOT NULL REFERENCES ${s}.messages (id) ON DELETE CASCADE,
        PRIMARY KEY (tag, message_id)
      );
      CREATE INDEX message_tags_message ON ${s}.message_tags (message_id);
      -- list({ recipient }): the messages of an address, whatever its case.
      CREATE INDEX message_recipients_address ON ${s}.message_recipients (lower(address));
    `,
  },
];

/**
 * The rows of rows.ts as pg returns them: jsonb arrives parsed, bigint as a number. Every statement
 * that returns messages selects `MESSAGE_COLUMNS`.
 */
export type PgMessageRow = MessageRow<unknown>;
export type PgRecipientRow = RecipientRow<unknown>;
export type PgAttemptRow = AttemptRow<unknown>;
export type PgPauseRow = PauseRow<unknown>;
export type PgSuppressionRow = SuppressionRow;

/** What {@link PgStatements.usage} returns: the mailbox's live leases and its two windows, read at one moment. */
export interface PgUsageRow {
  live: number;
  soonest: number | null;
  minute_n: number;
  minute_oldest: number | null;
  day_n: number;
  day_recipients: number;
}

/** The statements for the tables in `schema`, as text. */
export function pgStatements(schema: string) {
  const s = escapeIdentifier(schema);
  return {
    ...TRANSACTION,
    /** Whether the server answers (an open without migrations). */
    ping: 'SELECT 1',
    /** list() builds its statement from the query's filters (list-sql.ts). */
    listDialect: pgList(`${s}.`),

    /**
     * The message and one `pending` row per envelope recipient, in one statement (so one commit).
     * $1 id, $2 mailbox, $3 pool, $4 envelope_from, $5 envelope_to (JSON), $6 recipients, $7 size, $8 message_id, $9 source (JSON), $10 created_at, $11 next_attempt_at, $12 raw, $13 body_encrypted, $14 send_at, $15 labels (JSON or NULL).
     * The tags of the labels get their rows in the same statement.
     */
    insertMessage: `WITH m AS (
        INSERT INTO ${s}.messages (id, mailbox, pool, envelope_from, envelope_to, recipients, size, message_id, source, state,
          attempts, created_at, updated_at, next_attempt_at, raw, body_encrypted, send_at, labels)
        VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9::jsonb, 'queued', 0, $10, $10, $11, $12, $13, $14, $15::jsonb)
        RETURNING ${MESSAGE_COLUMNS}),
      r AS (
        INSERT INTO ${s}.message_recipients (message_id, position, address, state, updated_at)
        SELECT m.id, e.ord - 1, e.address, 'pending', m.created_at FROM m, jsonb_array_elements_text(m.envelope_to) WITH ORDINALITY AS e (address, ord)),
      t AS (
        INSERT INTO ${s}.message_tags (tag, message_id)
        SELECT g.tag, m.id FROM m, jsonb_array_elements_text(coalesce(m.labels -> 'tags', '[]'::jsonb)) AS g (tag))
      SELECT * FROM m`,
    /** $1 id. */
    getMessage: `SELECT ${MESSAGE_COLUMNS} FROM ${s}.messages WHERE id = $1`,
    /**
     * One slice of a message's bytes: $1 id, $2 offset (from 1), $3 length. pg reads a result row into
     * one string, hex-encoded (twice the size); 1 MB slices read a 35 MB message about 3 times faster
     * than one row, with a fraction of the memory.
     */
    getRawSlice: `SELECT substring(raw FROM $2 FOR $3) AS part, body_encrypted AS encrypted FROM ${s}.messages WHERE id = $1 AND body_deleted_at IS NULL`,
    /**
     * Retention and purge, a batch at a time: finished messages last changed before $2 in the states
     * $3 (text[]), oldest first, at most $4. SKIP LOCKED: nodes sweeping at once take different rows,
     * and a row an operator is retrying is left for the next sweep. $1 now.
     */
    deleteBodies: `UPDATE ${s}.messages SET raw = ''::bytea, body_encrypted = false, body_deleted_at = $1
      WHERE id IN (SELECT id FROM ${s}.messages
          WHERE state IN ('sent', 'failed', 'cancelled') AND body_deleted_at IS NULL AND updated_at < $2 AND state = ANY($3::text[])
          ORDER BY updated_at, id LIMIT $4 FOR UPDATE SKIP LOCKED)
        AND state IN ('sent', 'failed', 'cancelled')`,
    /** The message with its attempts and recipients (ON DELETE CASCADE). $1 before, $2 states (text[]), $3 limit. */
    deleteFinished: `DELETE FROM ${s}.messages
      WHERE id IN (SELECT id FROM ${s}.messages
          WHERE state IN ('sent', 'failed', 'cancelled') AND updated_at < $1 AND state = ANY($2::text[])
          ORDER BY updated_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)
        AND state IN ('sent', 'failed', 'cancelled')`,
    /** What purge would delete: $1 before, $2 states (text[]), $3 bodies only. */
    countFinished: `SELECT count(*)::int AS n FROM ${s}.messages
      WHERE state IN ('sent', 'failed', 'cancelled') AND updated_at < $1 AND state = ANY($2::text[]) AND (NOT $3 OR body_deleted_at IS NULL)`,
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

    /**
     * Exchange's answers for a message's recipients, after its outcome: each given one by address (a
     * repeated address gets the same answer), then the still-pending others take $4 when it is not
     * null. The second update sees the rows as they were before the first (one snapshot), hence the
     * exclusion. $1 message id, $2 answers (JSON array of {address, state, reply, explanation}),
     * $3 updated_at, $4 state for the rest, $5 their reply, $6 their explanation (JSON).
     */
    answerRecipients: `WITH given AS (
        UPDATE ${s}.message_recipients r SET state = g.state, reply = g.reply, explanation = g.explanation, updated_at = $3
        FROM jsonb_to_recordset($2::jsonb) AS g (address text, state text, reply text, explanation jsonb)
        WHERE r.message_id = $1 AND r.address = g.address
        RETURNING r.position)
      UPDATE ${s}.message_recipients SET state = $4, reply = $5, explanation = $6::jsonb, updated_at = $3
      WHERE message_id = $1 AND state = 'pending' AND $4::text IS NOT NULL AND position NOT IN (SELECT position FROM given)`,
    /** An operator's retry sends to every recipient again: those the failed attempt refused wait for Exchange's answer again. $1 message id, $2 updated_at. */
    reopenRecipients: `UPDATE ${s}.message_recipients SET state = 'pending', reply = NULL, explanation = NULL, updated_at = $2
      WHERE message_id = $1 AND state = 'refused'`,
    /** $1 message id. */
    recipients: `SELECT position, address, state, reply, explanation, dsn_status, remote_mta, report_id, updated_at
      FROM ${s}.message_recipients WHERE message_id = $1 ORDER BY position`,

    /**
     * Remembers an NDR entry; no row back means it was recorded before (or is being, by a transaction
     * that holds the key: this waits for it). $1 mailbox, $2 report id, $3 recipient (lower case),
     * $4 original Message-ID, $5 action, $6 status, $7 received_at, $8 recorded_at.
     */
    insertBounceReport: `INSERT INTO ${s}.bounce_reports (mailbox, report_id, recipient, original_message_id, action, status, received_at, recorded_at)
      VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (mailbox, report_id, recipient) DO NOTHING RETURNING 1`,
    /**
     * The recipients of the messages with this Message-ID, the sending mailbox's first, newest first,
     * locked so two reports for one recipient apply one after the other (the store compares addresses
     * itself, as the SQLite store does). $1 Message-ID, $2 mailbox.
     */
    bounceCandidates: `SELECT r.message_id, r.position, r.address, r.state FROM ${s}.messages m JOIN ${s}.message_recipients r ON r.message_id = m.id
      WHERE m.message_id = $1 AND lower(m.mailbox) = lower($2)
      ORDER BY m.created_at DESC, m.id DESC, r.position
      FOR UPDATE OF r`,
    /** $1 message id, $2 position, $3 state, $4 reply, $5 dsn_status, $6 remote_mta, $7 report id, $8 updated_at. */
    bounceRecipient: `UPDATE ${s}.message_recipients SET state = $3, reply = $4, explanation = NULL, dsn_status = $5, remote_mta = $6,
        report_id = $7, updated_at = $8
      WHERE message_id = $1 AND position = $2`,
    /** $1 mailbox, $2 report id, $3 recipient, $4 matched message id. */
    matchBounceReport: `UPDATE ${s}.bounce_reports SET message_id = $4 WHERE mailbox = $1 AND report_id = $2 AND recipient = $3`,
    /** The message an entry recorded before matched (NULL: none). $1 mailbox, $2 report id, $3 recipient. */
    bounceReportMatch: `SELECT message_id FROM ${s}.bounce_reports WHERE mailbox = $1 AND report_id = $2 AND recipient = $3`,
    /** $1 mailbox. */
    bounceCursor: `SELECT cursor FROM ${s}.bounce_readers WHERE mailbox = $1`,
    /** $1 mailbox, $2 cursor. */
    saveBounceCursor: `INSERT INTO ${s}.bounce_readers (mailbox, cursor) VALUES ($1, $2)
      ON CONFLICT (mailbox) DO UPDATE SET cursor = excluded.cursor`,
    /**
     * Takes the lease when nobody holds it, it expired, or $2 holds it already; a row back means $2
     * has it. The conflicting row is locked and the condition tested on its latest version, so two
     * nodes racing for it never both win. $1 mailbox, $2 owner, $3 until, $4 now.
     */
    leaseBounceReader: `INSERT INTO ${s}.bounce_readers AS b (mailbox, lease_owner, lease_until) VALUES ($1, $2, $3)
      ON CONFLICT (mailbox) DO UPDATE SET lease_owner = excluded.lease_owner, lease_until = excluded.lease_until
        WHERE b.lease_owner IS NULL OR b.lease_owner = excluded.lease_owner OR b.lease_until < $4
      RETURNING mailbox`,

    /** $1 address_key, $2 address, $3 reason, $4 dsn_status, $5 message_id, $6 source, $7 created_at. */
    suppress: `INSERT INTO ${s}.suppressions (address_key, address, reason, dsn_status, message_id, source, created_at)
      VALUES ($1, $2, $3, $4, $5, $6, $7)
      ON CONFLICT (address_key) DO UPDATE SET address = excluded.address, reason = excluded.reason, dsn_status = excluded.dsn_status,
        message_id = excluded.message_id, source = excluded.source, created_at = excluded.created_at`,
    /** $1 address_key. */
    unsuppress: `DELETE FROM ${s}.suppressions WHERE address_key = $1`,
    /** Newest first, keyset pagination on (created_at, address_key). $1 created_at, $2 address_key, $3 limit. */
    suppressions: `SELECT address_key, address, reason, dsn_status, message_id, source, created_at FROM ${s}.suppressions
      WHERE (created_at, address_key) < ($1, $2) ORDER BY created_at DESC, address_key DESC LIMIT $3`,
    /** $1 address keys (text[]). */
    suppressed: `SELECT address_key, address, reason, dsn_status, message_id, source, created_at FROM ${s}.suppressions
      WHERE address_key = ANY($1::text[])`,

    /** An operator's retry: due now; a pool message goes back to its pool. $1 id, $2 now. */
    retryMessage: `UPDATE ${s}.messages SET state = 'queued', next_attempt_at = $2, updated_at = $2,
        mailbox = CASE WHEN pool IS NOT NULL THEN NULL ELSE mailbox END
      WHERE id = $1 AND state IN ('queued', 'deferred', 'failed') AND body_deleted_at IS NULL`,
    /** $1 id, $2 now. */
    cancelMessage: `UPDATE ${s}.messages SET state = 'cancelled', updated_at = $2 WHERE id = $1 AND state IN ('queued', 'deferred', 'failed')`,

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

    /**
     * A new pause, or a new cause for one: the first pause's time and a pending resume request are kept.
     * $1 mailbox, $2 class, $3 reply, $4 explanation (JSON), $5 at, $6 owner.
     */
    pauseMailbox: `INSERT INTO ${s}.mailbox_pauses (mailbox, class, reply, explanation, since, updated_at, owner)
      VALUES ($1, $2, $3, $4::jsonb, $5, $5, $6)
      ON CONFLICT (mailbox) DO UPDATE SET class = excluded.class, reply = excluded.reply, explanation = excluded.explanation,
        updated_at = excluded.updated_at, owner = excluded.owner
      RETURNING mailbox, class, reply, explanation, since, updated_at, owner, resume_requested_at`,
    /** $1 mailbox. */
    resumeMailbox: `DELETE FROM ${s}.mailbox_pauses WHERE mailbox = $1`,
    /**
     * An operator's resume: the request, and the mailbox's deferred messages due now, in one statement.
     * $1 mailbox, $2 now.
     */
    requestResume: `WITH asked AS (
        UPDATE ${s}.mailbox_pauses SET resume_requested_at = $2 WHERE mailbox = $1
        RETURNING mailbox, class, reply, explanation, since, updated_at, owner, resume_requested_at),
      due AS (
        UPDATE ${s}.messages SET next_attempt_at = $2
        WHERE mailbox = $1 AND state = 'deferred' AND next_attempt_at > $2 AND EXISTS (SELECT 1 FROM asked))
      SELECT * FROM asked`,
    mailboxPauses: `SELECT mailbox, class, reply, explanation, since, updated_at, owner, resume_requested_at
      FROM ${s}.mailbox_pauses ORDER BY since, mailbox`,
  } as const;
}

/** The statements of one schema, as {@link pgStatements} makes them. */
export type PgStatements = ReturnType<typeof pgStatements>;
