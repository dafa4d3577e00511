import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { apikeyCommand } from '../../src/cli/commands/apikey.js';
import { dbCommand } from '../../src/cli/commands/db.js';
import { configSchema } from '../../src/config/index.js';
import { composeMessage } from '../../src/delivery/index.js';
import { SqliteIntegrationStore } from '../../src/ingress/http/index.js';
import { PgIntegrationStore } from '../../src/store/pg-integration-store.js';
import { PG_INTEGRATION_MIGRATIONS } from '../../src/store/pg-integration-sql.js';
import { SqliteOutboxStore } from '../../src/outbox/index.js';
import { PgOutboxStore } from '../../src/outbox/pg-store.js';
import { PG_MIGRATIONS } from '../../src/outbox/pg-sql.js';
import { MIGRATIONS as SQLITE_MIGRATIONS } from '../../src/outbox/sqlite-sql.js';
import { startRelay, type Relay } from '../../src/runtime/index.js';
import { openIntegrationStore, openOutboxStore, openSharedTokenCache } from '../../src/runtime/stores.js';
import { DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';
import { sandboxConfig } from '../helpers/config.js';
import { PG_URL, dropSchema, pgQuery, pgUnavailable, testSchema } from '../helpers/pg.js';
import { startTestSandbox, tempDir } from '../helpers/sandbox.js';

const unavailable = await pgUnavailable();

async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Runs a relay365 command in-process, as `relay365 <args>` would, and returns what it printed on stdout. */
async function runCommand(command: typeof dbCommand, args: string[]): Promise<string> {
  const printed: string[] = [];
  const [log, error] = [console.log, console.error];
  console.log = (...parts: unknown[]) => void printed.push(parts.join(' '));
  // The human notes on stderr (`apikey create`'s "not shown again").
  console.error = () => undefined;
  try {
    await command().exitOverride().parseAsync(args, { from: 'user' });
  } finally {
    [console.log, console.error] = [log, error];
  }
  return printed.join('\n');
}

interface Applied {
  applied: number[];
  version: number;
}

/** Runs `relay365 db migrate --json` in-process and returns what it printed. */
async function dbMigrate(configFile: string): Promise<{ store: string; outbox: Applied; http: Applied; tokenCache?: Applied }> {
  return JSON.parse(await runCommand(dbCommand, ['migrate', '--config', configFile, '--json'])) as Awaited<ReturnType<typeof dbMigrate>>;
}

if (unavailable !== undefined) {
  describe('relay365 on PostgreSQL', () => {
    it('needs a PostgreSQL server', (t) => t.skip(unavailable));
  });
} else {
  describe('relay365 db migrate', () => {
    const schema = testSchema();
    after(() => dropSchema(schema));

    it('creates the PostgreSQL schema, prints the versions it applied, and applies nothing the second time', async () => {
      const dir = await tempDir();
      try {
        const file = join(dir.path, 'relay365.yaml');
        await writeFile(file, `dataDir: ${dir.path}\nlog: { level: silent }\nqueue:\n  url: ${PG_URL}\n  schema: ${schema}\n`);
        const latest = PG_MIGRATIONS.map((m) => m.version);
        const http = PG_INTEGRATION_MIGRATIONS.map((m) => m.version);
        const first = await dbMigrate(file);
        assert.equal(first.store, 'postgresql');
        assert.deepEqual(first.outbox, { applied: latest, version: Math.max(...latest) });
        assert.deepEqual(first.http, { applied: http, version: Math.max(...http) });
        assert.deepEqual(first.tokenCache, { applied: [1], version: 1 });
        const second = await dbMigrate(file);
        assert.deepEqual(second.outbox, { applied: [], version: Math.max(...latest) });
        assert.deepEqual(second.http, { applied: [], version: Math.max(...http) });
        assert.deepEqual(second.tokenCache, { applied: [], version: 1 });
        const tables = await pgQuery<{ table_name: string }>(`SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name`, [
          schema,
        ]);
        assert.deepEqual(
          tables.map((t) => t.table_name),
          [
            'attempts',
            'bounce_readers',
            'bounce_reports',
            'http_api_keys',
            'http_idempotency_keys',
            'http_webhook_deliveries',
            'mailbox_pauses',
            'message_recipients',
            'message_tags',
            'messages',
            'schema_migrations',
            'sends',
            'suppressions',
            'token_cache',
          ],
          'one ledger (schema_migrations) for every part',
        );
        const parts = await pgQuery<{ part: string; n: number }>(`SELECT part, count(*)::int AS n FROM ${schema}.schema_migrations GROUP BY part ORDER BY part`);
        assert.deepEqual(parts, [
          { part: 'http', n: http.length },
          { part: 'outbox', n: latest.length },
          { part: 'token-cache', n: 1 },
        ]);
      } finally {
        await dir.cleanup();
      }
    });

    it('migrates the SQLite file when no queue.url is set', async () => {
      const dir = await tempDir();
      try {
        const file = join(dir.path, 'relay365.yaml');
        await writeFile(file, `dataDir: ${dir.path}\nlog: { level: silent }\n`);
        const versions = SQLITE_MIGRATIONS.map((m) => m.version);
        const first = await dbMigrate(file);
        assert.equal(first.store, 'sqlite');
        assert.deepEqual(first.outbox, { applied: versions, version: Math.max(...versions) });
        assert.deepEqual(first.http, { applied: [1, 2], version: 2 }, 'the HTTP tables in the same file');
        assert.equal(first.tokenCache, undefined);
        const second = await dbMigrate(file);
        assert.deepEqual([second.outbox.applied, second.http.applied], [[], []]);
      } finally {
        await dir.cleanup();
      }
    });
  });

  describe('relay365 on PostgreSQL: the stores commands open', () => {
    const schema = testSchema();
    after(() => dropSchema(schema));

    it('opens the PostgreSQL outbox, integration store and shared token cache with queue.url, the SQLite file and no shared cache without', async () => {
      const dir = await tempDir();
      try {
        const env = { RELAY365_SECRET_KEY: randomBytes(32).toString('hex') };
        const shared = configSchema.parse({ dataDir: dir.path, queue: { url: PG_URL, schema } });
        const store = await openOutboxStore(shared);
        assert.ok(store instanceof PgOutboxStore);
        await store.close();
        const integrationStore = await openIntegrationStore(shared);
        assert.ok(integrationStore instanceof PgIntegrationStore);
        await integrationStore.close();
        const cache = await openSharedTokenCache(shared, env);
        assert.ok(cache !== undefined);
        await cache.write('msal-test', 'value');
        assert.equal(await cache.read('msal-test'), 'value');
        await cache.close();

        const embedded = configSchema.parse({ dataDir: dir.path });
        const file = await openOutboxStore(embedded);
        assert.ok(file instanceof SqliteOutboxStore);
        await file.close();
        const httpFile = await openIntegrationStore(embedded);
        assert.ok(httpFile instanceof SqliteIntegrationStore);
        await httpFile.close();
        assert.equal(await openSharedTokenCache(embedded, env), undefined);
      } finally {
        await dir.cleanup();
      }
    });
  });

  describe('relay365 on PostgreSQL: two relays, one queue', () => {
    const schema = testSchema();
    let sandbox: Sandbox & { dir: string };
    before(async () => {
      sandbox = await startTestSandbox();
    });
    after(async () => {
      await sandbox.close();
      await dropSchema(schema);
    });

    it('delivers what either node accepted exactly once, with one token between them', async () => {
      const env = { ...process.env, RELAY365_SECRET_KEY: randomBytes(32).toString('base64') };
      const dirs = [await tempDir(), await tempDir()];
      const relays: Relay[] = [];
      try {
        for (const dir of dirs) relays.push(await startRelay(sandboxConfig(sandbox, dir.path, { queue: { url: PG_URL, schema } }), { env }));
        assert.ok(relays.every((r) => r.store instanceof PgOutboxStore));
        const tokensBefore = sandbox.state.counters.tokenRequests;
        const total = 10;
        for (let i = 0; i < total; i++) {
          const m = await composeMessage({ from: DEFAULT_IDS.mailbox, to: `r${i}@example.net`, subject: `n${i}`, text: 'x' });
          await relays[i % 2]!.enqueue({ mailbox: DEFAULT_IDS.mailbox, envelope: m.envelope, raw: m.raw, source: { kind: 'library' } });
        }
        await until(async () => (await relays[0]!.store.counts()).sent === total, 20_000, 'every message sent');
        const subjects = sandbox.state.messages.map((m) => /^Subject: (.*)$/m.exec(m.raw.toString('utf8'))?.[1]);
        assert.equal(subjects.length, total, 'Exchange received each message once');
        assert.equal(new Set(subjects).size, total);
        assert.equal(sandbox.state.counters.tokenRequests - tokensBefore, 1, 'one token request for both nodes');
        const senders = await pgQuery<{ owner: string }>(`SELECT DISTINCT owner FROM ${schema}.attempts`);
        assert.ok(senders.length >= 1);
        const cache = await pgQuery<{ key: string }>(`SELECT key FROM ${schema}.token_cache WHERE key LIKE 'msal-%'`);
        assert.equal(cache.length, 1, 'the token lives in the shared cache');
      } finally {
        for (const r of relays) await r.close();
        for (const d of dirs) await d.cleanup();
      }
    });
  });

  describe('relay365 on PostgreSQL: two HTTP front doors, one set of keys', () => {
    const schema = testSchema();
    let sandbox: Sandbox & { dir: string };
    before(async () => {
      sandbox = await startTestSandbox();
    });
    after(async () => {
      await sandbox.close();
      await dropSchema(schema);
    });

    it('queues one message for an Idempotency-Key sent to both nodes at once and again, and honours a key created and revoked with the CLI on both', async () => {
      const env = { ...process.env, RELAY365_SECRET_KEY: randomBytes(32).toString('base64') };
      const dirs = [await tempDir(), await tempDir()];
      const relays: Relay[] = [];
      // One webhook receiver for both nodes: each event must reach it once, whichever node claims it.
      const hooks: string[] = [];
      const receiver = createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          hooks.push(Buffer.concat(chunks).toString('utf8'));
          res.writeHead(204).end();
        });
      });
      await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
      try {
        const shared = { queue: { url: PG_URL, schema }, log: { level: 'silent' as const } };
        const configFile = join(dirs[0]!.path, 'relay365.yaml');
        await writeFile(configFile, `dataDir: ${dirs[0]!.path}\nlog: { level: silent }\nqueue:\n  url: ${PG_URL}\n  schema: ${schema}\n`);
        const http = {
          enabled: true,
          port: 0,
          webhooks: [{ url: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`, secret: 'whsec_cluster' }],
        };
        for (const dir of dirs) relays.push(await startRelay(sandboxConfig(sandbox, dir.path, { ...shared, http }), { env, webhooks: { pollMs: 100 } }));

        // `relay365 apikey create` on a machine that is neither node: the key lives in PostgreSQL only.
        const created = JSON.parse(await runCommand(apikeyCommand, ['create', '--name', 'billing-app', '--json', '--config', configFile])) as { key: string };
        const post = (relay: Relay, body: unknown, key = created.key) =>
          fetch(`${relay.httpAddress!}/v1/messages`, {
            method: 'POST',
            headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'idempotency-key': 'invoice-2024-0042' },
            body: JSON.stringify(body),
          }).then(async (r) => ({ status: r.status, replayed: r.headers.get('idempotent-replayed'), text: await r.text() }));
        const mailboxes = (relay: Relay) =>
          fetch(`${relay.httpAddress!}/v1/mailboxes`, { headers: { authorization: `Bearer ${created.key}` } }).then((r) => r.status);
        assert.deepEqual(await Promise.all(relays.map(mailboxes)), [200, 200], 'both nodes know the key');

        const body = { from: DEFAULT_IDS.mailbox, to: 'customer@example.net', subject: 'Invoice 42', text: 'Attached.' };
        // Three requests to each node at the same moment, as a client retrying through a load balancer.
        const concurrent = await Promise.all([0, 1, 0, 1, 0, 1].map((n) => post(relays[n]!, body)));
        const firsts = concurrent.filter((r) => r.status === 202 && r.replayed === null);
        assert.equal(firsts.length, 1, `exactly one request queued the message: ${JSON.stringify(concurrent)}`);
        const first = firsts[0]!;
        const id = (JSON.parse(first.text) as { id: string }).id;
        for (const r of concurrent) {
          if (r === first) continue;
          if (r.status === 202) assert.deepEqual([r.replayed, r.text], ['true', first.text], 'a replay carries the same message id');
          else assert.deepEqual([r.status, (JSON.parse(r.text) as { error: { code: string } }).error.code], [409, 'R365_IDEMPOTENCY_IN_PROGRESS']);
        }
        // And once more to each node, one after the other.
        for (const relay of relays) assert.deepEqual(await post(relay, body), { status: 202, replayed: 'true', text: first.text });
        const mismatch = await post(relays[1]!, { ...body, subject: 'Invoice 43' });
        assert.equal(mismatch.status, 422, 'the key with another body is refused on the other node too');
        const queued = await pgQuery<{ id: string }>(`SELECT id FROM ${schema}.messages`);
        assert.deepEqual(
          queued.map((m) => m.id),
          [id],
          'one message in the shared outbox',
        );

        await until(async () => (await relays[0]!.store.get(id))?.state === 'sent', 15_000, 'the message to be sent');
        await until(() => hooks.length > 0, 10_000, 'the message.sent webhook');
        // Both dispatchers poll every 100 ms: a delivery leased twice would arrive twice within this.
        await new Promise((r) => setTimeout(r, 1000));
        assert.deepEqual(
          hooks.map((h) => (JSON.parse(h) as { type: string; data: { id: string } }).type),
          ['message.sent'],
          'the event reached the receiver once',
        );
        assert.equal(sandbox.state.messages.length, 1, 'Exchange received the message once');

        const listed = JSON.parse(await runCommand(apikeyCommand, ['list', '--json', '--config', configFile])) as Array<{
          name: string;
          lastUsedAt: string | null;
        }>;
        assert.deepEqual(
          listed.map((k) => k.name),
          ['billing-app'],
        );
        assert.ok(listed[0]!.lastUsedAt !== null, "the nodes' use of the key shows in the shared list");
        await runCommand(apikeyCommand, ['revoke', 'billing-app', '--config', configFile]);
        assert.deepEqual(await Promise.all(relays.map(mailboxes)), [401, 401], 'the revocation holds on both nodes at once');
      } finally {
        for (const r of relays) await r.close();
        await new Promise((r) => receiver.close(r));
        for (const d of dirs) await d.cleanup();
      }
    });
  });
}
