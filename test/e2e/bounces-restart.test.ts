import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { stringify } from 'yaml';
import { configSchema, type ConfigInput } from '../../src/config/index.js';
import { generateApiKey } from '../../src/ingress/http/index.js';
import { openIntegrationStore } from '../../src/runtime/stores.js';
import { DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';
import { freePort, stop } from '../helpers/cli.js';
import { sandboxSettings } from '../helpers/config.js';
import { PG_URL, dropSchema, pgQuery, pgUnavailable, testSchema } from '../helpers/pg.js';
import { scenario, startTestSandbox, tempDir } from '../helpers/sandbox.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MAILBOX = DEFAULT_IDS.mailbox;
const N = 30;
const unknown = (i: number): string => `gone${i}@fabrikam.example`;

async function until<T>(
  check: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs: number,
  what: string,
  everyMs = 50,
  detail: () => string = () => '',
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} ${detail()}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** `relay365 serve` from source as its own process; its JSON log lines (stderr) are kept. */
function serve(config: string, env: NodeJS.ProcessEnv): Promise<{ child: ChildProcess; logs: Array<Record<string, unknown>> }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), 'serve', '--config', config], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    const logs: Array<Record<string, unknown>> = [];
    createInterface({ input: child.stderr }).on('line', (line) => {
      try {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        logs.push({ text: line });
      }
    });
    const timer = setTimeout(() => reject(new Error(`serve did not start: ${JSON.stringify(logs.slice(-5))}`)), 60_000);
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (/^relay365 serving/.test(line)) {
        clearTimeout(timer);
        resolve({ child, logs });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`serve exited ${code}: ${JSON.stringify(logs.slice(-5))}`));
    });
  });
}

interface Hook {
  eventId: string;
  type: string;
  data: { id: string; recipient: string; reportId: string };
}

async function startReceiver(): Promise<{ url: string; hooks: Hook[]; server: Server }> {
  const hooks: Hook[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const parsed = JSON.parse(body) as { id: string; type: string; data: Hook['data'] };
      hooks.push({ eventId: parsed.id, type: parsed.type, data: parsed.data });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`, hooks, server };
}

/** The event ids of each (message, recipient, report): a retried or replayed delivery repeats its event id, never a second event. */
function bouncedOnce(hooks: Hook[]): Map<string, Set<string>> {
  const byRecipient = new Map<string, Set<string>>();
  for (const h of hooks.filter((x) => x.type === 'message.bounced')) {
    const k = `${h.data.id} ${h.data.recipient} ${h.data.reportId}`;
    byRecipient.set(k, (byRecipient.get(k) ?? new Set()).add(h.eventId));
  }
  return byRecipient;
}

async function send(httpPort: number, key: string, to: string): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/v1/messages`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ from: MAILBOX, to: [to], subject: `to ${to}`, text: 'hi' }),
  });
  assert.equal(res.status, 202, await res.clone().text());
  return ((await res.json()) as { id: string }).id;
}

describe('reading NDRs across a SIGKILL, and with two nodes on PostgreSQL (relay365 serve as child processes)', () => {
  let sandbox: Sandbox & { dir: string };
  let receiver: Awaited<ReturnType<typeof startReceiver>>;

  before(async () => {
    sandbox = await startTestSandbox({
      scenario: scenario((s) => {
        s.limits.unlimited = true;
        const app = s.tenants[0]!.apps[0]!;
        app.roles.graph = ['Mail.Send', 'Mail.ReadWrite'];
        app.mailboxScope = [MAILBOX];
        s.mailFlow.unknownRecipients = Array.from({ length: 2 * N }, (_, i) => unknown(i));
        s.mailFlow.ndrDelayMs = 1500;
      }),
    });
    receiver = await startReceiver();
  });

  after(async () => {
    await new Promise((r) => receiver?.server.close(r));
    await sandbox?.close();
  });

  function configInput(dataDir: string, httpPort: number, extra: Partial<ConfigInput> = {}): ConfigInput {
    return {
      dataDir,
      log: { level: 'info' },
      ...sandboxSettings(sandbox),
      auth: { flow: 'client-secret', tenant: DEFAULT_IDS.tenantId, clientId: DEFAULT_IDS.appClientId, clientSecret: DEFAULT_IDS.appSecret },
      mailboxes: [{ address: MAILBOX, bounces: { read: true, everySeconds: 0.2 } }],
      limits: { messagesPerMinute: 1_000_000, recipientsPerDay: 100_000_000 },
      queue: { leaseSeconds: 3, retryBaseSeconds: 0.2, retryMaxSeconds: 1 },
      smtp: { enabled: false },
      http: { host: '127.0.0.1', port: httpPort, webhooks: [{ url: receiver.url, secret: 'whsec-restart' }] },
      ...extra,
    };
  }

  async function apiKey(input: ConfigInput): Promise<string> {
    const store = await openIntegrationStore(configSchema.parse(input));
    try {
      const k = generateApiKey();
      await store.createApiKey({ name: 'test', hash: k.hash, prefix: k.prefix, scopes: ['send', 'read', 'admin'] });
      return k.key;
    } finally {
      await store.close();
    }
  }

  it(
    `applies each of ${N} reports exactly once, with one webhook each, when the relay is killed with SIGKILL while it reads them`,
    { timeout: 240_000 },
    async () => {
      receiver.hooks.length = 0;
      const dir = await tempDir();
      try {
        const httpPort = await freePort();
        const input = configInput(join(dir.path, 'data'), httpPort);
        const configPath = join(dir.path, 'relay365.yaml');
        await writeFile(configPath, stringify(input));
        const key = await apiKey(input);
        const env = { RELAY365_SECRET_KEY: randomBytes(32).toString('base64') };
        let node = await serve(configPath, env);
        const ids = [];
        for (let i = 0; i < N; i++) ids.push(await send(httpPort, key, unknown(i)));
        // An outside reader of the SQLite file (WAL), watching the ledger grow: killed once some reports are in.
        const db = new Database(join(dir.path, 'data', 'relay365.db'), { readonly: true, fileMustExist: true });
        const ledger = (): number => (db.prepare('SELECT count(*) AS n FROM bounce_reports').get() as { n: number }).n;
        const sent = (): number => (db.prepare(`SELECT count(*) AS n FROM messages WHERE state = 'sent'`).get() as { n: number }).n;
        try {
          // Killed once every message is sent: a SIGKILL between Exchange's 250 and the commit of `sent`
          // sends that message again (at least once), and its second NDR is a 31st report, which is
          // right but not what this test counts. The NDRs come 1.5 s after each 250, so the kill still
          // lands while the reader applies them.
          await until(() => sent() === N && ledger() >= 3, 60_000, 'every message sent and the first reports applied', 2, () => `(sent ${sent()}, applied ${ledger()})`);
          await stop(node.child, 'SIGKILL');
          const killedAt = Date.now();
          const atKill = ledger();
          assert.ok(atKill < N, `killed while reading (${atKill} of ${N} applied)`);
          node = await serve(configPath, env);
          const restartMs = Date.now() - killedAt;
          const progress: string[] = [];
          const detail = (): string =>
            `(${ledger()} of ${N} applied, ${atKill} at the kill; ${sandbox.state.counters.reportsDelivered} reports in the Inbox; ` +
            `restarted ${restartMs} ms after the kill, now ${Date.now() - killedAt} ms; ledger over time [ms:count] ${progress.join(' ')}; ` +
            `lease ${JSON.stringify(db.prepare('SELECT lease_owner, lease_until - ? AS ms_left FROM bounce_readers').all(Date.now()))}; ` +
            `reader log ${JSON.stringify(node.logs.filter((l) => typeof l.event === 'string' && l.event.startsWith('bounces.')).slice(-5))})`;
          // The killed node's lease (15 s, renewed every 5 s) runs out before the new node reads.
          let last = -1;
          await until(
            () => {
              const n = ledger();
              if (n !== last) progress.push(`${Date.now() - killedAt}:${n}`);
              last = n;
              return n >= N;
            },
            60_000,
            `all ${N} reports to be applied after the restart`,
            50,
            detail,
          );
          const appliedMs = Date.now() - killedAt;
          // Every report has its webhook, the one being applied at the kill too, and none has two.
          await until(() => bouncedOnce(receiver.hooks).size >= N, 30_000, 'a webhook for every bounced recipient', 50, () => `(${bouncedOnce(receiver.hooks).size} of ${N})`);
          // Reports still in the Inbox after the restart are read again but not applied again.
          await new Promise((r) => setTimeout(r, 3000));
          // Entries the restarted node found applied (their reports unmarked at the kill): raised again under their first ids.
          const replayed = node.logs.filter((l) => l.event === 'bounces.read').reduce((sum, l) => sum + Number(l.duplicates ?? 0), 0);
          console.log(
            `# NDR restart: ${atKill} of ${N} applied at the kill, restarted in ${restartMs} ms, all applied ${appliedMs} ms after the kill, ${replayed} raised again`,
          );
          assert.equal(sandbox.state.counters.reportsDelivered, N, 'one NDR per message');
          assert.equal(ledger(), N, `one ledger row per report ${detail()}`);
          const perReport = db.prepare('SELECT report_id, count(*) AS n FROM bounce_reports GROUP BY report_id HAVING n > 1').all();
          assert.deepEqual(perReport, []);
          const states = db.prepare(`SELECT state, count(*) AS n FROM message_recipients GROUP BY state`).all() as Array<{ state: string; n: number }>;
          assert.deepEqual(states, [{ state: 'bounced', n: N }]);
        } finally {
          db.close();
          await stop(node.child);
        }
        const once = bouncedOnce(receiver.hooks);
        assert.equal(once.size, N, 'every bounced recipient has its webhook');
        for (const [k, events] of once) assert.equal(events.size, 1, `${k}: one event (a repeated delivery keeps its id)`);
      } finally {
        await dir.cleanup();
      }
    },
  );

  it('two relays on one PostgreSQL database: exactly one of them reads the mailbox, and each report is applied once', { timeout: 180_000 }, async (t) => {
    const why = await pgUnavailable();
    if (why) return t.skip(why);
    receiver.hooks.length = 0;
    const schema = testSchema();
    const dir = await tempDir();
    const nodes: Array<{ child: ChildProcess; logs: Array<Record<string, unknown>> }> = [];
    try {
      const ports = [await freePort(), await freePort()];
      const inputs = ports.map((port, i) =>
        configInput(join(dir.path, `data${i}`), port, { queue: { url: PG_URL, schema, leaseSeconds: 3, retryBaseSeconds: 0.2, retryMaxSeconds: 1 } }),
      );
      const paths = await Promise.all(
        inputs.map(async (input, i) => {
          const p = join(dir.path, `node${i}.yaml`);
          await writeFile(p, stringify(input));
          return p;
        }),
      );
      const key = await apiKey(inputs[0]!);
      const env = { RELAY365_SECRET_KEY: randomBytes(32).toString('base64') };
      nodes.push(...(await Promise.all(paths.map((p) => serve(p, env)))));
      for (let i = 0; i < N; i++) await send(ports[i % 2]!, key, unknown(N + i));
      const ledger = async (): Promise<number> => Number((await pgQuery<{ n: string }>(`SELECT count(*) AS n FROM ${schema}.bounce_reports`))[0]!.n);
      await until(async () => (await ledger()) === N, 60_000, `all ${N} reports to be applied`);
      await until(() => bouncedOnce(receiver.hooks).size === N, 30_000, 'a webhook for every bounced recipient');
      await new Promise((r) => setTimeout(r, 1000));
      assert.equal(await ledger(), N);
      const readers = nodes.map((n) => n.logs.filter((l) => l.event === 'bounces.read' && l.mailbox === MAILBOX));
      const applied = readers.map((lines) => lines.reduce((sum, l) => sum + Number(l.applied ?? 0), 0));
      assert.equal(
        readers.filter((lines) => lines.length > 0).length,
        1,
        `one node read the mailbox (reads per node: ${readers.map((r) => r.length).join(', ')})`,
      );
      assert.equal(applied[0]! + applied[1]!, N, 'the reading node applied every report, the other none');
      for (const events of bouncedOnce(receiver.hooks).values()) assert.equal(events.size, 1);
    } finally {
      await Promise.all(nodes.map((n) => stop(n.child)));
      await dropSchema(schema).catch(() => undefined);
      await dir.cleanup();
    }
  });
});
