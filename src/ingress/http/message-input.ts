/** Turns the API's message bodies into MIME plus envelope, and decides which mailbox may send them. */
import addressparser from 'nodemailer/lib/addressparser';
import { composeMessage, type MessageFields, type OutgoingMessage } from '../../delivery/index.js';
import { isRelay365Error } from '../../errors.js';
import type { Route, Router } from '../../outbox/index.js';
import { checkHeaderSection, isAddrSpec, parseMailboxList } from '../header-policy.js';
import { apiError } from './errors.js';

/** An address as the API takes it. */
export type AddressInput = string | { name?: string; address: string };

/** `POST /v1/messages`, as validated by `sendMessageBody`. */
export interface SendMessageBody {
  from: AddressInput;
  to?: AddressInput | AddressInput[];
  cc?: AddressInput | AddressInput[];
  bcc?: AddressInput | AddressInput[];
  replyTo?: AddressInput | AddressInput[];
  subject?: string;
  text?: string;
  html?: string;
  attachments?: Array<{ filename?: string; content?: string; contentType?: string; contentId?: string; disposition?: 'attachment' | 'inline' }>;
  headers?: Record<string, string>;
  mailbox?: string;
  /** Send to suppressed addresses too (docs/bounces.md). */
  ignoreSuppression?: boolean;
}

/** `POST /v1/messages/mime`, as validated by `sendMimeBody`. */
export interface SendMimeBody {
  raw: string;
  encoding?: 'base64' | 'utf8';
  envelope: { from: string; to: string[] };
  mailbox?: string;
  /** Send to suppressed addresses too (docs/bounces.md). */
  ignoreSuppression?: boolean;
}

/**
 * Headers a caller may not set through `headers`: the ones the fields above own (addresses, subject),
 * the MIME structure nodemailer builds, and trace headers only servers add. Setting them would make
 * the message say something other than what the API was asked for.
 */
const RESERVED_HEADERS = new Set([
  'from',
  'sender',
  'to',
  'cc',
  'bcc',
  'reply-to',
  'subject',
  'date',
  'mime-version',
  'content-type',
  'content-transfer-encoding',
  'content-disposition',
  'content-id',
  'received',
  'return-path',
  'dkim-signature',
  'arc-seal',
  'arc-message-signature',
  'arc-authentication-results',
  'authentication-results',
]);

/** Strictly base64 (RFC 4648 section 4), line breaks allowed as in MIME bodies. */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function decodeBase64(value: string, field: string): Buffer {
  const compact = value.replace(/[\r\n\t ]+/g, '');
  if (!BASE64.test(compact))
    throw apiError('R365_HTTP_INVALID_REQUEST', `${field} is not valid base64: encode the bytes with standard base64 (RFC 4648, with padding).`, { field });
  return Buffer.from(compact, 'base64');
}

/**
 * Any C0 control (but tab) or DEL in a value that becomes a header. The request schema already
 * refuses these; checking again here keeps the guarantee even if a schema is loosened later.
 */
function assertOneLine(value: string | undefined, field: string): void {
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is looked for
  if (value !== undefined && /[\u0000-\u0008\u000a-\u001f\u007f]/.test(value)) {
    throw apiError(
      'R365_HTTP_HEADER_LINE_BREAK',
      `${field} contains a line break or another control character. A header value must be one line of text: remove the CR/LF.`,
      { field },
    );
  }
}

function addresses(input: AddressInput | AddressInput[] | undefined, field: string): AddressInput[] | undefined {
  if (input === undefined) return undefined;
  const list = Array.isArray(input) ? input : [input];
  list.forEach((a, i) => {
    const at = Array.isArray(input) ? `${field}[${i}]` : field;
    if (typeof a === 'string') {
      assertOneLine(a, at);
      // Read as the header will be read: an entry nodemailer would rewrite or drop is refused instead.
      const parsed = parseMailboxList(a);
      if ('problem' in parsed || parsed.addresses.length !== 1)
        throw apiError(
          'R365_HTTP_INVALID_REQUEST',
          `${at} must be one address such as "Ops <ops@contoso.com>" or ops@contoso.com; ${JSON.stringify(a)} ${'problem' in parsed ? parsed.problem : `holds ${parsed.addresses.length} addresses`}.`,
          { field: at },
        );
    } else {
      assertOneLine(a.name, `${at}.name`);
      assertOneLine(a.address, `${at}.address`);
      if (!isAddrSpec(a.address))
        throw apiError('R365_HTTP_INVALID_REQUEST', `${at}.address must be a bare address such as ops@contoso.com; ${JSON.stringify(a.address)} is not one.`, {
          field: `${at}.address`,
        });
    }
  });
  return list;
}

/** The one address of `from`. */
function senderAddress(from: AddressInput): string {
  if (typeof from !== 'string') return from.address;
  const parsed = addressparser(from, { flatten: true });
  const first = parsed[0];
  if (parsed.length !== 1 || !first?.address)
    throw apiError('R365_HTTP_INVALID_REQUEST', 'from must be exactly one address, e.g. "Ops <ops@contoso.com>".', { field: 'from' });
  return first.address;
}

/** nodemailer's options for the body: content only from the request, never from files or URLs. */
function toMessageFields(body: SendMessageBody): MessageFields {
  assertOneLine(body.subject, 'subject');
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(body.headers ?? {})) {
    assertOneLine(name, `headers.${name}`);
    assertOneLine(value, `headers.${name}`);
    if (RESERVED_HEADERS.has(name.toLowerCase())) {
      throw apiError(
        'R365_HTTP_INVALID_REQUEST',
        `headers.${name} cannot be set as a custom header: use the ${name.toLowerCase()} field of the request if there is one.`,
        { field: `headers.${name}` },
      );
    }
    headers[name] = value;
  }
  const attachments = (body.attachments ?? []).map((a, i) => {
    const at = `attachments[${i}]`;
    assertOneLine(a.filename, `${at}.filename`);
    assertOneLine(a.contentType, `${at}.contentType`);
    assertOneLine(a.contentId, `${at}.contentId`);
    if (a.content === undefined)
      throw apiError('R365_HTTP_INVALID_REQUEST', `${at}.content is required: the file's bytes, base64-encoded.`, { field: `${at}.content` });
    return {
      content: decodeBase64(a.content, `${at}.content`),
      ...(a.filename !== undefined ? { filename: a.filename } : {}),
      ...(a.contentType !== undefined ? { contentType: a.contentType } : {}),
      ...(a.contentId !== undefined ? { cid: a.contentId.replace(/^<|>$/g, '') } : {}),
      ...(a.disposition !== undefined ? { contentDisposition: a.disposition } : {}),
    };
  });
  const fields: MessageFields = {
    from: addresses(body.from, 'from')![0]!,
    ...(body.to !== undefined ? { to: addresses(body.to, 'to')! } : {}),
    ...(body.cc !== undefined ? { cc: addresses(body.cc, 'cc')! } : {}),
    ...(body.bcc !== undefined ? { bcc: addresses(body.bcc, 'bcc')! } : {}),
    ...(body.replyTo !== undefined ? { replyTo: addresses(body.replyTo, 'replyTo')! } : {}),
    ...(body.subject !== undefined ? { subject: body.subject } : {}),
    ...(body.text !== undefined ? { text: body.text } : {}),
    ...(body.html !== undefined ? { html: body.html } : {}),
    ...(attachments.length > 0 ? { attachments } : {}),
    ...(Object.keys(headers).length > 0 ? { headers } : {}),
    // Belt and braces: nothing above names a file or URL, and nodemailer is told to refuse one anyway.
    disableFileAccess: true,
    disableUrlAccess: true,
  };
  return fields;
}

/** A message ready for the outbox, with the header From that routing uses. */
export interface ComposedRequest {
  message: OutgoingMessage;
  headerFrom: string | undefined;
  /** Every address of the message's originator fields (From, Sender, Resent-From, Resent-Sender): a key limited to some senders must allow each. */
  originators: string[];
}

/**
 * Builds the MIME of `POST /v1/messages` with nodemailer's composer.
 * @throws Relay365Error `R365_HTTP_HEADER_LINE_BREAK`, `R365_HTTP_INVALID_REQUEST`, `R365_MESSAGE_INVALID` (400)
 */
export async function composeFromFields(body: SendMessageBody): Promise<ComposedRequest> {
  const fields = toMessageFields(body);
  const headerFrom = senderAddress(body.from);
  try {
    return { message: await composeMessage(fields), headerFrom, originators: [headerFrom] };
  } catch (err) {
    if (isRelay365Error(err)) throw apiError(err.code, err.message, { field: /recipient/.test(err.message) ? 'to' : 'from' });
    throw apiError('R365_MESSAGE_INVALID', `The message cannot be built: ${(err as Error).message}.`);
  }
}

/**
 * The From address and every originator address of raw MIME, after the checks every door runs on a
 * header section (header-policy.ts). The message must have exactly one From address: this door
 * does not rewrite what it is given (the SMTP door adds a missing From from MAIL FROM, for devices
 * that cannot; an application can).
 */
function originatorsOf(raw: Buffer): { from: string; originators: string[] } {
  const check = checkHeaderSection(raw);
  if (!check.ok) throw apiError('R365_MESSAGE_INVALID', `The raw message cannot be relayed: ${check.problem}.`, { field: 'raw' });
  if (check.from.length !== 1)
    throw apiError(
      'R365_MESSAGE_INVALID',
      check.from.length === 0
        ? 'The raw message has no From header: add one (Exchange shows it to recipients and checks SendAs on it).'
        : 'The From header of the raw message must hold exactly one address.',
      { field: 'raw' },
    );
  return { from: check.from[0]!, originators: check.originators };
}

/** The length of the longest line of `raw`, without its line end. */
function longestLine(raw: Buffer): number {
  let longest = 0;
  let start = 0;
  for (let i = raw.indexOf(0x0a); i !== -1; i = raw.indexOf(0x0a, start)) {
    longest = Math.max(longest, i - start - (i > start && raw[i - 1] === 0x0d ? 1 : 0));
    start = i + 1;
  }
  return Math.max(longest, raw.length - start);
}

/**
 * Raw MIME of `POST /v1/messages/mime`, line ends made CRLF.
 * @throws Relay365Error `R365_HTTP_INVALID_REQUEST`, `R365_MESSAGE_INVALID` (400)
 */
export async function composeFromMime(body: SendMimeBody): Promise<ComposedRequest> {
  const raw = body.encoding === 'utf8' ? Buffer.from(body.raw, 'utf8') : decodeBase64(body.raw, 'raw');
  if (raw.length === 0) throw apiError('R365_HTTP_INVALID_REQUEST', 'raw is empty: send the whole message, headers and body.', { field: 'raw' });
  // What the SMTP door refuses, this door refuses too: SMTP cannot carry either to Exchange.
  if (raw.includes(0)) throw apiError('R365_MESSAGE_INVALID', 'raw holds NUL bytes, which SMTP cannot carry: encode binary content (base64).', { field: 'raw' });
  const longest = longestLine(raw);
  // RFC 5321 4.5.3.1.6: 1000 octets a line, CRLF included.
  if (longest > 998)
    throw apiError('R365_MESSAGE_INVALID', `raw has a line of ${longest} octets; SMTP allows 998 plus CRLF (RFC 5321 4.5.3.1.6): encode long lines (quoted-printable or base64).`, {
      field: 'raw',
    });
  const { from: headerFrom, originators } = originatorsOf(raw);
  const message = await composeMessage({ raw, envelope: { from: body.envelope.from, to: body.envelope.to } });
  return { message, headerFrom, originators };
}

/**
 * The outbox route of a message: the mailbox asked for (if it may send as the sender), else the
 * mailbox or pool whose address or alias the sender is.
 * @throws Relay365Error `R365_UNKNOWN_MAILBOX`, `R365_NO_ROUTE_FOR_SENDER` (422)
 */
export function routeFor(
  router: Pick<Router, 'routeMessage' | 'poolsOf'>,
  mailboxes: readonly string[],
  message: OutgoingMessage,
  headerFrom: string | undefined,
  mailbox: string | undefined,
): Route {
  const sender = headerFrom ?? message.envelope.from;
  const route = router.routeMessage(message.envelope.from, headerFrom);
  const noRoute = (who: string): never => {
    throw apiError(
      'R365_NO_ROUTE_FOR_SENDER',
      `${who} may send as ${sender}${headerFrom !== undefined && headerFrom.toLowerCase() !== message.envelope.from.toLowerCase() ? ` (envelope sender ${message.envelope.from})` : ''}. ` +
        'Send from a configured mailbox address, or add the address to the aliases of a mailbox that holds SendAs on it (Add-RecipientPermission).',
      { field: 'from' },
    );
  };
  if (mailbox === undefined) return route ?? noRoute('No configured mailbox');
  const wanted = mailbox.toLowerCase();
  if (!mailboxes.includes(wanted))
    throw apiError('R365_UNKNOWN_MAILBOX', `${mailbox} is not a configured mailbox; use one of: ${mailboxes.join(', ')}.`, { field: 'mailbox' });
  if (route === undefined) return noRoute(`Neither ${wanted} nor any other configured mailbox`);
  if (route.mailbox === wanted || (route.pool !== undefined && router.poolsOf(wanted).includes(route.pool))) return { mailbox: wanted };
  return noRoute(`The mailbox ${wanted}`);
}
