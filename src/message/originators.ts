import addressparser from 'nodemailer/lib/addressparser';
import { headerBounds } from './headers.js';

/**
 * The originator fields a sender policy must see (RFC 5322 3.6.2 and 3.6.6): who the message says it
 * is from, who sent it on their behalf, and who resent it. Exchange shows each of them to recipients.
 */
const ORIGINATOR_FIELDS = ['from', 'sender', 'resent-from', 'resent-sender'] as const;
type OriginatorField = (typeof ORIGINATOR_FIELDS)[number];

/** What the header section says about its sender, or the first reason it cannot be relayed. */
export type HeaderCheck =
  | {
      ok: true;
      /** The From addresses, in order (empty: the message has no From field). */
      from: string[];
      /** Every address of every originator field (From, Sender, Resent-From, Resent-Sender). */
      originators: string[];
    }
  | { ok: false; problem: string; field?: string };

/** A field name (RFC 5322 3.6.8: printable US-ASCII but the colon), optionally followed by obsolete white space (4.5.3). */
const FIELD = /^([!-9;-~]+)[ \t]*:/;
/** An address relay365 can hand to Exchange: one `@`, something on either side, nothing that would end or split it. */
const ADDR_SPEC = /^[^\s@<>()[\]\\,;:"]+@[^\s@<>()[\]\\,;:"]+$/;

/**
 * Reads the header section of a message (the bytes before the first empty line) the way a receiving
 * MTA and Exchange would, and refuses what could show recipients a sender the policy never checked:
 * a bare CR or LF inside the section (a later hop may take it for a line end and a new field), a
 * first line that is a continuation (it would join the field relay365 puts before it), a line that
 * is no field, more than one From or Sender (RFC 5322 3.6 allows one each), a From, Sender or Resent
 * field whose value is not a plain list of addresses (`<a@x> <b@y>`, groups, unquoted angle
 * brackets), and an originator field with no address. Every door runs this same check, through the
 * admission pipeline.
 */
export function checkHeaderSection(raw: Buffer): HeaderCheck {
  const { end } = headerBounds(raw);
  const section = raw.subarray(0, end).toString('latin1');
  const crlf = section.includes('\r\n') || raw.subarray(end, end + 2).toString('latin1') === '\r\n';
  for (let i = 0; i < section.length; i++) {
    const c = section.charCodeAt(i);
    if (c === 0x0d && section.charCodeAt(i + 1) !== 0x0a) return { ok: false, problem: 'a header line holds a bare carriage return (CR without LF)' };
    if (c === 0x0a && crlf && section.charCodeAt(i - 1) !== 0x0d) return { ok: false, problem: 'a header line ends in a bare line feed among CRLF line ends' };
  }
  if (section.length > 0 && (section[0] === ' ' || section[0] === '\t'))
    return { ok: false, problem: 'the first header line starts with white space (a continuation of no field)' };
  const fields = new Map<OriginatorField, string[]>();
  // Unfold (RFC 5322 2.2.3), then one field a line.
  const lines = section.length === 0 ? [] : section.replace(/\r?\n(?=[ \t])/g, '').split(/\r?\n/);
  for (const line of lines) {
    const m = FIELD.exec(line);
    if (!m) return { ok: false, problem: `a header line is not a field (name: value): ${JSON.stringify(line.slice(0, 40))}` };
    const name = m[1]!.toLowerCase() as OriginatorField;
    if (!ORIGINATOR_FIELDS.includes(name)) continue;
    const values = fields.get(name) ?? [];
    // Header text may be UTF-8 (RFC 6532): decode it as such for the addresses.
    values.push(Buffer.from(line.slice(m[0].length), 'latin1').toString('utf8').trim());
    fields.set(name, values);
  }
  for (const once of ['from', 'sender'] as const) {
    if ((fields.get(once)?.length ?? 0) > 1) return { ok: false, problem: `the message has more than one ${display(once)} field`, field: display(once) };
  }
  const originators: string[] = [];
  let from: string[] = [];
  for (const name of ORIGINATOR_FIELDS) {
    for (const value of fields.get(name) ?? []) {
      const addresses = mailboxList(value);
      if (typeof addresses === 'string') return { ok: false, problem: `the ${display(name)} field ${addresses}`, field: display(name) };
      // Sender names exactly one mailbox (RFC 5322 3.6.2).
      if (name === 'sender' && addresses.length !== 1) return { ok: false, problem: 'the Sender field must hold exactly one address', field: 'Sender' };
      originators.push(...addresses);
      if (name === 'from') from = addresses;
    }
  }
  return { ok: true, from, originators };
}

/**
 * The addresses of `value` read as an RFC 5322 mailbox-list (`"Ops" <ops@contoso.com>, b@x.example`),
 * or why it is not one: the same reading the header check gives a From field. An API's address
 * fields use it so that nothing is silently rewritten (`x&y<b>@example.net` is refused, not sent to `b`).
 */
export function parseMailboxList(value: string): { addresses: string[] } | { problem: string } {
  const parsed = mailboxList(value);
  return typeof parsed === 'string' ? { problem: parsed } : { addresses: parsed };
}

/** True when `address` is a bare addr-spec relay365 can hand to Exchange. */
export function isAddrSpec(address: string): boolean {
  return ADDR_SPEC.test(address);
}

/** The addresses of a mailbox-list, or why it is not one relay365 relays. */
function mailboxList(value: string): string[] | string {
  // What remains outside quoted strings and comments decides how many angle addresses there are.
  const bare = value.replace(/"(?:[^"\\]|\\.)*"/g, '""').replace(/\((?:[^()\\]|\\.)*\)/g, '');
  const parsed = addressparser(value);
  if (parsed.some((p) => 'group' in p && p.group !== undefined)) return 'is a group; name the addresses themselves';
  const addresses = parsed.map((p) => p.address ?? '');
  if (addresses.length === 0 || addresses.every((a) => a === '')) return 'holds no address';
  const pieces = bare.split(',').filter((p) => p.trim() !== '');
  if (pieces.length !== addresses.length || pieces.some((p) => (p.match(/</g)?.length ?? 0) > 1 || (p.match(/>/g)?.length ?? 0) > 1))
    return 'holds angle brackets or addresses that do not form a list of mailboxes';
  // An entry without angle brackets is a bare addr-spec (RFC 5322 3.4): `a b@example.net` is no
  // address, though a lenient parser reads a display name `a` and an address `b@example.net`.
  const named = pieces.findIndex((p, i) => !p.includes('<') && p.trim() !== addresses[i]);
  if (named !== -1) return `holds ${JSON.stringify(pieces[named]!.trim())}, which is not an address (a display name needs the address in angle brackets)`;
  const bad = addresses.find((a) => !ADDR_SPEC.test(a));
  if (bad !== undefined) return `holds ${bad === '' ? 'an entry without an address' : `<${bad}>, which is not an address`}`;
  return addresses;
}

function display(name: OriginatorField): string {
  return name.replace(/(^|-)([a-z])/g, (_m, dash: string, c: string) => dash + c.toUpperCase());
}
