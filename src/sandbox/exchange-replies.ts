/**
 * The replies the simulated Exchange Online SMTP client submission endpoint gives, in one table.
 * Each is Microsoft's text, byte for byte, with the source it was taken from; rows marked
 * {@link UNCHECKED} are Exchange's usual wording, not yet matched against a stored transcript.
 * Host names are the sandbox's fixed stand-ins for Microsoft's front-end
 * (`AM3PR05CA0094.outlook.office365.com`) and mailbox server (`...namprd05.prod.outlook.com`) names.
 */

import { randomBytes } from 'node:crypto';

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
const CONTINUOUS = `MS Learn "Continuous error throttling for SMTP AUTH submissions", codes and key words as shared/M365.md gives them; the full sentence not found in a public paste`;
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
  // Tail added by withTail, as in https://github.com/simonrob/email-oauth2-proxy/issues/295.
  notAuthenticated: { line: '530 5.7.57 Client not authenticated to send mail.', source: 'https://github.com/simonrob/email-oauth2-proxy/issues/295' },
  messageTooBig: { line: '552 5.3.4 Message size exceeds fixed maximum message size', source: M365 },
  tooManyRecipients: { line: '452 4.5.3 Too many recipients', source: M365 },
  // The wording since 2021 (https://github.com/sabuhish/fastapi-mail/issues/75); the 2018 one said "sender thread limit".
  senderThreadLimit: {
    line: `432 4.3.2 Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_sending for more information. [Hostname=${SANDBOX_HOST}]`,
    source: 'https://github.com/sabuhish/fastapi-mail/issues/75',
  },
  // Today's wording names both addresses; see sendAsDeniedReply (https://github.com/gophish/gophish/issues/2900).
  sendAsDenied: {
    line: '554 5.2.252 SendAsDenied; {mailbox} not allowed to send as {from}; STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to process message due to a permanent exception with message [BeginDiagnosticData]Cannot submit message.',
    source: 'https://github.com/gophish/gophish/issues/2900',
  },
  mailboxFull: {
    line: '554 5.2.2 mailbox full; STOREDRV.Submission.Exception:QuotaExceededException.MapiExceptionQuotaExceeded; Failed to process message due to a permanent exception with message [BeginDiagnosticData]Cannot submit message.',
    source: `shared/M365.md "mailbox storage" (554 5.2.2 mailbox full; ...QuotaExceededException...); the rest as in the SendAsDenied reply; ${UNCHECKED}`,
  },
  serverBusy: { line: '451 4.7.500 Server busy. Please try again later.', source: M365 },
  // Only the daily recipient limit gives it; 31 messages a minute are delayed, not refused
  // (https://github.com/MicrosoftDocs/OfficeDocs-Support/issues/1150 and its PR #1488).
  submissionQuotaExceeded: {
    line: '554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message due to a permanent exception with message Cannot submit message.',
    source: `https://github.com/MicrosoftDocs/OfficeDocs-Support/issues/1150 (the rest of the text as in the SendAsDenied reply, Exchange's store driver wording)`,
  },
  // Directory Based Edge Blocking: an address at an accepted domain that does not exist is refused
  // at RCPT (MS Learn "Use Directory Based Edge Blocking"; the text of Exchange's 5.1.10, as in the
  // NDR archived at https://lore.kernel.org/nvdimm/733ca061-54d7-4139-90ed-f5d565a46ddf@AM7PR02MB5846.eurprd02.prod.outlook.com/).
  recipientNotFound: {
    line: '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient {recipient} not found by SMTP address lookup',
    source: 'MS Learn "Email non-delivery reports and SMTP errors in Exchange Online" (5.1.10); text from the lore.kernel.org NDR',
  },
  continuousMailboxFull: { line: '550 5.2.251 Sender throttled due to continuous mailbox full errors.', source: CONTINUOUS },
  continuousSendAsDenied: { line: '550 5.2.252 Sender throttled due to continuous send as denied errors.', source: CONTINUOUS },
  continuousInvalidLicense: { line: '550 5.2.253 Sender throttled due to continuous invalid license errors.', source: CONTINUOUS },
  continuousTooManyRecipients: { line: '550 5.2.254 Sender throttled due to continuous too many recipients errors.', source: CONTINUOUS },
  continuousInvalidRecipients: { line: '550 5.2.255 Sender throttled due to continuous invalid recipients errors.', source: CONTINUOUS },
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
  // Since 2024 the greeting ends with a session id (https://github.com/simonrob/email-oauth2-proxy/issues/297).
  return `${SANDBOX_FRONTEND} Microsoft ESMTP MAIL Service ready at ${date} [${sessionId()}]`;
}

/** A 16-hex-digit id like those in Exchange's greeting and `[HOST TIMESTAMP ID]` tails. */
function sessionId(): string {
  return randomBytes(8).toString('hex').toUpperCase();
}

/**
 * The `[HOST TIMESTAMP ID]` tail Exchange has appended to its refusals since 2023, e.g.
 * `[MN2PR05CA0004.namprd05.prod.outlook.com 2023-09-12T20:59:57.214Z 08DBB276B7E699C4]`
 * (https://github.com/simonrob/email-oauth2-proxy/issues/193).
 */
export function withTail(line: string, now = new Date()): string {
  return `${line} [${SANDBOX_HOST} ${now.toISOString()} ${sessionId()}]`;
}

/** The SendAs refusal naming the mailbox and the address it may not send as. */
export function sendAsDeniedReply(mailbox: string, from: string): string {
  return EXCHANGE_REPLIES.sendAsDenied.line.replace('{mailbox}', mailbox).replace('{from}', from);
}

/** The RCPT refusal of an address at an accepted domain that does not exist. */
export function recipientNotFoundReply(recipient: string): string {
  return EXCHANGE_REPLIES.recipientNotFound.line.replace('{recipient}', recipient);
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

/** A reply that counts as throttling: the connection limit, the daily quota, a continuous-error block. */
export function isThrottleReply(line: string): boolean {
  return /^432 /.test(line) || line.includes('SubmissionQuotaExceededException') || /^550 5\.2\.25\d /.test(line);
}
