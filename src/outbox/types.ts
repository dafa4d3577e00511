import type { Explanation, ReplyClass } from '../catalogue/index.js';
import type { Envelope } from '../delivery/index.js';

/**
 * A message's life: `queued` (waiting), `sending` (leased to a worker), `deferred` (waiting for a retry
 * after a transient or throttling reply), then `sent`, `failed` (permanent, or transient past the
 * maximum age) or `cancelled` (by an operator, before it was sent).
 */
export type MessageState = 'queued' | 'sending' | 'sent' | 'deferred' | 'failed' | 'cancelled';
export const MESSAGE_STATES: readonly MessageState[] = ['queued', 'sending', 'sent', 'deferred', 'failed', 'cancelled'];

/** Where a message came in. */
export interface MessageSource {
  /** `bounce`: a delivery status notification relay365 made itself for a failed message. */
  kind: 'smtp' | 'http' | 'library' | 'cli' | 'bounce';
  /** Client address (SMTP, HTTP). */
  client?: string;
  /** Local user or API key name that submitted it. */
  user?: string;
}

/** What a front door hands to the outbox. */
export interface NewMessage {
  /** The sending mailbox, when one was chosen at the front door. */
  mailbox?: string;
  /** Or the shared address of a pool of mailboxes (lower case): any member may send it. */
  pool?: string;
  envelope: Envelope;
  raw: Buffer;
  source: MessageSource;
  messageId?: string;
  /** Do not send before this time. */
  notBefore?: Date;
}

/** A message as the outbox keeps it (without its raw bytes, which are read with `getRaw`). */
export interface StoredMessage {
  id: string;
  /** The mailbox that sends (or sent) it; for a pool message, set when a member claims it. */
  mailbox: string | undefined;
  pool: string | undefined;
  envelope: Envelope;
  state: MessageState;
  size: number;
  messageId: string | undefined;
  source: MessageSource;
  attempts: number;
  createdAt: Date;
  updatedAt: Date;
  nextAttemptAt: Date;
  leaseOwner: string | undefined;
  leaseUntil: Date | undefined;
  /** The last reply and its class and explanation (from the reply catalogue). */
  lastReply: string | undefined;
  lastClass: ReplyClass | undefined;
  lastExplanation: Explanation | undefined;
}

/** One delivery attempt, kept for `queue show` and the API. */
export interface Attempt {
  at: Date;
  mailbox: string;
  reply: string | undefined;
  class: ReplyClass;
  explanation: Explanation | undefined;
  durationMs: number;
  /** The node (worker id) that made it. */
  owner: string;
}

/** Per-mailbox limits the claim enforces, cluster-wide when the store is shared. */
export interface MailboxLimits {
  messagesPerMinute: number;
  recipientsPerDay: number;
  maxConnections: number;
  minuteMs: number;
  dayMs: number;
}

export interface ClaimRequest {
  mailbox: string;
  /** Pool addresses (lower case) the mailbox is a member of: their messages may be claimed too. */
  pools: readonly string[];
  owner: string;
  leaseMs: number;
  limits: MailboxLimits;
  /** At most this many, even if the limits allow more. */
  max: number;
  now?: Date;
}

export interface ClaimResult {
  messages: StoredMessage[];
  /** When the mailbox may send again if a limit stopped the claim (rate, day, connections); undefined if none did. */
  blockedUntil?: Date;
  blockedBy?: 'connections' | 'rate' | 'recipients';
}

export interface CompleteRequest {
  id: string;
  owner: string;
  state: 'sent' | 'deferred' | 'failed';
  attempt: Attempt;
  /** For `deferred`: when to try again. */
  nextAttemptAt?: Date;
}

export interface ListQuery {
  state?: MessageState;
  mailbox?: string;
  limit?: number;
  /** Opaque cursor from a previous page. */
  cursor?: string;
}

/** Quota used by a mailbox within the current windows. */
export interface QuotaUsage {
  messagesLastMinute: number;
  recipientsLastDay: number;
  sending: number;
}

/**
 * The durable outbox. Every implementation (SQLite, PostgreSQL) passes the contract suite in
 * `test/contract/outbox-store.ts`. All methods are safe to call from several workers (and, for a
 * shared store, several nodes) at once.
 */
export interface OutboxStore {
  /** Creates or upgrades the schema (numbered migrations). */
  migrate(): Promise<void>;
  /** Stores a message; resolves only after the row is committed to disk. */
  enqueue(message: NewMessage): Promise<StoredMessage>;
  get(id: string): Promise<StoredMessage | undefined>;
  getRaw(id: string): Promise<Buffer | undefined>;
  attempts(id: string): Promise<Attempt[]>;
  /**
   * Leases due messages (queued or deferred with `nextAttemptAt <= now`, or `sending` with an expired
   * lease) of the mailbox and its pools, oldest first, as many as its limits allow: connections
   * (messages in `sending` with a live lease), messages in the last minute, recipients in the last day.
   * Each claimed message is counted against the mailbox's quota at once.
   */
  claim(request: ClaimRequest): Promise<ClaimResult>;
  /** Records an attempt and the new state; false when the lease was lost (another worker has it). */
  complete(request: CompleteRequest): Promise<boolean>;
  /** Makes a failed, deferred or queued message due now; false if it is sent, sending or cancelled. */
  retry(id: string): Promise<boolean>;
  /** Cancels a message not yet sent and not being sent; false otherwise. */
  cancel(id: string): Promise<boolean>;
  list(query: ListQuery): Promise<{ items: StoredMessage[]; nextCursor: string | undefined }>;
  /** Count of messages by state (and by mailbox when given). */
  counts(mailbox?: string): Promise<Record<MessageState, number>>;
  /** Oldest `queued` or `deferred` message's creation time, for the queue-age metric. */
  oldestWaiting(): Promise<Date | undefined>;
  /** When the next message of these mailboxes/pools becomes due (for the scheduler's sleep). */
  nextDue(mailbox: string, pools: readonly string[]): Promise<Date | undefined>;
  quotaUsage(mailbox: string, limits: Pick<MailboxLimits, 'minuteMs' | 'dayMs'>, now?: Date): Promise<QuotaUsage>;
  close(): Promise<void>;
}
