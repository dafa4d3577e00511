/**
 * Outbox scale: 100,000 small messages into a SqliteOutboxStore, then claimed and completed, in this
 * process; enqueue and claim+complete rates, RSS along the way (it should stay flat), database size.
 *
 * The 100,000 run keeps its database on tmpfs (/dev/shm when there is one): there an fsync costs
 * nothing, so the rates are the store's own cost. A short second run on the temp folder's disk shows
 * what `synchronous = FULL` (an fsync per commit) costs on this machine.
 */
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { openSqliteStore, type MailboxLimits, type SqliteOutboxStore } from '../src/outbox/index.js';
import { MAILBOX, envInt, rawMessage, round, rssMb, runPool, type Row, type ScenarioResult } from './lib.js';

const LIMITS: MailboxLimits = {
  messagesPerMinute: 1_000_000_000,
  recipientsPerDay: 1_000_000_000_000,
  maxConnections: 1_000_000,
  minuteMs: 60_000,
  dayMs: 86_400_000,
};
const CLAIM_BATCH = 100;

function sizeMb(path: string): number {
  const size = (p: string) => (existsSync(p) ? statSync(p).size : 0);
  return round((size(path) + size(`${path}-wal`)) / 2 ** 20);
}

/** Submitters enqueueing at once, as the front doors' sessions do (each waits for its answer before the next). */
const SUBMITTERS = 16;

async function enqueueAll(store: SqliteOutboxStore, total: number, deadline: number, from = 0): Promise<{ count: number; seconds: number }> {
  const raw = rawMessage(1024, 'outbox-scale');
  const start = performance.now();
  const count = await runPool(total, SUBMITTERS, deadline, async (i) => {
    await store.enqueue({ mailbox: MAILBOX, envelope: { from: MAILBOX, to: [`r${from + i}@example.net`] }, raw, source: { kind: 'library' } });
  });
  return { count, seconds: (performance.now() - start) / 1000 };
}

/** V8's collector, reachable without starting node with --expose-gc. */
const collect = ((): (() => void) => {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
})();

/** RSS after a full collection: what the process holds, not garbage it has not collected yet. */
function settledRssMb(): number {
  collect();
  return rssMb(process.pid, 'VmRSS');
}

async function drain(store: SqliteOutboxStore, deadline: number): Promise<{ count: number; seconds: number }> {
  const start = performance.now();
  let count = 0;
  while (Date.now() < deadline) {
    const { messages } = await store.claim({ mailbox: MAILBOX, pools: [], owner: 'bench', leaseMs: 600_000, limits: LIMITS, max: CLAIM_BATCH });
    if (messages.length === 0) break;
    for (const m of messages) {
      await store.complete({
        id: m.id,
        owner: 'bench',
        state: 'sent',
        attempt: { at: new Date(), mailbox: MAILBOX, reply: '250 2.0.0 OK', class: 'sent', explanation: undefined, durationMs: 1, owner: 'bench' },
      });
      count += 1;
    }
  }
  return { count, seconds: (performance.now() - start) / 1000 };
}

async function measure(folder: string, total: number, capMs: number): Promise<Row> {
  const dir = await mkdtemp(join(folder, 'relay365-bench-outbox-'));
  const path = join(dir, 'outbox.db');
  try {
    const store = await openSqliteStore(path);
    const deadline = Date.now() + capMs;
    // The first tenth warms up what a running relay has warm anyway (JIT, SQLite's page caches, the
    // allocator's arenas); growth is counted from there.
    const warmCount = Math.floor(total / 10);
    const rssBefore = settledRssMb();
    const warm = await enqueueAll(store, warmCount, deadline);
    const rssWarm = settledRssMb();
    const rest = await enqueueAll(store, total - warmCount, deadline, warmCount);
    const enq = { count: warm.count + rest.count, seconds: warm.seconds + rest.seconds };
    const rssAfterEnqueue = settledRssMb();
    const dbMb = sizeMb(path);
    const done = await drain(store, Date.now() + capMs);
    const rssAfter = settledRssMb();
    const counts = await store.counts();
    await store.close();
    return {
      database: folder,
      messages: `${enq.count}${enq.count < total ? ` (cap ${capMs / 1000} s)` : ''}`,
      'enqueue msg/s': round(enq.count / enq.seconds),
      'claim+complete msg/s': round(done.count / done.seconds),
      'sent / left queued': `${counts.sent} / ${counts.queued}`,
      'RSS at open → after 10% → after enqueue → after drain MB': `${rssBefore} → ${rssWarm} → ${rssAfterEnqueue} → ${rssAfter}`,
      'database MB (with WAL)': dbMb,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export async function run(): Promise<ScenarioResult> {
  const total = envInt('BENCH_OUTBOX_N', 100_000);
  const diskN = envInt('BENCH_OUTBOX_DISK_N', 2000);
  const capMs = envInt('BENCH_PHASE_SECONDS', 60) * 1000;
  const fast = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  const rows = [await measure(fast, total, capMs), await measure(tmpdir(), diskN, Math.min(capMs, 60_000))];
  const first = rows[0]!;
  const rss = String(first['RSS at open → after 10% → after enqueue → after drain MB']).split(' → ').map(Number);
  const growth = Math.max(rss[2]!, rss[3]!) - rss[1]!;
  return {
    name: 'outbox-scale',
    title: `Outbox scale: SqliteOutboxStore, ${total} messages of 1 KB enqueued by ${SUBMITTERS} submitters at once, then claimed (${CLAIM_BATCH} a claim) and completed`,
    columns: [
      'database',
      'messages',
      'enqueue msg/s',
      'claim+complete msg/s',
      'sent / left queued',
      'RSS at open → after 10% → after enqueue → after drain MB',
      'database MB (with WAL)',
    ],
    rows,
    targets: [{ what: 'memory flat: RSS grows < 50 MB after the first 10% (RSS after a full GC)', value: `${round(growth)} MB`, met: growth < 50 }],
    notes: [
      `${fast}: tmpfs, so an fsync is free and the rates are the store's own cost. ${tmpdir()}: the real disk; every enqueue waits for an fdatasync of the log (group commits share one).`,
      `Enqueues come from ${SUBMITTERS} submitters at once, each awaiting its answer; the drain claims ${CLAIM_BATCH} at a time and completes them one after another.`,
      'RSS is read after a full garbage collection. SQLite\'s page caches (16 MB for the event loop\'s connection, 16 MB for the checkpoint thread\'s) fill during the first tens of thousands of messages; a larger BENCH_OUTBOX_N shows RSS level off once they are full.',
    ],
  };
}
