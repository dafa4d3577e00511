import { domainToASCII } from 'node:url';

/**
 * An address with its domain in ASCII (A-labels, RFC 5890) and the local part as given: smtp-server
 * turns IDN domains into Unicode, while the config, the Router and Exchange use the ASCII form.
 */
export function asciiAddress(address: string): string {
  const at = address.lastIndexOf('@');
  if (at < 0) return address;
  return `${address.slice(0, at)}@${asciiDomain(address.slice(at + 1))}`;
}

/** A domain in lower-case ASCII; one that is not a valid IDN stays as given (lower case). */
export function asciiDomain(domain: string): string {
  const lower = domain.toLowerCase();
  return domainToASCII(lower) || lower;
}

/** The form two addresses are compared in: ASCII domain, all lower case. */
export function addressKey(address: string): string {
  return asciiAddress(address).toLowerCase();
}

/**
 * Which sender addresses a local user or an allowlist entry may use: its `allowedSenders` rules
 * (exact addresses or `@domain`, case-insensitive, IDN domains in either form). Without rules every
 * address is allowed here, which leaves the Router's check (a mailbox must be able to send as it)
 * as the only limit.
 */
export class SenderPolicy {
  private readonly addresses = new Set<string>();
  private readonly domains = new Set<string>();
  /** False when the holder has no `allowedSenders`. */
  readonly restricted: boolean;

  constructor(rules: readonly string[] | undefined) {
    this.restricted = rules !== undefined;
    for (const rule of rules ?? []) {
      if (rule.startsWith('@')) this.domains.add(asciiDomain(rule.slice(1)));
      else this.addresses.add(addressKey(rule));
    }
  }

  /** True when the rules let the holder send as `address`. */
  allows(address: string): boolean {
    if (!this.restricted) return true;
    const key = addressKey(address);
    return this.addresses.has(key) || this.domains.has(key.slice(key.lastIndexOf('@') + 1));
  }
}
