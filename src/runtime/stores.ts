import { join, resolve } from 'node:path';
import type { Config } from '../config/index.js';
import type { PgTokenCacheStore } from '../identity/pg-cache-store.js';
import type { IntegrationStore } from '../store/integration-store.js';
import type { OutboxStore } from '../outbox/types.js';

// The stores alone, for the CLI commands that need nothing else. Each loads only its own driver when it
// runs (better-sqlite3 or pg), never the relay (MSAL, nodemailer, fastify), so those commands start fast.

/**
 * The configured outbox, for commands that use only the store (`queue list`, `queue retry`, ...):
 * PostgreSQL with `queue.url`, else the SQLite file. Migrated; the caller closes it.
 */
export async function openOutboxStore(config: Config): Promise<OutboxStore> {
  if (config.queue.url !== undefined) {
    const { openPgStore } = await import('../outbox/pg-store.js');
    return openPgStore(config.queue.url, { schema: config.queue.schema, poolSize: 2 });
  }
  const { openSqliteStore } = await import('../outbox/sqlite-store.js');
  return openSqliteStore(resolve(config.dataDir, config.queue.path));
}

/**
 * The shared token cache, for commands that use only identity (`login`, `token`): with `queue.url`, a
 * PgTokenCacheStore to pass as `createIdentity`'s `cacheStore`, so a sign-in on one node serves all;
 * undefined without it (the encrypted files under dataDir). The caller closes it.
 */
export async function openSharedTokenCache(config: Config, env: NodeJS.ProcessEnv = process.env): Promise<PgTokenCacheStore | undefined> {
  if (config.queue.url === undefined) return undefined;
  const [{ loadSecretKey }, { PgTokenCacheStore }] = await Promise.all([import('../identity/secret-key.js'), import('../identity/pg-cache-store.js')]);
  const key = await loadSecretKey(join(resolve(config.dataDir), 'secret.key'), env);
  return PgTokenCacheStore.open(config.queue.url, { schema: config.queue.schema, key, poolSize: 2 });
}

/**
 * The HTTP front door's store, for commands that use only it (`relay365 apikey`): with `queue.url`, the
 * tables in PostgreSQL that every node reads, so a key created here works on all of them; else the
 * outbox's SQLite file. Migrated; the caller closes it.
 */
export async function openIntegrationStore(config: Config): Promise<IntegrationStore> {
  if (config.queue.url !== undefined) {
    const { PgIntegrationStore } = await import('../store/pg-integration-store.js');
    return PgIntegrationStore.open(config.queue.url, { schema: config.queue.schema });
  }
  const { openSqliteIntegrationStore } = await import('../store/integration-store.js');
  return openSqliteIntegrationStore(resolve(config.dataDir, config.queue.path));
}
