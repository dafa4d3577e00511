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
