import { Relay365Error } from '../errors.js';

/** The opaque cursor of `OutboxStore.list` (keyset pagination on created_at, id), shared by every store. */
export function encodeCursor(createdAt: number, id: string): string {
  return Buffer.from(JSON.stringify([createdAt, id])).toString('base64url');
}

/** @throws Relay365Error `R365_LIST_CURSOR_INVALID` for a cursor no store made. */
export function decodeCursor(cursor: string): { createdAt: number; id: string } {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    value = undefined;
  }
  if (Array.isArray(value) && value.length === 2 && Number.isSafeInteger(value[0]) && typeof value[1] === 'string') {
    return { createdAt: value[0] as number, id: value[1] };
  }
  throw new Relay365Error(
    'R365_LIST_CURSOR_INVALID',
    'The list cursor is not one this outbox returned (damaged or truncated). Start again from the first page, without a cursor.',
  );
}

/** list() and suppressions(): page size when none is asked for, and the most one page may hold. */
const DEFAULT_PAGE = 50;
const MAX_PAGE = 500;

/** What a store reads for one newest-first page: the rows below `after`, `rows` of them at most. */
export interface PageRead {
  /** The key of the previous page's last row; with no cursor, above every real key. */
  after: { createdAt: number; id: string };
  /** The page size asked for, held to 1..500 (default 50). */
  limit: number;
  /** One row more than the page, which tells whether another page follows. */
  rows: number;
}

/**
 * The page a list query asks for (keyset pagination on a time and a unique text key, newest first).
 *
 * @throws Relay365Error `R365_LIST_CURSOR_INVALID` when the cursor was not made by {@link pageOf}.
 */
export function pageRead(query: { limit?: number; cursor?: string }): PageRead {
  const limit = Math.min(MAX_PAGE, Math.max(1, Math.floor(query.limit ?? DEFAULT_PAGE)));
  const after = query.cursor === undefined ? { createdAt: Number.MAX_SAFE_INTEGER, id: '' } : decodeCursor(query.cursor);
  return { after, limit, rows: limit + 1 };
}

/** The page out of the rows read for `read`, and the cursor of the next one when more rows followed. */
export function pageOf<Row, Item>(
  rows: readonly Row[],
  read: PageRead,
  toItem: (row: Row) => Item,
  keyOf: (row: Row) => [createdAt: number, id: string],
): { items: Item[]; nextCursor: string | undefined } {
  const last = rows.length > read.limit ? rows[read.limit - 1] : undefined;
  return { items: rows.slice(0, read.limit).map((row) => toItem(row)), nextCursor: last === undefined ? undefined : encodeCursor(...keyOf(last)) };
}
