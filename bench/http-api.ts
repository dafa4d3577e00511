/**
 * HTTP send API: POST /v1/messages against `relay365 serve` at concurrency 1, 8 and 32.
 *
 * autocannon is the usual tool for this, but it is not a dependency of the project, so the load is a
 * small bounded loop of node:http requests over keep-alive agents (one socket per concurrent caller).
 */
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { generateApiKey, openSqliteIntegrationStore } from '../src/ingress/http/index.js';
import { MAILBOX, benchSandbox, envInt, freePort, percentile, relayConfig, round, runPool, startServe, tempDir, type Row, type ScenarioResult } from './lib.js';

const PHASE_CAP_MS = envInt('BENCH_PHASE_SECONDS', 60) * 1000;

/** Creates an API key in the relay's database before it starts, as `relay365 apikey create` does. */
export async function createApiKey(dbPath: string): Promise<string> {
  const store = await openSqliteIntegrationStore(dbPath);
  try {
    const key = generateApiKey();
    await store.createApiKey({ name: 'bench', hash: key.hash, prefix: key.prefix });
    return key.key;
  } finally {
    await store.close();
  }
}

/** One request; resolves with the status code and the body. */
export function post(
  url: URL,
  agent: Agent | undefined,
  headers: Record<string, string | number>,
  body: string | Buffer,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', agent, headers: { 'content-length': Buffer.byteLength(body), ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.setTimeout(30_000, () => req.destroy(new Error('no answer within 30 s')));
    req.on('error', reject);
    req.end(body);
  });
}

export async function run(): Promise<ScenarioResult> {
  const n = envInt('BENCH_HTTP_N', 1000);
  const sandbox = await benchSandbox((s) => void (s.limits.unlimited = true));
  const dir = await tempDir('relay365-bench-http-');
  const dataDir = join(dir.path, 'data');
  const key = await createApiKey(join(dataDir, 'relay365.db'));
  const port = await freePort();
  const relay = await startServe(
    dir.path,
    relayConfig(sandbox, dataDir, {
      limits: { messagesPerMinute: 100_000_000, recipientsPerDay: 1_000_000_000 },
      delivery: { maxConnections: 3, maxMessagesPerConnection: 100_000 },
      smtp: { enabled: false },
      http: { enabled: true, host: '127.0.0.1', port },
    }),
  );
  const url = new URL(`http://127.0.0.1:${port}/v1/messages`);
  const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
  const rows: Row[] = [];
  try {
    for (const c of [1, 8, 32]) {
      const agent = new Agent({ keepAlive: true, maxSockets: c });
      const latencies: number[] = [];
      const statuses = new Map<number, number>();
      const body = (i: number) => JSON.stringify({ from: MAILBOX, to: [`api${i}@example.net`], subject: `http bench ${c}/${i}`, text: 'x'.repeat(1500) });
      // Warm up the sockets and the route.
      await Promise.all(Array.from({ length: c }, (_, i) => post(url, agent, headers, body(i))));
      const start = performance.now();
      const done = await runPool(n, c, Date.now() + PHASE_CAP_MS, async (i) => {
        const t = performance.now();
        const r = await post(url, agent, headers, body(i)).catch(() => ({ status: 0, body: '' }));
        latencies.push(performance.now() - t);
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
      });
      const seconds = (performance.now() - start) / 1000;
      agent.destroy();
      rows.push({
        concurrency: c,
        requests: done,
        statuses: [...statuses].map(([s, k]) => `${s}×${k}`).join(' '),
        'req/s': round(done / seconds),
        'p50 ms': round(percentile(latencies, 50)),
        'p99 ms': round(percentile(latencies, 99)),
        'relay peak RSS MB': relay.peakRssMb(),
      });
    }
  } finally {
    await relay.stop();
    await sandbox.close();
    await dir.cleanup();
  }
  const non202 = rows.some((r) => !/^202×\d+$/.test(String(r.statuses)));
  return {
    name: 'http-api',
    title: 'HTTP API: POST /v1/messages (JSON, 1.5 KB text) against relay365 serve (SQLite)',
    columns: ['concurrency', 'requests', 'statuses', 'req/s', 'p50 ms', 'p99 ms', 'relay peak RSS MB'],
    rows,
    targets: [{ what: 'every request answered 202', value: non202 ? 'some were not' : 'all 202', met: !non202 }],
    notes: [
      'Load: a bounded loop of node:http requests over a keep-alive Agent with one socket per concurrent caller (autocannon is not a project dependency).',
      'Latency: request written to response fully read; 202 means the message is committed to the outbox. Delivery to the sandbox runs at the same time.',
    ],
  };
}
