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
  /** Do not send before this time (a scheduled send: kept as the message's `sendAt`). */
  notBefore?: Date;
  /** Labels to find it by (`list({ tag })`) and echoed in its webhooks; see {@link checkLabels} for the limits. */
  tags?: readonly string[];
  /** The caller's own key/value data, stored with the message and echoed in its webhooks. */
  metadata?: Readonly<Record<string, string>>;
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
  /** As given at enqueue (empty when none). */
  tags: string[];
  metadata: Record<string, string>;
  /** When the message was scheduled for (its `notBefore`); undefined when it was due at once. */
  sendAt: Date | undefined;
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
  /**
   * What Exchange answered for each recipient, recorded in the same transaction as the outcome. A
   * recipient not listed that is still `pending` becomes `accepted` when the message is `sent` and
   * `refused` (with the attempt's reply and explanation) when it `failed`; a deferral changes none.
   */
  recipients?: Array<{ address: string; state: 'accepted' | 'refused'; reply?: string; explanation?: Explanation }>;
}

/**
 * Where one recipient of a message stands: `pending` (not yet answered), `accepted` (Exchange's `250`
 * to its RCPT and to the message: Exchange took it, which is not delivery), `refused` (Exchange refused
 * it at RCPT, or refused the whole message), `bounced` (a non-delivery report came back for it),
 * `delayed` (a delay notification came back; a later report may still bounce it).
 */
export type RecipientState = 'pending' | 'accepted' | 'refused' | 'bounced' | 'delayed';
export const RECIPIENT_STATES: readonly RecipientState[] = ['pending', 'accepted', 'refused', 'bounced', 'delayed'];

/** One recipient of a message, as the outbox keeps it. */
export interface RecipientRecord {
  /** As in the envelope. */
  address: string;
  state: RecipientState;
  /** Exchange's RCPT reply (refused) or the NDR's Diagnostic-Code (bounced/delayed). */
  reply?: string;
  /** From the reply catalogue. */
  explanation?: Explanation;
  /** The DSN status, e.g. `5.1.1` (bounced/delayed). */
  dsnStatus?: string;
  /** The NDR's Remote-MTA when it has one. */
  remoteMta?: string;
  /** The NDR that set bounced/delayed. */
  reportId?: string;
  updatedAt: Date;
}

/** One recipient's entry of a non-delivery (or delay) report found in a sending mailbox's Inbox. */
export interface BounceReport {
  /** The mailbox whose Inbox held the NDR. */
  mailbox: string;
  /** The NDR's Graph message id (stable per mailbox). */
  reportId: string;
  /** The original's Message-ID header, with angle brackets. */
  originalMessageId: string;
  /** Final-Recipient (or Original-Recipient) address. */
  recipient: string;
  action: 'failed' | 'delayed';
  /** DSN status, e.g. `5.1.1`. */
  status: string;
  diagnostic?: string;
  remoteMta?: string;
  receivedAt: Date;
  /**
   * A hard bounce: when the entry matches a message, its recipient is suppressed in the same
   * transaction (with this reason; the DSN status, the message and `receivedAt` from the entry), so a
   * crash never records the bounce without its suppression.
   */
  suppress?: { reason: string };
}

/** An address relay365 refuses to send to (a hard bounce, or an operator's entry). */
export interface Suppression {
  address: string;
  reason: string;
  dsnStatus?: string;
  /** The relay365 message whose bounce added it. */
  messageId?: string;
  createdAt: Date;
  source: 'bounce' | 'manual';
}

export interface ListQuery {
  state?: MessageState;
  mailbox?: string;
  /** Messages with this envelope recipient (compared case-insensitively). */
  recipient?: string;
  /** Messages with this tag (exact). */
  tag?: string;
  /** Created at or after this time. */
  since?: Date;
  /** Created before this time. */
  until?: Date;
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
 * A mailbox relay365 has paused, as the store keeps it: every node of a cluster sees it, and a restart
 * does not forget it. It ends only on a successful send (a probe) or an operator's resume.
 */
export interface MailboxPause {
  mailbox: string;
  /** `auth`: Exchange refused the token or the login; `blocked`: Exchange refuses the mailbox until an admin acts. */
  class: 'auth' | 'blocked';
  /** The reply that paused it, or that a later probe met (the current cause). */
  reply: string | undefined;
  /** The catalogue's explanation of that reply: its id, cause and fix. */
  explanation: Explanation | undefined;
  /** When the mailbox was paused (a probe meeting a new cause keeps this time). */
  since: Date;
  /** When a worker last recorded the cause. */
  updatedAt: Date;
  /** The worker that last recorded it. */
  owner: string;
  /** When an operator asked to resume it (`relay365 queue resume`), until a worker has. */
  resumeRequestedAt: Date | undefined;
}

/** What a worker records when it pauses a mailbox (or a probe meets the cause again). */
export interface PauseRequest {
  mailbox: string;
  class: MailboxPause['class'];
  reply: string | undefined;
  explanation: Explanation | undefined;
  owner: string;
  at?: Date;
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
  /**
   * True when a `claim` asked for after a `complete` (before that one resolved) always runs after it,
   * seeing its lease gone: the SQLite store runs one turn's writes in one transaction, in order. The
   * worker then frees a sent message's connection slot as soon as it hands over the outcome.
   */
  readonly claimsFollowOutcomes?: boolean;
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
  /** Every recipient of a message with its state, in envelope order (enqueue creates them `pending`); empty for an unknown id. */
  recipients(id: string): Promise<RecipientRecord[]>;
  /**
   * Applies one NDR entry exactly once, keyed by (mailbox, reportId, recipient): a repeat returns
   * `duplicate: true` and changes nothing. `matched`: the relay365 message id whose Message-ID and
   * recipient it names (the newest such message sent by `mailbox`), or undefined (then nothing else
   * changes; the report is still remembered so it is not applied twice); for a repeat, the message
   * the entry matched when it was applied, so the caller can raise its events again under their
   * first ids. A `failed` action makes the recipient `bounced`; a `delayed` one makes it `delayed`
   * unless it has bounced already. It suppresses the recipient, in the same transaction, only when
   * the caller asks (`report.suppress`) and the entry matched a message.
   */
  recordBounce(report: BounceReport): Promise<{ matched: string | undefined; duplicate: boolean }>;
  /** The Graph delta cursor of a mailbox's Inbox reader. */
  bounceCursor(mailbox: string): Promise<string | undefined>;
  saveBounceCursor(mailbox: string, cursor: string): Promise<void>;
  /** Takes or renews the lease on reading a mailbox's NDRs (one node at a time): true when `owner` holds it until now + ms. */
  leaseBounceReader(mailbox: string, owner: string, ms: number, now?: Date): Promise<boolean>;
  /** Adds an address, or replaces its entry (address compared case-insensitively). */
  suppress(entry: Omit<Suppression, 'createdAt'> & { createdAt?: Date }): Promise<void>;
  /** Removes an address (case-insensitively); false when it was not suppressed. */
  unsuppress(address: string): Promise<boolean>;
  /** Newest first; `limit` defaults to 50 and is held to 1..500. */
  suppressions(query: { limit?: number; cursor?: string }): Promise<{ items: Suppression[]; nextCursor: string | undefined }>;
  /** The suppressed ones among these addresses (compared case-insensitively). */
  suppressed(addresses: readonly string[]): Promise<Suppression[]>;
  /**
   * Records a paused mailbox, or a new cause for one already paused (which keeps its `since` and a
   * pending resume request). Returns the row as stored.
   */
  pauseMailbox(pause: PauseRequest): Promise<MailboxPause>;
  /** Ends a mailbox's pause (a send worked, or a worker honoured a resume request); false when it was not paused. */
  resumeMailbox(mailbox: string): Promise<boolean>;
  /**
   * An operator's resume: marks the request for the workers (any node's sees it at its next look at
   * the pauses) and makes the mailbox's deferred messages due now, so its queue is tried at once.
   * Undefined when the mailbox is not paused.
   */
  requestMailboxResume(mailbox: string, now?: Date): Promise<MailboxPause | undefined>;
  /** Every paused mailbox, longest paused first. */
  mailboxPauses(): Promise<MailboxPause[]>;
  /**
   * Deletes finished messages (sent, failed, cancelled) last changed before `before`, oldest first, at
   * most `limit` of them (default 500) in one call: their content only (`bodiesOnly`: the message, its
   * attempts and recipients stay, and it can no longer be retried), or the whole message. With `dryRun`,
   * counts what would go (every match, not held to `limit`) and deletes nothing. Safe on several nodes
   * at once: each takes rows no other is deleting.
   */
  purge(request: PurgeRequest): Promise<PurgeResult>;
  close(): Promise<void>;
}

/** The states a finished message may be in: what retention and `relay365 queue purge` delete. */
export const FINISHED_STATES = ['sent', 'failed', 'cancelled'] as const;
export type FinishedState = (typeof FINISHED_STATES)[number];

/** See {@link OutboxStore.purge}. */
export interface PurgeRequest {
  before: Date;
  /** Default: all of {@link FINISHED_STATES}. */
  states?: readonly FinishedState[];
  bodiesOnly: boolean;
  limit?: number;
  dryRun?: boolean;
}

/** How many messages lost their content (`bodiesOnly`) or were deleted, or would be (`dryRun`). */
export interface PurgeResult {
  count: number;
}
