import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { Command } from 'commander';
import type { Config } from '../../config/index.js';
import type { StoragePart } from '../../store/index.js';
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
  const [{ openPgStore }, { PgIntegrationStore }, { migrateTokenCache }] = await Promise.all([
    import('../../outbox/pg-store.js'),
    import('../../store/pg-integration-store.js'),
    import('../../identity/pg-cache-store.js'),
  ]);
  const store = await openPgStore(url, { schema: config.queue.schema, migrate: false, poolSize: 1 });
  try {
    const outbox = await store.applyMigrations();
    const http = await (await PgIntegrationStore.attach(store, { migrate: false })).applyMigrations();
    const tokenCache = await migrateTokenCache(store.pool, config.queue.schema);
    return { ok: true, store: 'postgresql', database: store.where, outbox, http, tokenCache };
  } finally {
    await store.close();
  }
}

/** The versions of the outbox the SQLite file's ledger records; none for a file that does not exist yet. */
async function sqliteVersions(path: string): Promise<number[]> {
  if (!existsSync(path)) return [];
  const [{ default: Database }, { sqliteLedgerState }] = await Promise.all([import('better-sqlite3'), import('../../store/index.js')]);
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return sqliteLedgerState(db).applied('outbox');
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
  const [{ openSqliteStore }, { openSqliteIntegrationStore }] = await Promise.all([
    import('../../outbox/sqlite-store.js'),
    import('../../store/integration-store.js'),
  ]);
  const before = new Set(await sqliteVersions(path));
  await (await openSqliteStore(path)).close();
  const after = await sqliteVersions(path);
  const integrationStore = await openSqliteIntegrationStore(path, { migrate: false });
  try {
    const http = await integrationStore.applyMigrations();
    return { ok: true, store: 'sqlite', database: path, outbox: { applied: after.filter((v) => !before.has(v)), version: Math.max(0, ...after) }, http };
  } finally {
    await integrationStore.close();
  }
}

/** One part's tables, their steps and what the ledger records of them, for `--print`. */
interface Ledger {
  name: string;
  /** The versions applied (empty when the ledger does not exist yet). */
  applied: number[];
  steps: ReadonlyArray<{ version: number; description: string; sql: string }>;
  /** The statement recording a step in the ledger, with its values. */
  record: (version: number, description: string) => string;
}

const quote = (text: string): string => `'${text.replace(/'/g, "''")}'`;

/** The SQLite file's one ledger, part by part (the outbox, the HTTP tables), and what would create or upgrade it. */
async function sqliteLedgers(config: Config): Promise<{ database: string; prologue: string[]; ledgers: Ledger[] }> {
  const path = resolve(config.dataDir, config.queue.path);
  const [{ MIGRATIONS }, { SQLITE_INTEGRATION_MIGRATIONS }, { sqliteLedgerState }, { default: Database }] = await Promise.all([
    import('../../outbox/sqlite-sql.js'),
    import('../../store/integration-store.js'),
    import('../../store/index.js'),
    import('better-sqlite3'),
  ]);
  const db = existsSync(path) ? new Database(path, { readonly: true, fileMustExist: true }) : undefined;
  try {
    const state = sqliteLedgerState(db);
    const now = Date.now();
    const ledger = (name: string, part: StoragePart, steps: Ledger['steps']): Ledger => ({
      name,
      applied: state.applied(part),
      steps,
      record: (v) => `INSERT INTO schema_migrations (part, version, applied_at) VALUES (${quote(part)}, ${v}, ${now})`,
    });
    return {
      database: path,
      prologue: state.prologue,
      ledgers: [ledger('outbox', 'outbox', MIGRATIONS), ledger('HTTP tables', 'http', SQLITE_INTEGRATION_MIGRATIONS)],
    };
  } finally {
    db?.close();
  }
}

/**
 * The schema's one ledger in PostgreSQL, part by part (the outbox, the HTTP tables, the shared token
 * cache). For a schema of before the one ledger, the parts' own ledgers, and the prologue that upgrades
 * the ledger and carries their steps over, as `migrate` would (store/pg-database.ts).
 */
async function pgLedgers(config: Config, url: string): Promise<{ database: string; prologue: string[]; ledgers: Ledger[] }> {
  const [{ default: pg }, { PG_MIGRATIONS }, { PG_INTEGRATION_MIGRATIONS }, { TOKEN_CACHE_MIGRATIONS }, { createPgPool, describeDatabase, ledgerStatements, LEGACY_PG_LEDGERS }] =
    await Promise.all([
      import('pg'),
      import('../../outbox/pg-sql.js'),
      import('../../store/pg-integration-sql.js'),
      import('../../identity/pg-cache-store.js'),
      import('../../store/index.js'),
    ]);
  const schema = config.queue.schema;
  const s = pg.escapeIdentifier(schema);
  const sql = ledgerStatements(schema);
  const pool = createPgPool(url, { poolSize: 1 });
  const now = Date.now();
  try {
    const exists = (await pool.query(sql.schemaExists, [schema])).rowCount === 1;
    const columns = (await pool.query<{ name: string }>(sql.ledgerColumns, [schema])).rows.map((r) => r.name);
    const legacyFound = async (table: string): Promise<boolean> =>
      (await pool.query<{ found: boolean }>(sql.tableExists, [`${s}.${pg.escapeIdentifier(table)}`])).rows[0]?.found === true;
    const prologue: string[] = exists ? [] : [`CREATE SCHEMA IF NOT EXISTS ${s}`];
    const carried = new Map<string, number[]>();
    if (!columns.includes('part')) {
      prologue.push(...(columns.length === 0 ? [sql.createLedger] : sql.addPartColumn));
      for (const legacy of LEGACY_PG_LEDGERS) {
        if (!(await legacyFound(legacy.table))) continue;
        prologue.push(sql.carryOver(legacy.table).replace('$1', quote(legacy.part)));
        carried.set(legacy.part, (await pool.query<{ version: number }>(`SELECT version FROM ${s}.${pg.escapeIdentifier(legacy.table)}`)).rows.map((r) => r.version));
      }
    }
    const applied = async (part: StoragePart): Promise<number[]> => {
      if (columns.length === 0) return carried.get(part) ?? [];
      if (!columns.includes('part')) {
        // The ledger of before: its rows are the outbox's.
        const own = part === 'outbox' ? (await pool.query<{ version: number }>(`SELECT version FROM ${s}.schema_migrations`)).rows.map((r) => r.version) : [];
        return [...own, ...(carried.get(part) ?? [])];
      }
      return (await pool.query<{ version: number }>(sql.appliedVersions, [part])).rows.map((r) => r.version);
    };
    const ledger = async (name: string, part: StoragePart, steps: ReadonlyArray<{ version: number; description: string; sql: (s: string) => string }>): Promise<Ledger> => ({
      name,
      applied: await applied(part),
      steps: steps.map((m) => ({ version: m.version, description: m.description, sql: m.sql(s) })),
      record: (v, d) => `INSERT INTO ${s}.schema_migrations (part, version, description, applied_at) VALUES (${quote(part)}, ${v}, ${quote(d)}, ${now})`,
    });
    return {
      database: describeDatabase(url, schema),
      prologue,
      ledgers: [
        await ledger('outbox', 'outbox', PG_MIGRATIONS),
        await ledger('HTTP tables', 'http', PG_INTEGRATION_MIGRATIONS),
        await ledger('token cache', 'token-cache', TOKEN_CACHE_MIGRATIONS),
      ],
    };
  } finally {
    await pool.end();
  }
}

/**
 * The SQL `db migrate` would run, in one transaction for the database's one ledger, without running
 * it. A ledger newer than this release refuses as `migrate` does.
 */
async function printPending(config: Config): Promise<string> {
  const { database, prologue, ledgers } = config.queue.url === undefined ? await sqliteLedgers(config) : await pgLedgers(config, config.queue.url);
  const { schemaTooNew } = await import('../../errors.js');
  const head = `-- relay365 db migrate --print: ${config.queue.url === undefined ? 'SQLite' : 'PostgreSQL'} ${database}`;
  const body: string[] = [];
  for (const l of ledgers) {
    const known = Math.max(0, ...l.steps.map((m) => m.version));
    const version = Math.max(0, ...l.applied);
    if (version > known) throw schemaTooNew(`the ${l.name} in ${database}`, version, known);
    const pending = l.steps.filter((m) => !l.applied.includes(m.version));
    if (pending.length === 0) {
      body.push('', `-- ${l.name}: up to date at schema version ${version}`);
      continue;
    }
    body.push('', `-- ${l.name}: schema version ${version} -> ${known}`);
    for (const m of pending) body.push(`-- ${m.version}: ${m.description}`, m.sql.trim().replace(/;?$/, ';'), `${l.record(m.version, m.description)};`);
  }
  const changes = prologue.length > 0 || body.some((line) => !line.startsWith('--') && line !== '');
  if (!changes) return [head, ...body].join('\n');
  return [head, 'BEGIN;', ...prologue.map((p) => `${p.trim()};`), ...body, 'COMMIT;'].join('\n');
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
