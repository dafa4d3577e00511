import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isRelay365Error } from '../../src/errors.js';
import { generateApiKey } from '../../src/ingress/http/index.js';
import { PgIntegrationStore } from '../../src/store/pg-integration-store.js';
import { PG_INTEGRATION_MIGRATIONS } from '../../src/store/pg-integration-sql.js';
import { openPgStore } from '../../src/outbox/index.js';
import { integrationStoreContract } from '../contract/integration-store.js';
import { freePort } from '../helpers/cli.js';
import { PG_URL, dropSchema, pgQuery, pgUnavailable, testSchema } from '../helpers/pg.js';

const unavailable = await pgUnavailable();

if (unavailable !== undefined) {
  describe('PostgreSQL integration store', () => {
    it('needs a PostgreSQL server', (t) => t.skip(unavailable));
  });
} else {
  // A fresh schema per test; `connect` opens a second pool on it, as a second node would.
  integrationStoreContract('PostgreSQL', async () => {
    const schema = testSchema();
    return {
      store: await PgIntegrationStore.open(PG_URL, { schema, poolSize: 4 }),
      cleanup: () => dropSchema(schema),
      connect: () => PgIntegrationStore.open(PG_URL, { schema, poolSize: 4 }),
    };
  });

  describe('PostgreSQL integration store: schema, migrations and the shared pool', () => {
    const schema = testSchema();
    after(() => dropSchema(schema));

    it("migrates its tables once when three nodes start at the same moment, its steps recorded as part http of the schema's one ledger", async () => {
      const outboxes = await Promise.all([1, 2, 3].map(() => openPgStore(PG_URL, { schema, poolSize: 2 })));
      try {
        const stores = await Promise.all(outboxes.map((o) => PgIntegrationStore.attach(o, { migrate: false })));
        const reports = await Promise.all(stores.map((s) => s.applyMigrations()));
        const versions = PG_INTEGRATION_MIGRATIONS.map((m) => m.version);
        assert.deepEqual(
          reports.map((r) => r.applied).sort((a, b) => b.length - a.length),
          [versions, [], []],
          'one node applied every step; the two others waited for it and found nothing to do',
        );
        const ledger = await pgQuery<{ version: number }>(`SELECT version FROM ${schema}.schema_migrations WHERE part = 'http' ORDER BY version`);
        assert.deepEqual(
          ledger.map((r) => r.version),
          versions,
        );
        const tables = await pgQuery<{ table_name: string }>(
          `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 AND table_name LIKE 'http%' ORDER BY table_name`,
          [schema],
        );
        assert.deepEqual(
          tables.map((t) => t.table_name),
          ['http_api_keys', 'http_idempotency_keys', 'http_webhook_deliveries'],
        );
      } finally {
        for (const o of outboxes) await o.close();
      }
    });

    it("works on the outbox's pool and leaves it open when closed", async () => {
      const outbox = await openPgStore(PG_URL, { schema, poolSize: 2 });
      try {
        const store = await PgIntegrationStore.attach(outbox);
        const key = generateApiKey();
        await store.createApiKey({ name: 'on-the-outbox-pool', hash: key.hash, prefix: key.prefix });
        assert.ok(outbox.pool.totalCount <= 2, 'no connection beyond the outbox pool');
        await store.close();
        const rows = await pgQuery<{ name: string }>(`SELECT name FROM ${schema}.http_api_keys WHERE hash = $1`, [key.hash]);
        assert.deepEqual(rows, [{ name: 'on-the-outbox-pool' }]);
        assert.deepEqual(await outbox.counts().then((c) => c.queued), 0, 'the outbox still answers');
        assert.ok(!JSON.stringify(rows).includes(key.key));
      } finally {
        await outbox.close();
      }
    });

    it('refuses tables a newer relay365 migrated, naming the fix', async () => {
      const newer = testSchema();
      try {
        await (await PgIntegrationStore.open(PG_URL, { schema: newer })).close();
        await pgQuery(`INSERT INTO ${newer}.schema_migrations (part, version, description, applied_at) VALUES ('http', 999, 'from the future', 0)`);
        await assert.rejects(
          PgIntegrationStore.open(PG_URL, { schema: newer }),
          (err) => isRelay365Error(err, 'R365_SCHEMA_TOO_NEW') && /999/.test(err.message) && /newer relay365/.test(err.message) && !err.retryable,
        );
      } finally {
        await dropSchema(newer);
      }
    });

    it('refuses a schema name that would need quoting', async () => {
      await assert.rejects(PgIntegrationStore.open(PG_URL, { schema: 'Relay365; DROP' }), (err) => isRelay365Error(err, 'R365_CONFIG_INVALID'));
    });
  });

  describe('PostgreSQL integration store: when the server is away', () => {
    it('reports a server that does not answer as R365_OUTBOX_UNAVAILABLE, retryable, naming the database without its password', async () => {
      const port = await freePort();
      const url = `postgresql://relay:hunter2-secret@127.0.0.1:${port}/relay365`;
      await assert.rejects(PgIntegrationStore.open(url, { connectTimeoutMs: 2000 }), (err) => {
        assert.ok(isRelay365Error(err, 'R365_OUTBOX_UNAVAILABLE'), String(err));
        assert.equal(err.retryable, true);
        assert.match(err.message, /integration store migrations: PostgreSQL cannot be reached/);
        assert.ok(err.message.includes(`127.0.0.1:${port}/relay365`), err.message);
        assert.ok(!err.message.includes('hunter2-secret'), err.message);
        assert.ok(!JSON.stringify(err.details).includes('hunter2-secret'));
        return true;
      });
    });
  });
}
