/**
 * The one migration ledger per database: a database laid out by the release before (a ledger per part:
 * `schema_migrations`, `http_schema_migrations` and, in PostgreSQL, `token_cache_migrations`), built
 * here from that release's SQL, upgrades with nothing applied again and its steps carried over.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { dbCommand } from '../../src/cli/commands/db.js';
import { TOKEN_CACHE_MIGRATIONS } from '../../src/identity/pg-cache-store.js';
import { PG_INTEGRATION_MIGRATIONS } from '../../src/store/pg-integration-sql.js';
import { generateApiKey, openSqliteIntegrationStore } from '../../src/ingress/http/index.js';
import { SQLITE_INTEGRATION_MIGRATIONS } from '../../src/store/integration-store.js';
import { openPgStore, openSqliteStore } from '../../src/outbox/index.js';
import { PG_MIGRATIONS } from '../../src/outbox/pg-sql.js';
import { MIGRATIONS } from '../../src/outbox/sqlite-sql.js';
import { legacyLedgerStatements } from '../../src/store/index.js';
import { PG_URL, dropSchema, pgQuery, pgUnavailable, testSchema } from '../helpers/pg.js';
import { tempDir } from '../helpers/sandbox.js';

/** Runs `relay365 db <args>` in-process and returns what it printed. */
async function db(args: string[]): Promise<string> {
  const printed: string[] = [];
  const log = console.log;
  console.log = (...parts: unknown[]) => void printed.push(parts.join(' '));
  try {
    await dbCommand().exitOverride().parseAsync(args, { from: 'user' });
  } finally {
    console.log = log;
  }
  return printed.join('\n');
}

const versions = (steps: ReadonlyArray<{ version: number }>): number[] => steps.map((m) => m.version).sort((a, b) => a - b);

describe('SQLite: one migration ledger', () => {
  it('upgrades a file with the per-part ledgers of before: nothing applied again, every step carried over, the data kept', async () => {
    const dir = await tempDir();
    try {
      const path = join(dir.path, 'relay365.db');
      const file = join(dir.path, 'relay365.yaml');
      await writeFile(file, `dataDir: ${dir.path}\nlog: { level: silent }\n`);
      // The file as the release before left it: the old code's ledger tables, every step applied.
      const old = new Database(path);
      old.exec('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL) STRICT');
      for (const m of MIGRATIONS) {
        old.exec(m.sql);
        old.prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)').run(m.version, 1000 + m.version);
      }
      old.exec('CREATE TABLE IF NOT EXISTS http_schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL) STRICT');
      for (const m of SQLITE_INTEGRATION_MIGRATIONS) {
        old.exec(m.sql);
        old.prepare('INSERT INTO http_schema_migrations (version, applied_at) VALUES (?, ?)').run(m.version, 2000 + m.version);
      }
      old.close();
      const key = generateApiKey();
      const before = await openSqliteIntegrationStore(path, { migrate: false });
      await before.createApiKey({ name: 'from-before', hash: key.hash, prefix: key.prefix });
      await before.close();

      const printed = await db(['migrate', '--config', file, '--print']);
      assert.match(printed, /-- outbox: up to date at schema version \d+/);
      assert.match(printed, /-- HTTP tables: up to date at schema version \d+/);
      assert.match(printed, /INSERT OR IGNORE INTO schema_migrations \(part, version, applied_at\) SELECT 'http', version, applied_at FROM http_schema_migrations;/);
      assert.doesNotMatch(printed, /CREATE TABLE messages/, 'no step printed again');

      const report = JSON.parse(await db(['migrate', '--config', file, '--json'])) as { outbox: { applied: number[] }; http: { applied: number[] } };
      assert.deepEqual(report.outbox.applied, [], 'no outbox step applied again');
      assert.deepEqual(report.http.applied, [], 'no HTTP step applied again');
      const look = new Database(path, { readonly: true });
      try {
        const rows = look.prepare<[], { part: string; version: number; applied_at: number }>('SELECT part, version, applied_at FROM schema_migrations ORDER BY part, version').all();
        assert.deepEqual(rows, [
          ...SQLITE_INTEGRATION_MIGRATIONS.map((m) => ({ part: 'http', version: m.version, applied_at: 2000 + m.version })),
          ...MIGRATIONS.map((m) => ({ part: 'outbox', version: m.version, applied_at: 1000 + m.version })),
        ]);
        // Left as it was: a node of the previous release still reads it.
        assert.deepEqual(look.prepare('SELECT version FROM http_schema_migrations ORDER BY version').pluck().all(), versions(SQLITE_INTEGRATION_MIGRATIONS));
      } finally {
        look.close();
      }
      const outbox = await openSqliteStore(path);
      const http = await openSqliteIntegrationStore(path);
      try {
        assert.equal((await http.findApiKey(key.hash))?.name, 'from-before');
        assert.deepEqual(await http.applyMigrations(), { applied: [], version: Math.max(...versions(SQLITE_INTEGRATION_MIGRATIONS)) });
      } finally {
        await http.close();
        await outbox.close();
      }
      assert.match(await db(['migrate', '--config', file, '--print']), /^(?![\s\S]*BEGIN;)/, 'nothing left to print once upgraded');
    } finally {
      await dir.cleanup();
    }
  });
});

const unavailable = await pgUnavailable();
if (unavailable !== undefined) {
  describe('PostgreSQL: one migration ledger', () => {
    it('needs a PostgreSQL server', (t) => t.skip(unavailable));
  });
} else {
  describe('PostgreSQL: one migration ledger', () => {
    const schema = testSchema();
    after(() => dropSchema(schema));

    it('upgrades a schema with the three per-part ledgers of before: nothing applied again, every step carried over', async () => {
      const dir = await tempDir();
      try {
        const file = join(dir.path, 'relay365.yaml');
        await writeFile(file, `dataDir: ${dir.path}\nlog: { level: silent }\nqueue:\n  url: ${PG_URL}\n  schema: ${schema}\n`);
        // The schema as the release before left it, from its SQL: a ledger per part, every step applied.
        const parts = [
          { ledger: 'schema_migrations', part: 'outbox', steps: PG_MIGRATIONS },
          { ledger: 'http_schema_migrations', part: 'http', steps: PG_INTEGRATION_MIGRATIONS },
          { ledger: 'token_cache_migrations', part: 'token-cache', steps: TOKEN_CACHE_MIGRATIONS },
        ];
        await pgQuery(legacyLedgerStatements(schema, 'schema_migrations').createSchema);
        for (const p of parts) {
          const sql = legacyLedgerStatements(schema, p.ledger);
          await pgQuery(sql.createMigrationsTable);
          for (const m of p.steps) {
            await pgQuery(m.sql(`"${schema}"`));
            await pgQuery(sql.recordMigration, [m.version, m.description, 5000 + m.version]);
          }
        }
        await pgQuery(`INSERT INTO ${schema}.token_cache (key, value, updated_at) VALUES ('kept', '\\x00', 1)`);

        const printed = await db(['migrate', '--config', file, '--print']);
        assert.match(printed, /-- outbox: up to date/);
        assert.match(printed, /-- HTTP tables: up to date/);
        assert.match(printed, /-- token cache: up to date/);
        assert.match(printed, /ALTER TABLE "?\w+"?\.schema_migrations ADD PRIMARY KEY \(part, version\);/);
        assert.doesNotMatch(printed, /CREATE TABLE "?\w+"?\.messages/, 'no step printed again');

        // Two nodes start at once: the first upgrades the ledger under the lock, the second finds it done
        // (a step applied again would fail: CREATE TABLE of a table that exists).
        const nodes = await Promise.all([1, 2].map(() => openPgStore(PG_URL, { schema, poolSize: 1, migrate: false })));
        try {
          const reports = await Promise.all(nodes.map((n) => n.applyMigrations()));
          assert.deepEqual(reports.map((r) => r.applied), [[], []], 'no outbox step applied again');
        } finally {
          for (const n of nodes) await n.close();
        }
        const report = JSON.parse(await db(['migrate', '--config', file, '--json'])) as Record<'outbox' | 'http' | 'tokenCache', { applied: number[] }>;
        assert.deepEqual([report.outbox.applied, report.http.applied, report.tokenCache.applied], [[], [], []], 'nothing applied again');
        const rows = await pgQuery<{ part: string; version: number; applied_at: number }>(
          `SELECT part, version, applied_at::int AS applied_at FROM ${schema}.schema_migrations ORDER BY part, version`,
        );
        const expected = parts
          .flatMap((p) => versions(p.steps).map((v) => ({ part: p.part, version: v, applied_at: 5000 + v })))
          .sort((a, b) => (a.part === b.part ? a.version - b.version : a.part < b.part ? -1 : 1));
        assert.deepEqual(rows, expected);
        assert.deepEqual(await pgQuery(`SELECT key FROM ${schema}.token_cache`), [{ key: 'kept' }]);
        assert.doesNotMatch(await db(['migrate', '--config', file, '--print']), /BEGIN;/, 'nothing left to print once upgraded');
      } finally {
        await dir.cleanup();
      }
    });
  });
}
