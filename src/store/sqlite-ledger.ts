/**
 * The one migration ledger of a relay365 SQLite file, `schema_migrations`: a row per applied step of
 * every part with tables in the file (the outbox, the HTTP tables), keyed by (part, version). The parts
 * keep their own SQL and number their own steps; this module records them all in one place.
 */
import type Database from 'better-sqlite3';
import { schemaTooNew } from '../errors.js';
import type { StoragePart } from './pg-database.js';

/** One schema step of a part in SQLite. Versions only grow; a released step is never edited. */
export interface SqliteMigration {
  version: number;
  description: string;
  sql: string;
}

/**
 * Where a part kept its steps before the one ledger: the outbox's `schema_migrations` (keyed by version
 * alone) became the ledger of every part; the HTTP tables' own is read once, when the ledger is
 * created or upgraded, and left as it was (a node of the previous release still reads it).
 */
export const LEGACY_SQLITE_LEDGERS: ReadonlyArray<{ part: StoragePart; table: string }> = [{ part: 'http', table: 'http_schema_migrations' }];

/** Every statement of the ledger. A row without a part is the outbox's, as the previous release writes it. */
export const SQLITE_LEDGER = {
  ledgerColumns: `SELECT name FROM pragma_table_info('schema_migrations')`,
  tableExists: `SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?`,
  createLedger: `CREATE TABLE schema_migrations (part TEXT NOT NULL DEFAULT 'outbox', version INTEGER NOT NULL, applied_at INTEGER NOT NULL,
    PRIMARY KEY (part, version)) STRICT`,
  /** SQLite cannot change a primary key in place: the ledger of before is copied into the new layout, its rows the outbox's. */
  upgradeLedger: [
    `CREATE TABLE schema_migrations_by_part (part TEXT NOT NULL DEFAULT 'outbox', version INTEGER NOT NULL, applied_at INTEGER NOT NULL,
      PRIMARY KEY (part, version)) STRICT`,
    `INSERT INTO schema_migrations_by_part (part, version, applied_at) SELECT 'outbox', version, applied_at FROM schema_migrations`,
    `DROP TABLE schema_migrations`,
    `ALTER TABLE schema_migrations_by_part RENAME TO schema_migrations`,
  ],
  /** The one-time carry-over of a legacy ledger (its name from {@link LEGACY_SQLITE_LEDGERS}, never from input). */
  carryOver: (legacy: string, part: StoragePart) =>
    `INSERT OR IGNORE INTO schema_migrations (part, version, applied_at) SELECT '${part}', version, applied_at FROM ${legacy}`,
  appliedVersions: `SELECT version FROM schema_migrations WHERE part = ? ORDER BY version`,
  recordMigration: `INSERT INTO schema_migrations (part, version, applied_at) VALUES (@part, @version, @appliedAt)`,
} as const;

/**
 * The ledger statements `db migrate --print` shows for a file: what would create or upgrade the ledger
 * and carry the legacy steps over, and the versions each part has (counting those carried over).
 */
export function sqliteLedgerState(db: Database.Database | undefined): { prologue: string[]; applied: (part: StoragePart) => number[] } {
  const columns = db === undefined ? [] : db.prepare<[], string>(SQLITE_LEDGER.ledgerColumns).pluck().all();
  if (db !== undefined && columns.includes('part')) {
    return { prologue: [], applied: (part) => db.prepare<[string], number>(SQLITE_LEDGER.appliedVersions).pluck().all(part) };
  }
  const prologue: string[] = columns.length === 0 ? [SQLITE_LEDGER.createLedger] : [...SQLITE_LEDGER.upgradeLedger];
  const versions = new Map<StoragePart, number[]>();
  if (columns.length > 0) versions.set('outbox', db!.prepare<[], number>(`SELECT version FROM schema_migrations`).pluck().all());
  for (const legacy of LEGACY_SQLITE_LEDGERS) {
    if (db === undefined || db.prepare(SQLITE_LEDGER.tableExists).get(legacy.table) === undefined) continue;
    prologue.push(SQLITE_LEDGER.carryOver(legacy.table, legacy.part));
    versions.set(legacy.part, db.prepare<[], number>(`SELECT version FROM ${legacy.table}`).pluck().all());
  }
  return { prologue, applied: (part) => versions.get(part) ?? [] };
}

/**
 * Creates or upgrades the ledger (carrying the legacy ledgers over, once), then applies the steps of
 * one part's `migrations` not yet recorded. Run it inside the caller's `BEGIN IMMEDIATE` transaction,
 * so two processes opening the file at once never both apply a step.
 *
 * @param target.what - the tables, for the message when a newer relay365 migrated them (`'the outbox tables'`).
 * @throws Relay365Error `R365_SCHEMA_TOO_NEW` when the ledger records a version of the part newer than any of `migrations`.
 */
export function applySqliteMigrations(
  db: Database.Database,
  target: { part: StoragePart; what: string; path: string; migrations: ReadonlyArray<Pick<SqliteMigration, 'version' | 'sql'>> },
): { applied: number[]; version: number } {
  const columns = db.prepare<[], string>(SQLITE_LEDGER.ledgerColumns).pluck().all();
  if (!columns.includes('part')) {
    if (columns.length === 0) db.exec(SQLITE_LEDGER.createLedger);
    else for (const statement of SQLITE_LEDGER.upgradeLedger) db.exec(statement);
    for (const legacy of LEGACY_SQLITE_LEDGERS) {
      if (db.prepare(SQLITE_LEDGER.tableExists).get(legacy.table) !== undefined) db.exec(SQLITE_LEDGER.carryOver(legacy.table, legacy.part));
    }
  }
  const applied = new Set(db.prepare<[string], number>(SQLITE_LEDGER.appliedVersions).pluck().all(target.part));
  const known = target.migrations.reduce((max, m) => Math.max(max, m.version), 0);
  const newest = Math.max(0, ...applied);
  if (newest > known) throw schemaTooNew(`${target.what} in ${target.path}`, newest, known, { path: target.path });
  const record = db.prepare<[{ part: string; version: number; appliedAt: number }]>(SQLITE_LEDGER.recordMigration);
  const report = { applied: [] as number[], version: newest };
  for (const migration of target.migrations) {
    if (applied.has(migration.version)) continue;
    db.exec(migration.sql);
    record.run({ part: target.part, version: migration.version, appliedAt: Date.now() });
    report.applied.push(migration.version);
    report.version = Math.max(report.version, migration.version);
  }
  return report;
}
