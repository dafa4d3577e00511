import { randomBytes } from 'node:crypto';
import pg from 'pg';

/**
 * The PostgreSQL the tests use: `RELAY365_TEST_PG_URL`, else the local server (trust auth, database
 * `test`). Each test file works in schemas of its own, `relay365_test_<random>`, dropped at the end.
 */
export const PG_URL = process.env.RELAY365_TEST_PG_URL ?? 'postgresql://postgres@127.0.0.1:5432/test';

/**
 * Undefined when the server answers; otherwise why the PostgreSQL tests are skipped. CI sets
 * RELAY365_FULL_TESTS=1, and there a missing server is a failure, never a skip.
 */
export async function pgUnavailable(): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return undefined;
  } catch (err) {
    if (process.env.RELAY365_FULL_TESTS === '1') throw err;
    return `no PostgreSQL at ${PG_URL} (${(err as Error).message}); set RELAY365_TEST_PG_URL`;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** A fresh schema name; nothing is created until a store migrates it. */
export function testSchema(): string {
  return `relay365_test_${randomBytes(6).toString('hex')}`;
}

/** Drops the schema and everything in it. */
export async function dropSchema(schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(schema)} CASCADE`);
  } finally {
    await client.end();
  }
}

/** Runs one query on a connection of its own (for looking at what a store wrote). */
export async function pgQuery<R extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    return (await client.query<R>(text, values)).rows;
  } finally {
    await client.end();
  }
}
