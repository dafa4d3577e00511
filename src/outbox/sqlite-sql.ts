/**
 * Every SQL statement of the SQLite outbox, and its numbered migrations. Nothing else in relay365
 * writes SQL for this store: read this file to know exactly what the store does to the database. The
 * message column list and the rows it returns are shared with the PostgreSQL store (rows.ts).
 *
 * Times are integer milliseconds since the epoch. Tables are `STRICT` so a wrong type is an error,
 * not a silently stored string.
 */
import { MESSAGE_COLUMNS } from './rows.js';
import type * as rows from './rows.js';

/** One schema step. Versions only grow; a released step is never edited, a new one is added. */
export interface Migration {
  version: number;
  description: string;
  sql: string;
  /**
   * The step rebuilds tables whose statements a running process of the previous release has prepared
   * (it would fail on them, mid-delivery): it is applied to an existing outbox only while no other
   * connection has the file open (`SqliteOutboxStore.migrate`). A new file needs no such care.
   */
  exclusive?: true;
}

/**
 * The schema, oldest first. `migrate()` applies, in one transaction, every step whose version is not
 * in `schema_migrations`.
 */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'messages, attempts and sends',
    sql: `
      -- raw is the LAST column on purpose: SQLite reads a row's columns in order and a large value
      -- spills into a chain of overflow pages, so a column stored after a 35 MB raw would cost a walk
      -- of that chain on every read. Columns added later (ALTER TABLE ADD COLUMN appends) pay that
      -- cost; put a hot new column in a side table instead.
      CREATE TABLE messages (
        id               TEXT    PRIMARY KEY,
        mailbox          TEXT,
        pool             TEXT,
        envelope_from    TEXT    NOT NULL,
        envelope_to      TEXT    NOT NULL,  -- JSON array of addresses
        recipients       INTEGER NOT NULL,  -- length of envelope_to, counted against recipientsPerDay
        size             INTEGER NOT NULL,
        message_id       TEXT,
        source           TEXT    NOT NULL,  -- JSON MessageSource
        state            TEXT    NOT NULL CHECK (state IN ('queued', 'sending', 'sent', 'deferred', 'failed', 'cancelled')),
        attempts         INTEGER NOT NULL DEFAULT 0,
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL,
        next_attempt_at  INTEGER NOT NULL,
        lease_owner      TEXT,
        lease_until      INTEGER,
        last_reply       TEXT,
        last_class       TEXT,
        last_explanation TEXT,              -- JSON Explanation
        raw              BLOB    NOT NULL,
        CHECK (mailbox IS NOT NULL OR pool IS NOT NULL)
      ) STRICT;

      -- Claim of a mailbox's own messages, oldest first within each state (merged by the claim
      -- query), and its live leases; next_attempt_at and lease_until ride along so the due test
      -- is answered from the index without reading rows.
      CREATE INDEX messages_mailbox_state ON messages (mailbox, state, created_at, id, next_attempt_at, lease_until);
      -- Claim of pool messages no member has taken yet.
      CREATE INDEX messages_pool_state ON messages (pool, state, created_at, id, next_attempt_at) WHERE mailbox IS NULL;
      -- counts(), oldestWaiting() and list() by state.
      CREATE INDEX messages_state_created ON messages (state, created_at, id);
      -- list() unfiltered and by mailbox, newest first.
      CREATE INDEX messages_created ON messages (created_at, id);
      CREATE INDEX messages_mailbox_created ON messages (mailbox, created_at, id);

      CREATE TABLE attempts (
        id          INTEGER PRIMARY KEY,
        message_id  TEXT    NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        at          INTEGER NOT NULL,
        mailbox     TEXT    NOT NULL,
        reply       TEXT,
        class       TEXT    NOT NULL,
        explanation TEXT,                   -- JSON Explanation
        duration_ms INTEGER NOT NULL,
        owner       TEXT    NOT NULL
      ) STRICT;
      CREATE INDEX attempts_message ON attempts (message_id, id);

      -- One row per claimed message: the sliding windows of messagesPerMinute and recipientsPerDay.
      -- Rows older than the day window are pruned by claim().
      CREATE TABLE sends (
        id         INTEGER PRIMARY KEY,
        mailbox    TEXT    NOT NULL,
        at         INTEGER NOT NULL,
        recipients INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX sends_mailbox_at ON sends (mailbox, at, recipients);
    `,
  },
  {
    version: 2,
    description: 'sends remember their message, so a send counts from when Exchange received it',
    sql: `
      ALTER TABLE sends ADD COLUMN message_id TEXT;
      CREATE INDEX sends_message ON sends (message_id);
    `,
  },
  {
    version: 3,
    description: 'running totals of each mailbox\'s sends, so a claim reads its quota without counting the windows',
    sql: `
      -- day_recipients: sum(recipients) of the mailbox's rows in sends (claims delete the rows that
      -- left the day window and subtract them here). minute_sends: how many of those rows are newer
      -- than minute_edge; each claim slides the edge to the start of its minute window and subtracts
      -- only the rows it passed. A claim thus reads a handful of rows, however many the windows hold.
      CREATE TABLE send_totals (
        mailbox        TEXT    PRIMARY KEY,
        day_recipients INTEGER NOT NULL,
        minute_edge    INTEGER NOT NULL,
        minute_sends   INTEGER NOT NULL
      ) STRICT;
      INSERT INTO send_totals (mailbox, day_recipients, minute_edge, minute_sends)
        SELECT mailbox, sum(recipients), 0, count(*) FROM sends GROUP BY mailbox;
    `,
  },
  {
    version: 4,
    description: 'message content in a table of its own, so leasing and completing a message never rewrites it',
    sql: `
      -- SQLite rewrites a whole record when an UPDATE changes its size, which a lease or an outcome
      -- always does (state, lease_owner, last_reply): with raw in the row, each one copied the whole
      -- message (overflow pages and all) into the log again. Content is written once, read once.
      CREATE TABLE message_bodies (
        id  TEXT PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
        raw BLOB NOT NULL
      ) STRICT;
      INSERT INTO message_bodies (id, raw) SELECT id, raw FROM messages;
      ALTER TABLE messages DROP COLUMN raw;
    `,
  },
  {
    version: 5,
    description: 'per-recipient state, the bounce ledger, bounce readers and the suppression list',
    sql: `
      -- One row per envelope recipient, in envelope order (position), written by enqueue in the
      -- message's own transaction. A side table, so updating a recipient never rewrites the message.
      CREATE TABLE message_recipients (
        message_id  TEXT    NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        position    INTEGER NOT NULL,
        address     TEXT    NOT NULL,
        state       TEXT    NOT NULL CHECK (state IN ('pending', 'accepted', 'refused', 'bounced', 'delayed')),
        reply       TEXT,
        explanation TEXT,                   -- JSON Explanation
        dsn_status  TEXT,
        remote_mta  TEXT,
        report_id   TEXT,
        updated_at  INTEGER NOT NULL,
        PRIMARY KEY (message_id, position)
      ) STRICT;
      -- Messages that existed before: their recipients from the envelope, in the state the message's own
      -- implies (a sent message's were taken, a failed one's refused with its last reply).
      INSERT INTO message_recipients (message_id, position, address, state, reply, explanation, updated_at)
        SELECT m.id, e.key, e.value,
          CASE m.state WHEN 'sent' THEN 'accepted' WHEN 'failed' THEN 'refused' ELSE 'pending' END,
          CASE m.state WHEN 'failed' THEN m.last_reply END,
          CASE m.state WHEN 'failed' THEN m.last_explanation END,
          m.updated_at
        FROM messages m, json_each(m.envelope_to) e;
      -- recordBounce() finds the original by the Message-ID an NDR quotes.
      CREATE INDEX messages_message_id ON messages (message_id) WHERE message_id IS NOT NULL;

      -- Every NDR entry applied (or found to match nothing), so a report read twice (a restart before
      -- the delta cursor was saved, two readers after a lost lease) changes nothing the second time.
      -- recipient is lower case; message_id is the relay365 message it matched, if any.
      CREATE TABLE bounce_reports (
        mailbox             TEXT    NOT NULL,
        report_id           TEXT    NOT NULL,
        recipient           TEXT    NOT NULL,
        original_message_id TEXT    NOT NULL,
        action              TEXT    NOT NULL,
        status              TEXT    NOT NULL,
        message_id          TEXT,
        received_at         INTEGER NOT NULL,
        recorded_at         INTEGER NOT NULL,
        PRIMARY KEY (mailbox, report_id, recipient)
      ) STRICT;

      -- Per mailbox: the Graph delta cursor of its Inbox reader, and which node holds the lease to read it.
      CREATE TABLE bounce_readers (
        mailbox     TEXT PRIMARY KEY,
        cursor      TEXT,
        lease_owner TEXT,
        lease_until INTEGER
      ) STRICT;

      -- address_key: the address in lower case, so one address has one entry however it is spelt.
      CREATE TABLE suppressions (
        address_key TEXT    PRIMARY KEY,
        address     TEXT    NOT NULL,
        reason      TEXT    NOT NULL,
        dsn_status  TEXT,
        message_id  TEXT,
        source      TEXT    NOT NULL CHECK (source IN ('bounce', 'manual')),
        created_at  INTEGER NOT NULL
      ) STRICT;
      -- suppressions(): newest first, keyset pagination.
      CREATE INDEX suppressions_created ON suppressions (created_at, address_key);
    `,
  },
  {
    version: 6,
    description: 'paused mailboxes, so a pause outlives a restart and every node sees it',
    sql: `
      -- One row per paused mailbox, deleted when it resumes (a send worked, or an operator's resume
      -- was honoured). since: when it paused; updated_at: when a worker last met the cause;
      -- resume_requested_at: an operator's relay365 queue resume, until a worker has acted on it.
      CREATE TABLE mailbox_pauses (
        mailbox             TEXT    PRIMARY KEY,
        class               TEXT    NOT NULL CHECK (class IN ('auth', 'blocked')),
        reply               TEXT,
        explanation         TEXT,              -- JSON Explanation
        since               INTEGER NOT NULL,
        updated_at          INTEGER NOT NULL,
        owner               TEXT    NOT NULL,
        resume_requested_at INTEGER
      ) STRICT;
    `,
  },
  {
    version: 7,
    description: 'retention and privacy at rest: when a finished message lost its content, and which bodies are encrypted',
    sql: `
      -- body_deleted_at: when retention (queue.retention.bodies) or relay365 queue purge --bodies-only
      -- deleted the message's content; the message, its attempts and recipients stay.
      ALTER TABLE messages ADD COLUMN body_deleted_at INTEGER;
      -- 1: raw is AES-256-GCM under the secret key (src/outbox/body-crypto.ts), 0: the bytes as received.
      ALTER TABLE message_bodies ADD COLUMN encrypted INTEGER NOT NULL DEFAULT 0 CHECK (encrypted IN (0, 1));
      -- The sweeps, oldest finished first: bodies still there, and every finished message. Partial, so
      -- the sweep reads only what it may delete, never the queue or the messages already swept.
      CREATE INDEX messages_finished_bodies ON messages (updated_at, id)
        WHERE state IN ('sent', 'failed', 'cancelled') AND body_deleted_at IS NULL;
      CREATE INDEX messages_finished ON messages (updated_at, id) WHERE state IN ('sent', 'failed', 'cancelled');
    `,
  },
  {
    version: 8,
    description: 'scheduled send, tags and metadata, and search by recipient and tag',
    sql: `
      -- send_at: the time a caller scheduled the message for (its first next_attempt_at), NULL when due at once.
      ALTER TABLE messages ADD COLUMN send_at INTEGER;
      -- labels: JSON { tags, metadata } as given, NULL (nothing stored) when a message has neither.
      ALTER TABLE messages ADD COLUMN labels TEXT;
      -- list({ tag }): one row per tag of a message, written only for messages that have tags.
      CREATE TABLE message_tags (
        tag        TEXT NOT NULL,
        message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        PRIMARY KEY (tag, message_id)
      ) STRICT, WITHOUT ROWID;
      -- The cascade from a deleted message (retention, purge) finds its tags by this.
      CREATE INDEX message_tags_message ON message_tags (message_id);
      -- list({ recipient }): the messages of an address, whatever its case.
      CREATE INDEX message_recipients_address ON message_recipients (address COLLATE NOCASE);
    `,
  },
  {
    version: 9,
    description: 'sends keyed by mailbox and time, so a claim and an outcome each change one tree of them',
    exclusive: true,
    sql: `
      -- Each commit writes every page it changed into the log, and the writes of a turn are few, so a
      -- send cost a page in each of three trees (the rows, sends_mailbox_at, sends_message) at its
      -- claim and two (the rows, sends_mailbox_at) at its outcome: about a fifth of what a message
      -- wrote. Keyed by (mailbox, at, message_id) and WITHOUT ROWID, the rows are the index: a claim
      -- adds one entry, an outcome moves it (the message's claim time, updated_at while it is
      -- leased, finds it). Rows from before schema 2 had no message_id; each keeps one of its own.
      -- Run alone: a relay of an earlier release still running on the file would fail on the rebuilt
      -- table after its sends (relay365 applies this step only when nothing else has the file open).
      CREATE TABLE sends_by_time (
        mailbox    TEXT    NOT NULL,
        at         INTEGER NOT NULL,
        message_id TEXT    NOT NULL,
        recipients INTEGER NOT NULL,
        PRIMARY KEY (mailbox, at, message_id)
      ) STRICT, WITHOUT ROWID;
      INSERT INTO sends_by_time (mailbox, at, message_id, recipients)
        SELECT mailbox, at, coalesce(message_id, 'before-schema-2:' || id), recipients FROM sends WHERE true
        ON CONFLICT (mailbox, at, message_id) DO UPDATE SET recipients = recipients + excluded.recipients;
      DROP TABLE sends;
      ALTER TABLE sends_by_time RENAME TO sends;
    `,
  },
  {
    version: 10,
    description: "recipients and attempts stored in their message's order, one tree each",
    exclusive: true,
    sql: `
      -- Both were rowid tables with an index by message beside them, so every recipient and every
      -- attempt wrote a page of each into the log. WITHOUT ROWID, the key is the table: the rows of a
      -- message sit together, in envelope order and attempt order. n numbers a message's attempts from 1.
      -- Run alone, as step 9.
      CREATE TABLE message_recipients_by_message (
        message_id  TEXT    NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        position    INTEGER NOT NULL,
        address     TEXT    NOT NULL,
        state       TEXT    NOT NULL CHECK (state IN ('pending', 'accepted', 'refused', 'bounced', 'delayed')),
        reply       TEXT,
        explanation TEXT,                   -- JSON Explanation
        dsn_status  TEXT,
        remote_mta  TEXT,
        report_id   TEXT,
        updated_at  INTEGER NOT NULL,
        PRIMARY KEY (message_id, position)
      ) STRICT, WITHOUT ROWID;
      INSERT INTO message_recipients_by_message
        SELECT message_id, position, address, state, reply, explanation, dsn_status, remote_mta, report_id, updated_at FROM message_recipients;
      DROP TABLE message_recipients;
      ALTER TABLE message_recipients_by_message RENAME TO message_recipients;
      CREATE INDEX message_recipients_address ON message_recipients (address COLLATE NOCASE);

      CREATE TABLE attempts_by_message (
        message_id  TEXT    NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        n           INTEGER NOT NULL,
        at          INTEGER NOT NULL,
        mailbox     TEXT    NOT NULL,
        reply       TEXT,
        class       TEXT    NOT NULL,
        explanation TEXT,                   -- JSON Explanation
        duration_ms INTEGER NOT NULL,
        owner       TEXT    NOT NULL,
        PRIMARY KEY (message_id, n)
      ) STRICT, WITHOUT ROWID;
      INSERT INTO attempts_by_message (message_id, n, at, mailbox, reply, class, explanation, duration_ms, owner)
        SELECT message_id, row_number() OVER (PARTITION BY message_id ORDER BY id), at, mailbox, reply, class, explanation, duration_ms, owner
        FROM attempts;
      DROP TABLE attempts;
      ALTER TABLE attempts_by_message RENAME TO attempts;
    `,
  },
  {
    version: 11,
    description: 'one index of finished messages for both retention sweeps',
    sql: `
      -- A message that finished was written into two indexes of finished messages (the sweep of
      -- contents and the sweep of records), a page of each in the log. One index serves both: those
      -- whose content is still there come first, oldest first; the records sweep merges the two halves.
      DROP INDEX messages_finished_bodies;
      DROP INDEX messages_finished;
      CREATE INDEX messages_finished ON messages ((body_deleted_at IS NULL), updated_at, id) WHERE state IN ('sent', 'failed', 'cancelled');
    `,
  },
];

/**
 * The rows of rows.ts as better-sqlite3 returns them: JSON columns are TEXT. Every statement that
 * returns messages selects `MESSAGE_COLUMNS` (the content is in message_bodies, read only by `getRaw`).
 */
export type MessageRow = rows.MessageRow<string>;
export type RecipientRow = rows.RecipientRow<string>;
export type AttemptRow = rows.AttemptRow<string>;
export type PauseRow = rows.PauseRow<string>;
export type SuppressionRow = rows.SuppressionRow;

/** The statements, as text; the store prepares each once. */
export const SQL = {
  pragmas: {
    /** WAL: readers never block the writer, and a commit is one append to the log. */
    journalMode: 'journal_mode = WAL',
    /**
     * NORMAL: a commit writes the log without fsync (it survives a crash of the process, not yet a power
     * cut); the log is synced before every checkpoint. The store makes what it acknowledges durable
     * itself, with an fdatasync of the log off the event loop (`SqliteOutboxStore.syncLog`), so a claim
     * or an outcome costs no fsync and a 250 still survives a power cut.
     */
    synchronous: 'synchronous = NORMAL',
    foreignKeys: 'foreign_keys = ON',
    /**
     * A 35 MB message leaves the log at least that large; without a limit the file keeps its
     * largest size forever after a checkpoint.
     */
    journalSizeLimit: `journal_size_limit = ${64 * 1024 * 1024}`,
    /**
     * The checkpoint thread (sqlite-checkpointer.ts) copies the log into the database every 250 ms; the
     * event loop's own connection checkpoints only if the log passes 10,000 pages (40 MB), when that
     * thread cannot keep up or has failed.
     */
    walAutocheckpoint: 'wal_autocheckpoint = 10000',
  },

  createMigrationsTable: `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL) STRICT`,
  appliedVersions: `SELECT version FROM schema_migrations ORDER BY version`,
  recordMigration: `INSERT INTO schema_migrations (version, applied_at) VALUES (@version, @appliedAt)`,

  insertMessage: `INSERT INTO messages (id, mailbox, pool, envelope_from, envelope_to, recipients, size, message_id, source, state,
      attempts, created_at, updated_at, next_attempt_at, send_at, labels)
    VALUES (@id, @mailbox, @pool, @envelopeFrom, @envelopeTo, @recipients, @size, @messageId, @source, 'queued',
      0, @createdAt, @createdAt, @nextAttemptAt, @sendAt, @labels)`,
  insertTag: `INSERT INTO message_tags (tag, message_id) VALUES (@tag, @messageId)`,
  insertBody: `INSERT INTO message_bodies (id, raw, encrypted) VALUES (@id, @raw, @encrypted)`,
  /** Takes back a message whose commit could not be synced, unless a worker has claimed it already (its body goes with it, ON DELETE CASCADE). */
  withdrawMessage: `DELETE FROM messages WHERE id = ? AND state = 'queued' AND lease_owner IS NULL`,
  getMessage: `SELECT ${MESSAGE_COLUMNS} FROM messages WHERE id = ?`,
  getRaw: `SELECT raw, encrypted FROM message_bodies WHERE id = ?`,
  /**
   * Retention and purge: finished messages last changed before @before, in the states of @states (a
   * JSON array), oldest first, along messages_finished (migration 11): the literal state list matches its
   * partial WHERE, and `(body_deleted_at IS NULL) = 1 / 0` its first column's expression as written, so
   * SQLite uses it (outbox-sqlite.test.ts checks the plans).
   */
  finishedWithBody: `SELECT id FROM messages
    WHERE state IN ('sent', 'failed', 'cancelled') AND (body_deleted_at IS NULL) = 1 AND updated_at < @before
      AND state IN (SELECT value FROM json_each(@states))
    ORDER BY updated_at, id LIMIT @limit`,
  /** Both halves of messages_finished, merged oldest first. */
  finished: `SELECT id, updated_at FROM messages
      WHERE state IN ('sent', 'failed', 'cancelled') AND (body_deleted_at IS NULL) = 1 AND updated_at < @before
        AND state IN (SELECT value FROM json_each(@states))
    UNION ALL
    SELECT id, updated_at FROM messages
      WHERE state IN ('sent', 'failed', 'cancelled') AND (body_deleted_at IS NULL) = 0 AND updated_at < @before
        AND state IN (SELECT value FROM json_each(@states))
    ORDER BY updated_at, id LIMIT @limit`,
  /** What purge would delete (@bodiesOnly 1: only messages whose content is still there). */
  countFinished: `SELECT count(*) FROM messages
    WHERE state IN ('sent', 'failed', 'cancelled') AND updated_at < @before AND state IN (SELECT value FROM json_each(@states))
      AND (@bodiesOnly = 0 OR body_deleted_at IS NULL)`,
  /** The content goes; the message says when (attempts, recipients and metadata stay). */
  deleteBody: `DELETE FROM message_bodies WHERE id = ?`,
  markBodyDeleted: `UPDATE messages SET body_deleted_at = @now WHERE id = @id`,
  /** The message with its content, attempts and recipients (ON DELETE CASCADE). */
  deleteFinished: `DELETE FROM messages WHERE id = ? AND state IN ('sent', 'failed', 'cancelled')`,
  attempts: `SELECT at, mailbox, reply, class, explanation, duration_ms, owner FROM attempts WHERE message_id = ? ORDER BY n`,

  /** Live leases of a mailbox: its open connections. */
  liveLeases: `SELECT count(*) AS n, min(lease_until) AS soonest FROM messages
    WHERE mailbox = @mailbox AND state = 'sending' AND lease_until >= @now`,
  /** Sends of a mailbox inside a window that started after @since (counted row by row: quotaUsage, and the totals' recount). */
  sendsSince: `SELECT count(*) AS n, coalesce(sum(recipients), 0) AS recipients FROM sends
    WHERE mailbox = @mailbox AND at > @since`,
  /** The oldest send of a window: one index seek. */
  oldestSendSince: `SELECT min(at) AS at FROM sends WHERE mailbox = @mailbox AND at > @since`,
  /** The same sends one by one, oldest first: when do enough recipients leave the day window. */
  sendsSinceInOrder: `SELECT at, recipients FROM sends WHERE mailbox = @mailbox AND at > @since ORDER BY at`,
  /** Sends that left the minute window since the edge last moved: (@after, @upTo]. */
  sendsBetween: `SELECT count(*) AS n FROM sends WHERE mailbox = @mailbox AND at > @after AND at <= @upTo`,
  /** Sends about to leave the day window, and how many of them the minute total still counts. */
  expiredSends: `SELECT count(*) AS n, coalesce(sum(recipients), 0) AS recipients, coalesce(sum(at > @minuteEdge), 0) AS inMinute
    FROM sends WHERE mailbox = @mailbox AND at <= @before`,
  pruneSends: `DELETE FROM sends WHERE mailbox = @mailbox AND at <= @before`,
  /** One send per claim; the same message claimed twice in one millisecond (it cannot be, leases last seconds) counts its recipients twice. */
  insertSend: `INSERT INTO sends (mailbox, at, recipients, message_id) VALUES (@mailbox, @at, @recipients, @messageId)
    ON CONFLICT (mailbox, at, message_id) DO UPDATE SET recipients = recipients + excluded.recipients`,
  sendTotals: `SELECT day_recipients, minute_edge, minute_sends FROM send_totals WHERE mailbox = ?`,
  saveSendTotals: `INSERT INTO send_totals (mailbox, day_recipients, minute_edge, minute_sends)
    VALUES (@mailbox, @dayRecipients, @minuteEdge, @minuteSends)
    ON CONFLICT (mailbox) DO UPDATE SET day_recipients = excluded.day_recipients, minute_edge = excluded.minute_edge,
      minute_sends = excluded.minute_sends`,
  /**
   * The claim a leased message is under: the mailbox that claimed it and when (a claim sets updated_at
   * to its time, as it stamps its send, and nothing else changes a leased message's updated_at).
   */
  claimOf: `SELECT mailbox, updated_at AS at FROM messages WHERE id = @id AND lease_owner = @owner AND state = 'sending'`,
  /**
   * A claim counts a send when it starts; Exchange counts it when it has received the message. Moving the
   * send to the end of the attempt keeps relay365's window a superset of Exchange's, whatever the latency.
   * (OR IGNORE: were the message's send at the new time there already, it stays where it is.)
   */
  touchSend: `UPDATE OR IGNORE sends SET at = @to WHERE mailbox = @mailbox AND at = @from AND message_id = @messageId`,
  /** A send moved from @from to @to re-enters the minute total if the edge passed it meanwhile. */
  recountTouchedSend: `UPDATE send_totals SET minute_sends = minute_sends + 1
    WHERE mailbox = @mailbox AND minute_edge >= @from AND minute_edge < @to`,

  /**
   * A mailbox's due messages, oldest first: one ordered index range per state, merged (SQLite runs a
   * compound ORDER BY as a merge), so the store stops the scan after the rows it needs, however long
   * the queue is. No `LIMIT @limit`: better-sqlite3's SQLite is built with STAT4, which re-prepares a
   * statement on every run when its plan depends on a bound LIMIT (measured: 46 µs a claim, against
   * 15 µs reading rows one by one and stopping).
   */
  dueForMailbox: `
    SELECT ${MESSAGE_COLUMNS} FROM messages WHERE mailbox = @mailbox AND state = 'queued' AND next_attempt_at <= @now
    UNION ALL
    SELECT ${MESSAGE_COLUMNS} FROM messages WHERE mailbox = @mailbox AND state = 'deferred' AND next_attempt_at <= @now
    UNION ALL
    SELECT ${MESSAGE_COLUMNS} FROM messages WHERE mailbox = @mailbox AND state = 'sending' AND lease_until < @now
    ORDER BY created_at, id`,
  /** A pool's due messages no member has taken, oldest first (run once per pool, merged by the store). */
  dueForPool: `
    SELECT ${MESSAGE_COLUMNS} FROM messages WHERE pool = @pool AND mailbox IS NULL AND state = 'queued' AND next_attempt_at <= @now
    UNION ALL
    SELECT ${MESSAGE_COLUMNS} FROM messages WHERE pool = @pool AND mailbox IS NULL AND state = 'deferred' AND next_attempt_at <= @now
    ORDER BY created_at, id`,
  /**
   * Leases a mailbox's own message. SQLite updates every index on a column the SET list names, whatever
   * the value: only a pool message, whose mailbox is still NULL, names mailbox (leasePoolMessage).
   */
  leaseMessage: `UPDATE messages SET state = 'sending', lease_owner = @owner, lease_until = @leaseUntil, updated_at = @updatedAt
    WHERE id = @id`,
  leasePoolMessage: `UPDATE messages SET state = 'sending', mailbox = @mailbox, lease_owner = @owner, lease_until = @leaseUntil, updated_at = @updatedAt
    WHERE id = @id`,

  /**
   * Only the lease holder may complete. A deferred pool message goes back to its pool, so any member
   * (not only one that may be throttled or paused) takes the retry: only this statement names mailbox.
   */
  deferMessage: `UPDATE messages SET state = 'deferred', attempts = attempts + 1, next_attempt_at = @nextAttemptAt,
      lease_owner = NULL, lease_until = NULL, last_reply = @reply, last_class = @class, last_explanation = @explanation,
      updated_at = @updatedAt, mailbox = CASE WHEN pool IS NOT NULL THEN NULL ELSE mailbox END
    WHERE id = @id AND lease_owner = @owner AND state = 'sending'`,
  /** Sent or failed, by the lease holder only. */
  finishMessage: `UPDATE messages SET state = @state, attempts = attempts + 1, next_attempt_at = @nextAttemptAt,
      lease_owner = NULL, lease_until = NULL, last_reply = @reply, last_class = @class, last_explanation = @explanation,
      updated_at = @updatedAt
    WHERE id = @id AND lease_owner = @owner AND state = 'sending'`,
  /** The message's next attempt, numbered after its last (a seek in the leaf the row goes into). */
  insertAttempt: `INSERT INTO attempts (message_id, n, at, mailbox, reply, class, explanation, duration_ms, owner)
    VALUES (@messageId, coalesce((SELECT max(n) FROM attempts WHERE message_id = @messageId), 0) + 1, @at, @mailbox, @reply, @class, @explanation,
      @durationMs, @owner)`,

  /** An operator's retry: due now; a pool message goes back to its pool. */
  retryMessage: `UPDATE messages SET state = 'queued', next_attempt_at = @now, updated_at = @now,
      mailbox = CASE WHEN pool IS NOT NULL THEN NULL ELSE mailbox END
    WHERE id = @id AND state IN ('queued', 'deferred', 'failed') AND body_deleted_at IS NULL`,
  cancelMessage: `UPDATE messages SET state = 'cancelled', updated_at = @now WHERE id = @id AND state IN ('queued', 'deferred', 'failed')`,

  counts: `SELECT state, count(*) AS n FROM messages GROUP BY state`,
  countsForMailbox: `SELECT state, count(*) AS n FROM messages WHERE mailbox = ? GROUP BY state`,
  /** One index seek per state rather than a scan: min() over a single equality range. */
  oldestWaiting: `SELECT min(t) AS t FROM (
      SELECT min(created_at) AS t FROM messages WHERE state = 'queued'
      UNION ALL
      SELECT min(created_at) AS t FROM messages WHERE state = 'deferred')`,
  /** A mailbox's next due time; a live lease becomes due the millisecond after it expires. */
  nextDueForMailbox: `SELECT min(t) AS t FROM (
      SELECT min(next_attempt_at) AS t FROM messages WHERE mailbox = @mailbox AND state = 'queued'
      UNION ALL
      SELECT min(next_attempt_at) AS t FROM messages WHERE mailbox = @mailbox AND state = 'deferred'
      UNION ALL
      SELECT min(lease_until) + 1 AS t FROM messages WHERE mailbox = @mailbox AND state = 'sending')`,

  /** One per envelope recipient, written with the message. */
  insertRecipient: `INSERT INTO message_recipients (message_id, position, address, state, updated_at)
    VALUES (@messageId, @position, @address, 'pending', @updatedAt)`,
  recipients: `SELECT position, address, state, reply, explanation, dsn_status, remote_mta, report_id, updated_at
    FROM message_recipients WHERE message_id = ? ORDER BY position`,
  /** Exchange's answer for one recipient (complete()); by address, so a repeated address gets the same answer. */
  answerRecipient: `UPDATE message_recipients SET state = @state, reply = @reply, explanation = @explanation, updated_at = @updatedAt
    WHERE message_id = @messageId AND address = @address`,
  /** An operator's retry sends to every recipient again: those the failed attempt refused wait for Exchange's answer again. */
  reopenRecipients: `UPDATE message_recipients SET state = 'pending', reply = NULL, explanation = NULL, updated_at = @updatedAt
    WHERE message_id = @messageId AND state = 'refused'`,
  /** The recipients Exchange has not answered for, once the message is sent or failed. */
  answerPendingRecipients: `UPDATE message_recipients SET state = @state, reply = @reply, explanation = @explanation, updated_at = @updatedAt
    WHERE message_id = @messageId AND state = 'pending'`,

  /** Remembers an NDR entry; no row changed means it was recorded before. */
  insertBounceReport: `INSERT INTO bounce_reports (mailbox, report_id, recipient, original_message_id, action, status, received_at, recorded_at)
    VALUES (@mailbox, @reportId, @recipient, @originalMessageId, @action, @status, @receivedAt, @recordedAt)
    ON CONFLICT (mailbox, report_id, recipient) DO NOTHING`,
  /**
   * The recipients of the messages with this Message-ID, the sending mailbox's first, newest first
   * (the store compares addresses itself, case-insensitively, as the PostgreSQL store does).
   */
  bounceCandidates: `SELECT r.message_id, r.position, r.address, r.state FROM messages m JOIN message_recipients r ON r.message_id = m.id
    WHERE m.message_id = @originalMessageId AND lower(m.mailbox) = lower(@mailbox)
    ORDER BY m.created_at DESC, m.id DESC, r.position`,
  bounceRecipient: `UPDATE message_recipients SET state = @state, reply = @reply, explanation = NULL, dsn_status = @dsnStatus,
      remote_mta = @remoteMta, report_id = @reportId, updated_at = @updatedAt
    WHERE message_id = @messageId AND position = @position`,
  matchBounceReport: `UPDATE bounce_reports SET message_id = @messageId WHERE mailbox = @mailbox AND report_id = @reportId AND recipient = @recipient`,
  /** The message an entry recorded before matched (NULL: none). */
  bounceReportMatch: `SELECT message_id FROM bounce_reports WHERE mailbox = @mailbox AND report_id = @reportId AND recipient = @recipient`,

  bounceCursor: `SELECT cursor FROM bounce_readers WHERE mailbox = ?`,
  saveBounceCursor: `INSERT INTO bounce_readers (mailbox, cursor) VALUES (@mailbox, @cursor)
    ON CONFLICT (mailbox) DO UPDATE SET cursor = excluded.cursor`,
  /** Takes the lease when nobody holds it, it expired, or `owner` holds it already; a row back means `owner` has it. */
  leaseBounceReader: `INSERT INTO bounce_readers (mailbox, lease_owner, lease_until) VALUES (@mailbox, @owner, @until)
    ON CONFLICT (mailbox) DO UPDATE SET lease_owner = excluded.lease_owner, lease_until = excluded.lease_until
      WHERE bounce_readers.lease_owner IS NULL OR bounce_readers.lease_owner = excluded.lease_owner OR bounce_readers.lease_until < @now
    RETURNING mailbox`,

  suppress: `INSERT INTO suppressions (address_key, address, reason, dsn_status, message_id, source, created_at)
    VALUES (@addressKey, @address, @reason, @dsnStatus, @messageId, @source, @createdAt)
    ON CONFLICT (address_key) DO UPDATE SET address = excluded.address, reason = excluded.reason, dsn_status = excluded.dsn_status,
      message_id = excluded.message_id, source = excluded.source, created_at = excluded.created_at`,
  unsuppress: `DELETE FROM suppressions WHERE address_key = ?`,
  /** Newest first, keyset pagination on (created_at, address_key). */
  suppressions: `SELECT address_key, address, reason, dsn_status, message_id, source, created_at FROM suppressions
    WHERE (created_at, address_key) < (@createdAt, @key) ORDER BY created_at DESC, address_key DESC LIMIT @limit`,
  /** @keys: a JSON array of lower-case addresses. */
  suppressed: `SELECT address_key, address, reason, dsn_status, message_id, source, created_at FROM suppressions
    WHERE address_key IN (SELECT value FROM json_each(@keys))`,

  /** A new pause, or a new cause for one: the first pause's time and a pending resume request are kept. */
  pauseMailbox: `INSERT INTO mailbox_pauses (mailbox, class, reply, explanation, since, updated_at, owner)
    VALUES (@mailbox, @class, @reply, @explanation, @at, @at, @owner)
    ON CONFLICT (mailbox) DO UPDATE SET class = excluded.class, reply = excluded.reply, explanation = excluded.explanation,
      updated_at = excluded.updated_at, owner = excluded.owner
    RETURNING mailbox, class, reply, explanation, since, updated_at, owner, resume_requested_at`,
  resumeMailbox: `DELETE FROM mailbox_pauses WHERE mailbox = ?`,
  requestResume: `UPDATE mailbox_pauses SET resume_requested_at = @now WHERE mailbox = @mailbox
    RETURNING mailbox, class, reply, explanation, since, updated_at, owner, resume_requested_at`,
  /** A resumed mailbox's queue is tried at once: its deferred messages (the paused one's probe time) are due now. */
  deferredDueNow: `UPDATE messages SET next_attempt_at = @now WHERE mailbox = @mailbox AND state = 'deferred' AND next_attempt_at > @now`,
  mailboxPauses: `SELECT mailbox, class, reply, explanation, since, updated_at, owner, resume_requested_at FROM mailbox_pauses ORDER BY since, mailbox`,
  nextDueForPool: `SELECT min(t) AS t FROM (
      SELECT min(next_attempt_at) AS t FROM messages WHERE pool = @pool AND mailbox IS NULL AND state = 'queued'
      UNION ALL
      SELECT min(next_attempt_at) AS t FROM messages WHERE pool = @pool AND mailbox IS NULL AND state = 'deferred')`,
} as const;
