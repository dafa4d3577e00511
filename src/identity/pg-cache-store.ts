import { AsyncLocalStorage } from 'node:async_hooks';
import pg from 'pg';
import { Relay365Error } from '../errors.js';
import { applyPgMigrations, checkSchemaName, createPgPool, explainPgError as explainStoreError, pgTransaction, TRANSACTION, type PgMigration } from '../store/index.js';
import { decrypt, encrypt, type TokenCacheStore } from './cache-store.js';

/**
 * The shared token cache's SQL and migrations, all of it. The table sits in the outbox's schema
 * (`queue.schema`) and numbers its steps on its own (part `token-cache` of the schema's one ledger),
 * so identity never depends on the outbox's migrations.
 */

/** The shared token cache's steps (also for `relay365 db migrate --print`). */
export const TOKEN_CACHE_MIGRATIONS: readonly PgMigration[] = [
  {
    version: 1,
    description: 'token cache entries, encrypted',
    // value: AES-256-GCM of MSAL's serialized cache with the entry's key as associated data (cache-store.ts),
    // so a row copied under another key does not open.
    sql: (s) => `CREATE TABLE ${s}.token_cache (key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL, updated_at bigint NOT NULL)`,
  },
];

function statements(schema: string) {
  const s = pg.escapeIdentifier(schema);
  return {
    ...TRANSACTION,
    /** $1 key. */
    read: `SELECT value FROM ${s}.token_cache WHERE key = $1`,
    /** $1 key, $2 value, $3 updated_at. */
    write: `INSERT INTO ${s}.token_cache (key, value, updated_at) VALUES ($1, $2, $3)
      ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at`,
    /** The first node's entry wins; $1 key, $2 value, $3 updated_at. */
    writeIfAbsent: `INSERT INTO ${s}.token_cache (key, value, updated_at) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING`,
    /** For this transaction only: how long {@link lock} waits. $1 milliseconds, as text. */
    lockTimeout: `SELECT set_config('lock_timeout', $1, true)`,
    /**
     * A session lock on one cache entry, held until {@link unlock} or until the connection ends (a
     * node that dies frees it). Two-key form, keyed apart from the outbox's mailbox locks by the first
     * key. $1 schema name, $2 cache key.
     */
    lock: `SELECT pg_advisory_lock(hashtext($1 || ' token cache'), hashtext($2))`,
    unlock: `SELECT pg_advisory_unlock(hashtext($1 || ' token cache'), hashtext($2))`,
  } as const;
}

/** Options of {@link PgTokenCacheStore}. */
export interface PgTokenCacheStoreOptions {
  /** The key that encrypts the entries (`loadSecretKey`): every node must have the same, so set RELAY365_SECRET_KEY alike on all. */
  key: Buffer;
  /** Schema holding the table (`queue.schema`); default `relay365`. */
  schema?: string;
  /** How long a node waits for another node's refresh of the same cache before it fails (retryable). Default 60 s. */
  lockTimeoutMs?: number;
  /** With {@link PgTokenCacheStore.open}: connections in the store's own pool (default 4). */
  poolSize?: number;
}

/** The entry that tells whether this node's key is the one the other nodes use. */
const KEY_CHECK = 'relay365-key-check';

/** What a lock holder's reads and writes use: the connection holding the lock, one query at a time. */
interface Held {
  client: pg.PoolClient;
  keys: ReadonlySet<string>;
  queue: Promise<unknown>;
}

/**
 * The token cache in PostgreSQL, shared by every node: MSAL's serialized caches, each encrypted with
 * AES-256-GCM exactly as the file store does it (same `encrypt`/`decrypt`, same key). `withLock` is a
 * cluster-wide lock per cache entry, so one node at a time asks the identity platform for a token and
 * the others then find it in the cache.
 */
export class PgTokenCacheStore implements TokenCacheStore {
  private readonly sql: ReturnType<typeof statements>;
  private readonly lockTimeoutMs: number;
  private readonly held = new AsyncLocalStorage<Held>();
  /** In-process queue per key: one connection per key waits on PostgreSQL's lock, not one per caller. */
  private readonly local = new Map<string, Promise<void>>();
  private closed = false;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly ownsPool: boolean,
    private readonly options: PgTokenCacheStoreOptions & { schema: string },
  ) {
    this.sql = statements(options.schema);
    this.lockTimeoutMs = options.lockTimeoutMs ?? 60_000;
  }

  /**
   * Uses an existing pool (the outbox's, so a node keeps one set of connections); `close` leaves the
   * pool open for its owner. Migrates the table and checks the key.
   *
   * @throws Relay365Error `R365_TOKEN_CACHE_UNREADABLE` when this node's key is not the other nodes' key;
   *   `R365_TOKEN_CACHE_UNAVAILABLE` when PostgreSQL cannot be used.
   */
  static async attach(pool: pg.Pool, options: PgTokenCacheStoreOptions): Promise<PgTokenCacheStore> {
    const store = new PgTokenCacheStore(pool, false, { ...options, schema: checkSchemaName(options.schema ?? 'relay365') });
    await store.migrate();
    await store.checkKey();
    return store;
  }

  /** Opens a pool of its own to `url` (closed by `close`); otherwise as {@link attach}. */
  static async open(url: string, options: PgTokenCacheStoreOptions): Promise<PgTokenCacheStore> {
    const schema = checkSchemaName(options.schema ?? 'relay365');
    const pool = createPgPool(url, { poolSize: options.poolSize ?? 4 });
    const store = new PgTokenCacheStore(pool, true, { ...options, schema });
    try {
      await store.migrate();
      await store.checkKey();
      return store;
    } catch (err) {
      await store.close();
      throw err;
    }
  }

  /** Creates the schema and table when missing (see {@link migrateTokenCache}). */
  async migrate(): Promise<void> {
    await migrateTokenCache(this.pool, this.options.schema);
  }

  /** @throws Relay365Error `R365_TOKEN_CACHE_UNREADABLE` when the entry was encrypted with another key. */
  read(key: string): Promise<string | undefined> {
    return this.guard('read the token cache', async () => {
      const row = (await this.query<{ value: Buffer }>(this.sql.read, [key])).rows[0];
      return row === undefined
        ? undefined
        : decrypt(this.options.key, key, row.value, `The token cache entry ${key} (PostgreSQL schema ${this.options.schema})`);
    });
  }

  write(key: string, value: string): Promise<void> {
    return this.guard('write the token cache', async () => {
      await this.query(this.sql.write, [key, encrypt(this.options.key, key, value), Date.now()]);
    });
  }

  /**
   * Runs `fn` while holding the cluster-wide lock of `key`: a PostgreSQL session advisory lock on one
   * connection, released when `fn` settles, or by the server when the node dies. Reads and writes made
   * inside `fn` use that same connection, so a full pool can never keep the holder from finishing.
   * Re-entrant within `fn`.
   *
   * @throws Relay365Error `R365_TOKEN_CACHE_UNAVAILABLE` (retryable) when the lock was not had within
   *   `lockTimeoutMs`, or PostgreSQL cannot be reached.
   */
  async withLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const outer = this.held.getStore();
    if (outer?.keys.has(key)) return fn();
    return this.oneAtATime(key, async () => {
      const client = await this.guard('reach the token cache', () => this.pool.connect());
      let broken: Error | undefined;
      // The connection is held for the whole refresh: a break meanwhile (server restart, the session
      // terminated) comes as an 'error' event, which would otherwise end the process.
      const onError = (err: Error): void => {
        broken = err;
      };
      client.on('error', onError);
      try {
        await this.guard(`wait for another node's token refresh (${key})`, async () => {
          try {
            await client.query(this.sql.begin);
            await client.query(this.sql.lockTimeout, [String(this.lockTimeoutMs)]);
            // A session lock taken inside a transaction outlives its COMMIT; the timeout does not.
            await client.query(this.sql.lock, [this.options.schema, key]);
            await client.query(this.sql.commit);
          } catch (err) {
            await client.query(this.sql.rollback).catch(() => undefined);
            throw err;
          }
        });
        try {
          return await this.held.run({ client, keys: new Set([...(outer?.keys ?? []), key]), queue: Promise.resolve() }, fn);
        } finally {
          await client.query(this.sql.unlock, [this.options.schema, key]).catch((err: unknown) => {
            // Discarding the connection ends its session, which frees the lock too.
            broken = err instanceof Error ? err : new Error(String(err));
          });
        }
      } finally {
        client.off('error', onError);
        client.release(broken);
      }
    });
  }

  /** Ends the pool when the store opened it; calling it again does nothing. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.ownsPool) await this.pool.end();
  }

  /**
   * A node whose key differs from the others' would fail every time it read a token another node
   * stored. The first node leaves a check entry; every later one must be able to open it.
   */
  private async checkKey(): Promise<void> {
    await this.guard('check the token cache key', () =>
      this.query(this.sql.writeIfAbsent, [KEY_CHECK, encrypt(this.options.key, KEY_CHECK, 'relay365'), Date.now()]),
    );
    try {
      await this.read(KEY_CHECK);
    } catch (err) {
      throw new Relay365Error(
        'R365_TOKEN_CACHE_UNREADABLE',
        `This node's RELAY365_SECRET_KEY is not the key the shared token cache (PostgreSQL schema ${this.options.schema}) was written with. ` +
          'Every node must have the same RELAY365_SECRET_KEY: copy it from a running node. If the old key is lost, delete the rows of token_cache and sign in again.',
        { cause: err, details: { schema: this.options.schema } },
      );
    }
  }

  /** A query on the lock holder's connection when inside {@link withLock}, else on the pool. */
  private query<R extends pg.QueryResultRow>(text: string, values: unknown[]): Promise<pg.QueryResult<R>> {
    const held = this.held.getStore();
    if (held === undefined) return this.pool.query<R>(text, values);
    // One query at a time on the connection (pg refuses overlapping ones).
    const result = held.queue.then(() => held.client.query<R>(text, values));
    held.queue = result.catch(() => undefined);
    return result;
  }

  private async oneAtATime<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const before = this.local.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const tail = before.then(() => mine);
    this.local.set(key, tail);
    await before;
    try {
      return await fn();
    } finally {
      release();
      if (this.local.get(key) === tail) this.local.delete(key);
    }
  }

  /** PostgreSQL's environmental failures as `R365_TOKEN_CACHE_UNAVAILABLE`; Relay365Errors and bugs pass. */
  private async guard<T>(doing: string, operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (err) {
      throw explainPgError(err, doing, this.options.schema);
    }
  }
}

/**
 * Creates the schema and the token cache table when missing, in one transaction under the schema's
 * migration lock (the outbox's, so nodes starting at once never run DDL side by side). Needs no key:
 * `relay365 db migrate` runs it from any machine.
 *
 * @returns the versions this call applied, and the version now.
 * @throws Relay365Error `R365_TOKEN_CACHE_UNAVAILABLE` when PostgreSQL cannot be used; `R365_SCHEMA_TOO_NEW`
 *   when a newer relay365 migrated the table.
 */
export async function migrateTokenCache(pool: pg.Pool, schema: string): Promise<{ applied: number[]; version: number }> {
  const checked = checkSchemaName(schema);
  try {
    return await pgTransaction(pool, (client) =>
      applyPgMigrations(client, { schema: checked, where: `PostgreSQL schema ${checked}`, what: 'The token cache', part: 'token-cache', migrations: TOKEN_CACHE_MIGRATIONS }),
    );
  } catch (err) {
    throw explainPgError(err, 'migrate the token cache', checked);
  }
}

/**
 * PostgreSQL's environmental failures as `R365_TOKEN_CACHE_UNAVAILABLE` (store/pg-database.ts has the
 * table); a lock wait that timed out is explained as another node's refresh.
 */
function explainPgError(err: unknown, doing: string, schema: string): Error {
  if (!(err instanceof Relay365Error) && err instanceof Error && (err as { code?: unknown }).code === '55P03') {
    return new Relay365Error(
      'R365_TOKEN_CACHE_UNAVAILABLE',
      `Could not ${doing} in PostgreSQL schema ${schema}: another node held the refresh lock longer than the lock timeout; ` +
        'it may be stuck on a slow identity platform (look in pg_locks for its session).',
      { cause: err, retryable: true, details: { schema, code: '55P03' } },
    );
  }
  return explainStoreError(err, doing, `PostgreSQL schema ${schema}`, 'R365_TOKEN_CACHE_UNAVAILABLE');
}
