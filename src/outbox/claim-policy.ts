import type { MailboxLimits } from './types.js';

/**
 * Microsoft 365's sending limits as one pure decision, shared by the SQLite and the PostgreSQL
 * outbox: which due messages a mailbox may lease now, what that does to its totals, and, when a
 * limit rather than the queue ended the claim, which limit and until when. The stores read the
 * inputs and write the result inside one transaction; nothing here does I/O or reads the clock.
 *
 * The limits are Exchange Online's (shared/M365.md; docs/operations.md): 30 messages a minute per mailbox, 10,000
 * recipients a day per mailbox, and a few concurrent connections per mailbox.
 */

/**
 * When only the connection limit stopped a claim, try again this soon: a connection frees as soon
 * as a send completes, well before its lease would expire.
 */
export const CONNECTION_RETRY_MS = 1000;

/** A mailbox's use of its limits at the start of a claim, read by the store in the claim's transaction. */
export interface MailboxTotals {
  /** Leases not yet expired: the mailbox's open connections. */
  live: number;
  /** When the soonest of those leases expires (epoch ms), null when there are none. */
  soonestLeaseExpiry: number | null;
  /** Sends in the minute window. */
  minuteSends: number;
  /** When the oldest send in the minute window was made (epoch ms), null when there are none. */
  minuteOldest: number | null;
  /** Recipients of the sends in the day window. */
  dayRecipients: number;
}

/** What the policy needs of a due message: its recipient count. */
export interface ClaimCandidate {
  recipients: number;
}

export type ClaimLimits = Pick<MailboxLimits, 'messagesPerMinute' | 'recipientsPerDay' | 'maxConnections' | 'minuteMs'>;

export interface ClaimInput<C extends ClaimCandidate> {
  /** Due messages oldest first; read with {@link candidatesToRead} so an empty queue tells from a limit. */
  candidates: readonly C[];
  totals: MailboxTotals;
  limits: ClaimLimits;
  /** At most this many, even if the limits allow more. */
  max: number;
  /** Lease length of this claim: its leases hold connections until then. */
  leaseMs: number;
  now: number;
}

/** Why a claim stopped short of the queue. */
export type ClaimBlock =
  | { by: 'rate' | 'connections'; until: number }
  /**
   * The day's recipients are used up: `recipientsNeeded` more must leave the day window. The store
   * turns that into a time, since it needs the window's sends one by one (at most 10,000 recipients).
   */
  | { by: 'recipients'; recipientsNeeded: number };

export interface ClaimPlan<C extends ClaimCandidate> {
  /** The candidates to lease, oldest first (a prefix of the candidates). */
  claim: C[];
  /** The totals once the claimed messages are sent: one more send each, their recipients added. */
  totals: { minuteSends: number; dayRecipients: number };
  /** Absent when the queue or `max` ended the claim. */
  blocked?: ClaimBlock;
}

/** Slots the connection and rate limits leave, capped at `max`. */
function freeSlots(totals: MailboxTotals, limits: ClaimLimits, max: number): { slots: number; connectionSlots: number; rateSlots: number } {
  const connectionSlots = limits.maxConnections - totals.live;
  const rateSlots = limits.messagesPerMinute - totals.minuteSends;
  return { slots: Math.max(0, Math.min(connectionSlots, rateSlots, max)), connectionSlots, rateSlots };
}

/**
 * How many due messages the store should read: one more than the slots left, which is how
 * {@link planClaim} tells a limit that stopped the claim from a queue that ran out.
 */
export function candidatesToRead(totals: MailboxTotals, limits: ClaimLimits, max: number): number {
  return freeSlots(totals, limits, max).slots + 1;
}

/** Decides a claim; pure. */
export function planClaim<C extends ClaimCandidate>(input: ClaimInput<C>): ClaimPlan<C> {
  const { candidates, totals, limits, max, leaseMs, now } = input;
  const { slots, connectionSlots, rateSlots } = freeSlots(totals, limits, max);
  const claim: C[] = [];
  let recipients = totals.dayRecipients;
  let recipientsNeeded: number | undefined;
  for (const candidate of candidates) {
    if (claim.length === slots) break;
    // A message with more recipients than a whole day allows could never fit: it goes alone, into
    // an empty window, rather than hold up the mailbox forever.
    const fits = recipients + candidate.recipients <= limits.recipientsPerDay || recipients === 0;
    if (!fits) {
      recipientsNeeded = recipients + candidate.recipients - limits.recipientsPerDay;
      break;
    }
    recipients += candidate.recipients;
    claim.push(candidate);
  }
  const after = { minuteSends: totals.minuteSends + claim.length, dayRecipients: recipients };
  if (recipientsNeeded !== undefined) return { claim, totals: after, blocked: { by: 'recipients', recipientsNeeded } };
  // Nothing more is due: the queue, not a limit, ended the claim.
  if (candidates.length <= claim.length) return { claim, totals: after };

  const blocks: Array<{ by: 'connections' | 'rate'; until: number }> = [];
  if (rateSlots - claim.length <= 0) {
    // The oldest send in the window leaves it minuteMs after it was made; this claim's sends are at `now`.
    const oldest = Math.min(totals.minuteOldest ?? Infinity, claim.length > 0 ? now : Infinity);
    blocks.push({ by: 'rate', until: (Number.isFinite(oldest) ? oldest : now) + limits.minuteMs });
  }
  if (connectionSlots - claim.length <= 0) {
    const soonestExpiry = Math.min(totals.soonestLeaseExpiry ?? Infinity, claim.length > 0 ? now + leaseMs : Infinity) + 1;
    blocks.push({ by: 'connections', until: Math.min(now + CONNECTION_RETRY_MS, soonestExpiry) });
  }
  // No block when `max` alone stopped the claim. Otherwise every exhausted limit must clear before
  // another message may go: report the last one to clear.
  const block = blocks.sort((a, b) => b.until - a.until)[0];
  return block === undefined ? { claim, totals: after } : { claim, totals: after, blocked: block };
}
