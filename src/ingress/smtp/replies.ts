import type { SMTPServerError } from 'smtp-server';
import { ADMISSION_REPLIES } from '../../admission/index.js';

/**
 * Every reply of relay365's own making, with its basic code (RFC 5321 4.2.3) and enhanced code
 * (RFC 3463, registry of RFC 5248). 4xx tells the client to try again later (it keeps the message),
 * 5xx that trying again will not help. A transient problem of ours (the outbox cannot commit, a
 * lockout, a connection limit) is always 4xx, so that no message is lost for it.
 */
export const REPLIES = {
  // -- the admission rules (src/admission): the same text whether SMTP refuses early (MAIL, RCPT) or at DATA
  ...ADMISSION_REPLIES,

  // -- connection ----------------------------------------------------------------------------
  /** Per-client or total connection limit (`smtp.maxConnectionsPerClient`, `smtp.maxConnections`). */
  tooManyConnections: '421 4.7.0 Too many connections; try again later',
  /** `smtp.preAuthTimeoutSeconds` passed without AUTH from a client that is not allowlisted (RFC 3463 4.4.2, bad connection). */
  preAuthTimeout: '421 4.4.2 No login within the time allowed; closing connection',
  /** Every slot for clients not yet logged in is taken: the oldest idle one makes room for a new one. */
  preAuthEvicted: '421 4.7.0 Too many connections waiting to log in; closing the oldest',
  /** `smtp.maxCommandsPerConnection` reached: a client in a loop, or one that never lets go. */
  tooManyCommands: '421 4.7.0 Too many commands on one connection; reconnect to continue',
  /** smtp-server closes after ten unknown commands in a row. */
  tooManyUnrecognized: '421 4.7.0 Too many unrecognized commands; closing connection',
  /** A command line longer than the parser's limit: it cannot find the next command, so it closes. */
  commandTooLong: '421 4.5.0 Command line too long; closing connection',
  /** close(): RFC 3463 4.3.2, "system not accepting network messages". */
  shuttingDown: '421 4.3.2 Service shutting down; try again later',
  /** An HTTP request sent to the SMTP port (a browser made to attack it, or a confused probe). */
  httpRefused: '421 4.7.0 HTTP requests are not accepted on an SMTP port',

  // -- authentication (RFC 4954) --------------------------------------------------------------
  /** RFC 3207 4: AUTH before STARTTLS on a listener that requires TLS for it. */
  startTlsFirst: '530 5.7.0 Must issue a STARTTLS command first',
  /** RFC 4954 6: AUTH in clear text on a listener without TLS and without `allowPlainAuth`. */
  encryptionRequired: '538 5.7.11 Encryption required for requested authentication mechanism',
  /** RFC 4954 6: wrong user name or password. */
  authInvalid: '535 5.7.8 Authentication credentials invalid',
  /** RFC 4954 6 allows 454 4.7.0 for a temporary refusal: the lockout ends by itself. */
  authLockedOut: '454 4.7.0 Too many failed logins from your address; try again later',
  /** Also RFC 4954's 454: too many logins wait for their password check (an AUTH flood); a retry soon passes. */
  authBusy: '454 4.7.0 Temporary authentication failure: too many logins in progress; try again shortly',
  /** RFC 4954 4: "AUTH command is not permitted during a mail transaction". */
  authInTransaction: '503 5.5.1 AUTH is not permitted during a mail transaction',
  /** RFC 4616: relay365 has no proxy authorization; an authzid naming someone else is refused. */
  authzidRefused: '535 5.7.8 Authorization identity must be empty or the user name itself',

  // -- relaying policy -----------------------------------------------------------------------
  /** MAIL from a client that neither logged in nor is on the allowlist (not an open relay). */
  authRequired: '530 5.7.0 Authentication required',
  /** RCPT without a permission to relay (defensive: MAIL already stops such a client). */
  relayingDenied: '550 5.7.1 Relaying denied: log in or connect from an allowlisted address',
  /** RFC 5321 4.1.1.3 makes a server accept RCPT TO:<postmaster>; a relay has nowhere to send it. */
  recipientWithoutDomain: '553 5.1.3 Recipient address must include a domain',
  noHeaderFrom: '550 5.7.1 Sender not allowed: the From header holds no address',

  // -- acceptance ----------------------------------------------------------------------------
  queued: (id: string) => `250 2.0.0 OK queued as ${id}`,
} as const;

/** A reply line as the error a smtp-server hook passes to its callback. */
export function replyError(line: string): SMTPServerError {
  const code = Number(line.slice(0, 3));
  return Object.assign(new Error(line.slice(4)), { responseCode: code });
}
