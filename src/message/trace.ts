/** Trace and identification fields relay365 adds to a message it accepts (RFC 5321 4.4, RFC 5322 3.6). */
import { randomUUID } from 'node:crypto';
import { isIP, isIPv6 } from 'node:net';
import { headerFromAddresses, headerValues, type HeaderSection } from './headers.js';

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

/** What the `Received:` field records about a transaction (RFC 5321 4.4); without `helo`, no `Received:` is added. */
export interface TraceInfo {
  /** The HELO/EHLO argument; only the SMTP door has one. */
  helo?: string;
  clientAddress?: string;
  hostname: string;
  /** `ESMTP`, `ESMTPS`, `ESMTPA`, `ESMTPSA` or `SMTP` (RFC 3848). */
  protocol?: string;
  id?: string;
  recipients: readonly string[];
  date: Date;
  /** The envelope sender: the From field of a message that has none (what the sender policy checked). */
  sender?: string;
}

/**
 * The trace and identification fields to put in front of a message: `Received:` for an SMTP transaction, and
 * `Message-ID:`, `Date:` and `From:` when the message lacks them (RFC 5322 3.6 requires Date; 3.6.4 asks for
 * Message-ID, and Exchange threads and deduplicates on it). Returns the bytes to prepend and the
 * message's Message-ID.
 */
export function traceFields(headers: HeaderSection, info: TraceInfo): { prefix: Buffer; messageId: string } {
  const { eol } = headers;
  const lines: string[] = [];
  if (info.helo !== undefined) {
    const client = info.clientAddress ?? '';
    const literal = isIPv6(client) ? `[IPv6:${client}]` : `[${client}]`;
    // RFC 5321 4.4: name a recipient only when there is one, or Bcc recipients would show.
    const only = info.recipients.length === 1 ? `${eol}\tfor <${info.recipients[0]!}>` : '';
    // The HELO argument is the client's to choose: keep to domain and address-literal characters so that it
    // cannot end the clause early (`;`), open a comment or carry 8-bit bytes into a 7-bit header.
    const helo = info.helo.replace(/[^A-Za-z0-9.\-_:[\]]/g, '?');
    lines.push(
      `Received: from ${helo} (${literal})${eol}\tby ${info.hostname} (relay365) with ${info.protocol ?? 'ESMTP'} id ${info.id ?? ''}${only};${eol}\t${rfc5322Date(info.date)}`,
    );
  }
  const existingId = headerValues(headers, 'Message-ID')[0];
  const messageId = existingId || `<${randomUUID()}@${messageIdDomain(info.hostname, headers)}>`;
  if (!existingId) lines.push(`Message-ID: ${messageId}`);
  if (headerValues(headers, 'Date').length === 0) lines.push(`Date: ${rfc5322Date(info.date)}`);
  // RFC 5322 3.6 requires a From. Without one, Exchange would show the sending mailbox, which the
  // client's sender policy may not allow: name the envelope sender the policy did check.
  if (info.sender && headerValues(headers, 'From').length === 0) lines.push(`From: <${info.sender}>`);
  return { prefix: lines.length === 0 ? Buffer.alloc(0) : Buffer.from(lines.map((l) => l + eol).join(''), 'utf8'), messageId };
}
