/**
 * A minimal splitter for the top level of a `multipart/mixed` message, enough to send a message larger
 * than Graph's 4 MB request limit: the message without its biggest attachments becomes a draft, and
 * those attachments go up through upload sessions (Microsoft Learn: "Attach large files to Outlook
 * messages"). Only top-level, base64-encoded attachment parts are taken out; the MIME is handled as
 * latin1 text so that every byte maps to one character and back.
 */
import { parseHeaderBlock, splitHeaderBody } from '../message/index.js';

/** The header reader lives in src/message; re-exported for delivery's callers. */
export { parseHeaderBlock, splitHeaderBody };

/** An attachment taken out of the message, decoded. */
export interface SplitAttachment {
  name: string;
  contentType: string;
  content: Buffer;
}

/** The message without the attachments in `attachments`, and those attachments. */
export interface SplitMessage {
  draft: Buffer;
  attachments: SplitAttachment[];
}

interface Part {
  text: string;
  attachment: SplitAttachment | undefined;
}

const CRLF = '\r\n';

/** A parameter of a structured header (`boundary`, `filename`, `name`), quoted or not. */
export function headerParam(value: string | undefined, name: string): string | undefined {
  if (value === undefined) return undefined;
  const m = new RegExp(`(?:^|;)\\s*${name}\\s*=\\s*(?:"((?:[^"\\\\]|\\\\.)*)"|([^;\\s]+))`, 'i').exec(value);
  return m ? (m[1] ?? m[2])?.replace(/\\(.)/g, '$1') : undefined;
}

function describeAttachment(partText: string): SplitAttachment | undefined {
  const { head, body } = splitHeaderBody(partText);
  const headers = parseHeaderBlock(head);
  const disposition = headers.get('content-disposition')?.[0];
  const type = headers.get('content-type')?.[0] ?? 'application/octet-stream';
  const encoding = headers.get('content-transfer-encoding')?.[0]?.toLowerCase();
  if (!disposition?.toLowerCase().startsWith('attachment') || encoding !== 'base64') return undefined;
  // RFC 2231 continuations and encoded words are not decoded: the name is cosmetic for Graph's upload.
  const name = headerParam(disposition, 'filename') ?? headerParam(type, 'name') ?? 'attachment';
  return { name, contentType: type.split(';')[0]!.trim(), content: Buffer.from(body.replace(/[^A-Za-z0-9+/=]/g, ''), 'base64') };
}

/**
 * Takes the biggest top-level attachments out of a `multipart/mixed` message until what is left is at
 * most `maxDraftBytes`. Undefined when the message is not `multipart/mixed` (CRLF line ends) or cannot
 * be made small enough that way.
 */
export function splitLargeAttachments(raw: Buffer, maxDraftBytes: number): SplitMessage | undefined {
  const text = raw.toString('latin1');
  const { head, body } = splitHeaderBody(text);
  const contentType = parseHeaderBlock(head).get('content-type')?.[0];
  const boundary = headerParam(contentType, 'boundary');
  if (!contentType?.toLowerCase().startsWith('multipart/mixed') || !boundary) return undefined;
  const delimiter = `--${boundary}`;
  let start = body.startsWith(delimiter) ? 0 : body.indexOf(`${CRLF}${delimiter}`);
  if (start < 0) return undefined;
  if (start > 0) start += 2;
  const preamble = body.slice(0, start);
  const parts: Part[] = [];
  let epilogue: string;
  let cursor = start + delimiter.length;
  for (;;) {
    const lineEnd = body.indexOf(CRLF, cursor);
    if (lineEnd < 0) return undefined;
    const next = body.indexOf(`${CRLF}${delimiter}`, lineEnd + 2);
    if (next < 0) return undefined;
    const partText = body.slice(lineEnd + 2, next);
    parts.push({ text: partText, attachment: undefined });
    cursor = next + 2 + delimiter.length;
    if (body.startsWith('--', cursor)) {
      epilogue = body.slice(cursor + 2);
      break;
    }
  }
  const candidates = parts.map((p, i) => ({ i, size: p.text.length })).sort((a, b) => b.size - a.size);
  const removed = new Set<number>();
  let size = raw.length;
  for (const c of candidates) {
    if (size <= maxDraftBytes) break;
    const attachment = describeAttachment(parts[c.i]!.text);
    if (!attachment) continue;
    parts[c.i]!.attachment = attachment;
    removed.add(c.i);
    size -= c.size + delimiter.length + 4;
  }
  if (size > maxDraftBytes || removed.size === 0) return undefined;
  const kept = parts.filter((_, i) => !removed.has(i)).map((p) => p.text);
  // A multipart needs at least one part (RFC 2046 section 5.1.1).
  if (kept.length === 0) kept.push(`Content-Type: text/plain; charset=utf-8${CRLF}`);
  const draft = `${head}${CRLF}${CRLF}${preamble}${kept.map((p) => `${delimiter}${CRLF}${p}${CRLF}`).join('')}${delimiter}--${epilogue}`;
  return { draft: Buffer.from(draft, 'latin1'), attachments: parts.filter((_, i) => removed.has(i)).map((p) => p.attachment!) };
}
