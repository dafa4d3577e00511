import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { dbCommand } from '../../src/cli/commands/db.js';
import { isRelay365Error } from '../../src/errors.js';
import { migrateTokenCache } from '../../src/identity/pg-cache-store.js';
import { openSqliteIntegrationStore } from '../../src/ingress/http/index.js';
import { PgIntegrationStore } from '../../src/store/pg-integration-store.js';
import { openPgStore, openSqliteStore } from '../../src/outbox/index.js';
import { MIGRATIONS } from '../../src/outbox/sqlite-sql.js';
import { PG_MIGRATIONS } from '../../src/outbox/pg-sql.js';
import { PG_URL, dropSchema, pgQuery, pgUnavailable, testSchema } from '../helpers/pg.js';
import { tempDir } from '../helpers/sandbox.js';

const LATEST = Math.max(...MIGRATIONS.map((m) => m.version));
const PG_LATEST = Math.max(...PG_MIGRATIONS.map((m) => m.version));

/** The refusal a newer schema draws, whichever ledger: the code, both versions, and what to do. */
function tooNew(version: number, known: number) {
  return (err: unknown): boolean =>
    isRelay365Error(err, 'R365_SCHEMA_TOO_NEW') &&
    err.message.toLowerCase().includes(`this database was upgraded by a newer relay365 (schema ${version}, this one knows ${known}); upgrade relay365 or restore`) &&
    !err.retryable;
}

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

describe('SQLite: a schema from a newer relay365', () => {
  it('db migrate --print shows the pending SQL and applies nothing; the outbox and the HTTP tables each refuse a version they do not know', async () => {
    const dir = await tempDir();
    try {
      const file = join(dir.path, 'relay365.yaml');
      await writeFile(file, `dataDir: ${dir.path}\nlog: { level: silent }\n`);
      const fresh = await db(['migrate', '--config', file, '--print']);
      assert.match(fresh, new RegExp(`-- outbox: schema version 0 -> ${LATEST}`));
      assert.match(fresh, /-- 7: retention and privacy at rest/);
      assert.match(fresh, /ALTER TABLE messages ADD COLUMN body_deleted_at INTEGER;/);
      assert.match(fresh, new RegExp(`INSERT INTO schema_migrations \\(part, version, applied_at\\) VALUES \\('outbox', ${LATEST}, \\d+\\);`));
      assert.match(fresh, /-- HTTP tables: schema version 0 -> \d+/);
      const path = join(dir.path, 'relay365.db');
      // The printed SQL is the real thing: run by sqlite3's own engine, it yields what migrate would.
      const printedDb = new Database(join(dir.path, 'printed.db'));
      printedDb.exec(fresh);
      assert.deepEqual(printedDb.prepare("SELECT version FROM schema_migrations WHERE part = 'outbox' ORDER BY version").pluck().all(), MIGRATIONS.map((m) => m.version));
      printedDb.close();

      await (await openSqliteStore(path)).close();
      const current = await db(['migrate', '--config', file, '--print']);
      assert.match(current, new RegExp(`-- outbox: up to date at schema version ${LATEST}`));

      const raw = new Database(path);
      raw.prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (?, 0)').run(LATEST + 1);
      raw.close();
      await assert.rejects(openSqliteStore(path), tooNew(LATEST + 1, LATEST));
      await assert.rejects(db(['migrate', '--config', file]), tooNew(LATEST + 1, LATEST));
      await assert.rejects(db(['migrate', '--config', file, '--print']), tooNew(LATEST + 1, LATEST));

      const httpPath = join(dir.path, 'http.db');
      await (await openSqliteIntegrationStore(httpPath)).close();
      const http = new Database(httpPath);
      const httpLatest = http.prepare<[], number>("SELECT max(version) FROM schema_migrations WHERE part = 'http'").pluck().get()!;
      http.prepare("INSERT INTO schema_migrations (part, version, applied_at) VALUES ('http', ?, 0)").run(httpLatest + 5);
      http.close();
      await assert.rejects(openSqliteIntegrationStore(httpPath), tooNew(httpLatest + 5, httpLatest));
    } finally {
      await dir.cleanup();
    }
  });
});

const unavailable = await pgUnavailable();
if (unavailable !== undefined) {
  describe('PostgreSQL: a schema from a newer relay365', () => {
    it('needs a PostgreSQL server', (t) => t.skip(unavailable));
  });
} else {
  describe('PostgreSQL: a schema from a newer relay365', () => {
    const schema = testSchema();
    after(() => dropSchema(schema));

    it('db migrate --print shows the pending SQL; the outbox, the HTTP tables and the token cache each refuse a version they do not know', async () => {
      const dir = await tempDir();
      try {
        const file = join(dir.path, 'relay365.yaml');
        await writeFile(file, `dataDir: ${dir.path}\nlog: { level: silent }\nqueue:\n  url: ${PG_URL}\n  schema: ${schema}\n`);
        const fresh = await db(['migrate', '--config', file, '--print']);
        assert.match(fresh, new RegExp(`CREATE SCHEMA IF NOT EXISTS "?${schema}"?;`));
        assert.match(fresh, new RegExp(`-- outbox: schema version 0 -> ${PG_LATEST}`));
        assert.match(fresh, /ADD COLUMN body_deleted_at bigint/);
        assert.match(fresh, /-- token cache: schema version 0 -> 1/);
        assert.deepEqual(await pgQuery(`SELECT 1 FROM pg_namespace WHERE nspname = $1`, [schema]), [], '--print created nothing');
        // What it printed, run as it is, builds the same schema migrate would.
        await pgQuery(fresh);
        assert.deepEqual(
          (await pgQuery<{ version: number }>(`SELECT version FROM ${schema}.schema_migrations WHERE part = 'outbox' ORDER BY version`)).map((r) => r.version),
          PG_MIGRATIONS.map((m) => m.version),
        );
        const store = await openPgStore(PG_URL, { schema, poolSize: 1 });
        await store.close();
        assert.match(await db(['migrate', '--config', file, '--print']), new RegExp(`-- outbox: up to date at schema version ${PG_LATEST}`));

        const known = Math.max(...PG_MIGRATIONS.map((m) => m.version));
        await pgQuery(`INSERT INTO ${schema}.schema_migrations (version, description, applied_at) VALUES ($1, 'from the future', 0)`, [known + 1]);
        await assert.rejects(openPgStore(PG_URL, { schema, poolSize: 1 }), tooNew(known + 1, known));
        await assert.rejects(db(['migrate', '--config', file]), tooNew(known + 1, known));
        await pgQuery(`DELETE FROM ${schema}.schema_migrations WHERE version = $1`, [known + 1]);

        const outbox = await openPgStore(PG_URL, { schema, poolSize: 2 });
        try {
          const httpKnown = (await pgQuery<{ v: number }>(`SELECT max(version)::int AS v FROM ${schema}.schema_migrations WHERE part = 'http'`))[0]!.v;
          await pgQuery(`INSERT INTO ${schema}.schema_migrations (part, version, description, applied_at) VALUES ('http', $1, 'from the future', 0)`, [httpKnown + 1]);
          await assert.rejects(PgIntegrationStore.attach(outbox), tooNew(httpKnown + 1, httpKnown));
          await pgQuery(`INSERT INTO ${schema}.schema_migrations (part, version, description, applied_at) VALUES ('token-cache', 2, 'from the future', 0)`);
          await assert.rejects(migrateTokenCache(outbox.pool, schema), tooNew(2, 1));
        } finally {
          await outbox.close();
        }
      } finally {
        await dir.cleanup();
      }
    });
  });
}
