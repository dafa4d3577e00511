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
