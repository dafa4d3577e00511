export { buildHttpApp, type HttpAppDeps } from './app.js';
export { openSqliteHttpStore, SqliteHttpStore, type HttpStore, type ApiKeyRecord, type IdempotencyReservation, type IdempotencyRequest } from './http-store.js';
export { PgHttpStore, type PgHttpStoreOptions } from './pg-http-store.js';
export { generateApiKey, hashApiKey, bearerApiKey, API_KEY_PREFIX, API_KEY_SCOPES, type NewApiKey, type ApiKeyScope } from './api-keys.js';
export { IDEMPOTENCY_TTL_MS } from './idempotency.js';
export { queueSnapshot, mailboxStatuses, type MailboxStatusView, type ViewSources } from './views.js';
export type { ApiErrorBody } from './errors.js';
