/**
 * The one reader of a message's header section (RFC 5322 2.1: everything before the first empty
 * line). Every part that needs a header field reads it here: the front doors, the admission checks,
 * the outbox's bounces, and delivery's MIME handling.
 */
import addressparser from 'nodemailer/lib/addressparser';

/** Where the header section ends and the body begins. */
export interface HeaderBounds {
  /** Offset of the end of the header section (its last line's line end excluded); 0 when the message starts with an empty line. */
  end: number;
  /** Offset of the body: after the empty line; the length of the message when there is none. */
  bodyStart: number;
}

/**
 * Finds the first empty line: CRLF CRLF, or LF LF for a client that sends bare line feeds. A message
 * that starts with an empty line has an empty header section; one without an empty line is all header.
 */
export function headerBounds(raw: Buffer | string): HeaderBounds {
  const first = typeof raw === 'string' ? raw.charCodeAt(0) : raw[0];
  const second = typeof raw === 'string' ? raw.charCodeAt(1) : raw[1];
  if (first === 0x0a) return { end: 0, bodyStart: 1 };
  if (first === 0x0d && second === 0x0a) return { end: 0, bodyStart: 2 };
  const crlf = raw.indexOf('\r\n\r\n');
  const lf = raw.indexOf('\n\n');
  if (crlf === -1 && lf === -1) return { end: raw.length, bodyStart: raw.length };
  if (crlf !== -1 && (lf === -1 || crlf < lf)) return { end: crlf, bodyStart: crlf + 4 };
  return { end: lf, bodyStart: lf + 2 };
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
  return {
    text: raw
      .subarray(0, headerBounds(raw).end)
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

/** The Message-ID of raw MIME (`<...>`), read from its header section. */
export function messageIdOf(raw: Buffer): string | undefined {
  const value = headerValues(readHeaders(raw), 'Message-ID')[0];
  return value === undefined ? undefined : /^(<[^>\r\n]+>)/.exec(value)?.[1];
}

/** The header section of a message as text (at most 64 KB), for a bounce's `text/rfc822-headers` part. */
export function headerBlock(raw: Buffer): string {
  return raw.subarray(0, Math.min(headerBounds(raw).end, 65_536)).toString('utf8');
}

/** Header fields of a header block, unfolded (RFC 5322 section 2.2.3), names in lower case. */
export function parseHeaderBlock(block: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of block.replace(/\r?\n[ \t]+/g, ' ').split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    out.set(name, [...(out.get(name) ?? []), line.slice(colon + 1).trim()]);
  }
  return out;
}

/** The header block and the body of a message or MIME part held as text (empty body when there is no blank line). */
export function splitHeaderBody(text: string): { head: string; body: string } {
  const { end, bodyStart } = headerBounds(text);
  return { head: text.slice(0, end), body: text.slice(bodyStart) };
}
