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
    .option('--json', 'print JSON')
    .action(async (flags: { config?: string; json?: boolean }) => {
      const { config } = await cliContext(flags);
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
