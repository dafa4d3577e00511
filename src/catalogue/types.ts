/**
 * How a failure is to be handled:
 * - `sent`: Microsoft accepted the message;
 * - `transient`: try again later with backoff (busy, network, 4xx without a better rule);
 * - `throttled`: a Microsoft limit was hit: slow the mailbox down, then try again;
 * - `auth`: the token or the tenant's setup is wrong: retry once with a fresh token, then pause the mailbox;
 * - `permanent`: the same message will never go through as it is: fail it and report;
 * - `blocked`: Exchange blocks the whole mailbox until an admin acts (mailbox full, continuous-error
 *   throttling, restricted sender): pause the mailbox, keep its queue, probe now and then.
 */
export type ReplyClass = 'sent' | 'transient' | 'throttled' | 'auth' | 'permanent' | 'blocked';

/**
 * What the worker does beyond the class, as catalogue data, so that it never re-reads reply text.
 * Absent for most rows: the class alone says it.
 */
export interface Handling {
  /** Open one connection fewer for this mailbox for a while (432 4.3.2: more than 3 connections). */
  lowerConcurrency?: boolean;
  /**
   * Hold the mailbox until its rolling 24-hour recipient window frees (554 5.2.0
   * SubmissionQuotaExceeded is the daily 10,000-recipient limit, not a per-minute one).
   */
  holdUntilRecipientWindowFrees?: boolean;
}

/** A plain-language explanation of a Microsoft reply or error, with the fix and where it is documented. */
export interface Explanation {
  /** Stable id of the catalogue row, e.g. `aadsts-7000222` or `smtp-535-5.7.139-tenant`. */
  id: string;
  class: ReplyClass;
  /** What went wrong, for a person. */
  cause: string;
  /** What to do, with the exact admin command where there is one. */
  fix: string;
  /** Where Microsoft documents it, or where it is reported. */
  doc?: string;
  /** What the worker does beyond the class. */
  handling?: Handling;
}
