import type pg from 'pg';
import { pageOf, pageRead } from './cursor.js';
import { openBody, sealBody, type BodyCipher } from './body-crypto.js';
import { candidatesToRead, planClaim, type MailboxTotals } from './claim-policy.js';
import { applyPgMigrations, explainPgError, openPgSchemaStore, pgTransaction, type PgMigrationReport } from '../store/pg-database.js';
import { PG_MIGRATIONS, pgStatements, type PgAttemptRow, type PgMessageRow, type PgPauseRow, type PgRecipientRow, type PgSuppressionRow, type PgStatements, type PgUsageRow } from './pg-sql.js';
import { byAge, newMessageRow, rowReader, stateCounts, toDate } from './rows.js';
import { listStatement } from './list-sql.js';
import {
  FINISHED_STATES,
  type Attempt,
  type BounceReport,
  type ClaimRequest,
  type ClaimResult,
  type CompleteRequest,
  type ListQuery,
  type MailboxLimits,
  type MailboxPause,
  type MessageState,
  type NewMessage,
  type OutboxStore,
  type PauseRequest,
  type PurgeRequest,
  type PurgeResult,
  type QuotaUsage,
  type RecipientRecord,
  type RecipientState,
  type StoredMessage,
  type Suppression,
} from './types.js';

/** pg parses jsonb itself: a JSON column arrives as its value. */
const { toStoredMessage, toAttempt, toRecipient, toSuppression, toMailboxPause } = rowReader((value: unknown) => value);

/** Options of {@link openPgStore}. */
export interface PgStoreOptions {
  /** Schema holding relay365's tables (`queue.schema`); created by the first migration when missing. Default `relay365`. */
  schema?: string;
  /**
   * Connections this node keeps to PostgreSQL (default 10). Each claim, complete and enqueue holds one
   * for a few milliseconds; the shared token cache holds one while a token request is in flight.
   */
  poolSize?: number;
  /** How long to wait for a connection before failing with `R365_OUTBOX_UNAVAILABLE` (retryable). Default 10 s. */
  connectTimeoutMs?: number;
  /** Apply pending migrations on open (default true); `relay365 db migrate` opens without and reports what it applies. */
  migrate?: boolean;
  /** Encrypts new bodies (`queue.encryptBodies`) and opens encrypted ones; without it, an encrypted body cannot be read. */
  bodies?: BodyCipher;
}

export type { PgMigrationReport } from '../store/pg-database.js';

/** getRaw() reads a message in slices of this size (see `getRawSlice` in pg-sql.ts). */
const RAW_SLICE_BYTES = 1024 * 1024;

/**
 * Opens a pool to the PostgreSQL database at `url`, applies the pending migrations (unless told not
 * to) and returns the store. Several nodes may open the same database and schema: they then share
 * one queue and one set of quota windows.
 *
 * @throws Relay365Error `R365_OUTBOX_UNAVAILABLE` when the server cannot be reached or refuses the
 *   login, the schema cannot be created, or a newer relay365 migrated it.
 * @example
 * ```ts
 * const store = await openPgStore('postgresql://relay365@db.internal/relay365', { schema: 'relay365' });
 * const message = await store.enqueue({ mailbox: 'relay@contoso.com', envelope, raw, source: { kind: 'smtp' } });
 * ```
 */
export async function openPgStore(url: string, options: PgStoreOptions = {}): Promise<PgOutboxStore> {
  return PgOutboxStore.open(url, options);
}

/**
 * The shared outbox: tables in one PostgreSQL schema, used by every node at once. A claim leases rows
 * with `FOR UPDATE SKIP LOCKED`, so no message goes to two workers, and holds the mailbox's advisory
 * lock for its transaction, so two nodes never both see room left in the same quota. Every write is
 * acknowledged after PostgreSQL's commit, which is flushed to its WAL first (`synchronous_commit`).
 */
export class PgOutboxStore implements OutboxStore {
  private readonly sql: PgStatements;
  private closed = false;

  private constructor(
    /**
     * The connection pool. Other tables of relay365 in the same database (the shared token cache, the
     * integration store) may use it, so a node keeps one set of connections; it is ended by {@link close}.
     */
    readonly pool: pg.Pool,
    /** The schema holding the tables. */
    readonly schema: string,
    /** The database, for messages: the URL without its password. */
    readonly where: string,
    private readonly bodies: BodyCipher | undefined = undefined,
  ) {
    this.sql = pgStatements(schema);
  }

  /** See {@link openPgStore}. */
  static open(url: string, options: PgStoreOptions = {}): Promise<PgOutboxStore> {
    return openPgSchemaStore(
      url,
      { schema: options.schema, poolSize: options.poolSize ?? 10, connectTimeoutMs: options.connectTimeoutMs },
      (pool, schema, where) => new PgOutboxStore(pool, schema, where, options.bodies),
      (store) => (options.migrate !== false ? store.migrate() : store.run('connect to the outbox database', () => store.pool.query(store.sql.ping))),
    );
  }

  /** Applies every outbox step not yet recorded in the schema's ledger (`schema_migrations`), all in one transaction. */
  async migrate(): Promise<void> {
    await this.applyMigrations();
  }

  /**
   * Creates the schema when missing and applies the pending migrations, in one transaction under an
   * advisory lock: nodes starting at once wait for the first, then find nothing left to do.
   */
  applyMigrations(): Promise<PgMigrationReport> {
    return this.run('apply the outbox migrations', () =>
      this.transaction((client) =>
        applyPgMigrations(client, { schema: this.schema, where: this.where, what: 'The outbox tables', part: 'outbox', migrations: PG_MIGRATIONS }),
      ),
    );
  }

  /**
   * Stores a message in state `queued`. The promise resolves after PostgreSQL has committed the row
   * (flushed to its WAL), so a front door may answer 250 / 202 as soon as it does.
   *
   * @throws Relay365Error `R365_MESSAGE_INVALID` without exactly one of mailbox and pool, or without a recipient.
   */
  enqueue(message: NewMessage): Promise<StoredMessage> {
    return this.run('store the message', async () => {
      // The node's clock, as for every other time the store keeps: nodes must keep theirs in sync (NTP).
      const row = newMessageRow(message, Date.now());
      const body = sealBody(this.bodies, row.id, message.raw);
      const { rows } = await this.pool.query<PgMessageRow>(this.sql.insertMessage, [
        row.id,
        row.mailbox,
        row.pool,
        row.envelope_from,
        row.envelope_to,
        row.recipients,
        row.size,
        row.message_id,
        row.source,
        row.created_at,
        row.next_attempt_at,
        body.raw,
        body.encrypted,
        row.send_at,
        row.labels,
      ]);
      return toStoredMessage(rows[0]!);
    });
  }

  get(id: string): Promise<StoredMessage | undefined> {
    return this.run('read a message', async () => {
      const row = (await this.pool.query<PgMessageRow>(this.sql.getMessage, [id])).rows[0];
      return row === undefined ? undefined : toStoredMessage(row);
    });
  }

  getRaw(id: string): Promise<Buffer | undefined> {
    return this.run("read a message's content", async () => {
      // raw is never changed once stored, so slices read one after another fit together.
      const parts: Buffer[] = [];
      for (let offset = 0; ; offset += RAW_SLICE_BYTES) {
        const slice = (await this.pool.query<{ part: Buffer; encrypted: boolean }>(this.sql.getRawSlice, [id, offset + 1, RAW_SLICE_BYTES])).rows[0];
        if (slice === undefined) return undefined;
        parts.push(slice.part);
        if (slice.part.length < RAW_SLICE_BYTES) return openBody(this.bodies, id, parts.length === 1 ? slice.part : Buffer.concat(parts), slice.encrypted);
      }
    });
  }

  attempts(id: string): Promise<Attempt[]> {
    return this.run("read a message's attempts", async () => (await this.pool.query<PgAttemptRow>(this.sql.attempts, [id])).rows.map(toAttempt));
  }

  /**
   * Leases what the mailbox may send now. One transaction holds the mailbox's advisory lock from the
   * quota reads to the commit of the leases and sends, so claims for one mailbox run one after another
   * across every node, while claims for different mailboxes run side by side.
   */
  claim(request: ClaimRequest): Promise<ClaimResult> {
    const now = (request.now ?? new Date()).getTime();
    return this.run('claim messages', () => this.transaction((client) => this.claimIn(client, request, now)));
  }

  private async claimIn(client: pg.PoolClient, request: ClaimRequest, now: number): Promise<ClaimResult> {
    const { mailbox, limits } = request;
    const sql = this.sql;
    await client.query(sql.lockMailbox, [this.schema, mailbox]);
    // The day window is the longest any quota looks back: older rows only take space.
    await client.query(sql.pruneSends, [mailbox, now - limits.dayMs]);
    const usage = (await client.query<PgUsageRow>(sql.usage, [mailbox, now, now - limits.minuteMs, now - limits.dayMs])).rows[0]!;
    const totals: MailboxTotals = {
      live: usage.live,
      soonestLeaseExpiry: usage.soonest,
      minuteSends: usage.minute_n,
      minuteOldest: usage.minute_oldest,
      dayRecipients: usage.day_recipients,
    };
    const candidates = await this.dueMessages(client, mailbox, request.pools, now, candidatesToRead(totals, limits, request.max));
    const plan = planClaim({ candidates, totals, limits, max: request.max, leaseMs: request.leaseMs, now });

    const claimed = plan.claim.map((row) =>
      toStoredMessage({ ...row, state: 'sending', mailbox, lease_owner: request.owner, lease_until: now + request.leaseMs, updated_at: now }),
    );
    if (claimed.length > 0) {
      const ids = claimed.map((m) => m.id);
      await client.query(sql.leaseMessages, [mailbox, request.owner, now + request.leaseMs, now, ids]);
      await client.query(sql.insertSends, [mailbox, now, claimed.map((m) => m.envelope.to.length), ids]);
    }

    const { blocked } = plan;
    if (blocked === undefined) return { messages: claimed };
    if (blocked.by !== 'recipients') return { messages: claimed, blockedBy: blocked.by, blockedUntil: new Date(blocked.until) };
    const freed = (await client.query<{ at: number | null }>(sql.recipientsFreedAt, [mailbox, now - limits.dayMs, blocked.recipientsNeeded])).rows[0]?.at ?? now;
    return { messages: claimed, blockedBy: 'recipients', blockedUntil: new Date(freed + limits.dayMs) };
  }

  /**
   * Up to `limit` due messages of the mailbox and of its pools, oldest first, locked until the claim
   * commits. Each query returns at most `limit` rows read along an index in order; the rows a merge
   * leaves out stay locked only until the commit, milliseconds later.
   */
  private async dueMessages(client: pg.PoolClient, mailbox: string, pools: readonly string[], now: number, limit: number): Promise<PgMessageRow[]> {
    let rows = (await client.query<PgMessageRow>(this.sql.dueForMailbox, [mailbox, now, limit])).rows;
    for (const pool of new Set(pools)) {
      const more = (await client.query<PgMessageRow>(this.sql.dueForPool, [pool, now, limit])).rows;
      if (more.length > 0) rows = [...rows, ...more];
    }
    return rows.sort(byAge).slice(0, limit);
  }

  /**
   * Records the attempt and the new state when `owner` still holds the lease. The mailbox's lock is
   * taken first, so moving the send to the completion time never lands in the middle of a claim's
   * quota reads on another node.
   */
  complete(request: CompleteRequest): Promise<boolean> {
    return this.run('record a delivery attempt', () =>
      this.transaction(async (client) => {
        const held = await client.query(this.sql.lockLeaseMailbox, [this.schema, request.id, request.owner]);
        if (held.rowCount === 0) return false;
        const { attempt } = request;
        const at = attempt.at.getTime();
        const done = await client.query(this.sql.completeMessage, [
          request.id,
          request.owner,
          request.state,
          request.state === 'deferred' ? (request.nextAttemptAt ?? attempt.at).getTime() : at,
          attempt.reply ?? null,
          attempt.class,
          attempt.explanation === undefined ? null : JSON.stringify(attempt.explanation),
          at,
          attempt.mailbox,
          Math.round(attempt.durationMs),
          attempt.owner,
        ]);
        if (done.rowCount !== 1) return false;
        const given = request.recipients ?? [];
        if (given.length > 0 || request.state !== 'deferred') {
          const failed = request.state === 'failed';
          const rest: RecipientState | null = request.state === 'deferred' ? null : failed ? 'refused' : 'accepted';
          await client.query(this.sql.answerRecipients, [
            request.id,
            JSON.stringify(given.map((r) => ({ address: r.address, state: r.state, reply: r.reply ?? null, explanation: r.explanation ?? null }))),
            at,
            rest,
            failed ? (attempt.reply ?? null) : null,
            failed && attempt.explanation !== undefined ? JSON.stringify(attempt.explanation) : null,
          ]);
        }
        return true;
      }),
    );
  }

  recipients(id: string): Promise<RecipientRecord[]> {
    return this.run("read a message's recipients", async () => (await this.pool.query<PgRecipientRow>(this.sql.recipients, [id])).rows.map(toRecipient));
  }

  /**
   * One transaction: the ledger row, the match, the recipient's new state and the suppression commit
   * together. A second node recording the same entry waits on the ledger's key, then finds it there.
   */
  recordBounce(report: BounceReport): Promise<{ matched: string | undefined; duplicate: boolean }> {
    return this.run('record a bounce report', () =>
      this.transaction(async (client) => {
        const recipient = report.recipient.toLowerCase();
        const key = [report.mailbox, report.reportId, recipient];
        const fresh = await client.query(this.sql.insertBounceReport, [
          ...key,
          report.originalMessageId,
          report.action,
          report.status,
          report.receivedAt.getTime(),
          Date.now(),
        ]);
        if (fresh.rowCount === 0) {
          const first = await client.query<{ message_id: string | null }>(this.sql.bounceReportMatch, key);
          return { matched: first.rows[0]?.message_id ?? undefined, duplicate: true };
        }
        const candidates = await client.query<{ message_id: string; position: number; address: string; state: string }>(this.sql.bounceCandidates, [
          report.originalMessageId,
          report.mailbox,
        ]);
        const target = candidates.rows.find((r) => r.address.toLowerCase() === recipient);
        if (target === undefined) return { matched: undefined, duplicate: false };
        await client.query(this.sql.matchBounceReport, [...key, target.message_id]);
        // A delay notice never takes back a bounce that came first (reports may be read out of order).
        if (report.action === 'failed' || target.state !== 'bounced') {
          await client.query(this.sql.bounceRecipient, [
            target.message_id,
            target.position,
            report.action === 'failed' ? 'bounced' : 'delayed',
            report.diagnostic ?? null,
            report.status,
            report.remoteMta ?? null,
            report.reportId,
            report.receivedAt.getTime(),
          ]);
        }
        if (report.suppress !== undefined) {
          await client.query(this.sql.suppress, [recipient, report.recipient, report.suppress.reason, report.status, target.message_id, 'bounce', report.receivedAt.getTime()]);
        }
        return { matched: target.message_id, duplicate: false };
      }),
    );
  }

  bounceCursor(mailbox: string): Promise<string | undefined> {
    return this.run("read a mailbox's bounce cursor", async () => (await this.pool.query<{ cursor: string | null }>(this.sql.bounceCursor, [mailbox])).rows[0]?.cursor ?? undefined);
  }

  async saveBounceCursor(mailbox: string, cursor: string): Promise<void> {
    await this.run("save a mailbox's bounce cursor", () => this.pool.query(this.sql.saveBounceCursor, [mailbox, cursor]));
  }

  leaseBounceReader(mailbox: string, owner: string, ms: number, now: Date = new Date()): Promise<boolean> {
    const t = now.getTime();
    return this.run('lease a bounce reader', async () => (await this.pool.query(this.sql.leaseBounceReader, [mailbox, owner, t + ms, t])).rowCount === 1);
  }

  async suppress(entry: Omit<Suppression, 'createdAt'> & { createdAt?: Date }): Promise<void> {
    await this.run('add a suppression', () =>
      this.pool.query(this.sql.suppress, [
        entry.address.toLowerCase(),
        entry.address,
        entry.reason,
        entry.dsnStatus ?? null,
        entry.messageId ?? null,
        entry.source,
        (entry.createdAt ?? new Date()).getTime(),
      ]),
    );
  }

  unsuppress(address: string): Promise<boolean> {
    return this.run('remove a suppression', async () => (await this.pool.query(this.sql.unsuppress, [address.toLowerCase()])).rowCount === 1);
  }

  /**
   * Newest first. `limit` defaults to 50 and is held to 1..500.
   *
   * @throws Relay365Error `R365_LIST_CURSOR_INVALID` when the cursor was not made by this method.
   */
  suppressions(query: { limit?: number; cursor?: string }): Promise<{ items: Suppression[]; nextCursor: string | undefined }> {
    return this.run('list suppressions', async () => {
      const page = pageRead(query);
      const { rows } = await this.pool.query<PgSuppressionRow>(this.sql.suppressions, [page.after.createdAt, page.after.id, page.rows]);
      return pageOf(rows, page, toSuppression, (row) => [row.created_at, row.address_key]);
    });
  }

  suppressed(addresses: readonly string[]): Promise<Suppression[]> {
    if (addresses.length === 0) return Promise.resolve([]);
    const keys = [...new Set(addresses.map((a) => a.toLowerCase()))];
    return this.run('look up suppressions', async () => (await this.pool.query<PgSuppressionRow>(this.sql.suppressed, [keys])).rows.map(toSuppression));
  }

  retry(id: string): Promise<boolean> {
    return this.run('retry a message', () =>
      this.transaction(async (client) => {
        const now = Date.now();
        if ((await client.query(this.sql.retryMessage, [id, now])).rowCount !== 1) return false;
        await client.query(this.sql.reopenRecipients, [id, now]);
        return true;
      }),
    );
  }

  purge(request: PurgeRequest): Promise<PurgeResult> {
    const states = [...(request.states ?? FINISHED_STATES)];
    const before = request.before.getTime();
    const limit = Math.max(1, request.limit ?? 500);
    return this.run('purge finished messages', async () => {
      if (request.dryRun) return { count: (await this.pool.query<{ n: number }>(this.sql.countFinished, [before, states, request.bodiesOnly])).rows[0]?.n ?? 0 };
      const result = request.bodiesOnly
        ? await this.pool.query(this.sql.deleteBodies, [Date.now(), before, states, limit])
        : await this.pool.query(this.sql.deleteFinished, [before, states, limit]);
      return { count: result.rowCount ?? 0 };
    });
  }

  /** Cancels a queued, deferred or failed message; a message being sent or already sent stays as it is. */
  cancel(id: string): Promise<boolean> {
    return this.run('cancel a message', async () => (await this.pool.query(this.sql.cancelMessage, [id, Date.now()])).rowCount === 1);
  }

  /**
   * Newest first. `limit` defaults to 50 and is held to 1..500; the cursor is only valid with the
   * filters of the page it came from (and is the SQLite store's format).
   *
   * @throws Relay365Error `R365_LIST_CURSOR_INVALID` when the cursor was not made by this method.
   */
  list(query: ListQuery): Promise<{ items: StoredMessage[]; nextCursor: string | undefined }> {
    return this.run('list messages', async () => {
      const page = pageRead(query);
      const { text, values } = listStatement(this.sql.listDialect, query, page);
      const { rows } = await this.pool.query<PgMessageRow>(text, values);
      return pageOf(rows, page, toStoredMessage, (row) => [row.created_at, row.id]);
    });
  }

  counts(mailbox?: string): Promise<Record<MessageState, number>> {
    return this.run('count messages', async () => {
      const { rows } =
        mailbox === undefined
          ? await this.pool.query<{ state: string; n: number }>(this.sql.counts)
          : await this.pool.query<{ state: string; n: number }>(this.sql.countsForMailbox, [mailbox]);
      return stateCounts(rows);
    });
  }

  oldestWaiting(): Promise<Date | undefined> {
    return this.run('read the queue age', async () => toDate((await this.pool.query<{ t: number | null }>(this.sql.oldestWaiting)).rows[0]?.t ?? null));
  }

  nextDue(mailbox: string, pools: readonly string[]): Promise<Date | undefined> {
    return this.run('read the next due time', async () =>
      toDate((await this.pool.query<{ t: number | null }>(this.sql.nextDue, [mailbox, [...new Set(pools)]])).rows[0]?.t ?? null),
    );
  }

  /** One statement, so the three numbers describe the same moment. */
  quotaUsage(mailbox: string, limits: Pick<MailboxLimits, 'minuteMs' | 'dayMs'>, now: Date = new Date()): Promise<QuotaUsage> {
    return this.run('read quota usage', async () => {
      const t = now.getTime();
      const usage = (await this.pool.query<PgUsageRow>(this.sql.usage, [mailbox, t, t - limits.minuteMs, t - limits.dayMs])).rows[0]!;
      return { messagesLastMinute: usage.minute_n, recipientsLastDay: usage.day_recipients, sending: usage.live };
    });
  }

  pauseMailbox(pause: PauseRequest): Promise<MailboxPause> {
    return this.run('record a paused mailbox', async () => {
      const { rows } = await this.pool.query<PgPauseRow>(this.sql.pauseMailbox, [
        pause.mailbox,
        pause.class,
        pause.reply ?? null,
        pause.explanation === undefined ? null : JSON.stringify(pause.explanation),
        (pause.at ?? new Date()).getTime(),
        pause.owner,
      ]);
      return toMailboxPause(rows[0]!);
    });
  }

  resumeMailbox(mailbox: string): Promise<boolean> {
    return this.run('resume a mailbox', async () => (await this.pool.query(this.sql.resumeMailbox, [mailbox])).rowCount === 1);
  }

  requestMailboxResume(mailbox: string, now: Date = new Date()): Promise<MailboxPause | undefined> {
    return this.run('ask for a mailbox to resume', async () => {
      const row = (await this.pool.query<PgPauseRow>(this.sql.requestResume, [mailbox, now.getTime()])).rows[0];
      return row === undefined ? undefined : toMailboxPause(row);
    });
  }

  mailboxPauses(): Promise<MailboxPause[]> {
    return this.run('read the paused mailboxes', async () => (await this.pool.query<PgPauseRow>(this.sql.mailboxPauses)).rows.map(toMailboxPause));
  }

  /** Ends the pool after the queries in flight; calling it again does nothing. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }

  /** BEGIN ... COMMIT on one connection; ROLLBACK on any failure. */
  private transaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    return pgTransaction(this.pool, work);
  }

  /** Runs one store operation, turning PostgreSQL's environmental failures into `R365_OUTBOX_UNAVAILABLE`. */
  private async run<T>(doing: string, operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (err) {
      throw explainPgError(err, doing, this.where);
    }
  }
}
