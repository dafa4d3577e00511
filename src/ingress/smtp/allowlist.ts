import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { parseCidr, unmapIPv4 } from '../../config/index.js';

// The parser is the config's (a CIDR the relay cannot match never loads); re-exported for the ingress.
export { parseCidr, unmapIPv4, type Cidr } from '../../config/index.js';

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
