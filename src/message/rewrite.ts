import { headerBounds } from './headers.js';

/** Where a rewritten message keeps the device's own address. */
export type KeepSender = 'replyTo' | 'displayName' | 'none';

/** Sender rewriting for a fixed-sender device (config `rewriteSender`). */
export interface SenderRewrite {
  /** The address the message goes out From: a mailbox or an alias of one. */
  to: string;
  keep: KeepSender;
}

/** The fields a rewrite replaces: who the message says it is from, and who sent it for them (RFC 5322 3.6.2). */
const REPLACED = /^(from|sender)[ \t]*:/i;
const REPLY_TO = /^reply-to[ \t]*:/i;

/** A display name as an RFC 5322 quoted-string (3.2.4): backslash and double quote escaped. */
function quoted(text: string): string {
  return `"${text.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/**
 * Rewrites the header section of `raw` so that the message is From `rewrite.to`, as Exchange requires
 * (the mailbox must hold SendAs on the From; a device's own `scanner@printer.local` it never does).
 * From and Sender fields are replaced by one `From: <to>`; the device's From is kept as `Reply-To` (when the
 * message has none, so that replies still reach the device's owner) or as From's display name
 * (`"scanner@printer.local" <to>`), or dropped. The body and every other field stay byte for byte.
 * `deviceFrom` is the device's From field value, or its envelope sender when it has no From.
 */
export function rewriteFrom(raw: Buffer, rewrite: SenderRewrite, device: { fromValue: string | undefined; address: string }): Buffer {
  const { end, bodyStart } = headerBounds(raw);
  const section = raw.subarray(0, end).toString('latin1');
  const eol = section.includes('\r\n') || raw.subarray(end, end + 2).toString('latin1') === '\r\n' || end === 0 ? '\r\n' : '\n';
  // One field a group of lines: a line starting with white space continues the one before (RFC 5322 2.2.3).
  const fields: string[] = [];
  for (const line of section.length === 0 ? [] : section.split(/\r?\n/)) {
    if ((line.startsWith(' ') || line.startsWith('\t')) && fields.length > 0) fields[fields.length - 1] += eol + line;
    else fields.push(line);
  }
  const kept = fields.filter((f) => !REPLACED.test(f));
  const hasReplyTo = kept.some((f) => REPLY_TO.test(f));
  // Header text is kept as bytes (latin1 round trip); the device's value was read as UTF-8 (RFC 6532).
  const latin1 = (text: string): string => Buffer.from(text, 'utf8').toString('latin1');
  const from = rewrite.keep === 'displayName' ? `From: ${latin1(quoted(device.address))} <${rewrite.to}>` : `From: <${rewrite.to}>`;
  const added = [from];
  if (rewrite.keep === 'replyTo' && !hasReplyTo) added.push(`Reply-To: ${latin1(device.fromValue ?? `<${device.address}>`)}`);
  const head = [...added, ...kept].join(eol) + eol + eol;
  return Buffer.concat([Buffer.from(head, 'latin1'), raw.subarray(bodyStart)]);
}
