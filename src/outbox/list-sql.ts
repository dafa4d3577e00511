/**
 * `list()`'s statement, built from the filters a query names, for both dialects. Newest first with
 * keyset pagination on (created_at, id): the row-value comparison seeks straight to the cursor, so
 * page 1,000 costs what page 1 does. Recipient and tag are tested through their own indexes
 * (message_recipients by address, message_tags by tag), so a search never reads message bodies.
 */
import type { PageRead } from './cursor.js';
import { MESSAGE_COLUMNS } from './rows.js';
import type { ListQuery } from './types.js';

/** How a dialect writes what differs: its tables' prefix, a placeholder, a case-insensitive address test. */
export interface ListDialect {
  /** `''` (SQLite) or `"schema".` (PostgreSQL). */
  prefix: string;
  /** The n-th parameter (from 1): `?` or `$n`. */
  placeholder: (n: number) => string;
  /** `address` equal to the parameter, ignoring case, in a way the dialect's index on it serves. */
  sameAddress: (param: string) => string;
}

export const SQLITE_LIST: ListDialect = {
  prefix: '',
  placeholder: () => '?',
  sameAddress: (param) => `address = ${param} COLLATE NOCASE`,
};

export const pgList = (prefix: string): ListDialect => ({
  prefix,
  placeholder: (n) => `$${n}`,
  sameAddress: (param) => `lower(address) = lower(${param})`,
});

/**
 * The statement and its values. `key` names the filters used, so a store may prepare each shape once
 * (there are at most 64).
 */
export function listStatement(dialect: ListDialect, query: ListQuery, page: PageRead): { key: string; text: string; values: Array<string | number> } {
  const values: Array<string | number> = [];
  const param = (value: string | number): string => {
    values.push(value);
    return dialect.placeholder(values.length);
  };
  const where = [`(created_at, id) < (${param(page.after.createdAt)}, ${param(page.after.id)})`];
  let key = '';
  if (query.state !== undefined) {
    where.push(`state = ${param(query.state)}`);
    key += 's';
  }
  if (query.mailbox !== undefined) {
    where.push(`mailbox = ${param(query.mailbox)}`);
    key += 'm';
  }
  if (query.since !== undefined) {
    where.push(`created_at >= ${param(query.since.getTime())}`);
    key += 'f';
  }
  if (query.until !== undefined) {
    where.push(`created_at < ${param(query.until.getTime())}`);
    key += 'u';
  }
  const p = dialect.prefix;
  if (query.recipient !== undefined) {
    where.push(`id IN (SELECT message_id FROM ${p}message_recipients WHERE ${dialect.sameAddress(param(query.recipient))})`);
    key += 'r';
  }
  if (query.tag !== undefined) {
    where.push(`id IN (SELECT message_id FROM ${p}message_tags WHERE tag = ${param(query.tag)})`);
    key += 't';
  }
  const text = `SELECT ${MESSAGE_COLUMNS} FROM ${p}messages WHERE ${where.join(' AND ')} ORDER BY created_at DESC, id DESC LIMIT ${param(page.rows)}`;
  return { key, text, values };
}
