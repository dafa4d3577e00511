import type { Config } from '../config/index.js';
import type { OutboxStore } from '../outbox/index.js';
import { cliContext } from './context.js';

/**
 * Opens the outbox the running relays use (PostgreSQL with `queue.url`, so every node sees a change at
 * once; else the SQLite file, whose WAL lets this command and a running relay both write), brings its
 * schema up to date, runs `fn` and closes it.
 */
export async function withOutboxStore<T>(flags: { config?: string }, fn: (store: OutboxStore, config: Readonly<Config>) => Promise<T>): Promise<T> {
  const { config } = await cliContext(flags);
  const { openOutboxStore } = await import('../runtime/stores.js');
  const store = await openOutboxStore(config);
  try {
    await store.migrate();
    return await fn(store, config);
  } finally {
    await store.close();
  }
}
