import { isIPv4, isIPv6 } from 'node:net';

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
 * (`::ffff:10.0.0.0/104`) becomes its IPv4 network, so that it matches IPv4 peers. The config schema
 * checks `smtp.allowlist[].cidr` with it, so a range the relay cannot match never loads.
 */
export function parseCidr(text: string): Cidr | { problem: string } {
  const [addressPart = '', prefixPart, extra] = text.trim().split('/');
  if (extra !== undefined) return { problem: `${text} is not a CIDR range (address/prefix)` };
  let address = addressPart;
  let family: Cidr['family'];
  let max: number;
  if (isIPv4(address)) [family, max] = ['ipv4', 32];
  else if (isIPv6(address)) [family, max] = ['ipv6', 128];
  else return { problem: `${text} is not a CIDR range: ${addressPart} is not an IPv4 or IPv6 address` };
  let prefix = max;
  if (prefixPart !== undefined) {
    if (!/^\d{1,3}$/.test(prefixPart) || Number(prefixPart) > max)
      return { problem: `${text} is not a CIDR range: /${prefixPart} is not a prefix length for ${family === 'ipv4' ? 'IPv4 (0-32)' : 'IPv6 (0-128)'}` };
    prefix = Number(prefixPart);
  }
  const mapped = V4_MAPPED.exec(address);
  if (family === 'ipv6' && mapped && prefix >= 96) [family, address, prefix] = ['ipv4', mapped[1]!, prefix - 96];
  return { family, network: address, prefix };
}
