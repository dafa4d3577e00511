import Database from 'better-sqlite3';
import { MIGRATIONS } from '../../src/outbox/sqlite-sql.js';

/**
 * A SQLite outbox as the release at schema `version` left it: WAL, its outbox steps up to `version`
 * applied and recorded in the outbox-only ledger of those releases (`schema_migrations` keyed by
 * version). Returned open, for the caller to add rows and close.
 */
export function outboxAtSchema(path: string, version: number): Database.Database {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL) STRICT');
  for (const m of MIGRATIONS.filter((x) => x.version <= version)) {
    db.exec(m.sql);
    db.prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (?, 0)').run(m.version);
  }
  return db;
}
