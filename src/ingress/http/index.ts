export { buildHttpApp, type HttpAppDeps } from './app.js';
// The records the HTTP door uses (API keys, idempotency keys) live in src/store, beside the webhook
// deliveries; re-exported here for the callers that reach them through the door.
// By file, not through src/store's index, which loads pg: a node on SQLite with the HTTP door on does not.
export {
  openSqliteIntegrationStore,
  SqliteIntegrationStore,
  type IntegrationStore,
  type ApiKeyRecord,
  type IdempotencyReservation,
  type IdempotencyRequest,
} from '../../store/integration-store.js';
export { generateApiKey, hashApiKey, bearerApiKey, API_KEY_PREFIX, API_KEY_SCOPES, type NewApiKey, type ApiKeyScope } from '../../store/api-keys.js';
export type { PgIntegrationStore, PgIntegrationStoreOptions } from '../../store/pg-integration-store.js';
export { IDEMPOTENCY_TTL_MS } from './idempotency.js';
export { queueSnapshot, mailboxStatuses, type MailboxStatusView, type ViewSources } from './views.js';
export type { ApiErrorBody } from './errors.js';
