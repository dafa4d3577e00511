/**
 * Idle memory: the RSS of `relay365 serve` once started, before any message is submitted, for the
 * setups a single node runs (SMTP door only; STARTTLS; SMTP and HTTP; SMTP with 100,000 messages
 * queued), so a change in what start-up loads, or in what the relay holds per queued message, shows
 * here. Each setup runs SAMPLES times; the table gives the median and range.
 *
 * Two readings per start: at 3 s, while the young generation V8 grew for start-up is still committed,
 * and at 20 s, after V8's memory reducer (it runs 8 to 12 s after start on an idle isolate) gave back
 * what start-up no longer uses: what an idle relay holds for as long as it stays idle.
 * The target is the issue's: relay RSS at most 80 MB (this is the floor under load).
 */
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { benchSandbox, currentCli, envInt, freePort, relayConfig, round, sleep, startServe, tempDir, type Row, type ScenarioResult } from './lib.js';

const SAMPLES = envInt('BENCH_IDLE_SAMPLES', 3);
/** Messages in the outbox of the queued setup. */
const QUEUED = envInt('BENCH_IDLE_QUEUED', 100_000);
/** How long the relay sits idle before the first reading (its timers have run once). */
const FIRST_MS = 3_000;
/** When the second reading is taken, counted from the start as the first is. */
const SETTLED_MS = 20_000;
const SETTLED_MEDIAN = `RSS MB at ${SETTLED_MS / 1000} s (median)`;
const SETTLED_RANGE = `RSS MB at ${SETTLED_MS / 1000} s (min-max)`;

/**
 * Fills `<dataDir>/relay365.db` with `count` messages of 1 KB for the bench mailbox, with the outbox
 * of the build that will serve it (this tree's or BENCH_BASE's: the schema is that build's), in a
 * child process so that the bench's own memory stays out of it.
 */
function fillOutbox(dataDir: string, count: number, mailbox: string): void {
  const outbox = pathToFileURL(join(dirname(currentCli()), '..', 'outbox', 'index.js')).href;
  const script = `
    const [outbox, path, count, mailbox] = process.argv.slice(1);
    const { openSqliteStore } = await import(outbox);
    const store = await openSqliteStore(path);
    const raw = Buffer.from('From: <' + mailbox + '>\\r\\nSubject: queued\\r\\n\\r\\n' + 'x'.repeat(74).concat('\\r\\n').repeat(13));
    let next = 0;
    // Many submitters at once: the store commits the enqueues of one event-loop turn together.
    await Promise.all(Array.from({ length: 256 }, async () => {
      for (let i = next++; i < Number(count); i = next++)
        await store.enqueue({ mailbox, envelope: { from: mailbox, to: ['q' + i + '@example.net'] }, raw, source: { kind: 'library' } });
    }));
    await store.close();
  `;
  execFileSync(process.execPath, ['--input-type=module', '-e', script, outbox, join(dataDir, 'relay365.db'), String(count), mailbox], { stdio: 'inherit' });
}

interface Setup {
  name: string;
  extra: () => Promise<Record<string, unknown>>;
  /** Run once in the setup's data folder before its samples, which then share that folder. */
  prepare?: (dataDir: string, config: Record<string, unknown>) => Promise<void> | void;
}

export async function run(): Promise<ScenarioResult> {
  const sandbox = await benchSandbox();
  const rows: Row[] = [];
  const plainSmtp = async () => ({ listeners: [{ host: '127.0.0.1', port: await freePort(), tls: 'none' }], allowlist: [{ cidr: '127.0.0.1/32' }] });
  const setups: Setup[] = [
    { name: 'SMTP door (plain), SQLite', extra: async () => ({ smtp: await plainSmtp() }) },
    {
      // Every start but the first reads the self-signed pair the first one made; that first start
      // (once per installation) is left out.
      name: 'SMTP door (STARTTLS, certificate of an earlier start), SQLite',
      extra: async () => ({ smtp: { listeners: [{ host: '127.0.0.1', port: await freePort(), tls: 'starttls' }], allowlist: [{ cidr: '127.0.0.1/32' }] } }),
      prepare: async (dataDir, config) => (await startServe(dataDir, config)).stop(),
    },
    {
      name: 'SMTP door and HTTP API, SQLite',
      extra: async () => ({ smtp: await plainSmtp(), http: { enabled: true, host: '127.0.0.1', port: await freePort() } }),
    },
    {
      // Exchange's default 30 messages a minute: the relay sends a few, the rest stay queued.
      name: `SMTP door (plain), SQLite, ${QUEUED.toLocaleString('en-US')} queued`,
      extra: async () => ({ smtp: await plainSmtp() }),
      prepare: (dataDir, config) => fillOutbox(dataDir, QUEUED, (config.mailboxes as Array<{ address: string }>)[0]!.address),
    },
  ];
  try {
    for (const setup of setups) {
      const first: number[] = [];
      const settled: number[] = [];
      const shared = setup.prepare ? await tempDir('relay365-bench-idle-') : undefined;
      try {
        if (shared && setup.prepare) await setup.prepare(shared.path, relayConfig(sandbox, shared.path, await setup.extra()));
        for (let i = 0; i < SAMPLES; i++) {
          const dir = shared ?? (await tempDir('relay365-bench-idle-'));
          const relay = await startServe(dir.path, relayConfig(sandbox, dir.path, await setup.extra()));
          try {
            await sleep(FIRST_MS);
            first.push(relay.rssMb());
            await sleep(SETTLED_MS - FIRST_MS);
            settled.push(relay.rssMb());
          } finally {
            await relay.stop();
            if (!shared) await dir.cleanup();
          }
        }
      } finally {
        await shared?.cleanup();
      }
      const median = (s: number[]): number => round([...s].sort((a, b) => a - b)[Math.floor(s.length / 2)]!);
      const range = (s: number[]): string => `${round(Math.min(...s))}-${round(Math.max(...s))}`;
      rows.push({
        setup: setup.name,
        samples: first.length,
        'RSS MB at 3 s (median)': median(first),
        'RSS MB at 3 s (min-max)': range(first),
        [SETTLED_MEDIAN]: median(settled),
        [SETTLED_RANGE]: range(settled),
      });
    }
  } finally {
    await sandbox.close();
  }
  const plain = rows[0]!['RSS MB at 3 s (median)'] as number;
  const plainSettled = rows[0]![SETTLED_MEDIAN] as number;
  const queued = rows[3]![SETTLED_MEDIAN] as number;
  return {
    name: 'idle-memory',
    title: `Idle memory: RSS of relay365 serve ${FIRST_MS / 1000} s and ${SETTLED_MS / 1000} s after start, no message submitted`,
    columns: ['setup', 'samples', 'RSS MB at 3 s (median)', 'RSS MB at 3 s (min-max)', SETTLED_MEDIAN, SETTLED_RANGE],
    rows,
    targets: [
      { what: 'relay RSS at most 80 MB (idle, SMTP door, SQLite, at 3 s)', value: `${plain} MB`, met: plain <= 80 },
      { what: `relay RSS at most 80 MB (idle, SMTP door, SQLite, at ${SETTLED_MS / 1000} s)`, value: `${plainSettled} MB`, met: plainSettled <= 80 },
      {
        what: `flat with ${QUEUED.toLocaleString('en-US')} queued: at most 5 MB above the empty outbox (at ${SETTLED_MS / 1000} s)`,
        value: `${round(queued - plainSettled)} MB`,
        met: queued - plainSettled <= 5,
      },
    ],
    notes: [
      'VmRSS of the serve process from /proc; the sandbox runs in the bench process, not in the relay.',
      `At 3 s V8 still holds the young generation it grew for start-up; by ${SETTLED_MS / 1000} s its memory reducer has given it back (V8 runs it 8 to 12 s after start on an idle isolate).`,
      `Queued: ${QUEUED.toLocaleString('en-US')} messages of 1 KB written into the outbox before the relay starts, by the outbox of the build that serves it; flat means within 5 MB of the empty outbox (SQLite keeps a page cache of up to 2 MB a connection).`,
    ],
  };
}
