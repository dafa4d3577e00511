import { randomUUID } from 'node:crypto';
import { isIP, isIPv6 } from 'node:net';
import addressparser from 'nodemailer/lib/addressparser';

/** RFC 5321 4.5.3.1.6: a text line is at most 1000 octets, CRLF included. */
export const MAX_LINE_OCTETS = 1000;

/** Whether these bytes hold an empty line (LF LF, or CRLF CRLF). */
function endsHeaderSection(bytes: Buffer): boolean {
  return bytes.includes('\n\n') || bytes.includes('\r\n\r\n');
}

/**
 * Reads a DATA stream chunk by chunk: keeps the bytes up to `maxBytes` (past it only counts, since an
 * oversized message is refused anyway), and notes the longest line and whether a NUL byte came by.
 */
export class MessageCollector {
  private readonly chunks: Buffer[] = [];
  /** Bytes received (after dot-unstuffing), including any past the limit. */
  size = 0;
  /** Longest line in octets, line ending included. */
  longestLine = 0;
  hasNul = false;
  private currentLine = 0;
  /** How many chunks hold the header section and the empty line after it; undefined until it ended. */
  private headChunks: number | undefined;
  /** The last bytes of the chunks so far, so an empty line split across two chunks is seen. */
  private tail = Buffer.alloc(0);

  constructor(private readonly maxBytes: number) {}

  push(chunk: Buffer): void {
    this.size += chunk.length;
    if (this.size > this.maxBytes) return;
    this.chunks.push(chunk);
    if (!this.hasNul && chunk.includes(0)) this.hasNul = true;
    if (this.headChunks === undefined) {
      // A blank line ends the header section; so does a message that starts with one. Each chunk is
      // searched where it lies, and its first 3 bytes once more behind the last 3 before it, for an
      // empty line split between chunks: no chunk is copied.
      const startsBlank = this.size === chunk.length && (chunk[0] === 0x0a || (chunk[0] === 0x0d && chunk[1] === 0x0a));
      const seam = this.tail.length > 0 ? Buffer.concat([this.tail, chunk.subarray(0, 3)]) : undefined;
      if (startsBlank || endsHeaderSection(chunk) || (seam !== undefined && endsHeaderSection(seam))) this.headChunks = this.chunks.length;
      else this.tail = Buffer.concat([this.tail, chunk.subarray(-3)]).subarray(-3);
    }
    // Native indexOf keeps a 35 MB message to a few milliseconds of scanning.
    let start = 0;
    for (;;) {
      const lf = chunk.indexOf(0x0a, start);
      if (lf === -1) {
        this.currentLine += chunk.length - start;
        break;
      }
      this.longestLine = Math.max(this.longestLine, this.currentLine + lf - start + 1);
      this.currentLine = 0;
      start = lf + 1;
    }
  }

  get oversized(): boolean {
    return this.size > this.maxBytes;
  }

  /** The longest line, counting an unterminated last line too. */
  get longest(): number {
    return Math.max(this.longestLine, this.currentLine);
  }

  /** The message as received, after `prefix`; only meaningful when not {@link oversized}. */
  bytes(prefix?: Buffer): Buffer {
    const size = Math.min(this.size, this.maxBytes);
    return prefix ? Buffer.concat([prefix, ...this.chunks], prefix.length + size) : Buffer.concat(this.chunks, size);
  }

  /**
   * The start of the message that holds its whole header section (and the empty line ending it), for
   * {@link readHeaders} without a copy of the whole message; all of it when the section never ends.
   */
  head(): Buffer {
    const chunks = this.headChunks === undefined ? this.chunks : this.chunks.slice(0, this.headChunks);
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
  }
}

/** The header section of a message, unfolded (RFC 5322 2.2.3), and the line ending it uses. */
export interface HeaderSection {
  /** Unfolded header text, one field a line. */
  text: string;
  /** `\r\n`, or `\n` for a client that sends bare line feeds. */
  eol: '\r\n' | '\n';
}

/** Reads the header section: everything before the first empty line (RFC 5322 2.1). */
export function readHeaders(raw: Buffer): HeaderSection {
  const firstLf = raw.indexOf(0x0a);
  const eol = firstLf > 0 && raw[firstLf - 1] !== 0x0d ? '\n' : '\r\n';
  let end: number;
  if (raw.subarray(0, 2).toString('latin1') === '\r\n' || raw[0] === 0x0a) end = 0;
  else {
    const ends = [raw.indexOf('\r\n\r\n'), raw.indexOf('\n\n')].filter((i) => i !== -1);
    end = ends.length > 0 ? Math.min(...ends) : raw.length;
  }
  return {
    text: raw
      .subarray(0, end)
      .toString('utf8')
      .replace(/\r?\n[ \t]+/g, ' '),
    eol,
  };
}

/** A field's pattern, compiled once per name (every message asks for From, Message-ID and Date). */
const fieldPatterns = new Map<string, RegExp>();

/** Every value of a header field (case-insensitive name), trimmed. */
export function headerValues(headers: HeaderSection, name: string): string[] {
  let re = fieldPatterns.get(name);
  if (!re) fieldPatterns.set(name, (re = new RegExp(`^${name}[ \\t]*:[ \\t]*(.*?)\\r?$`, 'gim')));
  // matchAll works on a copy of the pattern, so the shared one keeps no lastIndex between calls.
  return [...headers.text.matchAll(re)].map((m) => m[1]!.trim());
}

/**
 * The addresses of every `From:` field. A field present but holding no address gives an empty
 * string, so the caller refuses it rather than falling back to the envelope.
 */
export function headerFromAddresses(headers: HeaderSection): string[] {
  return headerValues(headers, 'From').flatMap((value) => {
    const addresses = addressparser(value, { flatten: true })
      .map((a) => a.address)
      .filter((a): a is string => typeof a === 'string' && a.length > 0);
    return addresses.length > 0 ? addresses : [''];
  });
}

/** RFC 5322 3.3 date-time, in UTC: `Tue, 24 Nov 2026 07:27:00 +0000`. */
export function rfc5322Date(date: Date): string {
  return date.toUTCString().replace(/GMT$/, '+0000');
}

/** A name that can stand on its own on the Internet: dotted, not an address literal, not the loopback's. */
function isQualifiedDomain(name: string): boolean {
  const n = name.toLowerCase().replace(/\.$/, '');
  return (
    n.includes('.') &&
    !n.startsWith('.') &&
    isIP(n) === 0 &&
    !/^\[.*\]$/.test(n) &&
    n !== 'localhost' &&
    !n.endsWith('.localdomain') &&
    !n.endsWith('.localhost')
  );
}

/**
 * The right side of a Message-ID relay365 adds (RFC 5322 3.6.4: a domain that makes the id unique
 * worldwide): the relay's name when it is a fully qualified one (`smtp.hostname: relay.contoso.com`),
 * else the domain of the message's From, as nodemailer does for API messages. A machine's bare name
 * (`vm`) means nothing outside it, and spam filters score such ids as forged.
 */
export function messageIdDomain(hostname: string, headers: HeaderSection): string {
  if (isQualifiedDomain(hostname)) return hostname.replace(/\.$/, '');
  const fromDomain = headerFromAddresses(headers)
    .map((a) => a.slice(a.lastIndexOf('@') + 1))
    .find((d) => d !== '' && /^[A-Za-z0-9.-]+$/.test(d) && isQualifiedDomain(d));
  return fromDomain ?? hostname;
}

/** What the `Received:` field records about a transaction (RFC 5321 4.4). */
export interface TraceInfo {
  /** The HELO/EHLO argument. */
  helo: string;
  clientAddress: string;
  hostname: string;
  /** `ESMTP`, `ESMTPS`, `ESMTPA`, `ESMTPSA` or `SMTP` (RFC 3848). */
  protocol: string;
  id: string;
  recipients: readonly string[];
  date: Date;
  /** The envelope sender: the From field of a message that has none (what the sender policy checked). */
  sender?: string;
}

/**
 * The trace and identification fields to put in front of a message: `Received:` always, and
 * `Message-ID:`, `Date:` and `From:` when the message lacks them (RFC 5322 3.6 requires Date; 3.6.4 asks for
 * Message-ID, and Exchange threads and deduplicates on it). Returns the bytes to prepend and the
 * message's Message-ID.
 */
export function traceFields(headers: HeaderSection, info: TraceInfo): { prefix: Buffer; messageId: string } {
  const { eol } = headers;
  const literal = isIPv6(info.clientAddress) ? `[IPv6:${info.clientAddress}]` : `[${info.clientAddress}]`;
  // RFC 5321 4.4: name a recipient only when there is one, or Bcc recipients would show.
  const only = info.recipients.length === 1 ? `${eol}\tfor <${info.recipients[0]!}>` : '';
  // The HELO argument is the client's to choose: keep to domain and address-literal characters so that it
  // cannot end the clause early (`;`), open a comment or carry 8-bit bytes into a 7-bit header.
  const helo = info.helo.replace(/[^A-Za-z0-9.\-_:[\]]/g, '?');
  const lines = [
    `Received: from ${helo} (${literal})${eol}\tby ${info.hostname} (relay365) with ${info.protocol} id ${info.id}${only};${eol}\t${rfc5322Date(info.date)}`,
  ];
  const existingId = headerValues(headers, 'Message-ID')[0];
  const messageId = existingId || `<${randomUUID()}@${messageIdDomain(info.hostname, headers)}>`;
  if (!existingId) lines.push(`Message-ID: ${messageId}`);
  if (headerValues(headers, 'Date').length === 0) lines.push(`Date: ${rfc5322Date(info.date)}`);
  // RFC 5322 3.6 requires a From. Without one, Exchange would show the sending mailbox, which the
  // client's sender policy may not allow: name the envelope sender the policy did check.
  if (info.sender && headerValues(headers, 'From').length === 0) lines.push(`From: <${info.sender}>`);
  return { prefix: Buffer.from(lines.map((l) => l + eol).join(''), 'utf8'), messageId };
}
