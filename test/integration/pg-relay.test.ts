import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { dbCommand } from '../../src/cli/commands/db.js';
import { configSchema } from '../../src/config/index.js';
import { composeMessage } from '../../src/delivery/index.js';
import { PgOutboxStore, SqliteOutboxStore } from '../../src/outbox/index.js';
import { PG_MIGRATIONS } from '../../src/outbox/pg-sql.js';
import { MIGRATIONS as SQLITE_MIGRATIONS } from '../../src/outbox/sqlite-sql.js';
import { startRelay, type Relay } from '../../src/runtime/index.js';
import { openOutboxStore, openSharedTokenCache } from '../../src/runtime/relay.js';
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

/** Runs `relay365 db migrate --json` in-process and returns what it printed. */
async function dbMigrate(
  configFile: string,
): Promise<{ store: string; outbox: { applied: number[]; version: number }; tokenCache?: { applied: number[]; version: number } }> {
  const printed: string[] = [];
  const log = console.log;
  console.log = (...args: unknown[]) => void printed.push(args.join(' '));
  try {
    await dbCommand().exitOverride().parseAsync(['migrate', '--config', configFile, '--json'], { from: 'user' });
  } finally {
    console.log = log;
  }
  return JSON.parse(printed.join('\n')) as Awaited<ReturnType<typeof dbMigrate>>;
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
        const first = await dbMigrate(file);
        assert.equal(first.store, 'postgresql');
        assert.deepEqual(first.outbox, { applied: latest, version: Math.max(...latest) });
        assert.deepEqual(first.tokenCache, { applied: [1], version: 1 });
        const second = await dbMigrate(file);
        assert.deepEqual(second.outbox, { applied: [], version: Math.max(...latest) });
        assert.deepEqual(second.tokenCache, { applied: [], version: 1 });
        const tables = await pgQuery<{ table_name: string }>(`SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name`, [
          schema,
        ]);
        assert.deepEqual(
          tables.map((t) => t.table_name),
          ['attempts', 'messages', 'schema_migrations', 'sends', 'token_cache', 'token_cache_migrations'],
        );
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
        assert.equal(first.tokenCache, undefined);
        assert.deepEqual((await dbMigrate(file)).outbox.applied, []);
      } finally {
        await dir.cleanup();
      }
    });
  });

  describe('relay365 on PostgreSQL: the stores commands open', () => {
    const schema = testSchema();
    after(() => dropSchema(schema));

    it('opens the PostgreSQL outbox and the shared token cache with queue.url, the SQLite file and no shared cache without', async () => {
      const dir = await tempDir();
      try {
        const env = { RELAY365_SECRET_KEY: randomBytes(32).toString('hex') };
        const shared = configSchema.parse({ dataDir: dir.path, queue: { url: PG_URL, schema } });
        const store = await openOutboxStore(shared);
        assert.ok(store instanceof PgOutboxStore);
        await store.close();
        const cache = await openSharedTokenCache(shared, env);
        assert.ok(cache !== undefined);
        await cache.write('msal-test', 'value');
        assert.equal(await cache.read('msal-test'), 'value');
        await cache.close();

        const embedded = configSchema.parse({ dataDir: dir.path });
        const file = await openOutboxStore(embedded);
        assert.ok(file instanceof SqliteOutboxStore);
        await file.close();
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
}
