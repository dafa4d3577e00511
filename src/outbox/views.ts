/**
 * Messages as relay365 shows them to a program: the HTTP API (`GET /v1/messages`, `GET /v1/messages/{id}`),
 * the dashboard and the CLI's `--json` (`relay365 queue list|show`) all print these, so a script that
 * reads one reads the other. Plain data: ISO dates, `null` for what is absent, every recipient state counted.
 */
import type { Explanation } from '../catalogue/index.js';
import { RECIPIENT_STATES, type Attempt, type RecipientRecord, type RecipientState, type StoredMessage } from './types.js';

/** An explanation as shown (the catalogue row without its undefined fields), or `null` when there is none. */
export function explanationView(e: Explanation | undefined): Explanation | null {
  return e === undefined ? null : { ...e };
}

/** How many recipients are in each state, every state present. */
export function recipientCounts(recipients: readonly RecipientRecord[]): Record<RecipientState, number> {
  const counts = Object.fromEntries(RECIPIENT_STATES.map((s) => [s, 0])) as Record<RecipientState, number>;
  for (const r of recipients) counts[r.state] += 1;
  return counts;
}

/** A message as `GET /v1/messages` and `relay365 queue list --json` list it, with how many of its recipients are in each state. */
export function messageView(m: StoredMessage, recipients: readonly RecipientRecord[]) {
  const waiting = m.state === 'queued' || m.state === 'deferred';
  return {
    id: m.id,
    state: m.state,
    mailbox: m.mailbox ?? null,
    pool: m.pool ?? null,
    envelope: m.envelope,
    size: m.size,
    messageId: m.messageId ?? null,
    source: m.source,
    attemptCount: m.attempts,
    createdAt: m.createdAt.toISOString(),
    updatedAt: m.updatedAt.toISOString(),
    nextAttemptAt: waiting ? m.nextAttemptAt.toISOString() : null,
    lastReply: m.lastReply ?? null,
    lastClass: m.lastClass ?? null,
    explanation: m.state === 'sent' ? null : explanationView(m.lastExplanation),
    recipientCounts: recipientCounts(recipients),
    tags: m.tags,
    metadata: m.metadata,
    sendAt: m.sendAt?.toISOString() ?? null,
  };
}

/** A message as {@link messageView} shows it. */
export type MessageView = ReturnType<typeof messageView>;

/** A message with each recipient and each attempt, as `GET /v1/messages/{id}` and `relay365 queue show <id> --json` show it. */
export function messageDetailView(m: StoredMessage, recipients: readonly RecipientRecord[], attempts: readonly Attempt[]) {
  return {
    ...messageView(m, recipients),
    recipients: recipients.map((r) => ({
      address: r.address,
      state: r.state,
      reply: r.reply ?? null,
      explanation: explanationView(r.explanation),
      dsnStatus: r.dsnStatus ?? null,
      remoteMta: r.remoteMta ?? null,
      updatedAt: r.updatedAt.toISOString(),
    })),
    attempts: attempts.map((a) => ({
      at: a.at.toISOString(),
      mailbox: a.mailbox,
      reply: a.reply ?? null,
      class: a.class,
      explanation: explanationView(a.explanation),
      durationMs: a.durationMs,
    })),
  };
}

/** A message as {@link messageDetailView} shows it. */
export type MessageDetailView = ReturnType<typeof messageDetailView>;
