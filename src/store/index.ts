/**
 * Storage plumbing every part with tables uses: PostgreSQL pools, transactions, the one migration
 * ledger of a schema and the explanation of PostgreSQL's failures. The parts keep their own SQL.
 */
export {
  applyPgMigrations,
  checkSchemaName,
  createPgPool,
  describeDatabase,
  explainPgError,
  ledgerStatements,
  legacyLedgerStatements,
  pgTransaction,
  openPgSchemaStore,
  DURABLE_COMMITS,
  LEGACY_PG_LEDGERS,
  SCHEMA_NAME,
  TRANSACTION,
  type PgMigration,
  type PgMigrationReport,
  type StoragePart,
} from './pg-database.js';
export {
  applySqliteMigrations,
  sqliteLedgerState,
  LEGACY_SQLITE_LEDGERS,
  SQLITE_LEDGER,
  type SqliteMigration,
} from './sqlite-ledger.js';
export { createPrivateFile } from './sqlite-file.js';
// The integration store: API keys, idempotency keys and webhook deliveries, the relay's records beside the
// outbox, used by the HTTP front door (keys, idempotency) and by the webhook dispatcher, which runs with that door off too.
export { generateApiKey, hashApiKey, bearerApiKey, API_KEY_PREFIX, API_KEY_SCOPES, type NewApiKey, type ApiKeyScope } from './api-keys.js';
export {
  openSqliteIntegrationStore,
  SqliteIntegrationStore,
  SQLITE_INTEGRATION_MIGRATIONS,
  FINISHED_RETENTION_MS,
  type IntegrationStore,
  type ApiKeyRecord,
  type NewApiKeyRecord,
  type IdempotencyReservation,
  type IdempotencyRequest,
} from './integration-store.js';
export { PgIntegrationStore, type PgIntegrationStoreOptions } from './pg-integration-store.js';
export { PG_INTEGRATION_MIGRATIONS } from './pg-integration-sql.js';
export { openSqliteFile, explainSqliteError } from './sqlite-database.js';
