export * from './types.js';
export { Router, type Route } from './routing.js';
export { createPrivateFile } from './sqlite-file.js';
export { openSqliteStore, SqliteOutboxStore, type SqliteStoreOptions } from './sqlite-store.js';
export { DeliveryWorker, type WorkerOptions } from './worker.js';
export { backoffDelay } from './backoff.js';
export { RetentionSweeper, type RetentionOptions, type SweepResult } from './retention.js';
export { bodyCipher, type BodyCipher } from './body-crypto.js';
export { openPgStore, PgOutboxStore, type PgStoreOptions, type PgMigrationReport } from './pg-store.js';
