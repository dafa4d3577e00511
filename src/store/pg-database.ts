/**
 * What every relay365 store in PostgreSQL shares: how a pool is opened, how a transaction runs, the
 * one migration ledger of a schema and how each part's numbered steps are applied to it, and how
 * PostgreSQL's failures become a `Relay365Error` with the database named but never its password. The
 * outbox (`outbox/pg-store.ts`), the HTTP and webhook tables (`store/pg-integration-store.ts`) and the shared token
 * cache (`identity/pg-cache-store.ts`) use it; each keeps its own SQL and its own numbered steps.
 */
import pg from 'pg';
import { Relay365Error, schemaTooNew, type Relay365ErrorCode } from '../errors.js';

/** One schema step of a part. Versions only grow; a released step is never edited, a new one is added. */
export interface PgMigration {
  version: number;
  description: string;
  /** The DDL, for tables in the (quoted) schema `s`. */
  sql: (s: string) => string;
}

/**
 * A schema name relay365 accepts: a plain lower-case identifier, so that it needs no quoting in psql
 * either (PostgreSQL folds unquoted names to lower case).
 */
export const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * Run on every new connection. Raises `synchronous_commit` only where a DBA turned it off: with `off`
 * a commit is acknowledged before it reaches the WAL on disk, and a crash of the server would lose
 * messages already answered 250. Stricter settings (`remote_apply`, synchronous replicas) are kept.
 */
export const DURABLE_COMMITS = `SELECT set_config('synchronous_commit', 'on', false) WHERE current_setting('synchronous_commit') = 'off'`;

/** A transaction's three statements, for {@link pgTransaction}. */
export const TRANSACTION = { begin: 'BEGIN', commit: 'COMMIT', rollback: 'ROLLBACK' } as const;

/** The parts of relay365 with tables in a schema, each with its own numbered steps in the one ledger. */
export type StoragePart = 'outbox' | 'http' | 'token-cache';

/**
 * Where each part kept its steps before the one ledger: `schema_migrations` (the outbox's) became the
 * ledger of every part; the two others are read once, when the ledger gains its `part` column or is
 * created, and left as they were (a node of the previous release still reads them).
 */
export const LEGACY_PG_LEDGERS: ReadonlyArray<{ part: StoragePart; table: string }> = [
  { part: 'http', table: 'http_schema_migrations' },
  { part: 'token-cache', table: 'token_cache_migrations' },
];

/**
 * The statements of the one migration ledger of `schema`, `schema_migrations`: a row per applied step
 * of every part, keyed by (part, version). A row without a part is the outbox's, which is how the
 * previous release's INSERTs and the ledger of an old schema read.
 */
export function ledgerStatements(schema: string) {
  const s = pg.escapeIdentifier(schema);
  const t = `${s}.schema_migrations`;
  return {
    /**
     * Serializes migrations (and the CREATE SCHEMA before them) across nodes starting at once, for the
     * rest of the transaction. The single-key form: its key space does not overlap the two-key form
     * that the mailbox and token cache locks use (PostgreSQL, 9.27.10 "Advisory Lock Functions"). $1 schema name.
     */
    lockMigrations: `SELECT pg_advisory_xact_lock(hashtext('relay365 migrate ' || $1))`,
    schemaExists: `SELECT 1 FROM pg_namespace WHERE nspname = $1`,
    /** Only when missing: CREATE SCHEMA IF NOT EXISTS checks the CREATE right on the database first, which a role owning only the schema lacks. */
    createSchema: `CREATE SCHEMA ${s}`,
    /** The ledger's columns, none when it does not exist. $1 schema name. */
    ledgerColumns: `SELECT column_name AS name FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'schema_migrations'`,
    createLedger: `CREATE TABLE ${t} (part text COLLATE "C" NOT NULL DEFAULT 'outbox', version integer NOT NULL, description text NOT NULL,
      applied_at bigint NOT NULL, PRIMARY KEY (part, version))`,
    /** The outbox's ledger of before (version the key) becomes the ledger of every part, its rows the outbox's. */
    addPartColumn: [
      `ALTER TABLE ${t} ADD COLUMN part text COLLATE "C" NOT NULL DEFAULT 'outbox'`,
      `ALTER TABLE ${t} DROP CONSTRAINT schema_migrations_pkey`,
      `ALTER TABLE ${t} ADD PRIMARY KEY (part, version)`,
    ],
    /** $1 the qualified name of a legacy ledger, as text. */
    tableExists: `SELECT to_regclass($1) IS NOT NULL AS found`,
    /** $1 part. */
    appliedVersions: `SELECT version FROM ${t} WHERE part = $1 ORDER BY version`,
    /** $1 part, $2 version, $3 description, $4 applied_at. */
    recordMigration: `INSERT INTO ${t} (part, version, description, applied_at) VALUES ($1, $2, $3, $4)`,
    /** The one-time carry-over of a legacy ledger's rows. $1 part. */
    carryOver: (legacy: string) =>
      `INSERT INTO ${t} (part, version, description, applied_at) SELECT $1, version, description, applied_at FROM ${s}.${pg.escapeIdentifier(legacy)}
        ON CONFLICT (part, version) DO NOTHING`,
  } as const;
}

/**
 * The statements of a per-part ledger as relay365 kept them before the one ledger (`schema_migrations`,
 * `http_schema_migrations`, `token_cache_migrations`): to build an old schema in a test, or to read one.
 */
export function legacyLedgerStatements(schema: string, ledger: string) {
  const s = pg.escapeIdentifier(schema);
  const t = `${s}.${pg.escapeIdentifier(ledger)}`;
  return {
    createSchema: `CREATE SCHEMA ${s}`,
    createMigrationsTable: `CREATE TABLE IF NOT EXISTS ${t} (version integer PRIMARY KEY, description text NOT NULL, applied_at bigint NOT NULL)`,
    appliedVersions: `SELECT version FROM ${t} ORDER BY version`,
    /** $1 version, $2 description, $3 applied_at. */
    recordMigration: `INSERT INTO ${t} (version, description, applied_at) VALUES ($1, $2, $3)`,
  } as const;
}

/** What {@link applyPgMigrations} did. */
export interface PgMigrationReport {
  /** Versions applied by this call, oldest first (empty when the schema was up to date). */
  applied: number[];
  /** The schema version now. */
  version: number;
}

/**
 * `bigint` columns (times in ms, counts) as JavaScript numbers: every value relay365 stores there is far
 * below 2^53, and pg's default (a string) would leak into every comparison.
 */
const TYPES = new pg.TypeOverrides();
TYPES.setTypeParser(pg.types.builtins.INT8, 'text', (value: string) => Number(value));

/** Runs on every new connection: see {@link DURABLE_COMMITS}. */
async function durableCommits(client: pg.ClientBase): Promise<void> {
  await client.query(DURABLE_COMMITS);
}

/**
 * A pool to the database at `url` as every relay365 store wants it: `bigint` read as numbers, durable
 * commits, TCP keepalive, and idle-connection failures left to the next query to report.
 */
export function createPgPool(url: string, options: { poolSize: number; connectTimeoutMs?: number | undefined }): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.poolSize,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000,
    // TCP keepalive: a connection to a server that vanished (failover, cable) fails instead of hanging.
    keepAlive: true,
    // A statement that runs this long is stuck (a lock held by a stalled session, a server in trouble):
    // fail it so the caller's retry or the lease takes over. query_timeout also ends a wait on a
    // network that went silent without closing the connection.
    statement_timeout: 60_000,
    query_timeout: 65_000,
    fallback_application_name: 'relay365',
    types: TYPES,
    // Awaited before the pool hands the new connection out (pg-pool's _promiseTry); @types/pg
    // declares the hook as returning void.
    // eslint-disable-next-line @typescript-eslint/no-misused-promises
    onConnect: durableCommits,
  });
  // An idle connection that breaks (server restart) is dropped by the pool, which reports it here;
  // the next query opens a new one and fails there, with a Relay365Error, if the server is still away.
  pool.on('error', () => undefined);
  return pool;
}

/**
 * Opens a pool to `url` for a store of tables in `options.schema`, builds the store on it, and makes it
 * `ready` (migrates, or checks that the server answers); on any failure closes the store, and so the
 * pool, before rethrowing. The outbox and the HTTP tables open this way.
 *
 * @throws Relay365Error `R365_CONFIG_INVALID` for a schema name that would need quoting.
 */
export async function openPgSchemaStore<S extends { close(): Promise<void> }>(
  url: string,
  options: { schema?: string | undefined; poolSize: number; connectTimeoutMs?: number | undefined },
  build: (pool: pg.Pool, schema: string, where: string) => S,
  ready: (store: S) => Promise<unknown>,
): Promise<S> {
  const schema = checkSchemaName(options.schema ?? 'relay365');
  const pool = createPgPool(url, { poolSize: options.poolSize, connectTimeoutMs: options.connectTimeoutMs });
  const store = build(pool, schema, describeDatabase(url, schema));
  try {
    await ready(store);
    return store;
  } catch (err) {
    await store.close();
    throw err;
  }
}

/** @throws Relay365Error `R365_CONFIG_INVALID` for a schema name that would need quoting (see {@link SCHEMA_NAME}). */
export function checkSchemaName(schema: string): string {
  if (!SCHEMA_NAME.test(schema)) {
    throw new Relay365Error(
      'R365_CONFIG_INVALID',
      `"${schema}" is not a schema name relay365 uses: give lower-case letters, digits and _ (queue.schema), at most 63, not starting with a digit.`,
      {
        details: { schema },
      },
    );
  }
  return schema;
}

/** BEGIN ... COMMIT on one connection of `pool`; ROLLBACK on any failure (a connection that cannot roll back is discarded). */
export async function pgTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  // A checked-out connection reports a break between two queries (server restart) as an 'error'
  // event, which would end the process unheard; it is kept so the connection is discarded.
  const onError = (err: Error): void => {
    broken = err;
  };
  client.on('error', onError);
  try {
    await client.query(TRANSACTION.begin);
    const result = await work(client);
    await client.query(TRANSACTION.commit);
    return result;
  } catch (err) {
    await client.query(TRANSACTION.rollback).catch((rollbackFailed: unknown) => {
      broken = rollbackFailed instanceof Error ? rollbackFailed : new Error(String(rollbackFailed));
    });
    throw err;
  } finally {
    client.off('error', onError);
    client.release(broken);
  }
}

/**
 * Makes sure `schema` and its one ledger exist, in the layout of this release, on `client` inside the
 * caller's transaction and under the migration lock: creates them when missing, and upgrades the
 * ledger of before (the outbox's, keyed by version alone), carrying over the steps the other parts
 * recorded in their own ledgers, once, so nothing is applied again.
 */
async function ensureLedger(client: pg.ClientBase, schema: string, sql: ReturnType<typeof ledgerStatements>): Promise<void> {
  if ((await client.query(sql.schemaExists, [schema])).rowCount === 0) await client.query(sql.createSchema);
  const columns = (await client.query<{ name: string }>(sql.ledgerColumns, [schema])).rows.map((r) => r.name);
  if (columns.includes('part')) return;
  if (columns.length === 0) await client.query(sql.createLedger);
  else for (const statement of sql.addPartColumn) await client.query(statement);
  for (const legacy of LEGACY_PG_LEDGERS) {
    const found = (await client.query<{ found: boolean }>(sql.tableExists, [`${pg.escapeIdentifier(schema)}.${pg.escapeIdentifier(legacy.table)}`])).rows[0]?.found;
    if (found === true) await client.query(sql.carryOver(legacy.table), [legacy.part]);
  }
}

/**
 * Creates the schema when missing and applies the steps of one part's `migrations` not yet in the
 * schema's ledger, on `client` inside the caller's transaction, under the schema's migration lock:
 * nodes starting at once wait for the first, then find nothing left to do. PostgreSQL's DDL is
 * transactional, so a step that fails leaves nothing behind.
 *
 * @param target.what - the tables, for the message when a newer relay365 migrated them (`'The outbox tables'`).
 * @throws Relay365Error `R365_SCHEMA_TOO_NEW` (not retryable) when the ledger records a version of
 *   the part newer than any of `migrations`.
 */
export async function applyPgMigrations(
  client: pg.ClientBase,
  target: { schema: string; where: string; what: string; part: StoragePart; migrations: readonly PgMigration[] },
): Promise<PgMigrationReport> {
  const { schema, part, migrations } = target;
  const sql = ledgerStatements(schema);
  await client.query(sql.lockMigrations, [schema]);
  await ensureLedger(client, schema, sql);
  const applied = new Set((await client.query<{ version: number }>(sql.appliedVersions, [part])).rows.map((r) => r.version));
  const known = migrations.reduce((max, m) => Math.max(max, m.version), 0);
  const newest = Math.max(0, ...applied);
  if (newest > known) {
    throw schemaTooNew(`${target.what.replace(/^The /, 'the ')} at ${target.where}; run the newer release on every node`, newest, known, { schema });
  }
  const report: PgMigrationReport = { applied: [], version: newest };
  for (const migration of migrations) {
    if (applied.has(migration.version)) continue;
    await client.query(migration.sql(pg.escapeIdentifier(schema)));
    await client.query(sql.recordMigration, [part, migration.version, migration.description, Date.now()]);
    report.applied.push(migration.version);
    report.version = Math.max(report.version, migration.version);
  }
  return report;
}

/** The database and schema for messages and logs: the URL without its password. */
export function describeDatabase(url: string, schema: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    // libpq-style URLs may carry it as a parameter too.
    if (parsed.searchParams.has('password')) parsed.searchParams.set('password', '***');
    return `${parsed.toString()} (schema ${schema})`;
  } catch {
    return `the PostgreSQL database in queue.url (schema ${schema})`;
  }
}

/**
 * PostgreSQL failures that come from the environment, by SQLSTATE (PostgreSQL, Appendix A) or by the
 * socket's error code, with whether trying the same thing later may succeed. Anything not listed
 * (a syntax error, a broken constraint) is a bug and is passed on untouched.
 */
const PG_FAILURES: ReadonlyArray<{ match: RegExp; retryable: boolean; cause: string; fix: string }> = [
  // The server is away or going away: down, restarting, failing over, or the network dropped.
  {
    match: /^(08\w{3}|57P0[123]|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|EPIPE|CONNECTION_LOST)$/,
    retryable: true,
    cause: 'PostgreSQL cannot be reached or is restarting',
    fix: 'Check that the server is up and reachable from this node (host, port, firewall, TLS).',
  },
  // A standby, or a primary demoted by a failover: writes go elsewhere until the pooler or DNS follows.
  {
    match: /^25006$/,
    retryable: true,
    cause: 'the server is a read-only standby',
    fix: 'Point queue.url at the primary (or at a pooler or DNS name that follows failovers).',
  },
  // insufficient_resources: disk_full, out_of_memory, too_many_connections.
  {
    match: /^53\w{3}$/,
    retryable: true,
    cause: 'the server is out of a resource (disk, memory or connections)',
    fix: "Free disk space on the server, or raise max_connections or lower the nodes' pool sizes.",
  },
  // Another transaction held a lock too long (lock_timeout), a deadlock victim, or statement_timeout.
  {
    match: /^(55P03|40001|40P01|57014)$/,
    retryable: true,
    cause: 'a lock or statement timed out',
    fix: 'Look for a session holding a transaction open (pg_stat_activity) and end it.',
  },
  // Will not get better by waiting: the login, the database name or the privileges are wrong.
  {
    match: /^28\w{3}$/,
    retryable: false,
    cause: 'PostgreSQL refused the login',
    fix: 'Check the user and password in queue.url (or PGPASSWORD, ~/.pgpass) and pg_hba.conf.',
  },
  { match: /^3D000$/, retryable: false, cause: 'the database does not exist', fix: 'Create it (createdb) or correct the database name in queue.url.' },
  {
    match: /^(42501|3F000)$/,
    retryable: false,
    cause: 'the role lacks a privilege on the schema or its tables',
    fix: 'Grant the role CREATE on the database (or own the schema), then run `relay365 db migrate`.',
  },
  { match: /^ENOTFOUND$/, retryable: false, cause: 'the host name in queue.url does not resolve', fix: 'Correct the host in queue.url.' },
];

/** Errors pg raises without a code, by their message: a lost or timed-out connection. */
const PG_CONNECTION_MESSAGES =
  /^(timeout exceeded when trying to connect|Connection terminated|Client has encountered a connection error|Client was closed and is not queryable)/;

/**
 * An environmental PostgreSQL failure as `code` (`R365_OUTBOX_UNAVAILABLE` unless told), with the fix; anything else (a bug)
 * untouched. `where` is {@link describeDatabase}'s text, so the message never holds the password.
 */
export function explainPgError(err: unknown, doing: string, where: string, code: Relay365ErrorCode = 'R365_OUTBOX_UNAVAILABLE'): Error {
  if (err instanceof Relay365Error) return err;
  if (!(err instanceof Error)) return new Error(String(err));
  const pgCode = (err as { code?: unknown }).code;
  const key = typeof pgCode === 'string' ? pgCode : PG_CONNECTION_MESSAGES.test(err.message) ? 'CONNECTION_LOST' : undefined;
  const failure = key === undefined ? undefined : PG_FAILURES.find((f) => f.match.test(key));
  if (failure === undefined) return err;
  return new Relay365Error(code, `Could not ${doing}: ${failure.cause} (${err.message}) at ${where}. ${failure.fix}`, {
    cause: err,
    retryable: failure.retryable,
    details: { database: where, code: key },
  });
}
