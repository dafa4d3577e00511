/**
 * Idle memory: the RSS of `relay365 serve` once started and settled, before any message, for the
 * setups a single node runs (SMTP door only; SMTP and HTTP; STARTTLS with its certificate), so a change
 * in what start-up loads shows here. Each setup runs SAMPLES times; the table gives the median and range.
 * The target is the issue's: relay RSS at most 80 MB (this is the floor under load).
 */
import { benchSandbox, envInt, freePort, relayConfig, round, sleep, startServe, tempDir, type Row, type ScenarioResult } from './lib.js';

const SAMPLES = envInt('BENCH_IDLE_SAMPLES', 3);
/** How long the relay sits idle before it is read (its timers have run once). */
const SETTLE_MS = 3_000;

export async function run(): Promise<ScenarioResult> {
  const sandbox = await benchSandbox();
  const rows: Row[] = [];
  const setups: Array<{ name: string; extra: () => Promise<Record<string, unknown>> }> = [
    {
      name: 'SMTP door (plain), SQLite',
      extra: async () => ({ smtp: { listeners: [{ host: '127.0.0.1', port: await freePort(), tls: 'none' }], allowlist: [{ cidr: '127.0.0.1/32' }] } }),
    },
    {
      name: 'SMTP door (STARTTLS), SQLite',
      extra: async () => ({ smtp: { listeners: [{ host: '127.0.0.1', port: await freePort(), tls: 'starttls' }], allowlist: [{ cidr: '127.0.0.1/32' }] } }),
    },
    {
      name: 'SMTP door and HTTP API, SQLite',
      extra: async () => ({
        smtp: { listeners: [{ host: '127.0.0.1', port: await freePort(), tls: 'none' }], allowlist: [{ cidr: '127.0.0.1/32' }] },
        http: { enabled: true, host: '127.0.0.1', port: await freePort() },
      }),
    },
  ];
  try {
    for (const setup of setups) {
      const samples: number[] = [];
      for (let i = 0; i < SAMPLES; i++) {
        const dir = await tempDir('relay365-bench-idle-');
        const relay = await startServe(dir.path, relayConfig(sandbox, dir.path, await setup.extra()));
        try {
          await sleep(SETTLE_MS);
          samples.push(relay.rssMb());
        } finally {
          await relay.stop();
          await dir.cleanup();
        }
      }
      samples.sort((a, b) => a - b);
      rows.push({
        setup: setup.name,
        samples: samples.length,
        'RSS MB (median)': round(samples[Math.floor(samples.length / 2)]!),
        'RSS MB (min-max)': `${round(samples[0]!)}-${round(samples.at(-1)!)}`,
      });
    }
  } finally {
    await sandbox.close();
  }
  const plain = rows[0]!['RSS MB (median)'] as number;
  return {
    name: 'idle-memory',
    title: `Idle memory: RSS of relay365 serve ${SETTLE_MS / 1000} s after start, no message sent`,
    columns: ['setup', 'samples', 'RSS MB (median)', 'RSS MB (min-max)'],
    rows,
    targets: [{ what: 'relay RSS at most 80 MB (idle, SMTP door, SQLite)', value: `${plain} MB`, met: plain <= 80 }],
    notes: ['VmRSS of the serve process from /proc; the sandbox runs in the bench process, not in the relay.'],
  };
}
