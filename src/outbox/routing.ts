import type { Config } from '../config/index.js';

/** Where a message goes: one mailbox, or a pool of mailboxes that share an address. */
export type Route = { mailbox: string; pool?: undefined } | { pool: string; mailbox?: undefined };

/**
 * Maps sender addresses to sending mailboxes: a mailbox's own address, or an alias it may send as
 * (`aliases`). An alias listed by several mailboxes is a pool: any member may send it, which spreads
 * the load over their quotas.
 */
export class Router {
  private readonly byAddress = new Map<string, string[]>();
  private readonly poolsByMailbox = new Map<string, string[]>();

  constructor(mailboxes: Config['mailboxes']) {
    this.replace(mailboxes);
  }

  /** Routes for another set of mailboxes from now on (a reloaded config); every holder of this router sees them. */
  replace(mailboxes: Config['mailboxes']): void {
    this.byAddress.clear();
    this.poolsByMailbox.clear();
    for (const m of mailboxes) {
      const own = m.address.toLowerCase();
      this.add(own, own);
      for (const alias of m.aliases) this.add(alias.toLowerCase(), own);
    }
    for (const [address, members] of this.byAddress) {
      if (members.length < 2) continue;
      for (const member of members) this.poolsByMailbox.set(member, [...(this.poolsByMailbox.get(member) ?? []), address]);
    }
  }

  private add(address: string, mailbox: string): void {
    const list = this.byAddress.get(address) ?? [];
    if (!list.includes(mailbox)) list.push(mailbox);
    this.byAddress.set(address, list);
  }

  /** The route for a sender address, or undefined when no mailbox may send as it. */
  route(sender: string): Route | undefined {
    const members = this.byAddress.get(sender.toLowerCase());
    if (!members || members.length === 0) return undefined;
    if (members.length === 1) return { mailbox: members[0]! };
    return { pool: sender.toLowerCase() };
  }

  /**
   * The route for a message: the header From decides (Exchange checks SendAs on it); the envelope
   * sender must be sendable by the same mailbox or pool, or be empty (a bounce).
   */
  routeMessage(envelopeFrom: string, headerFrom: string | undefined): Route | undefined {
    const byHeader = this.route(headerFrom ?? envelopeFrom);
    if (!byHeader) return undefined;
    if (!envelopeFrom || headerFrom === undefined || envelopeFrom.toLowerCase() === headerFrom.toLowerCase()) return byHeader;
    const byEnvelope = this.route(envelopeFrom);
    if (!byEnvelope) return undefined;
    const members = (r: Route): string[] => (r.mailbox !== undefined ? [r.mailbox] : (this.byAddress.get(r.pool) ?? []));
    // Both must be sendable by one mailbox: choose one that can send both.
    const common = members(byHeader).filter((m) => members(byEnvelope).includes(m));
    if (common.length === 0) return undefined;
    return common.length === 1 || byHeader.mailbox ? { mailbox: byHeader.mailbox ?? common[0]! } : byHeader;
  }

  /** Pool addresses a mailbox is a member of. */
  poolsOf(mailbox: string): string[] {
    return this.poolsByMailbox.get(mailbox.toLowerCase()) ?? [];
  }

  /** Every address that may be used as a sender. */
  senders(): string[] {
    return [...this.byAddress.keys()];
  }
}
