/** Turns the API's message bodies into MIME plus envelope, and decides which mailbox may send them. */
import addressparser from 'nodemailer/lib/addressparser';
import { composeMessage, type MessageFields } from '../../delivery/index.js';
import { isRelay365Error } from '../../errors.js';
import { isAddrSpec, parseMailboxList, type Envelope } from '../../message/index.js';
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

/** A request's message for the admission pipeline: its bytes (line ends as given) and its envelope. */
export interface ComposedRequest {
  raw: Buffer;
  envelope: Envelope;
}

/**
 * Builds the MIME of `POST /v1/messages` with nodemailer's composer.
 * @throws Relay365Error `R365_HTTP_HEADER_LINE_BREAK`, `R365_HTTP_INVALID_REQUEST`, `R365_MESSAGE_INVALID` (400)
 */
export async function composeFromFields(body: SendMessageBody): Promise<ComposedRequest> {
  const fields = toMessageFields(body);
  senderAddress(body.from);
  try {
    const { raw, envelope } = await composeMessage(fields);
    return { raw, envelope };
  } catch (err) {
    if (isRelay365Error(err)) throw apiError(err.code, err.message, { field: /recipient/.test(err.message) ? 'to' : 'from' });
    throw apiError('R365_MESSAGE_INVALID', `The message cannot be built: ${(err as Error).message}.`);
  }
}

/**
 * Raw MIME of `POST /v1/messages/mime`, as given: the admission pipeline checks its bytes and headers
 * as it checks SMTP DATA, and makes its line ends CRLF.
 * @throws Relay365Error `R365_HTTP_INVALID_REQUEST` (400)
 */
export function composeFromMime(body: SendMimeBody): ComposedRequest {
  const raw = body.encoding === 'utf8' ? Buffer.from(body.raw, 'utf8') : decodeBase64(body.raw, 'raw');
  if (raw.length === 0) throw apiError('R365_HTTP_INVALID_REQUEST', 'raw is empty: send the whole message, headers and body.', { field: 'raw' });
  return { raw, envelope: { from: body.envelope.from, to: [...body.envelope.to] } };
}
