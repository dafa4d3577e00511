export * from './types.js';
export { Router, type Route } from './routing.js';
export { createPrivateFile } from '../store/sqlite-file.js';
export { openSqliteStore, SqliteOutboxStore, type SqliteStoreOptions } from './sqlite-store.js';
export { DeliveryWorker, type WorkerOptions } from './worker.js';
export { backoffDelay } from './backoff.js';
export { planClaim, candidatesToRead, CONNECTION_RETRY_MS, type ClaimPlan, type ClaimBlock, type ClaimInput, type MailboxTotals } from './claim-policy.js';
export { RetentionSweeper, type RetentionOptions, type SweepResult } from './retention.js';
export { bodyCipher, type BodyCipher } from './body-crypto.js';
import type { PgOutboxStore, PgStoreOptions } from './pg-store.js';
export type { PgOutboxStore, PgStoreOptions, PgMigrationReport } from './pg-store.js';
/**
 * Opens the PostgreSQL outbox (see pg-store.ts). Loaded on first use, so importing the outbox does
 * not load `pg`: a single node on SQLite never does.
 */
export async function openPgStore(url: string, options: PgStoreOptions = {}): Promise<PgOutboxStore> {
  return (await import('./pg-store.js')).openPgStore(url, options);
}
export { checkLabels, MAX_TAGS, TAG_PATTERN, MAX_METADATA_KEYS, METADATA_KEY_PATTERN, MAX_METADATA_VALUE } from './labels.js';
export { messageView, messageDetailView, recipientCounts, explanationView, type MessageView, type MessageDetailView } from './views.js';
