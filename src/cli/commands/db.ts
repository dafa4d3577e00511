import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { Command } from 'commander';
import type { Config } from '../../config/index.js';
import { cliContext, configOption } from '../context.js';

/** What `db migrate` did to one set of tables. */
interface Applied {
  applied: number[];
  version: number;
}

/** What `db migrate` did, as `--json` prints it. */
interface MigrateReport {
  ok: true;
  store: 'postgresql' | 'sqlite';
  /** The database: the URL without its password and the schema, or the SQLite file. */
  database: string;
  outbox: Applied;
  /** The HTTP front door's tables: API keys, idempotency keys, webhook deliveries (`http_*`). */
  http: Applied;
  /** The shared token cache's table (PostgreSQL only; the embedded cache is files). */
  tokenCache?: Applied;
}

/** Applies the pending migrations of the outbox, the HTTP tables and the shared token cache in PostgreSQL. */
async function migratePg(config: Config, url: string): Promise<MigrateReport> {
  const [{ openPgStore }, { PgHttpStore }, { migrateTokenCache }] = await Promise.all([
    import('../../outbox/pg-store.js'),
    import('../../ingress/http/pg-http-store.js'),
    import('../../identity/pg-cache-store.js'),
  ]);
  const store = await openPgStore(url, { schema: config.queue.schema, migrate: false, poolSize: 1 });
  try {
    const outbox = await store.applyMigrations();
    const http = await (await PgHttpStore.attach(store, { migrate: false })).applyMigrations();
    const tokenCache = await migrateTokenCache(store.pool, config.queue.schema);
    return { ok: true, store: 'postgresql', database: store.where, outbox, http, tokenCache };
  } finally {
    await store.close();
  }
}

/** The versions a SQLite outbox file records; none for a file that does not exist yet. */
async function sqliteVersions(path: string): Promise<number[]> {
  if (!existsSync(path)) return [];
  const [{ default: Database }, { SQL: SQLITE_SQL }] = await Promise.all([import('better-sqlite3'), import('../../outbox/sqlite-sql.js')]);
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return db.prepare<[], number>(SQLITE_SQL.appliedVersions).pluck().all();
  } catch {
    return []; // an empty file: no schema_migrations table yet
  } finally {
    db.close();
  }
}

/**
 * Opening the SQLite outbox applies its migrations; the versions before and after tell which. The
 * HTTP tables in the same file report their own.
 */
async function migrateSqlite(config: Config): Promise<MigrateReport> {
  const path = resolve(config.dataDir, config.queue.path);
  const [{ openSqliteStore }, { openSqliteHttpStore }] = await Promise.all([
    import('../../outbox/sqlite-store.js'),
    import('../../ingress/http/http-store.js'),
  ]);
  const before = new Set(await sqliteVersions(path));
  await (await openSqliteStore(path)).close();
  const after = await sqliteVersions(path);
  const httpStore = await openSqliteHttpStore(path, { migrate: false });
  try {
    const http = await httpStore.applyMigrations();
    return { ok: true, store: 'sqlite', database: path, outbox: { applied: after.filter((v) => !before.has(v)), version: Math.max(0, ...after) }, http };
  } finally {
    await httpStore.close();
  }
}

/** One set of tables, its ledger, and its steps, for `--print`. */
interface Ledger {
  name: string;
  /** The versions applied (empty when the ledger does not exist yet). */
  applied: number[];
  steps: ReadonlyArray<{ version: number; description: string; sql: string }>;
  /** The statement recording a step in the ledger, with its values. */
  record: (version: number, description: string) => string;
  /** Statements run once before the steps (schema, ledger table). */
  prologue: string[];
}

const quote = (text: string): string => `'${text.replace(/'/g, "''")}'`;

/** The ledgers of the SQLite file: the outbox's and the HTTP tables'. */
async function sqliteLedgers(config: Config): Promise<{ database: string; ledgers: Ledger[] }> {
  const path = resolve(config.dataDir, config.queue.path);
  const [{ MIGRATIONS, SQL }, { SQLITE_HTTP_MIGRATIONS }] = await Promise.all([import('../../outbox/sqlite-sql.js'), import('../../ingress/http/http-store.js')]);
  const versions = async (table: string): Promise<number[]> => {
    if (!existsSync(path)) return [];
    const { default: Database } = await import('better-sqlite3');
    const db = new Database(path, { readonly: true, fileMustExist: true });
    try {
      return db.prepare<[], number>(`SELECT version FROM ${table} ORDER BY version`).pluck().all();
    } catch {
      return [];
    } finally {
      db.close();
    }
  };
  const now = Date.now();
  return {
    database: path,
    ledgers: [
      {
        name: 'outbox',
        applied: await versions('schema_migrations'),
        steps: MIGRATIONS,
        prologue: [SQL.createMigrationsTable],
        record: (v) => `INSERT INTO schema_migrations (version, applied_at) VALUES (${v}, ${now})`,
      },
      {
        name: 'HTTP tables',
        applied: await versions('http_schema_migrations'),
        steps: SQLITE_HTTP_MIGRATIONS,
        prologue: ['CREATE TABLE IF NOT EXISTS http_schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL) STRICT'],
        record: (v) => `INSERT INTO http_schema_migrations (version, applied_at) VALUES (${v}, ${now})`,
      },
    ],
  };
}

/** The ledgers in PostgreSQL: the outbox's, the HTTP tables' and the shared token cache's. */
async function pgLedgers(config: Config, url: string): Promise<{ database: string; ledgers: Ledger[] }> {
  const [{ default: pg }, { PG_MIGRATIONS }, { PG_HTTP_MIGRATIONS }, { TOKEN_CACHE_MIGRATIONS }, { createPgPool, describeDatabase }] = await Promise.all([
    import('pg'),
    import('../../outbox/pg-sql.js'),
    import('../../ingress/http/pg-http-sql.js'),
    import('../../identity/pg-cache-store.js'),
    import('../../outbox/pg-database.js'),
  ]);
  const schema = config.queue.schema;
  const s = pg.escapeIdentifier(schema);
  const pool = createPgPool(url, { poolSize: 1 });
  const now = Date.now();
  try {
    const exists = (await pool.query(`SELECT 1 FROM pg_namespace WHERE nspname = $1`, [schema])).rowCount === 1;
    const versions = async (ledger: string): Promise<number[]> => {
      const found = (await pool.query<{ t: string | null }>(`SELECT to_regclass($1) AS t`, [`${s}.${ledger}`])).rows[0]?.t;
      if (!found) return [];
      return (await pool.query<{ version: number }>(`SELECT version FROM ${s}.${ledger} ORDER BY version`)).rows.map((r) => r.version);
    };
    const ledger = (name: string, table: string, steps: ReadonlyArray<{ version: number; description: string; sql: (s: string) => string }>) =>
      versions(table).then(
        (applied): Ledger => ({
          name,
          applied,
          steps: steps.map((m) => ({ version: m.version, description: m.description, sql: m.sql(s) })),
          prologue: [
            ...(exists ? [] : [`CREATE SCHEMA IF NOT EXISTS ${s}`]),
            `CREATE TABLE IF NOT EXISTS ${s}.${table} (version integer PRIMARY KEY, description text NOT NULL, applied_at bigint NOT NULL)`,
          ],
          record: (v, d) => `INSERT INTO ${s}.${table} (version, description, applied_at) VALUES (${v}, ${quote(d)}, ${now})`,
        }),
      );
    return {
      database: describeDatabase(url, schema),
      ledgers: await Promise.all([
        ledger('outbox', 'schema_migrations', PG_MIGRATIONS),
        ledger('HTTP tables', 'http_schema_migrations', PG_HTTP_MIGRATIONS),
        ledger('token cache', 'token_cache_migrations', TOKEN_CACHE_MIGRATIONS),
      ]),
    };
  } finally {
    await pool.end();
  }
}

/**
 * The SQL `db migrate` would run, one transaction per set of tables, without running it. A ledger
 * newer than this release refuses as `migrate` does.
 */
async function printPending(config: Config): Promise<string> {
  const { database, ledgers } = config.queue.url === undefined ? await sqliteLedgers(config) : await pgLedgers(config, config.queue.url);
  const { schemaTooNew } = await import('../../errors.js');
  const out = [`-- relay365 db migrate --print: ${config.queue.url === undefined ? 'SQLite' : 'PostgreSQL'} ${database}`];
  for (const l of ledgers) {
    const known = Math.max(0, ...l.steps.map((m) => m.version));
    const version = Math.max(0, ...l.applied);
    if (version > known) throw schemaTooNew(`the ${l.name} in ${database}`, version, known);
    const pending = l.steps.filter((m) => !l.applied.includes(m.version));
    if (pending.length === 0) {
      out.push('', `-- ${l.name}: up to date at schema version ${version}`);
      continue;
    }
    out.push('', `-- ${l.name}: schema version ${version} -> ${known}`, 'BEGIN;', ...l.prologue.map((p) => `${p};`));
    for (const m of pending) out.push(`-- ${m.version}: ${m.description}`, m.sql.trim().replace(/;?$/, ';'), `${l.record(m.version, m.description)};`);
    out.push('COMMIT;');
  }
  return out.join('\n');
}

function summary(name: string, result: Applied): string {
  return result.applied.length === 0
    ? `${name}: up to date at schema version ${result.version}`
    : `${name}: applied ${result.applied.join(', ')}; now at schema version ${result.version}`;
}

/**
 * `relay365 db migrate`: creates or upgrades the outbox's tables, the HTTP front door's beside them and
 * (with PostgreSQL) the shared token cache's, in the database of `queue.url`, else the SQLite file, and
 * prints the versions applied. Run it once before starting upgraded nodes; nodes also migrate when
 * they start, under a lock, so running it is never required for a first start.
 */
export function dbCommand(): Command {
  const db = new Command('db').description('The outbox database: create or upgrade its schema.');
  db.command('migrate')
    .description(
      'Apply pending schema migrations (outbox, HTTP tables, shared token cache) to the configured database (queue.url, else queue.path) and print the versions applied',
    )
    .addOption(configOption())
    .option('--print', 'print the SQL of the pending migrations and apply nothing (to review, or to run through your own tooling)')
    .option('--json', 'print JSON')
    .addHelpText(
      'after',
      `
Every migration only adds tables, columns and indexes, so nodes of the previous release keep working on
the upgraded schema; a release older than the schema refuses to start (R365_SCHEMA_TOO_NEW).
See docs/operations.md, "Upgrades", for a single node and for a cluster.`,
    )
    .action(async (flags: { config?: string; json?: boolean; print?: boolean }) => {
      const { config } = await cliContext(flags);
      if (flags.print) {
        console.log(await printPending(config));
        return;
      }
      const report = config.queue.url === undefined ? await migrateSqlite(config) : await migratePg(config, config.queue.url);
      if (flags.json) {
        console.log(JSON.stringify(report, null, 2));
        return;
      }
      console.log(`${report.store === 'postgresql' ? 'PostgreSQL' : 'SQLite'} ${report.database}`);
      console.log(summary('outbox', report.outbox));
      console.log(summary('HTTP tables', report.http));
      if (report.tokenCache) console.log(summary('token cache', report.tokenCache));
    });
  return db;
}
