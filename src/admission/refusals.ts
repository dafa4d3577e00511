import type { Relay365ErrorCode } from '../errors.js';

/** Why the admission pipeline refused a message: one stable name per rule, the same whichever door it came through. */
export type RefusalReason =
  | 'too-big'
  | 'nul-bytes'
  | 'line-too-long'
  | 'no-sender'
  | 'no-recipients'
  | 'too-many-recipients'
  | 'header-malformed'
  | 'originator-refused'
  | 'sender-not-allowed'
  | 'no-route'
  | 'unknown-mailbox'
  | 'suppressed'
  | 'labels-invalid'
  | 'schedule-invalid'
  | 'store-unavailable';

/**
 * A refused message, with how each door says so: the SMTP reply line (RFC 5321 basic code and RFC 3463
 * enhanced code), and the error code, HTTP status and message the HTTP API, the CLI and the library give.
 */
export interface Refusal {
  ok: false;
  reason: RefusalReason;
  /** `5xx x.y.z text` (`4xx` when trying again later may work). */
  smtp: string;
  code: Relay365ErrorCode;
  /** HTTP status of `code` (docs/http-api.md). */
  status: number;
  /** What happened and how to fix it, for the HTTP error body, the CLI and the library. */
  message: string;
  /** The request field at fault (HTTP). */
  field?: string;
  /** For the refusal's log line (the address refused, the recipient suppressed). */
  details?: Record<string, unknown>;
  /** The store's failure, for `store-unavailable`. */
  cause?: unknown;
}

/**
 * The SMTP reply texts of the admission rules; the SMTP door's `REPLIES` holds them too, so its
 * early refusals at MAIL and RCPT read exactly as the pipeline's at DATA.
 */
export const ADMISSION_REPLIES = {
  /** Devices submit mail from an address; a null sender only belongs to bounces, which are not relayed. */
  nullSender: '550 5.7.1 Sender not allowed: an empty MAIL FROM:<> is only for bounces, which are not relayed',
  senderNotAllowed: (who: string, address: string) => `550 5.7.1 Sender not allowed: ${who} may not send as <${address}>`,
  noRoute: (address: string) => `550 5.7.1 Sender not allowed: no mailbox may send as <${address}>`,
  /** An HTTP request's `mailbox` that is not configured (only the HTTP API and the CLI can name one). */
  unknownMailbox: (mailbox: string) => `550 5.7.1 Sender not allowed: ${mailbox} is not a configured mailbox`,
  /** A From, Sender or Resent-* field that is no plain list of addresses (message/originators.ts). */
  originatorRefused: (problem: string) => `550 5.7.1 Sender not allowed: ${problem}`,
  /** A header section another hop could read differently (RFC 5322 2.2, 3.6; RFC 3463 5.6.0: other media error). */
  headerMalformed: (problem: string) => `554 5.6.0 Malformed header section: ${problem}`,
  /** RFC 1870 (SIZE) and RFC 3463 5.3.4 "message too big for system". */
  tooBig: (max: number) => `552 5.3.4 Message size exceeds fixed maximum message size (${max} bytes)`,
  /** RFC 5321 4.5.3.1.10: 452 for too many recipients, so that the client sends the rest later. */
  tooManyRecipients: (max: number) => `452 4.5.3 Too many recipients (at most ${max} per message)`,
  /** RFC 5321 3.3: a transaction needs at least one RCPT (smtp-server answers this itself; the other doors use it). */
  noRecipients: '554 5.5.1 No valid recipients',
  /** RFC 5321 4.5.3.1.6 and 4.5.3.1.10: "500 Line too long". */
  lineTooLong: (octets: number) => `500 5.5.2 Line too long: a message line has ${octets} octets, the limit is 1000 with CRLF (RFC 5321 4.5.3.1.6)`,
  /** RFC 5321 2.3.8 and RFC 6152: neither 7bit nor 8BITMIME content may hold NUL. */
  nulBytes: '554 5.6.0 Message contains NUL bytes, which SMTP cannot carry; encode binary content (base64)',
  /** Tags or metadata over their limits (only the HTTP API and the library take them). */
  labelsInvalid: (problem: string) => `550 5.6.0 Message labels refused: ${problem}`,
  /** A scheduled time that is no time, or too far ahead (only the HTTP API and the library schedule). */
  scheduleInvalid: (problem: string) => `550 5.6.0 Scheduled time refused: ${problem}`,
  /** The outbox could not commit the message: the client keeps it and tries again. */
  storeUnavailable: '451 4.3.0 Cannot queue the message right now; try again later',
} as const;
