/**
 * The byte rules of a message in transit: CRLF line ends (RFC 5321 2.3.8), no NUL (RFC 5321 2.3.8,
 * RFC 6152), lines of at most 1000 octets with CRLF (RFC 5321 4.5.3.1.6). Every door checks them the
 * same way, through {@link MessageCollector} or {@link scanBytes}.
 */

/** RFC 5321 4.5.3.1.6: a text line is at most 1000 octets, CRLF included. */
export const MAX_LINE_OCTETS = 1000;

/** Whether these bytes hold an empty line (LF LF, or CRLF CRLF). */
function holdsEmptyLine(bytes: Buffer): boolean {
  return bytes.includes('\n\n') || bytes.includes('\r\n\r\n');
}

/**
 * Reads a message chunk by chunk (a DATA stream, or a whole buffer at once): keeps the bytes up to
 * `maxBytes` (past it only counts, since an oversized message is refused anyway), and notes the
 * longest line and whether a NUL byte came by.
 */
export class MessageCollector {
  private readonly chunks: Buffer[] = [];
  /** Bytes received (after dot-unstuffing), including any past the limit. */
  size = 0;
  /**
   * Longest line in octets with a CRLF line end, as it goes to Exchange: a line ending in a bare LF
   * counts one octet more, since the CR is added on the way (toCrlf, nodemailer).
   */
  longestLine = 0;
  hasNul = false;
  /** A line ended in LF without CR: the bytes need {@link toCrlf} before they are stored. */
  bareLf = false;
  private currentLine = 0;
  /** The last byte of the previous chunk (a CR there may end a line whose LF opens the next chunk). */
  private lastByte = -1;
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
      if (startsBlank || holdsEmptyLine(chunk) || (seam !== undefined && holdsEmptyLine(seam))) this.headChunks = this.chunks.length;
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
      const before = lf > 0 ? chunk[lf - 1] : this.lastByte;
      if (before !== 0x0d) this.bareLf = true;
      this.longestLine = Math.max(this.longestLine, this.currentLine + lf - start + 1 + (before === 0x0d ? 0 : 1));
      this.currentLine = 0;
      start = lf + 1;
    }
    if (chunk.length > 0) this.lastByte = chunk[chunk.length - 1]!;
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
   * reading headers without a copy of the whole message; all of it when the section never ends.
   */
  head(): Buffer {
    const chunks = this.headChunks === undefined ? this.chunks : this.chunks.slice(0, this.headChunks);
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
  }
}

/** What {@link scanBytes} found in a whole message: the inputs of the byte rules. */
export interface ByteScan {
  size: number;
  hasNul: boolean;
  /** Some line ends in a bare LF (undefined: not known, check). */
  bareLf?: boolean;
  /** Longest line in octets with CRLF (an unterminated last line counts as it is). */
  longest: number;
}

/** Scans a message already in memory (an HTTP body, a file) as the SMTP door scans DATA. */
export function scanBytes(raw: Buffer): ByteScan {
  const collector = new MessageCollector(Number.POSITIVE_INFINITY);
  collector.push(raw);
  return { size: raw.length, hasNul: collector.hasNul, bareLf: collector.bareLf, longest: collector.longest };
}

/**
 * SMTP carries lines ending in CRLF (RFC 5321 section 2.3.8) and nodemailer converts bare LFs on the
 * wire; converting here makes the stored bytes the bytes that are sent.
 */
export function toCrlf(raw: Buffer): Buffer {
  if (!raw.includes(0x0a)) return raw;
  let bare = false;
  for (let i = raw.indexOf(0x0a); i !== -1; i = raw.indexOf(0x0a, i + 1)) {
    if (i === 0 || raw[i - 1] !== 0x0d) {
      bare = true;
      break;
    }
  }
  return bare ? Buffer.from(raw.toString('latin1').replace(/\r?\n/g, '\r\n'), 'latin1') : raw;
}
