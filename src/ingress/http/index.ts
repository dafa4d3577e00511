export { buildHttpApp, type HttpAppDeps } from './app.js';
// The records the HTTP door uses (API keys, idempotency keys) live in src/store, beside the webhook
// deliveries; re-exported here for the callers that reach them through the door.
export {
  openSqliteHttpStore,
  SqliteHttpStore,
  PgHttpStore,
  generateApiKey,
  hashApiKey,
  bearerApiKey,
  API_KEY_PREFIX,
  API_KEY_SCOPES,
  type HttpStore,
  type ApiKeyRecord,
  type IdempotencyReservation,
  type IdempotencyRequest,
  type PgHttpStoreOptions,
  type NewApiKey,
  type ApiKeyScope,
} from '../../store/index.js';
export { IDEMPOTENCY_TTL_MS } from './idempotency.js';
export { queueSnapshot, mailboxStatuses, type MailboxStatusView, type ViewSources } from './views.js';
export type { ApiErrorBody } from './errors.js';
