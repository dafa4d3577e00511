import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { isRelay365Error } from '../../src/errors.js';
import { MIGRATIONS, SQL } from '../../src/outbox/sqlite-sql.js';
import { openSqliteStore, type MailboxLimits, type NewMessage } from '../../src/outbox/index.js';
import { outboxStoreContract } from '../contract/outbox-store.js';
import { outboxAtSchema } from '../helpers/outbox-schema.js';
import { tempDir } from '../helpers/sandbox.js';
import { seededInts } from '../helpers/random.js';

outboxStoreContract('SQLite', async () => {
  const dir = await tempDir('relay365-outbox-');
  const path = join(dir.path, 'relay365.db');
  return { store: await openSqliteStore(path), cleanup: dir.cleanup, connect: () => openSqliteStore(path) };
});

const MAILBOX = 'relay@contoso.example';
const WIDE: MailboxLimits = { messagesPerMinute: 1_000_000, recipientsPerDay: 10_000_000, maxConnections: 1_000_000, minuteMs: 60_000, dayMs: 86_400_000 };
const STORE_MODULE = new URL('../../src/outbox/sqlite-store.ts', import.meta.url).href;

/**
 * Where the volume check keeps its database. Its enqueues wait for fdatasyncs and its checkpoints
 * sync the file; the check is about lost or repeated messages and memory, not the disk, so by
 * default it runs on tmpfs, where fsync costs nothing. The full run (RELAY365_FULL_TESTS=1, as CI
 * sets) uses the disk and measures the real cost.
 */
async function volumeDir(): Promise<{ path: string; cleanup: () => Promise<void>; where: string }> {
  if (process.env.RELAY365_FULL_TESTS !== '1' && existsSync('/dev/shm')) {
    const path = await mkdtemp('/dev/shm/relay365-outbox-');
    return { path, cleanup: () => rm(path, { recursive: true, force: true }), where: 'tmpfs' };
  }
  return { ...(await tempDir('relay365-outbox-')), where: 'disk' };
}

function small(i: number): NewMessage {
  return {
    mailbox: MAILBOX,
    envelope: { from: 'app@contoso.example', to: ['someone@example.net'] },
    raw: Buffer.from(`Subject: ${i}\r\n\r\nbody ${i}\r\n`),
    source: { kind: 'smtp' },
  };
}

describe('SQLite outbox store: the file', () => {
  it('creates its folder and a database only its owner may read (0600), with its WAL file, in WAL mode', async () => {
    const dir = await tempDir();
    try {
      const path = join(dir.path, 'nested', 'deeper', 'relay365.db');
      const store = await openSqliteStore(path);
      await store.enqueue(small(1));
      assert.equal((await stat(path)).mode & 0o777, 0o600);
      assert.equal((await stat(`${path}-wal`)).mode & 0o777, 0o600, 'SQLite gives the log the mode of the database');
      const look = new Database(path, { readonly: true });
      assert.equal(look.pragma('journal_mode', { simple: true }), 'wal');
      assert.deepEqual(
        look.prepare('SELECT version FROM schema_migrations ORDER BY version').pluck().all(),
        MIGRATIONS.map((m) => m.version),
      );
      look.close();
      await store.close();
    } finally {
      await dir.cleanup();
    }
  });

  it('tightens an existing database file to 0600', async () => {
    const dir = await tempDir();
    try {
      const path = join(dir.path, 'relay365.db');
      await writeFile(path, '', { mode: 0o644 });
      const store = await openSqliteStore(path);
      assert.equal((await stat(path)).mode & 0o777, 0o600);
      await store.close();
    } finally {
      await dir.cleanup();
    }
  });

  it('refuses a file that is not a database, and a database a newer relay365 migrated, naming the fix', async () => {
    const dir = await tempDir();
    try {
      const garbage = join(dir.path, 'garbage.db');
      await writeFile(garbage, 'this is not a database, it is a text file that is long enough to have a header'.repeat(20));
      await assert.rejects(openSqliteStore(garbage), (err) => isRelay365Error(err, 'R365_OUTBOX_UNAVAILABLE') && /relay365 database|backup/.test(err.message));

      const newer = join(dir.path, 'newer.db');
      await (await openSqliteStore(newer)).close();
      const db = new Database(newer);
      db.prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0)').run();
      db.close();
      await assert.rejects(
        openSqliteStore(newer),
        (err) => isRelay365Error(err, 'R365_SCHEMA_TOO_NEW') && /999/.test(err.message) && /newer/.test(err.message),
      );
    } finally {
      await dir.cleanup();
    }
  });

  it('keeps every message enqueue resolved when its process is killed at once (kill -9)', async () => {
    const dir = await tempDir();
    try {
      const path = join(dir.path, 'relay365.db');
      // The child prints an id only after enqueue resolved; it is killed while it stores the next.
      const code = `
        const { openSqliteStore } = await import(${JSON.stringify(STORE_MODULE)});
        const store = await openSqliteStore(${JSON.stringify(path)});
        for (let i = 0; ; i++) {
          const m = await store.enqueue({ mailbox: ${JSON.stringify(MAILBOX)}, envelope: { from: 'a@contoso.example', to: ['b@example.net'] }, raw: Buffer.alloc(20_000, i % 256), source: { kind: 'cli' } });
          process.stdout.write(m.id + '\\n');
        }`;
      const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
      const answered: string[] = [];
      let buffered = '';
      await new Promise<void>((resolve, reject) => {
        child.on('error', reject);
        child.on('exit', () => resolve());
        child.stdout.on('data', (chunk: Buffer) => {
          buffered += chunk.toString('utf8');
          const lines = buffered.split('\n');
          buffered = lines.pop() ?? '';
          answered.push(...lines);
          if (answered.length >= 200 && child.exitCode === null) child.kill('SIGKILL');
        });
      });
      assert.equal(child.signalCode, 'SIGKILL');
      const store = await openSqliteStore(path);
      try {
        const missing = [];
        for (const id of answered) if ((await store.get(id)) === undefined) missing.push(id);
        assert.deepEqual(missing, [], 'every answered message survived');
        assert.ok((await store.counts()).queued >= answered.length);
      } finally {
        await store.close();
      }
    } finally {
      await dir.cleanup();
    }
  });
});

/** One system call of an `strace -f -y` trace, with the thread that made it. */
interface Syscall {
  line: number;
  tid: number;
  name: string;
  /** The path of the first file descriptor argument (`-y`), when it has one. */
  path: string | undefined;
  text: string;
}

/**
 * The completed calls of an `strace -f -y` trace, in the order they returned. A call another thread
 * interrupted is printed as `name(args <unfinished ...>` and later `<... name resumed>) = result`:
 * it counts where it resumed, with the path from where it started.
 */
function parseTrace(trace: string): Syscall[] {
  const calls: Syscall[] = [];
  const started = new Map<string, string>();
  trace.split('\n').forEach((text, line) => {
    const unfinished = /^(\d+)\s+(\w+)\((.*)<unfinished \.\.\.>$/.exec(text);
    if (unfinished) return void started.set(`${unfinished[1]}:${unfinished[2]}`, unfinished[3]!);
    const resumed = /^(\d+)\s+<\.\.\. (\w+) resumed>/.exec(text);
    const whole = /^(\d+)\s+(\w+)\((.*)$/.exec(text);
    const m = resumed ?? whole;
    if (!m) return;
    const args = resumed ? (started.get(`${m[1]}:${m[2]}`) ?? '') : m[3]!;
    calls.push({ line, tid: Number(m[1]), name: m[2]!, path: /^\d+<([^>]*)>/.exec(args)?.[1], text: resumed ? `${args} ${text}` : text });
  });
  return calls;
}

describe('SQLite outbox store: the writes of one event-loop turn', () => {
  const sent = (id: string, explanation?: unknown) => ({
    id,
    owner: 'w',
    state: 'sent' as const,
    attempt: { at: new Date(), mailbox: MAILBOX, reply: '250 2.0.0 OK', class: 'sent' as const, explanation: explanation as undefined, durationMs: 1, owner: 'w' },
  });

  it('run in the order asked: an outcome recorded and a claim asked for in the same turn, the claim takes the connection the outcome freed', async () => {
    const dir = await tempDir();
    try {
      const path = join(dir.path, 'relay365.db');
      const store = await openSqliteStore(path);
      const one: MailboxLimits = { ...WIDE, maxConnections: 1 };
      const [a, b] = [await store.enqueue(small(1)), await store.enqueue(small(2))];
      const first = await store.claim({ mailbox: MAILBOX, pools: [], owner: 'w', leaseMs: 60_000, limits: one, max: 1 });
      assert.deepEqual(first.messages.map((m) => m.id), [a.id]);
      // With a's lease live, the only connection is taken: a claim alone gets nothing.
      const blocked = await store.claim({ mailbox: MAILBOX, pools: [], owner: 'w', leaseMs: 60_000, limits: one, max: 1 });
      assert.deepEqual(blocked.messages, []);
      // Asked for in one turn, outcome first: one transaction, in that order.
      const [done, next] = await Promise.all([store.complete(sent(a.id)), store.claim({ mailbox: MAILBOX, pools: [], owner: 'w', leaseMs: 60_000, limits: one, max: 1 })]);
      assert.equal(done, true);
      assert.deepEqual(next.messages.map((m) => m.id), [b.id]);
      assert.equal((await store.get(a.id))?.state, 'sent');
      await store.close();
    } finally {
      await dir.cleanup();
    }
  });

  it('fail one at a time: a write that throws is rolled back alone, and the enqueue, outcome and claim asked for with it are kept', async () => {
    const dir = await tempDir();
    try {
      const path = join(dir.path, 'relay365.db');
      const store = await openSqliteStore(path);
      const [a, b] = [await store.enqueue(small(1)), await store.enqueue(small(2))];
      const claimed = await store.claim({ mailbox: MAILBOX, pools: [], owner: 'w', leaseMs: 60_000, limits: WIDE, max: 2 });
      assert.equal(claimed.messages.length, 2);
      // An explanation that cannot be written as JSON makes b's outcome throw inside the transaction.
      const circular: Record<string, unknown> = { id: 'x' };
      circular.self = circular;
      const results = await Promise.allSettled([
        store.enqueue(small(3)),
        store.complete(sent(a.id)),
        store.complete(sent(b.id, circular)),
        store.claim({ mailbox: MAILBOX, pools: [], owner: 'w', leaseMs: 60_000, limits: WIDE, max: 5 }),
      ]);
      assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
      const c = (results[0] as PromiseFulfilledResult<{ id: string }>).value;
      assert.deepEqual((results[3] as PromiseFulfilledResult<{ messages: Array<{ id: string }> }>).value.messages.map((m) => m.id), [c.id]);
      // What the rest did is in the file, read by another connection; b is untouched, still leased.
      const look = new Database(path, { readonly: true });
      const states = Object.fromEntries(
        (look.prepare('SELECT id, state FROM messages').all() as Array<{ id: string; state: string }>).map((r) => [r.id, r.state]),
      );
      look.close();
      assert.deepEqual(states, { [a.id]: 'sent', [b.id]: 'sending', [c.id]: 'sending' });
      assert.equal((await store.attempts(b.id)).length, 0);
      await store.close();
    } finally {
      await dir.cleanup();
    }
  });

  it('fail together, within one busy timeout, when the database is locked: no write is tried again against the same lock', async () => {
    const dir = await tempDir();
    try {
      const path = join(dir.path, 'relay365.db');
      const busyTimeoutMs = 200;
      const store = await openSqliteStore(path, { busyTimeoutMs });
      await store.enqueue(small(0));
      // Another process holds the write lock (a SQLite shell left in a transaction).
      const holder = new Database(path);
      holder.exec('BEGIN IMMEDIATE');
      const started = performance.now();
      const results = await Promise.allSettled([
        ...Array.from({ length: 9 }, (_, i) => store.enqueue(small(i + 1))),
        store.claim({ mailbox: MAILBOX, pools: [], owner: 'w', leaseMs: 60_000, limits: WIDE, max: 5 }),
      ]);
      const seconds = (performance.now() - started) / 1000;
      holder.exec('ROLLBACK');
      holder.close();
      for (const r of results) {
        assert.equal(r.status, 'rejected');
        assert.ok(isRelay365Error(r.reason) && r.reason.code === 'R365_OUTBOX_UNAVAILABLE', String(r.reason));
        assert.match((r.reason as Error).message, /locked by another connection/);
      }
      // One busy timeout for the turn; trying each of the ten again would wait eleven (2.2 s).
      assert.ok(seconds < 1.2, `the turn took ${seconds.toFixed(2)} s`);
      // Nothing of the turn is in the file, and the store works once the lock is gone.
      assert.equal((await store.counts()).queued, 1);
      await store.enqueue(small(10));
      assert.equal((await store.counts()).queued, 2);
      await store.close();
    } finally {
      await dir.cleanup();
    }
  });
});

describe('SQLite outbox store: running quota totals', () => {
  /** What `send_totals` should say, counted row by row from `sends`. */
  function counted(db: Database.Database, mailbox: string, minuteEdge: number): { day: number; minute: number } {
    const row = db
      .prepare('SELECT coalesce(sum(recipients), 0) AS day, coalesce(sum(at > ?), 0) AS minute FROM sends WHERE mailbox = ?')
      .get(minuteEdge, mailbox) as { day: number; minute: number };
    return row;
  }

  // The second walk's day is shorter than its minute (only a test would set that): sends leave the day
  // window while the minute total still counts them.
  for (const windows of [
    { minuteMs: 10_000, dayMs: 60_000 },
    { minuteMs: 20_000, dayMs: 8_000 },
  ])
    it(`keep the same counts as the sends themselves through random claims, late completions and a clock that jumps back (minute ${windows.minuteMs} ms, day ${windows.dayMs} ms)`, async () => {
      const dir = await tempDir();
      try {
        const path = join(dir.path, 'relay365.db');
        const store = await openSqliteStore(path);
        const look = new Database(path, { readonly: true });
        // A fixed seed: the same walk every run.
        const rand = seededInts(0x2545f491);
        const limits: MailboxLimits = { messagesPerMinute: 6, recipientsPerDay: 40, maxConnections: 4, ...windows };
        let now = Date.now() + 60_000;
        const leased: Array<{ id: string; claimedAt: number }> = [];
        let touchedAcrossEdge = 0;
        let backwards = 0;
        let claimedTotal = 0;
        for (let step = 0; step < 600; step++) {
          const jump = rand(20) === 0 ? -rand(15_000) : rand(4_000);
          if (jump < 0) backwards += 1;
          now += jump;
          const op = rand(3);
          if (op === 0) {
            for (let i = rand(3); i >= 0; i--) {
              const to = Array.from({ length: 1 + rand(3) }, (_, k) => `r${k}@example.net`);
              await store.enqueue({ ...small(step), envelope: { from: 'app@contoso.example', to } });
            }
          } else if (op === 1) {
            // A send older than the day has left every window, even a longer minute's.
            const before = look
              .prepare('SELECT count(*) AS n FROM sends WHERE mailbox = ? AND at > ?')
              .get(MAILBOX, now - Math.min(limits.minuteMs, limits.dayMs)) as { n: number };
            const { messages } = await store.claim({
              mailbox: MAILBOX,
              pools: [],
              owner: 'walk',
              leaseMs: 3_600_000,
              limits,
              max: 1 + rand(4),
              now: new Date(now),
            });
            assert.ok(
              messages.length <= Math.max(0, limits.messagesPerMinute - before.n),
              `step ${step}: ${before.n} sent this minute, ${messages.length} more claimed`,
            );
            for (const m of messages) leased.push({ id: m.id, claimedAt: now });
            claimedTotal += messages.length;
            const saved = look
              .prepare('SELECT day_recipients AS day, minute_sends AS minute, minute_edge AS edge FROM send_totals WHERE mailbox = ?')
              .get(MAILBOX) as { day: number; minute: number; edge: number } | undefined;
            if (saved) {
              assert.equal(saved.edge, now - limits.minuteMs);
              assert.deepEqual({ day: saved.day, minute: saved.minute }, counted(look, MAILBOX, saved.edge), `step ${step}: totals drifted from the sends`);
            }
          } else if (leased.length > 0) {
            // Completes one at a random later time: some sends move across an edge a claim already passed.
            const [done] = leased.splice(rand(leased.length), 1);
            const at = now + rand(12_000);
            const edge = (look.prepare('SELECT minute_edge AS e FROM send_totals WHERE mailbox = ?').get(MAILBOX) as { e: number } | undefined)?.e;
            const sendAt = (look.prepare('SELECT at FROM sends WHERE message_id = ?').get(done!.id) as { at: number } | undefined)?.at;
            if (edge !== undefined && sendAt !== undefined && sendAt <= edge && at > edge) touchedAcrossEdge += 1;
            assert.ok(
              await store.complete({
                id: done!.id,
                owner: 'walk',
                state: 'sent',
                attempt: { at: new Date(at), mailbox: MAILBOX, reply: '250 OK', class: 'sent', explanation: undefined, durationMs: 1, owner: 'walk' },
              }),
            );
          }
        }
        assert.ok(claimedTotal > 100, `the walk claimed ${claimedTotal}`);
        // (With a day shorter than the minute, a send is gone before the minute edge passes it.)
        if (windows.dayMs > windows.minuteMs) assert.ok(touchedAcrossEdge > 0, 'the walk moved a send back into the minute window');
        assert.ok(backwards > 10, 'the walk moved the clock back');
        look.close();
        await store.close();
      } finally {
        await dir.cleanup();
      }
    });

  it('are built from the sends a database of schema 2 holds when it is migrated, and its queued content moves to its own table', async () => {
    const dir = await tempDir();
    try {
      const path = join(dir.path, 'relay365.db');
      // A database as the release before the totals left it: schema 2, with sends in its windows.
      const old = outboxAtSchema(path, 2);
      const now = Date.now() + 10_000; // the claim's time, after the enqueues below
      const send = old.prepare('INSERT INTO sends (mailbox, at, recipients, message_id) VALUES (?, ?, ?, NULL)');
      send.run(MAILBOX, now - 5_000, 3); // in both windows
      send.run(MAILBOX, now - 120_000, 4); // in the day window only
      send.run('other@contoso.example', now - 1_000, 9);
      // A queued message of that release, its content in the row (300 KB: overflow pages).
      const body = Buffer.concat([Buffer.from('Subject: from schema 2\r\n\r\n'), Buffer.alloc(300_000, 0x61), Buffer.from('\r\n')]);
      old
        .prepare(
          `INSERT INTO messages (id, mailbox, pool, envelope_from, envelope_to, recipients, size, message_id, source, state, attempts,
             created_at, updated_at, next_attempt_at, raw)
           VALUES ('00old', ?, NULL, 'app@contoso.example', '["someone@example.net"]', 1, ?, NULL, '{"kind":"smtp"}', 'queued', 0, ?, ?, ?, ?)`,
        )
        .run(MAILBOX, body.length, now - 60_000, now - 60_000, now - 60_000, body);
      old.close();

      const store = await openSqliteStore(path);
      for (let i = 0; i < 5; i++) await store.enqueue(small(i));
      const limits: MailboxLimits = { ...WIDE, messagesPerMinute: 10, recipientsPerDay: 9 };
      const a = await store.claim({ mailbox: MAILBOX, pools: [], owner: 'o', leaseMs: 60_000, limits, max: 10, now: new Date(now) });
      assert.equal(a.messages.length, 2, '7 of 9 recipients used: two one-recipient messages fit');
      assert.equal(a.blockedBy, 'recipients');
      assert.equal(a.messages[0]?.id, '00old', 'the old message, oldest first');
      assert.deepEqual(await store.getRaw('00old'), body);
      const look = new Database(path, { readonly: true });
      const columns = look.prepare("SELECT name FROM pragma_table_info('messages')").pluck().all();
      look.close();
      assert.ok(!columns.includes('raw'), 'the content left the messages table');
      const usage = await store.quotaUsage(MAILBOX, limits, new Date(now));
      assert.deepEqual([usage.messagesLastMinute, usage.recipientsLastDay], [3, 9]);
      await store.close();
    } finally {
      await dir.cleanup();
    }
  });
});

describe('SQLite outbox store: sends keyed by mailbox and time (schema 9)', () => {
  it('keeps the sends of a schema-8 file (those without a message as well), and a message leased before the upgrade moves its own send when it completes', async () => {
    const dir = await tempDir();
    try {
      const path = join(dir.path, 'relay365.db');
      const old = outboxAtSchema(path, 8);
      const claimedAt = Date.now() - 20_000;
      // Leased by node 'o' at claimedAt, as schema 8's claim left it: the message row and its send.
      old
        .prepare(
          `INSERT INTO messages (id, mailbox, pool, envelope_from, envelope_to, recipients, size, message_id, source, state, attempts,
             created_at, updated_at, next_attempt_at, lease_owner, lease_until)
           VALUES ('01leased', ?, NULL, 'app@contoso.example', '["a@example.net","b@example.net"]', 2, 10, NULL, '{"kind":"smtp"}', 'sending', 0, ?, ?, ?, 'o', ?)`,
        )
        .run(MAILBOX, claimedAt - 1_000, claimedAt, claimedAt - 1_000, claimedAt + 600_000);
      old.prepare("INSERT INTO message_bodies (id, raw) VALUES ('01leased', ?)").run(Buffer.from('Subject: x\r\n\r\nx\r\n'));
      old.prepare("INSERT INTO message_recipients (message_id, position, address, state, updated_at) VALUES ('01leased', 0, 'a@example.net', 'pending', 0), ('01leased', 1, 'b@example.net', 'pending', 0)").run();
      const send = old.prepare('INSERT INTO sends (mailbox, at, recipients, message_id) VALUES (?, ?, ?, ?)');
      send.run(MAILBOX, claimedAt, 2, '01leased');
      // Two sends from before schema 2 at the same time, without a message: both still count.
      send.run(MAILBOX, claimedAt - 5_000, 3, null);
      send.run(MAILBOX, claimedAt - 5_000, 4, null);
      send.run(MAILBOX, Date.now() - 3_600_000, 5, 'older'); // in the day window only
      old.prepare('INSERT INTO send_totals (mailbox, day_recipients, minute_edge, minute_sends) VALUES (?, 14, 0, 4)').run(MAILBOX);
      old.close();

      const store = await openSqliteStore(path);
      try {
        const limits: MailboxLimits = { ...WIDE, minuteMs: 60_000, dayMs: 86_400_000 };
        const before = await store.quotaUsage(MAILBOX, limits);
        assert.deepEqual([before.messagesLastMinute, before.recipientsLastDay, before.sending], [3, 14, 1]);
        const doneAt = claimedAt + 15_000;
        assert.ok(
          await store.complete({
            id: '01leased',
            owner: 'o',
            state: 'sent',
            attempt: { at: new Date(doneAt), mailbox: MAILBOX, reply: '250 2.0.0 OK', class: 'sent', explanation: undefined, durationMs: 1, owner: 'o' },
          }),
        );
        const look = new Database(path, { readonly: true });
        try {
          assert.deepEqual(look.prepare("SELECT at FROM sends WHERE message_id = '01leased'").pluck().all(), [doneAt], 'its send moved to when Exchange took it');
          assert.equal(look.prepare('SELECT count(*) FROM sends').pluck().get(), 4);
          assert.deepEqual(look.prepare("SELECT name FROM pragma_index_list('sends') WHERE origin = 'c'").pluck().all(), [], 'the rows are the index');
        } finally {
          look.close();
        }
        const after = await store.quotaUsage(MAILBOX, limits);
        assert.deepEqual([after.messagesLastMinute, after.recipientsLastDay, after.sending], [3, 14, 0]);
      } finally {
        await store.close();
      }
    } finally {
      await dir.cleanup();
    }
  });
});

describe('SQLite outbox store: an upgrade that rebuilds tables runs alone', () => {

  it('refuses, naming the cause and the fix, while another process has a schema-8 file open, and upgrades once it is gone', async () => {
    const dir = await tempDir();
    try {
      const path = join(dir.path, 'relay365.db');
      outboxAtSchema(path, 8).close(); // as relay365 0.1.0 leaves it
      // A relay of the previous release, idle between sends: its connection holds the file open.
      const running = new Database(path);
      running.prepare('SELECT count(*) FROM messages').get();
      await assert.rejects(
        openSqliteStore(path, { busyTimeoutMs: 200 }),
        (err) =>
          isRelay365Error(err, 'R365_OUTBOX_UNAVAILABLE') &&
          err.message.includes(`Cannot upgrade the outbox database ${path} to schema 10: another process has it open`) &&
          err.message.includes('Stop every relay365 process that uses the file'),
      );
      // Nothing was applied, and the other process goes on as before.
      assert.deepEqual(running.prepare('SELECT max(version) FROM schema_migrations').pluck().get(), 8);
      running.prepare("INSERT INTO sends (mailbox, at, recipients, message_id) VALUES ('m', 1, 1, 'x')").run();
      running.close();
      const store = await openSqliteStore(path, { busyTimeoutMs: 200 });
      try {
        // Upgraded, and back in normal locking: another connection reads and writes beside the store.
        const other = new Database(path);
        try {
          assert.equal(other.prepare("SELECT max(version) FROM schema_migrations WHERE part = 'outbox'").pluck().get(), Math.max(...MIGRATIONS.map((m) => m.version)));
          assert.equal(other.prepare('SELECT count(*) FROM sends').pluck().get(), 1);
          other.prepare("INSERT INTO suppressions (address_key, address, reason, source, created_at) VALUES ('a@example.net', 'a@example.net', 'test', 'manual', 0)").run();
        } finally {
          other.close();
        }
        await store.enqueue(small(1));
        assert.equal((await store.counts()).queued, 1);
      } finally {
        await store.close();
      }
    } finally {
      await dir.cleanup();
    }
  });

  it('creates a new file beside another open connection (nothing of an older release to protect)', async () => {
    const dir = await tempDir();
    try {
      const path = join(dir.path, 'relay365.db');
      const first = new Database(path);
      first.pragma('journal_mode = WAL');
      first.exec('CREATE TABLE other_part (x)');
      try {
        const store = await openSqliteStore(path, { busyTimeoutMs: 200 });
        await store.enqueue(small(1));
        await store.close();
      } finally {
        first.close();
      }
    } finally {
      await dir.cleanup();
    }
  });
});

describe('SQLite outbox store: recipients and attempts in their message\'s order (schema 10)', () => {
  it("keeps a schema-9 file's recipients and attempts, each message's in its order, numbers the next attempt after them, and a purge still takes both", async () => {
    const dir = await tempDir();
    try {
      const path = join(dir.path, 'relay365.db');
      const old = outboxAtSchema(path, 9);
      const message = old.prepare(
        `INSERT INTO messages (id, mailbox, pool, envelope_from, envelope_to, recipients, size, message_id, source, state, attempts,
           created_at, updated_at, next_attempt_at)
         VALUES (?, '${MAILBOX}', NULL, 'app@contoso.example', ?, ?, 10, NULL, '{"kind":"smtp"}', ?, ?, 1000, 2000, 1000)`,
      );
      message.run('01deferred', '["a@example.net","b@example.net"]', 2, 'deferred', 2);
      message.run('02other', '["c@example.net"]', 1, 'sent', 1);
      old.prepare("INSERT INTO message_bodies (id, raw) VALUES ('01deferred', ?), ('02other', ?)").run(Buffer.from('Subject: x\r\n\r\nx\r\n'), Buffer.from('x'));
      const recipient = old.prepare('INSERT INTO message_recipients (message_id, position, address, state, reply, updated_at) VALUES (?, ?, ?, ?, ?, 0)');
      // Exchange busy at one recipient (the reply as ../shared/M365.md lists it; the catalogue's smtp-451-4.7.500).
      const busy = '451 4.7.500 Server busy. Please try again later.';
      recipient.run('01deferred', 1, 'b@example.net', 'refused', busy);
      recipient.run('02other', 0, 'c@example.net', 'accepted', null);
      recipient.run('01deferred', 0, 'a@example.net', 'pending', null);
      const attempt = old.prepare("INSERT INTO attempts (message_id, at, mailbox, reply, class, duration_ms, owner) VALUES (?, ?, ?, ?, ?, 1, 'o')");
      // Interleaved with another message's, as the rowids of a busy outbox are.
      attempt.run('01deferred', 1100, MAILBOX, busy, 'transient');
      attempt.run('02other', 1150, MAILBOX, '250 2.0.0 OK', 'sent');
      attempt.run('01deferred', 1200, MAILBOX, busy, 'transient');
      old.close();

      const store = await openSqliteStore(path);
      try {
        assert.deepEqual(
          (await store.recipients('01deferred')).map((r) => [r.address, r.state, r.reply]),
          [
            ['a@example.net', 'pending', undefined],
            ['b@example.net', 'refused', busy],
          ],
        );
        assert.deepEqual(
          (await store.attempts('01deferred')).map((a) => [a.at.getTime(), a.class]),
          [
            [1100, 'transient'],
            [1200, 'transient'],
          ],
        );
        assert.deepEqual(
          (await store.attempts('02other')).map((a) => a.at.getTime()),
          [1150],
        );
        await store.retry('01deferred');
        const { messages } = await store.claim({ mailbox: MAILBOX, pools: [], owner: 'n', leaseMs: 60_000, limits: WIDE, max: 1 });
        assert.equal(messages[0]?.id, '01deferred');
        const at = new Date();
        assert.ok(
          await store.complete({
            id: '01deferred',
            owner: 'n',
            state: 'sent',
            attempt: { at, mailbox: MAILBOX, reply: '250 2.0.0 OK', class: 'sent', explanation: undefined, durationMs: 1, owner: 'n' },
          }),
        );
        assert.deepEqual(
          (await store.attempts('01deferred')).map((a) => [a.at.getTime(), a.class]),
          [
            [1100, 'transient'],
            [1200, 'transient'],
            [at.getTime(), 'sent'],
          ],
          'the third attempt comes after the two from before the upgrade',
        );
        assert.equal((await store.purge({ before: new Date(Date.now() + 60_000), bodiesOnly: false })).count, 2);
        const look = new Database(path, { readonly: true });
        try {
          assert.deepEqual(
            ['attempts', 'message_recipients'].map((t) => look.prepare(`SELECT count(*) FROM ${t}`).pluck().get()),
            [0, 0],
            "a purged message's attempts and recipients go with it",
          );
        } finally {
          look.close();
        }
      } finally {
        await store.close();
      }
    } finally {
      await dir.cleanup();
    }
  });
});

describe('SQLite outbox store: one index of finished messages (schema 11)', () => {
  it('sweeps contents and records oldest first along messages_finished, across messages that lost their content and those that did not', async () => {
    const dir = await tempDir();
    try {
      const path = join(dir.path, 'relay365.db');
      const store = await openSqliteStore(path);
      try {
        // Six finished messages, oldest first, each finished (its attempt's time) 1 s after the one before.
        const t0 = Date.now() - 600_000;
        const ids: string[] = [];
        for (let i = 0; i < 6; i++) {
          const m = await store.enqueue(small(i));
          const { messages } = await store.claim({ mailbox: MAILBOX, pools: [], owner: 'o', leaseMs: 60_000, limits: WIDE, max: 1 });
          assert.equal(messages[0]?.id, m.id);
          const at = new Date(t0 + i * 1_000 + 10);
          await store.complete({ id: m.id, owner: 'o', state: 'sent', attempt: { at, mailbox: MAILBOX, reply: '250 2.0.0 OK', class: 'sent', explanation: undefined, durationMs: 1, owner: 'o' } });
          ids.push(m.id);
        }
        // Contents of the three oldest go, two per batch: oldest first.
        assert.equal((await store.purge({ before: new Date(t0 + 2_500), bodiesOnly: true, limit: 2 })).count, 2);
        assert.deepEqual(await Promise.all(ids.map(async (id) => (await store.getRaw(id)) !== undefined)), [false, false, true, true, true, true]);
        assert.equal((await store.purge({ before: new Date(t0 + 2_500), bodiesOnly: true, limit: 2 })).count, 1);
        assert.equal((await store.purge({ before: new Date(t0 + 2_500), bodiesOnly: true, limit: 2 })).count, 0, 'none is swept twice');
        // Records: messages 0-2 have no content, 3 and 4 have; four oldest, in batches of 3, oldest first across both.
        assert.equal((await store.purge({ before: new Date(t0 + 4_000), bodiesOnly: false, limit: 3 })).count, 3);
        assert.deepEqual(await Promise.all(ids.map(async (id) => (await store.get(id)) !== undefined)), [false, false, false, true, true, true]);
        assert.equal((await store.purge({ before: new Date(t0 + 4_000), bodiesOnly: false, limit: 3 })).count, 1);
        assert.deepEqual(await Promise.all(ids.map(async (id) => (await store.get(id)) !== undefined)), [false, false, false, false, true, true]);
      } finally {
        await store.close();
      }
      const look = new Database(path, { readonly: true });
      try {
        const plan = (sql: string, params: Record<string, unknown>): string =>
          look
            .prepare(`EXPLAIN QUERY PLAN ${sql}`)
            .all(params)
            .map((r) => (r as { detail: string }).detail)
            .join('; ');
        const params = { before: 0, states: '["sent"]', limit: 1 };
        // Were a sweep's WHERE to stop matching the index's expression, it would scan every message.
        assert.match(plan(SQL.finishedWithBody, params), /SEARCH messages USING INDEX messages_finished \(<expr>=\? AND updated_at<\?\)/);
        assert.match(plan(SQL.finished, params), /MERGE \(UNION ALL\).*USING INDEX messages_finished.*USING INDEX messages_finished/);
        assert.deepEqual(
          look.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'messages_finished%'").pluck().all(),
          ['messages_finished'],
        );
      } finally {
        look.close();
      }
    } finally {
      await dir.cleanup();
    }
  });
});

describe('SQLite outbox store: upgrading to per-recipient state (schema 5)', () => {
  it('gives the messages of a schema-4 file recipient rows from their envelopes: accepted if sent, refused with the last reply if failed, pending otherwise', async () => {
    const dir = await tempDir();
    try {
      const path = join(dir.path, 'relay365.db');
      // A file as the release before left it: schema 4, with messages in every state that matters.
      const old = outboxAtSchema(path, 4);
      const insert = old.prepare(
        `INSERT INTO messages (id, mailbox, pool, envelope_from, envelope_to, recipients, size, message_id, source, state, attempts,
           created_at, updated_at, next_attempt_at, last_reply, last_class, last_explanation)
         VALUES (@id, '${MAILBOX}', NULL, 'app@contoso.example', @to, @n, 10, @messageId, '{"kind":"smtp"}', @state, 1, 1000, @updatedAt, 1000, @reply, @class, @explanation)`,
      );
      const body = old.prepare('INSERT INTO message_bodies (id, raw) VALUES (?, ?)');
      // Exchange's refusal of a message over the mailbox's size limit (Microsoft Learn, "Fix NDR error 552 5.3.4 in Exchange Online").
      const tooBig = '552 5.3.4 Message size exceeds fixed maximum message size';
      const explanation = JSON.stringify({ id: 'smtp-552-5.3.4', class: 'permanent', cause: 'Too big.', fix: 'Send less.' });
      const rows = [
        { id: '01sent', to: ['a@example.net', 'b@example.net'], state: 'sent', reply: '250 2.0.0 OK', class: 'sent', explanation: null, messageId: '<old-sent@contoso.example>' },
        { id: '02failed', to: ['c@example.net'], state: 'failed', reply: tooBig, class: 'permanent', explanation, messageId: null },
        { id: '03queued', to: ['d@example.net', 'e@example.net', 'f@example.net'], state: 'queued', reply: null, class: null, explanation: null, messageId: null },
        { id: '04deferred', to: ['g@example.net'], state: 'deferred', reply: '451 4.7.500 Server busy. Please try again later.', class: 'transient', explanation: null, messageId: null },
        { id: '05cancelled', to: ['h@example.net'], state: 'cancelled', reply: null, class: null, explanation: null, messageId: null },
      ];
      for (const [i, r] of rows.entries()) {
        insert.run({ ...r, to: JSON.stringify(r.to), n: r.to.length, updatedAt: 2000 + i });
        body.run(r.id, Buffer.from('Subject: old\r\n\r\nx\r\n'));
      }
      old.close();

      const store = await openSqliteStore(path);
      try {
        const states = async (id: string): Promise<unknown[]> => (await store.recipients(id)).map((r) => [r.address, r.state, r.reply, r.updatedAt.getTime()]);
        assert.deepEqual(await states('01sent'), [
          ['a@example.net', 'accepted', undefined, 2000],
          ['b@example.net', 'accepted', undefined, 2000],
        ]);
        assert.deepEqual(await states('02failed'), [['c@example.net', 'refused', tooBig, 2001]]);
        assert.deepEqual((await store.recipients('02failed'))[0]?.explanation, JSON.parse(explanation));
        assert.deepEqual(await states('03queued'), [
          ['d@example.net', 'pending', undefined, 2002],
          ['e@example.net', 'pending', undefined, 2002],
          ['f@example.net', 'pending', undefined, 2002],
        ]);
        assert.deepEqual(await states('04deferred'), [['g@example.net', 'pending', undefined, 2003]]);
        assert.deepEqual(await states('05cancelled'), [['h@example.net', 'pending', undefined, 2004]]);
        // An NDR for the old sent message finds it by its Message-ID.
        const report = { mailbox: MAILBOX, reportId: 'r', originalMessageId: '<old-sent@contoso.example>', recipient: 'b@example.net', action: 'failed' as const, status: '5.1.1', receivedAt: new Date(3000) };
        assert.deepEqual(await store.recordBounce(report), { matched: '01sent', duplicate: false });
        // The queued one is sent as any other: its pending recipients become accepted.
        const claimed = await store.claim({ mailbox: MAILBOX, pools: [], owner: 'o', leaseMs: 60_000, limits: WIDE, max: 10, now: new Date(Date.now() + 1000) });
        assert.deepEqual(claimed.messages.map((m) => m.id), ['03queued', '04deferred']);
        const at = new Date();
        await store.complete({ id: '03queued', owner: 'o', state: 'sent', attempt: { at, mailbox: MAILBOX, reply: '250 2.0.0 OK', class: 'sent', explanation: undefined, durationMs: 5, owner: 'o' } });
        assert.deepEqual((await store.recipients('03queued')).map((r) => r.state), ['accepted', 'accepted', 'accepted']);
        const look = new Database(path, { readonly: true });
        assert.equal(look.prepare('SELECT count(*) FROM message_recipients').pluck().get(), 8);
        assert.equal(look.pragma('integrity_check', { simple: true }), 'ok');
        look.close();
      } finally {
        await store.close();
      }
    } finally {
      await dir.cleanup();
    }
  });
});

describe('SQLite outbox store: what reaches the disk when (system calls under strace)', () => {
  it('takes back a message whose fdatasync failed, so the client that gets 4xx and sends it again leaves one copy, not two', async () => {
    const dir = await tempDir();
    try {
      const path = join(dir.path, 'relay365.db');
      const code = `
        const { openSqliteStore } = await import(${JSON.stringify(new URL('../../dist/outbox/index.js', import.meta.url).href)});
        const store = await openSqliteStore(${JSON.stringify(path)});
        try {
          await store.enqueue({ mailbox: ${JSON.stringify(MAILBOX)}, envelope: { from: 'a@contoso.example', to: ['b@example.net'] }, raw: Buffer.from('Subject: x\\r\\n\\r\\nx\\r\\n'), source: { kind: 'cli' } });
          console.log('ACCEPTED');
        } catch (err) {
          console.log('REFUSED ' + err.code + ' ' + err.message);
        }
        await store.close().catch(() => undefined);`;
      // strace makes every fdatasync fail with EIO, as a failing disk would: a real system call refused.
      const out = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
        const child = spawn('strace', ['-f', '-qq', '-o', '/dev/null', '-e', 'trace=fdatasync', '-e', 'inject=fdatasync:error=EIO', process.execPath, '--input-type=module', '-e', code], {
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        child.on('error', (err) => reject(new Error(`could not run strace (apt-get install strace; .ci/run installs it): ${err.message}`)));
        child.on('close', (exitCode) => resolve({ code: exitCode, stdout, stderr }));
      });
      assert.match(out.stdout, /^REFUSED R365_OUTBOX_UNAVAILABLE .*flushing the outbox log .* failed \(EIO\)/m, out.stdout + out.stderr);
      // Reopened without the fault: the refused message is not in the outbox, so it will not be sent as well as its retry.
      const store = await openSqliteStore(path);
      try {
        const counts = await store.counts();
        assert.equal(Object.values(counts).reduce((a, b) => a + b, 0), 0, `the outbox holds nothing: ${JSON.stringify(counts)}`);
      } finally {
        await store.close();
      }
    } finally {
      await dir.cleanup();
    }
  });

  it('answers an enqueue only after an fdatasync of the log, syncs nothing for claims and outcomes, and checkpoints on another thread', async () => {
    const dir = await tempDir();
    try {
      const path = join(dir.path, 'relay365.db');
      // The child marks each step with a write to stdout, so the trace shows what came before what.
      const code = `
        import { statSync, writeSync } from 'node:fs';
        const { openSqliteStore } = await import(${JSON.stringify(new URL('../../dist/outbox/index.js', import.meta.url).href)});
        const store = await openSqliteStore(${JSON.stringify(path)});
        const sizeAtOpen = statSync(${JSON.stringify(path)}).size;
        writeSync(1, 'OPENED\\n');
        const message = await store.enqueue({ mailbox: ${JSON.stringify(MAILBOX)}, envelope: { from: 'a@contoso.example', to: ['b@example.net'] }, raw: Buffer.alloc(20_000, 7), source: { kind: 'cli' } });
        writeSync(1, 'ENQUEUED\\n');
        const limits = ${JSON.stringify(WIDE)};
        const { messages } = await store.claim({ mailbox: ${JSON.stringify(MAILBOX)}, pools: [], owner: 'w', leaseMs: 60000, limits, max: 1 });
        await store.complete({ id: messages[0].id, owner: 'w', state: 'sent', attempt: { at: new Date(), mailbox: ${JSON.stringify(MAILBOX)}, reply: '250 2.0.0 OK', class: 'sent', durationMs: 1, owner: 'w' } });
        writeSync(1, 'COMPLETED\\n');
        // The checkpoint thread (every 250 ms) copies the log into the database file, which grows.
        // It syncs the file after copying: give that sync a moment before the event loop's close.
        for (let i = 0; i < 200 && statSync(${JSON.stringify(path)}).size <= sizeAtOpen; i++) await new Promise((r) => setTimeout(r, 50));
        await new Promise((r) => setTimeout(r, 1000));
        writeSync(1, 'WAITED\\n');
        await store.close();`;
      const tracePath = join(dir.path, 'trace');
      const out = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
        const child = spawn(
          'strace',
          ['-f', '-y', '-e', 'trace=pwrite64,write,fsync,fdatasync', '-o', tracePath, process.execPath, '--input-type=module', '-e', code],
          { stdio: ['ignore', 'ignore', 'pipe'] },
        );
        let stderr = '';
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        child.on('error', (err) => reject(new Error(`could not run strace (apt-get install strace; .ci/run installs it): ${err.message}`)));
        child.on('close', (exitCode) => resolve({ code: exitCode, stderr }));
      });
      assert.equal(out.code, 0, out.stderr);
      const calls = parseTrace(await readFile(tracePath, 'utf8'));
      const marker = (word: string): Syscall => {
        const call = calls.find((c) => c.name === 'write' && c.text.includes(`"${word}\\n"`));
        assert.ok(call, `the trace shows the ${word} marker`);
        return call;
      };
      const opened = marker('OPENED');
      const enqueued = marker('ENQUEUED');
      const completed = marker('COMPLETED');
      const waited = marker('WAITED');
      const main = enqueued.tid;
      const log = `${path}-wal`;
      const between = (from: Syscall | undefined, to: Syscall) => calls.filter((c) => c.line > (from?.line ?? -1) && c.line < to.line);

      // The message's frames reach the log, then the log is fdatasynced, then the enqueue resolves.
      const beforeAck = between(opened, enqueued);
      const lastFrame = beforeAck.filter((c) => c.name === 'pwrite64' && c.path === log).at(-1);
      assert.ok(lastFrame, 'the enqueue wrote frames to the log');
      assert.ok(
        between(lastFrame, enqueued).some((c) => c.name === 'fdatasync' && c.path === log && / = 0$/.test(c.text)),
        'an fdatasync of the log returned between the last frame written and the enqueue resolving',
      );
      assert.ok(
        beforeAck.filter((c) => c.name === 'fdatasync').every((c) => c.tid !== main),
        "the fdatasync ran on libuv's thread pool, not on the event loop",
      );

      // A claim and an outcome write the log but never sync it themselves.
      const claimAndComplete = between(enqueued, completed);
      assert.ok(
        claimAndComplete.some((c) => c.name === 'pwrite64' && c.path === log),
        'the claim and the outcome were written to the log',
      );
      assert.deepEqual(
        claimAndComplete.filter((c) => c.name === 'fdatasync' || (c.tid === main && c.name === 'fsync')),
        [],
        'no fsync for a claim or an outcome',
      );

      // The checkpoint copies the log into the database and syncs it, on its own thread.
      const dbSyncs = between(enqueued, waited).filter((c) => c.name === 'fsync' && c.path === path);
      assert.ok(dbSyncs.length > 0, 'a checkpoint synced the database file');
      assert.ok(
        dbSyncs.every((c) => c.tid !== main),
        'checkpoints run off the event loop',
      );
      assert.ok(
        between(opened, waited).every((c) => !(c.tid === main && (c.name === 'fsync' || c.name === 'fdatasync'))),
        'the event loop made no fsync at all once the store was open',
      );
    } finally {
      await dir.cleanup();
    }
  });
});

describe('SQLite outbox store: several connections and volume', () => {
  it('never leases a message twice when four threads claim from one file at the same time', async () => {
    const dir = await tempDir();
    try {
      const path = join(dir.path, 'relay365.db');
      const store = await openSqliteStore(path);
      const total = 2_000;
      for (let i = 0; i < total; i++) await store.enqueue(small(i));
      // Each thread has its own connection, as a process would: the claims really run at once, and
      // only SQLite's write lock (BEGIN IMMEDIATE + busy_timeout) keeps them apart.
      const code = `
        const { parentPort, workerData } = require('node:worker_threads');
        import('tsx/esm/api').then((tsx) => { tsx.register(); return import(workerData.module); }).then(async ({ openSqliteStore }) => {
          const store = await openSqliteStore(workerData.path);
          // Start together: a thread that loads faster must not drain the queue before the others exist.
          parentPort.postMessage('ready');
          await new Promise((go) => parentPort.once('message', go));
          const got = [];
          for (;;) {
            const { messages } = await store.claim({ mailbox: workerData.mailbox, pools: [], owner: workerData.owner, leaseMs: 600000, limits: workerData.limits, max: 7 });
            if (messages.length === 0) break;
            for (const m of messages) {
              got.push(m.id);
              const ok = await store.complete({ id: m.id, owner: workerData.owner, state: 'sent', attempt: { at: new Date(), mailbox: workerData.mailbox, reply: '250 2.0.0 OK', class: 'sent', durationMs: 1, owner: workerData.owner } });
              if (!ok) throw new Error('lost the lease of ' + m.id);
            }
          }
          await store.close();
          parentPort.postMessage(got);
        });`;
      const workers = ['t1', 't2', 't3', 't4'].map(
        (owner) => new Worker(code, { eval: true, workerData: { module: STORE_MODULE, path, owner, mailbox: MAILBOX, limits: WIDE } }),
      );
      const done = workers.map(
        (worker) =>
          new Promise<string[]>((resolve, reject) => {
            worker.on('message', (m: string[] | 'ready') => {
              if (m !== 'ready') resolve(m);
            });
            worker.once('error', reject);
          }),
      );
      await Promise.all(workers.map((w) => new Promise<void>((r) => w.once('message', () => r()))));
      for (const w of workers) w.postMessage('go');
      const results = await Promise.all(done);
      const all = results.flat();
      assert.equal(new Set(all).size, all.length, 'no message leased twice');
      assert.equal(all.length, total);
      assert.ok(results.filter((r) => r.length > 0).length >= 2, `the threads shared the work: ${results.map((r) => r.length).join(', ')}`);
      assert.equal((await store.counts()).sent, total);
      await store.close();
    } finally {
      await dir.cleanup();
    }
  });

  it('loses and repeats nothing across 20,000 messages claimed and completed in batches, with flat memory', async (t) => {
    const dir = await volumeDir();
    try {
      const path = join(dir.path, 'relay365.db');
      const store = await openSqliteStore(path);
      const total = 20_000;
      const started = performance.now();
      const rssBefore = process.memoryUsage().rss;
      for (let i = 0; i < total; i++) await store.enqueue(small(i));
      const enqueued = performance.now();

      const seen = new Set<string>();
      let batches = 0;
      let firstClaimMs = 0;
      let lastClaimMs = 0;
      let rssPeak = 0;
      for (;;) {
        const claimStarted = performance.now();
        const { messages } = await store.claim({ mailbox: MAILBOX, pools: [], owner: 'bulk', leaseMs: 600_000, limits: WIDE, max: 500 });
        const claimMs = performance.now() - claimStarted;
        if (messages.length === 0) break;
        if (batches === 0) firstClaimMs = claimMs;
        lastClaimMs = claimMs;
        batches++;
        for (const m of messages) {
          assert.ok(!seen.has(m.id), `${m.id} leased twice`);
          seen.add(m.id);
          assert.equal(
            await store.complete({
              id: m.id,
              owner: 'bulk',
              state: 'sent',
              attempt: { at: new Date(), mailbox: MAILBOX, reply: '250 2.0.0 OK', class: 'sent', explanation: undefined, durationMs: 1, owner: 'bulk' },
            }),
            true,
          );
        }
        rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
      }
      const done = performance.now();
      assert.equal(seen.size, total, 'every message leased once');
      assert.equal(batches, total / 500);
      const counts = await store.counts();
      assert.equal(counts.sent, total);
      assert.equal(counts.queued + counts.sending + counts.deferred + counts.failed + counts.cancelled, 0);
      const mb = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(0)} MB`;
      t.diagnostic(
        `on ${dir.where}: enqueue ${total}: ${((enqueued - started) / 1000).toFixed(1)} s; claim+complete: ${((done - enqueued) / 1000).toFixed(1)} s in ${batches} batches; ` +
          `claim of 500 with ${total} waiting ${firstClaimMs.toFixed(1)} ms, with 500 waiting ${lastClaimMs.toFixed(1)} ms; RSS ${mb(rssBefore)} before, peak ${mb(rssPeak)}`,
      );
      // A store that loaded every row would hold 20,000 messages at once; the claim holds 500.
      assert.ok(rssPeak - rssBefore < 150 * 1024 * 1024, `RSS grew by ${mb(rssPeak - rssBefore)}`);
      await store.close();
    } finally {
      await dir.cleanup();
    }
  });
});
