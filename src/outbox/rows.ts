/**
 * The rows both outbox stores read and write, described once: the tables have the same columns in
 * SQLite and PostgreSQL (sqlite-sql.ts and pg-sql.ts write each dialect's DDL), and differ only in how
 * a JSON column comes back, as TEXT from SQLite and already parsed from a PostgreSQL `jsonb`. So the
 * rows are typed by that one difference (`Json`), and a new message's row, the mapping of a row to the
 * records of types.ts and the state counts are written here once for both.
 */
import type { Explanation, ReplyClass } from '../catalogue/index.js';
import { Relay365Error } from '../errors.js';
import { newMessageId } from './ids.js';
import { checkLabels, labelsColumn } from './labels.js';
import {
  MESSAGE_STATES,
  type Attempt,
  type MailboxPause,
  type MessageSource,
  type MessageState,
  type NewMessage,
  type RecipientRecord,
  type RecipientState,
  type StoredMessage,
  type Suppression,
} from './types.js';

/** Message columns in `StoredMessage` order, without the content (read only by `getRaw`). */
export const MESSAGE_COLUMNS = `id, mailbox, pool, envelope_from, envelope_to, recipients, size, message_id, source, state, attempts,
  created_at, updated_at, next_attempt_at, lease_owner, lease_until, last_reply, last_class, last_explanation, send_at, labels`;

/** A row of `messages` as {@link MESSAGE_COLUMNS} selects it; `Json` is how the dialect returns a JSON column. */
export interface MessageRow<Json> {
  id: string;
  mailbox: string | null;
  pool: string | null;
  envelope_from: string;
  /** The envelope's recipients: an array of addresses. */
  envelope_to: Json;
  /** Length of envelope_to, counted against recipientsPerDay. */
  recipients: number;
  size: number;
  message_id: string | null;
  /** A `MessageSource`. */
  source: Json;
  state: string;
  attempts: number;
  created_at: number;
  updated_at: number;
  next_attempt_at: number;
  lease_owner: string | null;
  lease_until: number | null;
  last_reply: string | null;
  last_class: string | null;
  /** An `Explanation`. */
  last_explanation: Json | null;
  /** The scheduled time a caller gave (`notBefore`), or NULL. */
  send_at: number | null;
  /** `{ tags, metadata }` (labels.ts), or NULL when the message has neither. */
  labels: Json | null;
}

/** A row of `attempts`. */
export interface AttemptRow<Json> {
  at: number;
  mailbox: string;
  reply: string | null;
  class: string;
  explanation: Json | null;
  duration_ms: number;
  owner: string;
}

/** A row of `message_recipients`. */
export interface RecipientRow<Json> {
  position: number;
  address: string;
  state: string;
  reply: string | null;
  explanation: Json | null;
  dsn_status: string | null;
  remote_mta: string | null;
  report_id: string | null;
  updated_at: number;
}

/** A row of `mailbox_pauses`. */
export interface PauseRow<Json> {
  mailbox: string;
  class: string;
  reply: string | null;
  explanation: Json | null;
  since: number;
  updated_at: number;
  owner: string;
  resume_requested_at: number | null;
}

/** A row of `suppressions` (no JSON column). */
export interface SuppressionRow {
  address_key: string;
  address: string;
  reason: string;
  dsn_status: string | null;
  message_id: string | null;
  source: string;
  created_at: number;
}

/**
 * The row of a message the outbox accepts, in state `queued`, with its JSON columns as text (what both
 * dialects are given to insert). Its id is a new UUIDv7 of `now`; it is due at `notBefore`, else now.
 *
 * @throws Relay365Error `R365_MESSAGE_INVALID` without exactly one of mailbox and pool, without a
 *   recipient, or with tags or metadata over their limits (labels.ts).
 */
export function newMessageRow(message: NewMessage, now: number): MessageRow<string> {
  if ((message.mailbox === undefined) === (message.pool === undefined)) {
    throw new Relay365Error(
      'R365_MESSAGE_INVALID',
      'A message for the outbox names either the mailbox that sends it or the pool whose members may send it, not both and not neither.',
    );
  }
  if (message.envelope.to.length === 0) {
    throw new Relay365Error('R365_MESSAGE_INVALID', 'A message for the outbox needs at least one envelope recipient.');
  }
  const labels = labelsColumn(checkLabels(message.tags, message.metadata));
  return {
    id: newMessageId(now),
    mailbox: message.mailbox ?? null,
    pool: message.pool ?? null,
    envelope_from: message.envelope.from,
    envelope_to: JSON.stringify(message.envelope.to),
    recipients: message.envelope.to.length,
    size: message.raw.length,
    message_id: message.messageId ?? null,
    source: JSON.stringify(message.source),
    state: 'queued',
    attempts: 0,
    created_at: now,
    updated_at: now,
    next_attempt_at: message.notBefore?.getTime() ?? now,
    lease_owner: null,
    lease_until: null,
    last_reply: null,
    last_class: null,
    last_explanation: null,
    send_at: message.notBefore?.getTime() ?? null,
    labels,
  };
}

/** Maps a dialect's rows to the records of types.ts; made by {@link rowReader}. */
export interface RowReader<Json> {
  toStoredMessage: (row: MessageRow<Json>) => StoredMessage;
  toAttempt: (row: AttemptRow<Json>) => Attempt;
  toRecipient: (row: RecipientRow<Json>) => RecipientRecord;
  toMailboxPause: (row: PauseRow<Json>) => MailboxPause;
  toSuppression: (row: SuppressionRow) => Suppression;
}

/**
 * The mappers of a dialect whose JSON columns `readJson` turns into values: `JSON.parse` for SQLite's
 * text, the value itself for PostgreSQL's parsed `jsonb`. A SQL NULL is never passed to it.
 */
export function rowReader<Json>(readJson: (value: Json) => unknown): RowReader<Json> {
  const explanation = (value: Json | null): Explanation | undefined => (value === null ? undefined : (readJson(value) as Explanation));
  return {
    toStoredMessage: (row) => ({
      id: row.id,
      mailbox: row.mailbox ?? undefined,
      pool: row.pool ?? undefined,
      envelope: { from: row.envelope_from, to: readJson(row.envelope_to) as string[] },
      state: row.state as MessageState,
      size: row.size,
      messageId: row.message_id ?? undefined,
      source: readJson(row.source) as MessageSource,
      attempts: row.attempts,
      createdAt: new Date(row.created_at),
      updatedAt: new Date(row.updated_at),
      nextAttemptAt: new Date(row.next_attempt_at),
      leaseOwner: row.lease_owner ?? undefined,
      leaseUntil: toDate(row.lease_until),
      lastReply: row.last_reply ?? undefined,
      lastClass: (row.last_class ?? undefined) as ReplyClass | undefined,
      lastExplanation: explanation(row.last_explanation),
      ...labelsOf(row.labels === null ? undefined : (readJson(row.labels) as Labels)),
      sendAt: toDate(row.send_at),
    }),
    toAttempt: (row) => ({
      at: new Date(row.at),
      mailbox: row.mailbox,
      reply: row.reply ?? undefined,
      class: row.class as ReplyClass,
      explanation: explanation(row.explanation),
      durationMs: row.duration_ms,
      owner: row.owner,
    }),
    toRecipient: (row) => {
      const record: RecipientRecord = { address: row.address, state: row.state as RecipientState, updatedAt: new Date(row.updated_at) };
      if (row.reply !== null) record.reply = row.reply;
      if (row.explanation !== null) record.explanation = readJson(row.explanation) as Explanation;
      if (row.dsn_status !== null) record.dsnStatus = row.dsn_status;
      if (row.remote_mta !== null) record.remoteMta = row.remote_mta;
      if (row.report_id !== null) record.reportId = row.report_id;
      return record;
    },
    toMailboxPause: (row) => ({
      mailbox: row.mailbox,
      class: row.class as MailboxPause['class'],
      reply: row.reply ?? undefined,
      explanation: explanation(row.explanation),
      since: new Date(row.since),
      updatedAt: new Date(row.updated_at),
      owner: row.owner,
      resumeRequestedAt: toDate(row.resume_requested_at),
    }),
    toSuppression: (row) => {
      const entry: Suppression = { address: row.address, reason: row.reason, createdAt: new Date(row.created_at), source: row.source as Suppression['source'] };
      if (row.dsn_status !== null) entry.dsnStatus = row.dsn_status;
      if (row.message_id !== null) entry.messageId = row.message_id;
      return entry;
    },
  };
}

type Labels = { tags?: string[]; metadata?: Record<string, string> };

/** Fresh arrays and objects for each record, so a caller changing one changes no other. */
function labelsOf(labels: Labels | undefined): { tags: string[]; metadata: Record<string, string> } {
  return { tags: [...(labels?.tags ?? [])], metadata: { ...labels?.metadata } };
}

/** `counts()`: every state, 0 where the `GROUP BY state` rows have none. */
export function stateCounts(rows: Iterable<{ state: string; n: number }>): Record<MessageState, number> {
  const counts = Object.fromEntries(MESSAGE_STATES.map((state) => [state, 0])) as Record<MessageState, number>;
  for (const row of rows) counts[row.state as MessageState] = row.n;
  return counts;
}

/** A time column that may be NULL. */
export function toDate(ms: number | null): Date | undefined {
  return ms === null ? undefined : new Date(ms);
}

/**
 * Oldest first, as the claim queries order them: ids compare byte by byte, as SQLite's BINARY
 * collation and PostgreSQL's `COLLATE "C"` do for ASCII.
 */
export function byAge(a: Pick<MessageRow<unknown>, 'created_at' | 'id'>, b: Pick<MessageRow<unknown>, 'created_at' | 'id'>): number {
  return a.created_at - b.created_at || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}
