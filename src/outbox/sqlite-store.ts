import { fstatSync, statSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import type Database from 'better-sqlite3';
import { pageOf, pageRead } from './cursor.js';
import { Relay365Error } from '../errors.js';
import { applySqliteMigrations, sqliteLedgerState } from '../store/sqlite-ledger.js';
import { explainSqliteError, isSqliteEnvironmentError, openSqliteFile } from '../store/sqlite-database.js';
import { openBody, sealBody, type BodyCipher } from './body-crypto.js';
import { startCheckpointer, type Checkpointer } from './sqlite-checkpointer.js';
import { candidatesToRead, planClaim, type MailboxTotals } from './claim-policy.js';
import { byAge, newMessageRow, rowReader, stateCounts, toDate } from './rows.js';
import { listStatement, SQLITE_LIST } from './list-sql.js';
import { MIGRATIONS, SQL, type AttemptRow, type MessageRow, type PauseRow, type RecipientRow, type SuppressionRow } from './sqlite-sql.js';
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

/** SQLite keeps JSON as TEXT: a JSON column arrives as its text. */
const { toStoredMessage, toAttempt, toRecipient, toSuppression, toMailboxPause } = rowReader((text: string): unknown => JSON.parse(text));

/** Options of {@link openSqliteStore}. */
export interface SqliteStoreOptions {
  /**
   * How long a write waits for another connection's write lock before it fails with
   * `R365_OUTBOX_UNAVAILABLE` (retryable). Writers hold the lock for one claim or one enqueue
   * (milliseconds), so the default 5 s only runs out when something holds a transaction open.
   */
  busyTimeoutMs?: number;
  /** Encrypts new bodies (`queue.encryptBodies`) and opens encrypted ones; without it, an encrypted body cannot be read. */
  bodies?: BodyCipher;
}

/**
 * Opens (creating it and its folder if needed) the SQLite outbox at `path`, applies the pending
 * migrations and returns the store. The file is made mode 0600, since it holds every message
 * in full; SQLite gives its `-wal` and `-shm` files the same mode.
 *
 * @throws Relay365Error `R365_OUTBOX_UNAVAILABLE` when the file cannot be created, opened or
 *   migrated (not writable, not a database, written by a newer relay365).
 * @example
 * ```ts
 * const store = await openSqliteStore('./data/relay365.db');
 * const message = await store.enqueue({ mailbox: 'relay@contoso.com', envelope, raw, source: { kind: 'smtp' } });
 * ```
 */
export async function openSqliteStore(path: string, options: SqliteStoreOptions = {}): Promise<SqliteOutboxStore> {
  return SqliteOutboxStore.open(path, options);
}

/**
 * The embedded outbox: one SQLite file in WAL mode. Several instances (processes or threads) may
 * share the file; every write runs in a `BEGIN IMMEDIATE` transaction, so two claims never
 * interleave. better-sqlite3 is synchronous: each call blocks the event loop for its transaction
 * (well under a millisecond), which is what keeps a claim atomic without locks of our own.
 *
 * Durability: every commit reaches the operating system before the call returns, so a killed
 * process loses nothing. What must also survive a power cut (a new message, an operator's retry or
 * cancel) is acknowledged only after an fdatasync of the log, run on libuv's thread pool so that the
 * event loop goes on serving other clients meanwhile. Claims and outcomes are not synced on their
 * own: a power cut may forget the last of them, and the message is then sent again (at least once,
 * never lost); the next synced commit or checkpoint makes them durable too.
 */
export class SqliteOutboxStore implements OutboxStore {
  /** See {@link flushWrites}. */
  readonly claimsFollowOutcomes = true;
  private statements: Statements | undefined;
  private transactions: Transactions | undefined;
  /**
   * Writes asked for in this event-loop turn, in the order asked: enqueues, outcomes and claims run in
   * one transaction at the turn's end (group commit; see {@link flushWrites}).
   */
  private readonly pendingWrites: PendingWrite[] = [];
  /** The log, open for fdatasync (see {@link datasyncLog}). */
  private log: FileHandle | undefined;
  /** A sync not yet started, which every commit made meanwhile may wait for; and the one running. */
  private queuedSync: Promise<void> | undefined;
  private runningSync: Promise<void> | undefined;
  /** list()'s statements, one per combination of filters, prepared when first used. */
  private readonly listStatements = new Map<string, Database.Statement<Array<string | number>, MessageRow>>();

  private constructor(
    private readonly db: Database.Database,
    /** The database file. */
    readonly path: string,
    /** Copies the log into the database off the event loop (none for `:memory:`). */
    private readonly checkpointer: Checkpointer | undefined,
    private readonly bodies: BodyCipher | undefined = undefined,
  ) {}

  /** See {@link openSqliteStore}. */
  static async open(path: string, options: SqliteStoreOptions = {}): Promise<SqliteOutboxStore> {
    const busyTimeoutMs = options.busyTimeoutMs ?? 5000;
    const inMemory = path === ':memory:';
    let db: Database.Database | undefined;
    try {
      db = await openSqliteFile(path, { busyTimeoutMs });
      db.pragma(SQL.pragmas.synchronous);
      db.pragma(SQL.pragmas.foreignKeys);
      db.pragma(SQL.pragmas.journalSizeLimit);
      if (!inMemory) db.pragma(SQL.pragmas.walAutocheckpoint);
      await new SqliteOutboxStore(db, path, undefined).migrate();
      // Started once the file is known to be a relay365 database.
      return new SqliteOutboxStore(db, path, inMemory ? undefined : startCheckpointer(path, { busyTimeoutMs }), options.bodies);
    } catch (err) {
      db?.close();
      if (err instanceof Relay365Error) throw err;
      throw new Relay365Error(
        'R365_OUTBOX_UNAVAILABLE',
        `Cannot open the outbox database ${path}: ${(err as Error).message}. ` +
          'Check that its folder is writable by this user and that the file is a relay365 database (queue.path).',
        { cause: err, details: { path } },
      );
    }
  }

  /** Applies every outbox step not yet in the file's ledger (part `outbox` of `schema_migrations`), all in one transaction. */
  migrate(): Promise<void> {
    return this.run('apply the outbox migrations', () => {
      const apply = this.db.transaction(() =>
        applySqliteMigrations(this.db, { part: 'outbox', what: 'the outbox tables', path: this.path, migrations: MIGRATIONS }),
      );
      const rebuilds = this.pendingRebuilds();
      if (rebuilds.length === 0) {
        apply.immediate();
        return;
      }
      // Alone or not at all: in exclusive locking mode the transaction takes the file's exclusive lock,
      // which SQLite grants only once no other connection holds it open (it waits the busy timeout).
      this.db.pragma('locking_mode = EXCLUSIVE');
      try {
        apply.exclusive();
      } catch (err) {
        if ((err as { code?: string }).code !== 'SQLITE_BUSY') throw err;
        throw new Relay365Error(
          'R365_OUTBOX_UNAVAILABLE',
          `Cannot upgrade the outbox database ${this.path} to schema ${Math.max(...rebuilds)}: another process has it open, such as relay365 serve of the previous release still running. ` +
            'This upgrade rebuilds tables that release reads and writes, so it is applied only while nothing else has the file open. ' +
            'Stop every relay365 process that uses the file (systemctl stop relay365), then start this release (docs/operations.md, "Upgrades").',
          { cause: err, retryable: true, details: { path: this.path, schema: Math.max(...rebuilds) } },
        );
      } finally {
        this.db.pragma('locking_mode = NORMAL');
        // The exclusive lock is released at the next access after the mode changes back.
        this.db.prepare('SELECT count(*) FROM sqlite_master').get();
      }
    });
  }

  /** The pending steps that rebuild tables an older release uses (see `Migration.exclusive`); none for a new file. */
  private pendingRebuilds(): number[] {
    const applied = sqliteLedgerState(this.db).applied('outbox');
    if (applied.length === 0) return [];
    return MIGRATIONS.filter((m) => m.exclusive === true && !applied.includes(m.version)).map((m) => m.version);
  }

  /**
   * Stores a message in state `queued`. The promise resolves after the commit is on disk (the log
   * fdatasynced), so a front door may answer 250 / 202 as soon as it does.
   *
   * @throws Relay365Error `R365_MESSAGE_INVALID` without exactly one of mailbox and pool, or without a recipient.
   */
  enqueue(message: NewMessage): Promise<StoredMessage> {
    let prepared: Insert & { row: MessageRow };
    try {
      prepared = this.prepareInsert(message);
    } catch (err) {
      return Promise.reject(explainSqliteError(err, 'store the message', this.path));
    }
    // Group commit: the writes of the same event-loop turn share one transaction, so one fdatasync makes
    // every enqueue of it durable; each promise still resolves only after it.
    return new Promise<StoredMessage>((resolve, reject) => this.write({ kind: 'insert', ...prepared, resolve, reject }));
  }

  private write(pending: PendingWrite): void {
    this.pendingWrites.push(pending);
    if (this.pendingWrites.length === 1) setImmediate(() => this.flushWrites());
  }

  /**
   * Runs the turn's writes in one `BEGIN IMMEDIATE` transaction, in the order they were asked for; when
   * one fails, each runs again in a transaction of its own, so only it fails (when the database itself
   * fails, every write fails at once). Outcomes and claims are
   * answered at the commit (they need no sync: see `SQL.pragmas.synchronous`); enqueues after the
   * fdatasync of the log. One transaction instead of one for each kind: at 8 submitters a message cost
   * 1.6 write transactions (an enqueue batch, a claim, an outcome), each writing its own copy of the pages
   * they share (the messages' leaf and index pages, the mailbox's send totals) into the log.
   */
  private flushWrites(): void {
    const batch = this.pendingWrites.splice(0);
    let results: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }>;
    try {
      results = this.tx.writes.immediate(batch).map((value) => ({ ok: true, value }));
    } catch (err) {
      // The database itself failed (locked past the busy timeout, disk full): every write would meet it
      // again, each after its own busy timeout on the event loop. All fail now, as one transaction.
      if (isSqliteEnvironmentError(err)) {
        for (const b of batch) b.reject(explainSqliteError(err, DOING[b.kind], this.path));
        return;
      }
      // One write failed and took the others' transaction with it: each on its own, so only it fails.
      results = batch.map((b) => {
        try {
          return { ok: true, value: this.tx.write.immediate(b) };
        } catch (error) {
          return { ok: false, error };
        }
      });
    }
    const inserts: PendingInsert[] = [];
    batch.forEach((b, i) => {
      const result = results[i]!;
      if (!result.ok) b.reject(explainSqliteError(result.error, DOING[b.kind], this.path));
      else if (b.kind === 'insert') inserts.push(b);
      else if (b.kind === 'complete') b.resolve(result.value as boolean);
      else b.resolve(result.value as ClaimResult);
    });
    if (inserts.length > 0) this.syncInserts(inserts);
  }

  private syncInserts(batch: PendingInsert[]): void {
    this.syncLog('store the message').then(
      () => {
        for (const b of batch) b.resolve(toStoredMessage(b.row));
      },
      (error: unknown) => {
        // Committed, but not known to be on disk: the front door will answer 4xx and the client send
        // it again. Take the batch back, so the retry is not a second copy; a message a worker has
        // claimed meanwhile is being sent, and its 250 is the truth.
        let withdrawn: Set<string>;
        try {
          withdrawn = this.withdraw(batch.map((b) => b.row.id));
        } catch {
          // The disk refuses even that: answer 4xx for all (a duplicate, at worst, never a loss).
          withdrawn = new Set(batch.map((b) => b.row.id));
        }
        for (const b of batch) {
          if (withdrawn.has(b.row.id)) b.reject(error);
          else b.resolve(toStoredMessage(b.row));
        }
      },
    );
  }

  /** Deletes what no worker has claimed of `ids`; returns the ids deleted. */
  private withdraw(ids: string[]): Set<string> {
    const withdrawn = new Set<string>();
    this.db
      .transaction(() => {
        for (const id of ids) if (this.sql.withdrawMessage.run(id).changes > 0) withdrawn.add(id);
      })
      .immediate();
    return withdrawn;
  }

  /**
   * Makes every commit so far durable: an fdatasync of the log (`<path>-wal`) on the thread pool.
   * Group sync: while one runs, the commits that follow share the next one, so a burst of batches
   * costs two syncs, not one each.
   */
  private syncLog(doing: string): Promise<void> {
    if (this.path === ':memory:') return Promise.resolve();
    if (this.queuedSync) return this.queuedSync;
    const start = async (): Promise<void> => {
      // From here on, a new commit needs the sync after this one.
      this.queuedSync = undefined;
      const running = this.datasyncLog(doing);
      this.runningSync = running;
      try {
        await running;
      } finally {
        if (this.runningSync === running) this.runningSync = undefined;
      }
    };
    const after = this.runningSync ?? Promise.resolve();
    const queued = after.then(start, start);
    this.queuedSync = queued;
    return queued;
  }

  /**
   * One fdatasync of the log. The handle stays open: SQLite keeps the log file (the same inode, only
   * truncated) as long as a connection is open, and this store's is until {@link close}. Before the
   * first commit there may be no log yet, and then nothing to sync.
   */
  private async datasyncLog(doing: string): Promise<void> {
    let log: FileHandle;
    try {
      log = this.log ??= await open(`${this.path}-wal`, 'r');
      await log.datasync();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && this.log === undefined) return;
      throw explainSyncError(err, doing, this.path);
    }
    this.checkLogIsLive(log, doing);
  }

  /**
   * The synced log must be the one on disk under `<path>-wal`: a log deleted or replaced under the
   * relay (another process that believed it was the last connection checkpointed and removed it)
   * would make this sync, and the 250 after it, a promise nothing keeps. Refuses the commit then.
   * Two stat calls on the event loop, answered from the kernel's inode cache in microseconds, rather
   * than two thread-pool round trips and their promises after every sync.
   */
  private checkLogIsLive(log: FileHandle, doing: string): void {
    let synced: { nlink: number; ino: number; dev: number };
    let named: { ino: number; dev: number } | undefined;
    try {
      synced = fstatSync(log.fd);
      named = statSync(`${this.path}-wal`, { throwIfNoEntry: false });
    } catch (err) {
      throw explainSyncError(err, doing, this.path);
    }
    if (synced.nlink > 0 && named !== undefined && named.ino === synced.ino && named.dev === synced.dev) return;
    throw new Relay365Error(
      'R365_OUTBOX_UNAVAILABLE',
      `Could not ${doing}: the outbox's write-ahead log ${this.path}-wal was deleted or replaced by another process while relay365 had it open, so what it writes no longer reaches the database file. ` +
        'Stop whatever removes or rewrites files in the data folder while the relay runs (a backup must use `sqlite3 relay365.db ".backup copy.db"`), then restart relay365.',
      { retryable: true, details: { path: this.path } },
    );
  }

  private prepareInsert(message: NewMessage): Insert & { row: MessageRow } {
    const row = newMessageRow(message, Date.now());
    const params: InsertParams = {
      id: row.id,
      mailbox: row.mailbox,
      pool: row.pool,
      envelopeFrom: row.envelope_from,
      envelopeTo: row.envelope_to,
      recipients: row.recipients,
      size: row.size,
      messageId: row.message_id,
      source: row.source,
      createdAt: row.created_at,
      nextAttemptAt: row.next_attempt_at,
      sendAt: row.send_at,
      labels: row.labels,
    };
    const tags = row.labels === null ? [] : (JSON.parse(row.labels) as { tags: string[] }).tags;
    return { row, params, ...sealBody(this.bodies, row.id, message.raw), to: message.envelope.to, tags };
  }

  get(id: string): Promise<StoredMessage | undefined> {
    return this.run('read a message', () => {
      const row = this.sql.getMessage.get(id);
      return row === undefined ? undefined : toStoredMessage(row);
    });
  }

  getRaw(id: string): Promise<Buffer | undefined> {
    return this.run("read a message's content", () => {
      const body = this.sql.getRaw.get(id);
      return body === undefined ? undefined : openBody(this.bodies, id, body.raw, body.encrypted === 1);
    });
  }

  purge(request: PurgeRequest): Promise<PurgeResult> {
    const states = JSON.stringify(request.states ?? FINISHED_STATES);
    const before = request.before.getTime();
    if (request.dryRun) {
      return this.run('count the messages to purge', () => ({
        count: this.sql.countFinished.get({ before, states, bodiesOnly: request.bodiesOnly ? 1 : 0 }) ?? 0,
      }));
    }
    const limit = Math.max(1, request.limit ?? 500);
    return this.run('purge finished messages', () => {
      const purge = this.db.transaction(() => {
        const now = Date.now();
        if (request.bodiesOnly) {
          const ids = this.sql.finishedWithBody.all({ before, states, limit });
          for (const id of ids) {
            this.sql.deleteBody.run(id);
            this.sql.markBodyDeleted.run({ id, now });
          }
          return ids.length;
        }
        const ids = this.sql.finished.all({ before, states, limit });
        let count = 0;
        for (const id of ids) count += this.sql.deleteFinished.run(id).changes;
        return count;
      });
      return { count: purge.immediate() };
    });
  }

  attempts(id: string): Promise<Attempt[]> {
    return this.run("read a message's attempts", () => this.sql.attempts.all(id).map(toAttempt));
  }

  /**
   * Leases what the mailbox may send now, in one `BEGIN IMMEDIATE` transaction so that no other
   * claim (in this process or another) sees the quota or the messages half-updated.
   */
  claim(request: ClaimRequest): Promise<ClaimResult> {
    // With the turn's other writes (flushWrites): a worker that frees a connection by recording an
    // outcome and claims the next message in the same turn pays for one transaction, not two.
    return new Promise<ClaimResult>((resolve, reject) => this.write({ kind: 'claim', request, resolve, reject }));
  }

  complete(request: CompleteRequest): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => this.write({ kind: 'complete', request, resolve, reject }));
  }

  async retry(id: string): Promise<boolean> {
    const changed = await this.run('retry a message', () =>
      this.db
        .transaction(() => {
          const now = Date.now();
          if (this.sql.retryMessage.run({ id, now }).changes !== 1) return false;
          this.sql.reopenRecipients.run({ messageId: id, updatedAt: now });
          return true;
        })
        .immediate(),
    );
    await this.syncLog('retry a message');
    return changed;
  }

  /** Cancels a queued, deferred or failed message; a message being sent or already sent stays as it is. */
  async cancel(id: string): Promise<boolean> {
    const changed = await this.run('cancel a message', () => this.sql.cancelMessage.run({ id, now: Date.now() }).changes === 1);
    // A cancel that a power cut forgot would let the message go out after all.
    await this.syncLog('cancel a message');
    return changed;
  }

  /**
   * Newest first. `limit` defaults to 50 and is held to 1..500; the cursor is only valid with the
   * filters of the page it came from.
   *
   * @throws Relay365Error `R365_LIST_CURSOR_INVALID` when the cursor was not made by this method.
   */
  list(query: ListQuery): Promise<{ items: StoredMessage[]; nextCursor: string | undefined }> {
    return this.run('list messages', () => {
      const page = pageRead(query);
      const { key, text, values } = listStatement(SQLITE_LIST, query, page);
      let statement = this.listStatements.get(key);
      if (statement === undefined) {
        statement = this.db.prepare<Array<string | number>, MessageRow>(text);
        this.listStatements.set(key, statement);
      }
      return pageOf(statement.all(...values), page, toStoredMessage, (row) => [row.created_at, row.id]);
    });
  }

  counts(mailbox?: string): Promise<Record<MessageState, number>> {
    return this.run('count messages', () => {
      const rows = mailbox === undefined ? this.sql.counts.all() : this.sql.countsForMailbox.all(mailbox);
      return stateCounts(rows);
    });
  }

  oldestWaiting(): Promise<Date | undefined> {
    return this.run('read the queue age', () => toDate(this.sql.oldestWaiting.get()?.t ?? null));
  }

  nextDue(mailbox: string, pools: readonly string[]): Promise<Date | undefined> {
    return this.run('read the next due time', () => {
      let next = this.sql.nextDueForMailbox.get({ mailbox })?.t ?? null;
      for (const pool of new Set(pools)) {
        const t = this.sql.nextDueForPool.get({ pool })?.t ?? null;
        if (t !== null && (next === null || t < next)) next = t;
      }
      return toDate(next);
    });
  }

  async pauseMailbox(pause: PauseRequest): Promise<MailboxPause> {
    const row = await this.run('record a paused mailbox', () =>
      this.sql.pauseMailbox.get({
        mailbox: pause.mailbox,
        class: pause.class,
        reply: pause.reply ?? null,
        explanation: pause.explanation === undefined ? null : JSON.stringify(pause.explanation),
        at: (pause.at ?? new Date()).getTime(),
        owner: pause.owner,
      }),
    );
    // A pause that a power cut forgot would let the next start send into the same refusal.
    await this.syncLog('record a paused mailbox');
    return toMailboxPause(row!);
  }

  async resumeMailbox(mailbox: string): Promise<boolean> {
    const changed = await this.run('resume a mailbox', () => this.sql.resumeMailbox.run(mailbox).changes === 1);
    await this.syncLog('resume a mailbox');
    return changed;
  }

  async requestMailboxResume(mailbox: string, now: Date = new Date()): Promise<MailboxPause | undefined> {
    const row = await this.run('ask for a mailbox to resume', () => this.tx.requestResume.immediate(mailbox, now.getTime()));
    await this.syncLog('ask for a mailbox to resume');
    return row === undefined ? undefined : toMailboxPause(row);
  }

  mailboxPauses(): Promise<MailboxPause[]> {
    return this.run('read the paused mailboxes', () => this.sql.mailboxPauses.all().map(toMailboxPause));
  }

  quotaUsage(mailbox: string, limits: Pick<MailboxLimits, 'minuteMs' | 'dayMs'>, now: Date = new Date()): Promise<QuotaUsage> {
    return this.run('read quota usage', () => this.tx.quotaUsage.deferred(mailbox, limits, now.getTime()));
  }

  recipients(id: string): Promise<RecipientRecord[]> {
    return this.run("read a message's recipients", () => this.sql.recipients.all(id).map(toRecipient));
  }

  /** One transaction: the ledger row, the match, the recipient's new state and the suppression commit together. */
  async recordBounce(report: BounceReport): Promise<{ matched: string | undefined; duplicate: boolean }> {
    const result = await this.run('record a bounce report', () => this.tx.recordBounce.immediate(report, Date.now()));
    // As suppress(): a suppression that a power cut forgot would let mail go to the address again.
    if (report.suppress !== undefined && result.matched !== undefined && !result.duplicate) await this.syncLog('record a bounce report');
    return result;
  }

  bounceCursor(mailbox: string): Promise<string | undefined> {
    return this.run("read a mailbox's bounce cursor", () => this.sql.bounceCursor.get(mailbox) ?? undefined);
  }

  /**
   * Not synced on its own: the log keeps commits in order, so a power cut that forgets this cursor
   * forgets only what came after the last synced commit, and the reader reads those reports again
   * (recordBounce then finds the ones it had applied and skips them).
   */
  saveBounceCursor(mailbox: string, cursor: string): Promise<void> {
    return this.run("save a mailbox's bounce cursor", () => {
      this.sql.saveBounceCursor.run({ mailbox, cursor });
    });
  }

  leaseBounceReader(mailbox: string, owner: string, ms: number, now: Date = new Date()): Promise<boolean> {
    const t = now.getTime();
    return this.run('lease a bounce reader', () => this.sql.leaseBounceReader.get({ mailbox, owner, until: t + ms, now: t }) !== undefined);
  }

  async suppress(entry: Omit<Suppression, 'createdAt'> & { createdAt?: Date }): Promise<void> {
    await this.run('add a suppression', () => {
      this.sql.suppress.run({
        addressKey: entry.address.toLowerCase(),
        address: entry.address,
        reason: entry.reason,
        dsnStatus: entry.dsnStatus ?? null,
        messageId: entry.messageId ?? null,
        source: entry.source,
        createdAt: (entry.createdAt ?? new Date()).getTime(),
      });
    });
    // An entry that a power cut forgot would let mail go to the address again.
    await this.syncLog('add a suppression');
  }

  async unsuppress(address: string): Promise<boolean> {
    const removed = await this.run('remove a suppression', () => this.sql.unsuppress.run(address.toLowerCase()).changes === 1);
    await this.syncLog('remove a suppression');
    return removed;
  }

  /**
   * Newest first. `limit` defaults to 50 and is held to 1..500.
   *
   * @throws Relay365Error `R365_LIST_CURSOR_INVALID` when the cursor was not made by this method.
   */
  suppressions(query: { limit?: number; cursor?: string }): Promise<{ items: Suppression[]; nextCursor: string | undefined }> {
    return this.run('list suppressions', () => {
      const page = pageRead(query);
      const rows = this.sql.suppressions.all({ createdAt: page.after.createdAt, key: page.after.id, limit: page.rows });
      return pageOf(rows, page, toSuppression, (row) => [row.created_at, row.address_key]);
    });
  }

  suppressed(addresses: readonly string[]): Promise<Suppression[]> {
    if (addresses.length === 0) return Promise.resolve([]);
    return this.run('look up suppressions', () =>
      this.sql.suppressed.all({ keys: JSON.stringify([...new Set(addresses.map((a) => a.toLowerCase()))]) }).map(toSuppression),
    );
  }

  /** Stops the checkpoint thread and closes the database; calling it again does nothing. */
  async close(): Promise<void> {
    await this.checkpointer?.stop();
    // Enqueues already committed still get their sync (and their answer) before the log closes.
    await Promise.allSettled([this.queuedSync, this.runningSync]);
    await this.log?.close();
    this.log = undefined;
    if (this.db.open) this.db.close();
  }

  /** Prepared once, on first use (the tables must exist first). */
  private get sql(): Statements {
    return (this.statements ??= prepareStatements(this.db));
  }

  private get tx(): Transactions {
    return (this.transactions ??= this.prepareTransactions());
  }

  private prepareTransactions(): Transactions {
    const sql = this.sql;
    // claim, complete and insert are plain functions, run inside a caller's transaction.
    const claim = (request: ClaimRequest, now: number): ClaimResult => {
      const { mailbox, limits } = request;
      const windows = this.slideWindows(mailbox, now, limits);
      const live = sql.liveLeases.get({ mailbox, now }) ?? { n: 0, soonest: null };
      const totals: MailboxTotals = {
        live: live.n,
        soonestLeaseExpiry: live.soonest,
        minuteSends: windows.minuteSends,
        minuteOldest: sql.oldestSendSince.get({ mailbox, since: windows.minuteEdge })?.at ?? null,
        dayRecipients: windows.dayRecipients,
      };
      const candidates = this.dueMessages(mailbox, request.pools, now, candidatesToRead(totals, limits, request.max));
      const plan = planClaim({ candidates, totals, limits, max: request.max, leaseMs: request.leaseMs, now });

      const claimed: StoredMessage[] = [];
      for (const row of plan.claim) {
        const leased: MessageRow = { ...row, state: 'sending', mailbox, lease_owner: request.owner, lease_until: now + request.leaseMs, updated_at: now };
        const lease = { id: row.id, owner: request.owner, leaseUntil: now + request.leaseMs, updatedAt: now };
        if (row.mailbox === null) sql.leasePoolMessage.run({ ...lease, mailbox });
        else sql.leaseMessage.run(lease);
        sql.insertSend.run({ mailbox, at: now, recipients: row.recipients, messageId: row.id });
        claimed.push(toStoredMessage(leased));
      }
      sql.saveSendTotals.run({ mailbox, dayRecipients: plan.totals.dayRecipients, minuteEdge: windows.minuteEdge, minuteSends: plan.totals.minuteSends });

      const { blocked } = plan;
      if (blocked === undefined) return { messages: claimed };
      const until = blocked.by === 'recipients' ? this.recipientsFreeAt(mailbox, now, limits.dayMs, blocked.recipientsNeeded) : blocked.until;
      return { messages: claimed, blockedBy: blocked.by, blockedUntil: new Date(until) };
    };

    const complete = (request: CompleteRequest): boolean => {
      const { attempt } = request;
      const explanation = attempt.explanation === undefined ? null : JSON.stringify(attempt.explanation);
      const reply = attempt.reply ?? null;
      const outcome = { id: request.id, owner: request.owner, reply, class: attempt.class, explanation, updatedAt: attempt.at.getTime() };
      // Read before the outcome rewrites updated_at: it finds the send the claim counted.
      const claim = sql.claimOf.get({ id: request.id, owner: request.owner });
      const changed = (
        request.state === 'deferred'
          ? sql.deferMessage.run({ ...outcome, nextAttemptAt: (request.nextAttemptAt ?? attempt.at).getTime() })
          : sql.finishMessage.run({ ...outcome, state: request.state, nextAttemptAt: attempt.at.getTime() })
      ).changes;
      if (changed !== 1) return false;
      const at = attempt.at.getTime();
      if (
        claim?.mailbox != null &&
        claim.at < at &&
        sql.touchSend.run({ mailbox: claim.mailbox, from: claim.at, to: at, messageId: request.id }).changes === 1
      ) {
        sql.recountTouchedSend.run({ mailbox: claim.mailbox, from: claim.at, to: at });
      }
      sql.insertAttempt.run({
        messageId: request.id,
        at: attempt.at.getTime(),
        mailbox: attempt.mailbox,
        reply,
        class: attempt.class,
        explanation,
        durationMs: Math.round(attempt.durationMs),
        owner: attempt.owner,
      });
      for (const r of request.recipients ?? []) {
        const answer = { state: r.state, reply: r.reply ?? null, explanation: r.explanation === undefined ? null : JSON.stringify(r.explanation) };
        sql.answerRecipient.run({ messageId: request.id, address: r.address, ...answer, updatedAt: at });
      }
      if (request.state !== 'deferred') {
        const state: RecipientState = request.state === 'sent' ? 'accepted' : 'refused';
        const failed = request.state === 'failed';
        sql.answerPendingRecipients.run({
          messageId: request.id,
          state,
          reply: failed ? reply : null,
          explanation: failed ? explanation : null,
          updatedAt: at,
        });
      }
      return true;
    };

    const recordBounce = this.db.transaction((report: BounceReport, recordedAt: number): { matched: string | undefined; duplicate: boolean } => {
      const key = { mailbox: report.mailbox, reportId: report.reportId, recipient: report.recipient.toLowerCase() };
      const fresh = sql.insertBounceReport.run({
        ...key,
        originalMessageId: report.originalMessageId,
        action: report.action,
        status: report.status,
        receivedAt: report.receivedAt.getTime(),
        recordedAt,
      }).changes;
      if (fresh === 0) return { matched: sql.bounceReportMatch.get(key) ?? undefined, duplicate: true };
      const target = sql.bounceCandidates
        .all({ originalMessageId: report.originalMessageId, mailbox: report.mailbox })
        .find((r) => r.address.toLowerCase() === key.recipient);
      if (target === undefined) return { matched: undefined, duplicate: false };
      sql.matchBounceReport.run({ ...key, messageId: target.message_id });
      // A delay notice never takes back a bounce that came first (reports may be read out of order).
      if (report.action === 'failed' || target.state !== 'bounced') {
        sql.bounceRecipient.run({
          messageId: target.message_id,
          position: target.position,
          state: report.action === 'failed' ? 'bounced' : 'delayed',
          reply: report.diagnostic ?? null,
          dsnStatus: report.status,
          remoteMta: report.remoteMta ?? null,
          reportId: report.reportId,
          updatedAt: report.receivedAt.getTime(),
        });
      }
      if (report.suppress !== undefined) {
        sql.suppress.run({
          addressKey: key.recipient,
          address: report.recipient,
          reason: report.suppress.reason,
          dsnStatus: report.status,
          messageId: target.message_id,
          source: 'bounce',
          createdAt: report.receivedAt.getTime(),
        });
      }
      return { matched: target.message_id, duplicate: false };
    });

    // One read transaction, so the three numbers describe the same moment.
    const quotaUsage = this.db.transaction((mailbox: string, limits: Pick<MailboxLimits, 'minuteMs' | 'dayMs'>, now: number): QuotaUsage => ({
      messagesLastMinute: sql.sendsSince.get({ mailbox, since: now - limits.minuteMs })?.n ?? 0,
      recipientsLastDay: sql.sendsSince.get({ mailbox, since: now - limits.dayMs })?.recipients ?? 0,
      sending: sql.liveLeases.get({ mailbox, now })?.n ?? 0,
    }));

    const insert = ({ params, raw, encrypted, to, tags }: Insert): void => {
      sql.insertMessage.run(params);
      sql.insertBody.run({ id: params.id as string, raw, encrypted: encrypted ? 1 : 0 });
      const messageId = params.id as string;
      to.forEach((address, position) => sql.insertRecipient.run({ messageId, position, address, updatedAt: params.createdAt as number }));
      for (const tag of tags) sql.insertTag.run({ tag, messageId });
    };
    const one = (b: PendingWrite): unknown =>
      b.kind === 'insert' ? insert(b) : b.kind === 'complete' ? complete(b.request) : claim(b.request, (b.request.now ?? new Date()).getTime());
    // No savepoint per write (each costs two statements and a statement journal): if one write throws,
    // the whole transaction is rolled back and flushWrites runs each write in a transaction of its own.
    const writes = this.db.transaction((batch: PendingWrite[]): unknown[] => batch.map(one));
    const write = this.db.transaction(one);

    // The request and the queue made due in one step: a worker that sees the one finds the other.
    const requestResume = this.db.transaction((mailbox: string, now: number): PauseRow | undefined => {
      const row = sql.requestResume.get({ mailbox, now });
      if (row !== undefined) sql.deferredDueNow.run({ mailbox, now });
      return row;
    });

    return { quotaUsage, writes, write, recordBounce, requestResume };
  }

  /**
   * Up to `limit` due messages of the mailbox and of its pools, oldest first. Each query returns at
   * most `limit` rows read along an index in order, so memory and time stay flat however many
   * messages wait.
   */
  private dueMessages(mailbox: string, pools: readonly string[], now: number, limit: number): MessageRow[] {
    let rows = firstRows(this.sql.dueForMailbox.iterate({ mailbox, now }), limit);
    for (const pool of new Set(pools)) {
      const more = firstRows(this.sql.dueForPool.iterate({ pool, now }), limit);
      if (more.length > 0) rows = [...rows, ...more].sort(byAge).slice(0, limit);
    }
    return rows;
  }

  /**
   * Brings the mailbox's running totals (`send_totals`) to `now`: deletes the sends that left the day
   * window, subtracting them, and moves the minute edge forward past the sends that left the minute
   * window. Each claim reads only the rows that left a window since the previous one; a clock or a
   * window that moved backwards costs one recount. The caller saves the totals with its own sends.
   */
  private slideWindows(mailbox: string, now: number, limits: Pick<MailboxLimits, 'minuteMs' | 'dayMs'>): SendTotals {
    const sql = this.sql;
    const minuteEdge = now - limits.minuteMs;
    const dayEdge = now - limits.dayMs;
    const saved = sql.sendTotals.get(mailbox) ?? { day_recipients: 0, minute_edge: minuteEdge, minute_sends: 0 };
    let minuteSends =
      minuteEdge >= saved.minute_edge
        ? saved.minute_sends - (sql.sendsBetween.get({ mailbox, after: saved.minute_edge, upTo: minuteEdge })?.n ?? 0)
        : (sql.sendsSince.get({ mailbox, since: minuteEdge })?.n ?? 0);
    let dayRecipients = saved.day_recipients;
    // The day window is the longest any quota looks back: older rows only take space.
    const expired = sql.expiredSends.get({ mailbox, before: dayEdge, minuteEdge });
    if (expired && expired.n > 0) {
      sql.pruneSends.run({ mailbox, before: dayEdge });
      dayRecipients -= expired.recipients;
      minuteSends -= expired.inMinute;
    }
    return { dayRecipients, minuteEdge, minuteSends };
  }

  /** When enough of the day window's recipients have left it for `needed` more to fit. */
  private recipientsFreeAt(mailbox: string, now: number, dayMs: number, needed: number): number {
    let freed = 0;
    let last = now;
    // Walks the window oldest first and stops early; it holds one row at a time.
    for (const send of this.sql.sendsSinceInOrder.iterate({ mailbox, since: now - dayMs })) {
      freed += send.recipients;
      last = send.at;
      if (freed >= needed) break;
    }
    return last + dayMs;
  }

  /** Runs one store operation, turning SQLite's environmental failures into `R365_OUTBOX_UNAVAILABLE`. */
  private run<T>(doing: string, operation: () => T): Promise<T> {
    try {
      return Promise.resolve(operation());
    } catch (err) {
      return Promise.reject(explainSqliteError(err, doing, this.path));
    }
  }
}

type Statements = ReturnType<typeof prepareStatements>;

/** The first `limit` rows of a query; leaving the loop early resets the statement. */
function firstRows<T>(rows: IterableIterator<T>, limit: number): T[] {
  const taken: T[] = [];
  if (limit <= 0) return taken;
  for (const row of rows) {
    taken.push(row);
    if (taken.length >= limit) break;
  }
  return taken;
}

/** A mailbox's sends in its windows, as of one claim. */
interface SendTotals {
  dayRecipients: number;
  /** Sends made after this time are in the minute window. */
  minuteEdge: number;
  minuteSends: number;
}

/** The named parameters of `SQL.insertMessage`. */
type InsertParams = Record<string, string | number | null>;

/** A message row to insert, its content and its envelope recipients. */
interface Insert {
  params: InsertParams;
  /** As stored: sealed when `encrypted`. */
  raw: Buffer;
  encrypted: boolean;
  to: readonly string[];
  tags: readonly string[];
}

interface PendingInsert extends Insert {
  kind: 'insert';
  row: MessageRow;
  resolve: (message: StoredMessage) => void;
  reject: (error: unknown) => void;
}

type PendingWrite =
  | PendingInsert
  | { kind: 'complete'; request: CompleteRequest; resolve: (done: boolean) => void; reject: (error: unknown) => void }
  | { kind: 'claim'; request: ClaimRequest; resolve: (result: ClaimResult) => void; reject: (error: unknown) => void };

/** What each kind of write was doing, for its error. */
const DOING: Record<PendingWrite['kind'], string> = { insert: 'store the message', complete: 'record a delivery attempt', claim: 'claim messages' };

interface Transactions {
  recordBounce: Database.Transaction<(report: BounceReport, recordedAt: number) => { matched: string | undefined; duplicate: boolean }>;
  writes: Database.Transaction<(batch: PendingWrite[]) => unknown[]>;
  write: Database.Transaction<(pending: PendingWrite) => unknown>;
  quotaUsage: Database.Transaction<(mailbox: string, limits: Pick<MailboxLimits, 'minuteMs' | 'dayMs'>, now: number) => QuotaUsage>;
  requestResume: Database.Transaction<(mailbox: string, now: number) => PauseRow | undefined>;
}

function prepareStatements(db: Database.Database) {
  const sendsSince = db.prepare<{ mailbox: string; since: number }, { n: number; recipients: number }>(SQL.sendsSince);
  return {
    insertMessage: db.prepare<InsertParams>(SQL.insertMessage),
    insertBody: db.prepare<{ id: string; raw: Buffer; encrypted: number }>(SQL.insertBody),
    insertTag: db.prepare<{ tag: string; messageId: string }>(SQL.insertTag),
    finishedWithBody: db.prepare<{ before: number; states: string; limit: number }, string>(SQL.finishedWithBody).pluck(),
    finished: db.prepare<{ before: number; states: string; limit: number }, string>(SQL.finished).pluck(),
    countFinished: db.prepare<{ before: number; states: string; bodiesOnly: number }, number>(SQL.countFinished).pluck(),
    deleteBody: db.prepare<[string]>(SQL.deleteBody),
    markBodyDeleted: db.prepare<{ id: string; now: number }>(SQL.markBodyDeleted),
    deleteFinished: db.prepare<[string]>(SQL.deleteFinished),
    withdrawMessage: db.prepare<[string]>(SQL.withdrawMessage),
    getMessage: db.prepare<[string], MessageRow>(SQL.getMessage),
    getRaw: db.prepare<[string], { raw: Buffer; encrypted: number }>(SQL.getRaw),
    attempts: db.prepare<[string], AttemptRow>(SQL.attempts),
    liveLeases: db.prepare<{ mailbox: string; now: number }, { n: number; soonest: number | null }>(SQL.liveLeases),
    sendsSince,
    sendsSinceInOrder: db.prepare<{ mailbox: string; since: number }, { at: number; recipients: number }>(SQL.sendsSinceInOrder),
    oldestSendSince: db.prepare<{ mailbox: string; since: number }, { at: number | null }>(SQL.oldestSendSince),
    sendsBetween: db.prepare<{ mailbox: string; after: number; upTo: number }, { n: number }>(SQL.sendsBetween),
    expiredSends: db.prepare<{ mailbox: string; before: number; minuteEdge: number }, { n: number; recipients: number; inMinute: number }>(SQL.expiredSends),
    pruneSends: db.prepare<{ mailbox: string; before: number }>(SQL.pruneSends),
    insertSend: db.prepare<{ mailbox: string; at: number; recipients: number; messageId: string }>(SQL.insertSend),
    sendTotals: db.prepare<[string], { day_recipients: number; minute_edge: number; minute_sends: number }>(SQL.sendTotals),
    saveSendTotals: db.prepare<{ mailbox: string; dayRecipients: number; minuteEdge: number; minuteSends: number }>(SQL.saveSendTotals),
    claimOf: db.prepare<{ id: string; owner: string }, { mailbox: string | null; at: number }>(SQL.claimOf),
    touchSend: db.prepare<{ mailbox: string; from: number; to: number; messageId: string }>(SQL.touchSend),
    recountTouchedSend: db.prepare<{ mailbox: string; from: number; to: number }>(SQL.recountTouchedSend),
    dueForMailbox: db.prepare<{ mailbox: string; now: number }, MessageRow>(SQL.dueForMailbox),
    dueForPool: db.prepare<{ pool: string; now: number }, MessageRow>(SQL.dueForPool),
    leaseMessage: db.prepare<{ id: string; owner: string; leaseUntil: number; updatedAt: number }>(SQL.leaseMessage),
    leasePoolMessage: db.prepare<{ id: string; mailbox: string; owner: string; leaseUntil: number; updatedAt: number }>(SQL.leasePoolMessage),
    deferMessage: db.prepare<Record<string, string | number | null>>(SQL.deferMessage),
    finishMessage: db.prepare<Record<string, string | number | null>>(SQL.finishMessage),
    insertAttempt: db.prepare<Record<string, string | number | null>>(SQL.insertAttempt),
    retryMessage: db.prepare<{ id: string; now: number }>(SQL.retryMessage),
    cancelMessage: db.prepare<{ id: string; now: number }>(SQL.cancelMessage),
    counts: db.prepare<[], { state: string; n: number }>(SQL.counts),
    countsForMailbox: db.prepare<[string], { state: string; n: number }>(SQL.countsForMailbox),
    oldestWaiting: db.prepare<[], { t: number | null }>(SQL.oldestWaiting),
    nextDueForMailbox: db.prepare<{ mailbox: string }, { t: number | null }>(SQL.nextDueForMailbox),
    nextDueForPool: db.prepare<{ pool: string }, { t: number | null }>(SQL.nextDueForPool),
    insertRecipient: db.prepare<{ messageId: string; position: number; address: string; updatedAt: number }>(SQL.insertRecipient),
    recipients: db.prepare<[string], RecipientRow>(SQL.recipients),
    answerRecipient: db.prepare<Record<string, string | number | null>>(SQL.answerRecipient),
    answerPendingRecipients: db.prepare<Record<string, string | number | null>>(SQL.answerPendingRecipients),
    reopenRecipients: db.prepare<{ messageId: string; updatedAt: number }>(SQL.reopenRecipients),
    insertBounceReport: db.prepare<Record<string, string | number | null>>(SQL.insertBounceReport),
    bounceCandidates: db.prepare<{ originalMessageId: string; mailbox: string }, { message_id: string; position: number; address: string; state: string }>(
      SQL.bounceCandidates,
    ),
    bounceRecipient: db.prepare<Record<string, string | number | null>>(SQL.bounceRecipient),
    matchBounceReport: db.prepare<{ mailbox: string; reportId: string; recipient: string; messageId: string }>(SQL.matchBounceReport),
    bounceReportMatch: db.prepare<{ mailbox: string; reportId: string; recipient: string }, string | null>(SQL.bounceReportMatch).pluck(),
    bounceCursor: db.prepare<[string], string | null>(SQL.bounceCursor).pluck(),
    saveBounceCursor: db.prepare<{ mailbox: string; cursor: string }>(SQL.saveBounceCursor),
    leaseBounceReader: db.prepare<{ mailbox: string; owner: string; until: number; now: number }, { mailbox: string }>(SQL.leaseBounceReader),
    suppress: db.prepare<Record<string, string | number | null>>(SQL.suppress),
    unsuppress: db.prepare<[string]>(SQL.unsuppress),
    suppressions: db.prepare<{ createdAt: number; key: string; limit: number }, SuppressionRow>(SQL.suppressions),
    suppressed: db.prepare<{ keys: string }, SuppressionRow>(SQL.suppressed),
    pauseMailbox: db.prepare<Record<string, string | number | null>, PauseRow>(SQL.pauseMailbox),
    resumeMailbox: db.prepare<[string]>(SQL.resumeMailbox),
    requestResume: db.prepare<{ mailbox: string; now: number }, PauseRow>(SQL.requestResume),
    deferredDueNow: db.prepare<{ mailbox: string; now: number }>(SQL.deferredDueNow),
    mailboxPauses: db.prepare<[], PauseRow>(SQL.mailboxPauses),
  };
}

/** A failed fdatasync of the log: the commit may not survive a power cut, so it is not acknowledged. */
function explainSyncError(err: unknown, doing: string, path: string): Relay365Error {
  const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
  return new Relay365Error(
    'R365_OUTBOX_UNAVAILABLE',
    `Could not ${doing}: flushing the outbox log ${path}-wal to disk failed (${code}): the disk is full or failing. Free space on its file system or move queue.path.`,
    { cause: err, retryable: true, details: { path, errno: code } },
  );
}
