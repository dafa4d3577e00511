/**
 * The replies the simulated Exchange Online SMTP client submission endpoint gives, in one table.
 * Each is Microsoft's text, byte for byte, with the source it was taken from; rows marked
 * {@link UNCHECKED} are Exchange's usual wording, not yet matched against a stored transcript.
 * Host names are the sandbox's fixed stand-ins for Microsoft's front-end
 * (`AM3PR05CA0094.outlook.office365.com`) and mailbox server (`...namprd05.prod.outlook.com`) names.
 */

/** The front-end name Exchange puts in its greeting and EHLO reply. */
export const SANDBOX_FRONTEND = 'SANDBOX01.outlook.office365.com';

/** The server name Exchange puts in `[...]` suffixes and in `[Hostname=...]` of a 250. */
export const SANDBOX_HOST = 'SANDBOX01.namprd00.prod.outlook.com';

/** One Exchange reply and where its text is documented or reported. */
export interface ExchangeReply {
  /** The full reply line without CRLF: `<code> <enhanced code> <text>`. */
  readonly line: string;
  /** Where the text comes from. */
  readonly source: string;
}

const M365 = 'shared/M365.md, reply catalogue seed (SMTP)';
const TRANSCRIPT = 'smtp.office365.com transcripts in github.com/simonrob/email-oauth2-proxy issues #95, #232, #416';
/** Exchange's usual wording, as widely quoted, but not yet matched against a stored transcript. */
export const UNCHECKED = 'Exchange wording as commonly quoted; not yet checked against a stored transcript';

/**
 * Every reply the sandbox decides. Keys are the sandbox's names; `line` is what goes on the wire.
 * Replies smtp-server words itself and that Exchange words differently are in {@link LIBRARY_REPLY_REWRITES}.
 */
export const EXCHANGE_REPLIES = {
  authSuccessful: { line: '235 2.7.0 Authentication successful', source: `RFC 4954 section 6 wording; ${UNCHECKED}` },
  authUnsuccessful: { line: '535 5.7.3 Authentication unsuccessful', source: M365 },
  basicAuthDisabled: { line: '535 5.7.139 Authentication unsuccessful, basic authentication is disabled.', source: M365 },
  smtpAuthDisabledForMailbox: {
    line: '535 5.7.139 Authentication unsuccessful, the request did not meet the criteria to be authenticated successfully.',
    source: M365,
  },
  smtpAuthDisabledForTenant: {
    line: '535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.',
    source: M365,
  },
  securityDefaults: {
    line: "535 5.7.139 Authentication unsuccessful, user is locked by your organization's security defaults policy.",
    source: M365,
  },
  unrecognizedAuthType: {
    line: '504 5.7.4 Unrecognized authentication type',
    source: `Exchange's answer before STARTTLS and to mechanisms it does not offer; ${UNCHECKED}`,
  },
  notAuthenticated: { line: `530 5.7.57 Client not authenticated to send mail. [${SANDBOX_HOST}]`, source: M365 },
  messageTooBig: { line: '552 5.3.4 Message size exceeds fixed maximum message size', source: M365 },
  tooManyRecipients: { line: '452 4.5.3 Too many recipients', source: M365 },
  senderThreadLimit: { line: '432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded', source: M365 },
  sendAsDenied: {
    line: '554 5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to process message due to a permanent exception with message Cannot submit message.',
    source: M365,
  },
  serverBusy: { line: '451 4.7.500 Server busy. Please try again later.', source: M365 },
  submissionQuotaExceeded: {
    line: '554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message due to a permanent exception with message Cannot submit message.',
    source: `${M365} (the rest of the text as in the SendAsDenied reply, Exchange's store driver wording)`,
  },
} as const satisfies Record<string, ExchangeReply>;

/** The name of a row of {@link EXCHANGE_REPLIES}. */
export type ExchangeReplyName = keyof typeof EXCHANGE_REPLIES;

/** `250 2.0.0 OK <message-id> [Hostname=...]`: Exchange's answer to an accepted message (as reported). */
export function acceptedReply(messageId: string): string {
  return `250 2.0.0 OK ${messageId} [Hostname=${SANDBOX_HOST}]`;
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const pad = (n: number): string => String(n).padStart(2, '0');

/**
 * The greeting text after `220 `, e.g. `SANDBOX01.outlook.office365.com Microsoft ESMTP MAIL Service
 * ready at Wed, 9 Nov 2022 10:09:41 +0000`: day of month unpadded and the offset as `+0000`, as in
 * the smtp.office365.com transcripts cited above.
 */
export function greetingText(now = new Date()): string {
  const date =
    `${DAYS[now.getUTCDay()]!}, ${now.getUTCDate()} ${MONTHS[now.getUTCMonth()]!} ${now.getUTCFullYear()} ` +
    `${pad(now.getUTCHours())}:${pad(now.getUTCMinutes())}:${pad(now.getUTCSeconds())} +0000`;
  return `${SANDBOX_FRONTEND} Microsoft ESMTP MAIL Service ready at ${date}`;
}

/** What Exchange answers where smtp-server has its own wording; matched on smtp-server's reply. */
export interface LibraryReplyRewrite {
  /** smtp-server's basic code and text (`context` is the command name or its enhanced-code context). */
  match: (code: number, text: string, context: string | false | undefined) => boolean;
  line: string;
  source: string;
  /** Counted in `counters.smtpReplies` (a refusal the sandbox stands behind), not protocol chatter. */
  counted: boolean;
}

/**
 * smtp-server's own replies, reworded as Exchange words them. Anything not listed keeps smtp-server's
 * text with the RFC 3463 enhanced code smtp-server picks for its basic code.
 */
export const LIBRARY_REPLY_REWRITES: readonly LibraryReplyRewrite[] = [
  { match: (c, t) => c === 220 && t === 'Ready to start TLS', line: '220 2.0.0 SMTP server ready', source: TRANSCRIPT, counted: false },
  {
    match: (c, _t, ctx) => c === 250 && ctx === 'MAIL_FROM_OK',
    line: '250 2.1.0 Sender OK',
    source: UNCHECKED,
    counted: false,
  },
  {
    match: (c, _t, ctx) => c === 250 && ctx === 'RCPT_TO_OK',
    line: '250 2.1.5 Recipient OK',
    source: UNCHECKED,
    counted: false,
  },
  {
    match: (c) => c === 354,
    line: '354 Start mail input; end with <CRLF>.<CRLF>',
    source: UNCHECKED,
    counted: false,
  },
  { match: (c, t) => c === 250 && t === 'Flushed', line: '250 2.0.0 Resetting', source: UNCHECKED, counted: false },
  { match: (c, t) => c === 221 && t === 'Bye', line: '221 2.0.0 Service closing transmission channel', source: UNCHECKED, counted: false },
  // Exchange quotes 'unknown' rather than the command it did not recognise (TRANSCRIPT, issue #232).
  {
    match: (c, t) => c === 500 && t === 'Error: command not recognized',
    line: `500 5.3.3 Unrecognized command 'unknown' [${SANDBOX_HOST}]`,
    source: TRANSCRIPT,
    counted: false,
  },
  {
    match: (c, t) => c === 503 && /^Error: (send HELO\/EHLO first|need MAIL command|need RCPT command)$/.test(t),
    line: '503 5.5.1 Bad sequence of commands',
    source: 'smtp.office365.com log in github.com/knadh/listmonk issue #278',
    counted: false,
  },
  // SIZE= over the limit on MAIL FROM, checked by smtp-server before our onMailFrom hook runs.
  { match: (c) => c === 552, line: EXCHANGE_REPLIES.messageTooBig.line, source: M365, counted: true },
  // An XOAUTH2 (or LOGIN) response smtp-server cannot decode into user and token.
  { match: (c, t) => c === 501 && t === 'Error: invalid userdata', line: EXCHANGE_REPLIES.authUnsuccessful.line, source: M365, counted: true },
];

/** Splits `"535 5.7.3 Authentication unsuccessful"` into the basic code and the rest. */
export function splitReply(line: string): { code: number; text: string } {
  const m = /^(\d{3}) (.*)$/s.exec(line);
  if (!m) throw new Error(`not an SMTP reply line: ${line}`);
  return { code: Number(m[1]), text: m[2]! };
}

/** A reply that counts as throttling (M365.md class `throttled`): the thread limit and the submission quota. */
export function isThrottleReply(line: string): boolean {
  return /^432 /.test(line) || line.includes('SubmissionQuotaExceededException');
}
