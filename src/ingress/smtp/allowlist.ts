import { BlockList, isIPv4, isIPv6 } from 'node:net';

/** `::ffff:a.b.c.d`: how a dual-stack socket reports an IPv4 peer (RFC 4291 2.5.5.2). */
const V4_MAPPED = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i;

/** The IPv4 address behind an IPv4-mapped IPv6 address, or the address unchanged. */
export function unmapIPv4(address: string): string {
  const m = V4_MAPPED.exec(address);
  return m ? m[1]! : address;
}

/** A parsed CIDR: one address family, a network and a prefix length. */
export interface Cidr {
  family: 'ipv4' | 'ipv6';
  network: string;
  prefix: number;
}

/**
 * Parses `a.b.c.d/n`, `x:y::/n` or a bare address (a /32 or /128). An IPv4-mapped IPv6 network
 * (`::ffff:10.0.0.0/104`) becomes its IPv4 network, so that it matches IPv4 peers.
 */
export function parseCidr(text: string): Cidr | { problem: string } {
  const [addressPart = '', prefixPart, extra] = text.trim().split('/');
  if (extra !== undefined) return { problem: `${text} is not a CIDR (address/prefix)` };
  let address = addressPart;
  let family: Cidr['family'];
  let max: number;
  if (isIPv4(address)) [family, max] = ['ipv4', 32];
  else if (isIPv6(address)) [family, max] = ['ipv6', 128];
  else return { problem: `${addressPart} is not an IPv4 or IPv6 address` };
  let prefix = max;
  if (prefixPart !== undefined) {
    if (!/^\d{1,3}$/.test(prefixPart) || Number(prefixPart) > max)
      return { problem: `/${prefixPart} is not a prefix length for ${family === 'ipv4' ? 'IPv4 (0-32)' : 'IPv6 (0-128)'}` };
    prefix = Number(prefixPart);
  }
  const mapped = V4_MAPPED.exec(address);
  if (family === 'ipv6' && mapped && prefix >= 96) [family, address, prefix] = ['ipv4', mapped[1]!, prefix - 96];
  return { family, network: address, prefix };
}

/** Client addresses whose allowlist answer is remembered. */
const RECENT_ADDRESSES = 1024;

/** One allowlist entry, matched by client address. */
export interface AllowlistEntry<T> {
  cidr: string;
  value: T;
}

/**
 * Client addresses that may relay without AUTH, as CIDRs of either family. The first entry that
 * holds the address wins, so an entry's sender rules apply to exactly the addresses it lists.
 */
export class Allowlist<T> {
  private readonly entries: Array<{ list: BlockList; entry: AllowlistEntry<T> }> = [];
  /** Recent answers by address: each command of a session asks again, and BlockList.check is not free. */
  private readonly recent = new Map<string, AllowlistEntry<T> | undefined>();

  /** @throws Error when a CIDR does not parse (validate with {@link parseCidr} first to report nicely). */
  constructor(entries: ReadonlyArray<AllowlistEntry<T>>) {
    for (const entry of entries) {
      const cidr = parseCidr(entry.cidr);
      if ('problem' in cidr) throw new Error(cidr.problem);
      const list = new BlockList();
      list.addSubnet(cidr.network, cidr.prefix, cidr.family);
      this.entries.push({ list, entry });
    }
  }

  /** The entry holding a client address (IPv4-mapped IPv6 addresses count as IPv4), if any. */
  match(address: string): AllowlistEntry<T> | undefined {
    if (this.recent.has(address)) return this.recent.get(address);
    const plain = unmapIPv4(address);
    const family = isIPv4(plain) ? 'ipv4' : isIPv6(plain) ? 'ipv6' : undefined;
    const entry = family ? this.entries.find((e) => e.list.check(plain, family))?.entry : undefined;
    // Bounded: a flood of client addresses only empties the memo.
    if (this.recent.size >= RECENT_ADDRESSES) this.recent.clear();
    this.recent.set(address, entry);
    return entry;
  }
}
