import type { Explanation, ReplyClass } from '../catalogue/index.js';
import type { Failure } from '../identity/index.js';

import type { Envelope } from '../message/index.js';

/** The SMTP envelope lives with the message bytes (src/message); delivery re-exports it. */
export type { Envelope };

/** A message ready to leave: its exact MIME bytes and its envelope. */
export interface OutgoingMessage {
  raw: Buffer;
  envelope: Envelope;
  /** The Message-ID header, when known (for results and logs). */
  messageId?: string;
}

/** What every send result holds, sent or not; never a secret. */
interface SendResultBase {
  mailbox: string;
  messageId: string | undefined;
  /** Exchange's final reply, e.g. `250 2.0.0 OK <...> [Hostname=...]`, or the failing reply. */
  reply: string | undefined;
  /**
   * Recipients Exchange refused while accepting the message for the others, each explained; on a
   * failure at RCPT (every recipient refused), each one with its own reply.
   */
  rejected?: Array<{ address: string; reply: string | undefined; explanation: Explanation | undefined }>;
  /** True when the send was retried once with a fresh token after an auth refusal. */
  retriedWithFreshToken?: boolean;
}

/** Exchange (or Graph) took the message, for every recipient but those in `rejected`. */
export interface SendSuccess extends SendResultBase {
  ok: true;
  class: 'sent';
}

/** The message was not taken: why, explained from the catalogue. */
export interface SendFailure extends SendResultBase {
  ok: false;
  /** The catalogue's class of the reply (`transient`, `throttled`, `auth`, `permanent`, `blocked`). */
  class: ReplyClass;
  /** The catalogue's explanation of the reply or the connection error: cause, fix and source. */
  explanation: Explanation;
  /**
   * The stage that failed (`token`, CONN, AUTH, MAIL FROM, RCPT TO, DATA; Graph's request) and the
   * failure's code (relay365's `R365_*` for a token, nodemailer's, or `HTTP_<status>`).
   */
  stage?: string;
  errorCode?: string;
  /** What kind it was, its class, whether retrying may help and its explanation (identity's vocabulary). */
  failure?: Failure;
  /** For throttled failures: how long Microsoft asked to wait (Graph's `Retry-After`), in ms. */
  retryAfterMs?: number;
}

/**
 * What happened to one send, from Exchange's answer. Narrow on `ok`: a failure always carries its
 * `explanation`.
 * @example
 * ```ts
 * if (!result.ok) console.error(result.explanation.cause, result.explanation.fix);
 * ```
 */
export type SendResult = SendSuccess | SendFailure;

/** `Omit` applied to each member of a union (the built-in one merges the members first). */
export type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** A way out to Microsoft: SMTP with XOAUTH2, or Graph. */
export interface Transport {
  send(mailbox: string, message: OutgoingMessage): Promise<SendResult>;
  close(): Promise<void>;
}
