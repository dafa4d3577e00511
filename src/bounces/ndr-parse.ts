/**
 * Reads a non-delivery report (a delivery status notification): the `multipart/report;
 * report-type=delivery-status` of RFC 6522 with its `message/delivery-status` part (RFC 3464) and, when
 * the reporting server returns them, the original's headers (`text/rfc822-headers` or `message/rfc822`).
 * Exchange Online's NDRs are this shape (Microsoft Learn, "Email non-delivery reports and SMTP errors in
 * Exchange Online"; samples in test/fixtures/ndr). The input is untrusted mail: every size is bounded,
 * nothing throws on bad input, and a report that cannot be read says why.
 */

/** One recipient entry of a report (RFC 3464 section 2.3). */
export interface NdrRecipient {
  /** Final-Recipient's address (or Original-Recipient's when Final-Recipient has none), as written. */
  recipient: string;
  /** Original-Recipient's address, when the report has one. */
  originalRecipient?: string;
  /** Only `failed` and `delayed` entries are kept: `delivered`, `relayed` and `expanded` say nothing went wrong. */
  action: 'failed' | 'delayed';
  /** The DSN status code, e.g. `5.1.10` (RFC 3463). */
  status: string;
  /** Diagnostic-Code without its type (`smtp;`), unfolded; Exchange 2007's X-Supplementary-Info when there is none. */
  diagnostic?: string;
  /** Remote-MTA without its type (`dns;`). */
  remoteMta?: string;
}

/** What a report says. */
export interface ParsedNdr {
  reportingMta?: string;
  /** The original's Message-ID with angle brackets: from the returned headers, else In-Reply-To, else References. */
  originalMessageId?: string;
  /** Where `originalMessageId` came from. */
  messageIdFrom?: 'returned-headers' | 'in-reply-to' | 'references';
  recipients: NdrRecipient[];
}

export type NdrParseResult = { ok: true; report: ParsedNdr } | { ok: false; reason: string };

export interface NdrParseLimits {
  /** Larger input is refused without being read (default 10 MiB: an NDR returns at most the original's headers or a copy of it). */
  maxBytes?: number;
  /** Nesting of multiparts followed (default 5). */
  maxDepth?: number;
  /** MIME parts looked at in all (default 200). */
  maxParts?: number;
  /** Recipient entries kept (default 1000, twice Exchange Online's 500 recipients per message). */
  maxRecipients?: number;
}

const DEFAULTS: Required<NdrParseLimits> = { maxBytes: 10 * 1024 * 1024, maxDepth: 5, maxParts: 200, maxRecipients: 1000 };

/** RFC 3463 section 2: class.subject.detail, class 2, 4 or 5, subject and detail up to three digits. */
const STATUS = /^([245])\.(\d{1,3})\.(\d{1,3})$/;
/** `<left@right>`: what a Message-ID looks like (RFC 5322 section 3.6.4), bounded. */
const MESSAGE_ID = /<[^<>\s@]{1,500}@[^<>\s@]{1,500}>/;
const FIELD_NAME = /^[!-9;-~]+:/;

interface Part {
  headers: Map<string, string[]>;
  body: string;
}

/**
 * Header fields, unfolded, names in lower case. Tolerant of what real reports do: a continuation line
 * without leading white space (a line that does not start with a field name continues the previous one).
 */
export function parseHeaders(block: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let name: string | undefined;
  let value = '';
  const flush = (): void => {
    if (name !== undefined) out.set(name, [...(out.get(name) ?? []), value.trim()]);
  };
  for (const line of block.split(/\r?\n/)) {
    if (line.length === 0) continue;
    if (/^[ \t]/.test(line) || !FIELD_NAME.test(line)) {
      if (name !== undefined) value += ` ${line.trim()}`;
      continue;
    }
    flush();
    const colon = line.indexOf(':');
    name = line.slice(0, colon).toLowerCase();
    value = line.slice(colon + 1);
  }
  flush();
  return out;
}

function first(headers: Map<string, string[]>, name: string): string | undefined {
  return headers.get(name)?.[0];
}

/** A parameter of a structured header (`boundary`, `report-type`), quoted or not. */
function param(value: string | undefined, name: string): string | undefined {
  if (value === undefined) return undefined;
  const m = new RegExp(`(?:^|;)\\s*${name}\\s*=\\s*(?:"([^"]{0,200})"|([^;\\s]{1,200}))`, 'i').exec(value);
  return m ? (m[1] ?? m[2]) : undefined;
}

function mediaType(headers: Map<string, string[]>): string {
  return (first(headers, 'content-type') ?? 'text/plain').split(';')[0]!.trim().toLowerCase();
}

function splitPart(text: string): Part {
  const m = /\r?\n\r?\n/.exec(text);
  const head = m ? text.slice(0, m.index) : text;
  const body = m ? text.slice(m.index + m[0].length) : '';
  return { headers: parseHeaders(head), body };
}

function decode(part: Part): string {
  const encoding = (first(part.headers, 'content-transfer-encoding') ?? '').toLowerCase();
  if (encoding === 'base64') return Buffer.from(part.body.replace(/[^A-Za-z0-9+/=]/g, ''), 'base64').toString('latin1');
  if (encoding === 'quoted-printable')
    return part.body.replace(/=\r?\n/g, '').replace(/=([0-9A-Fa-f]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
  return part.body;
}

/** The parts of a multipart body (RFC 2046 section 5.1.1); the preamble and epilogue are dropped. */
function children(body: string, boundary: string, budget: { parts: number }): string[] {
  const delimiter = `--${boundary}`;
  const out: string[] = [];
  let at = body.startsWith(delimiter) ? 0 : body.indexOf(`\n${delimiter}`);
  if (at < 0) return out;
  if (at > 0) at += 1;
  while (at >= 0 && budget.parts > 0) {
    const lineEnd = body.indexOf('\n', at);
    if (body.startsWith(`${delimiter}--`, at) || lineEnd < 0) break;
    const next = body.indexOf(`\n${delimiter}`, lineEnd);
    const end = next < 0 ? body.length : next;
    out.push(body.slice(lineEnd + 1, end > lineEnd + 1 && body[end - 1] === '\r' ? end - 1 : end));
    budget.parts -= 1;
    at = next < 0 ? -1 : next + 1;
  }
  return out;
}

/** Strips an RFC 3464 type (`rfc822;`, `dns;`, `smtp;`) and angle brackets. */
function typed(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const semi = value.indexOf(';');
  const rest = (semi >= 0 ? value.slice(semi + 1) : value).trim();
  return rest.length > 0 ? rest : undefined;
}

function address(value: string | undefined): string | undefined {
  const raw = typed(value)?.replace(/^<|>$/g, '').trim();
  if (raw === undefined || raw.length > 320 || !/^[^\s@<>]+@[^\s@<>]+$/.test(raw)) return undefined;
  return raw;
}

/** A text that came from outside, safe to store and to quote in a reply: one line, printable, bounded. */
export function oneLine(value: string, max = 1000): string {
  // eslint-disable-next-line no-control-regex
  const flat = value.replace(/[\x00-\x1f\x7f]+/g, ' ').replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 3)}...` : flat;
}

/** The per-message and per-recipient field groups of a `message/delivery-status` body (RFC 3464 section 2.1). */
function deliveryStatus(text: string, limits: Required<NdrParseLimits>): { reportingMta?: string; recipients: NdrRecipient[] } {
  const groups = text
    .split(/\r?\n[ \t]*\r?\n/)
    .map((g) => g.trim())
    .filter((g) => g.length > 0);
  const perMessage = groups.length > 0 ? parseHeaders(groups[0]!) : new Map<string, string[]>();
  const recipients: NdrRecipient[] = [];
  for (const group of groups.slice(first(perMessage, 'reporting-mta') !== undefined ? 1 : 0)) {
    if (recipients.length >= limits.maxRecipients) break;
    const fields = parseHeaders(group.slice(0, 64 * 1024));
    const action = first(fields, 'action')?.toLowerCase().trim();
    const status = first(fields, 'status')?.trim().split(/\s/)[0];
    if ((action !== 'failed' && action !== 'delayed') || status === undefined || !STATUS.test(status)) continue;
    const finalRecipient = address(first(fields, 'final-recipient'));
    const originalRecipient = address(first(fields, 'original-recipient'));
    const recipient = finalRecipient ?? originalRecipient;
    if (recipient === undefined) continue;
    const diagnostic = typed(first(fields, 'diagnostic-code')) ?? first(fields, 'x-supplementary-info')?.replace(/^<|>$/g, '');
    const remoteMta = typed(first(fields, 'remote-mta'));
    recipients.push({
      recipient,
      ...(originalRecipient !== undefined && originalRecipient !== recipient ? { originalRecipient } : {}),
      action,
      status,
      ...(diagnostic !== undefined && diagnostic.trim() !== '' ? { diagnostic: oneLine(diagnostic) } : {}),
      ...(remoteMta !== undefined ? { remoteMta: oneLine(remoteMta, 255) } : {}),
    });
  }
  const reportingMta = typed(first(perMessage, 'reporting-mta'));
  return { ...(reportingMta !== undefined ? { reportingMta: oneLine(reportingMta, 255) } : {}), recipients };
}

function messageIdIn(value: string | undefined): string | undefined {
  return value === undefined ? undefined : MESSAGE_ID.exec(value)?.[0];
}

/**
 * Parses a report. `ok: false` (with the reason, for the log) when the input is too large, is not a
 * delivery report, or has no readable recipient entry; never throws.
 *
 * @example
 * ```ts
 * const parsed = parseNdr(await readFile('bounce.eml'));
 * if (parsed.ok) for (const r of parsed.report.recipients) console.log(r.recipient, r.status);
 * ```
 */
export function parseNdr(raw: Buffer | string, options: NdrParseLimits = {}): NdrParseResult {
  const limits = { ...DEFAULTS, ...options };
  const size = typeof raw === 'string' ? Buffer.byteLength(raw) : raw.length;
  if (size > limits.maxBytes) return { ok: false, reason: `the report is ${size} bytes, over the ${limits.maxBytes} read` };
  // latin1: one character a byte, so nothing in the bytes can fail to decode.
  const text = typeof raw === 'string' ? raw : raw.toString('latin1');
  const top = splitPart(text);
  const budget = { parts: limits.maxParts };
  let status: Part | undefined;
  let returned: Part | undefined;
  let sawReport = false;
  const walk = (part: Part, depth: number): void => {
    const type = mediaType(part.headers);
    if (type === 'message/delivery-status') status ??= part;
    else if (type === 'text/rfc822-headers' || type === 'message/rfc822') returned ??= part;
    if (!type.startsWith('multipart/') || depth >= limits.maxDepth) return;
    const contentType = first(part.headers, 'content-type');
    if (type === 'multipart/report' && param(contentType, 'report-type')?.toLowerCase() === 'delivery-status') sawReport = true;
    const boundary = param(contentType, 'boundary');
    if (boundary === undefined) return;
    for (const child of children(part.body, boundary, budget)) walk(splitPart(child), depth + 1);
  };
  walk(top, 0);
  if (!status) return { ok: false, reason: sawReport ? 'the report has no message/delivery-status part' : 'not a delivery status notification (no multipart/report with a message/delivery-status part)' };
  const { reportingMta, recipients } = deliveryStatus(decode(status).slice(0, 1024 * 1024), limits);
  if (recipients.length === 0) return { ok: false, reason: 'the delivery status names no failed or delayed recipient with a valid status' };
  let originalMessageId: string | undefined;
  let messageIdFrom: ParsedNdr['messageIdFrom'];
  if (returned) {
    // The returned part is the original's header block (text/rfc822-headers) or the whole original
    // (message/rfc822): either way its headers end at the first blank line.
    const body = decode(returned).slice(0, 256 * 1024);
    const end = body.search(/\r?\n\r?\n/);
    const headers = parseHeaders(end >= 0 ? body.slice(0, end) : body);
    originalMessageId = messageIdIn(first(headers, 'message-id'));
    if (originalMessageId) messageIdFrom = 'returned-headers';
  }
  if (originalMessageId === undefined) {
    originalMessageId = messageIdIn(first(top.headers, 'in-reply-to'));
    if (originalMessageId) messageIdFrom = 'in-reply-to';
  }
  if (originalMessageId === undefined) {
    // References lists the thread oldest first; the report answers the last one.
    const refs = first(top.headers, 'references')?.match(new RegExp(MESSAGE_ID.source, 'g'));
    originalMessageId = refs?.[refs.length - 1];
    if (originalMessageId) messageIdFrom = 'references';
  }
  return {
    ok: true,
    report: {
      ...(reportingMta !== undefined ? { reportingMta } : {}),
      ...(originalMessageId !== undefined ? { originalMessageId, messageIdFrom } : {}),
      recipients,
    },
  };
}
