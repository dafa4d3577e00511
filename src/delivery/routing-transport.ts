import type { OutgoingMessage, SendResult, Transport } from './types.js';

/**
 * Sends each mailbox's messages through the transport its config names (`mailboxes[].transport`):
 * SMTP for most, Graph for some. Mailboxes not in the map use the fallback.
 */
export class RoutingTransport implements Transport {
  constructor(
    /** The transport per mailbox (lower-case address). */
    private readonly byMailbox: ReadonlyMap<string, Transport>,
    private readonly fallback: Transport,
  ) {}

  send(mailbox: string, message: OutgoingMessage): Promise<SendResult> {
    return (this.byMailbox.get(mailbox.toLowerCase()) ?? this.fallback).send(mailbox, message);
  }

  async close(): Promise<void> {
    const all = new Set([this.fallback, ...this.byMailbox.values()]);
    await Promise.all([...all].map((t) => t.close()));
  }
}

/**
 * The transport for a set of mailboxes: the SMTP one alone when no mailbox uses Graph (Graph's is then
 * never built), else a {@link RoutingTransport} that sends Graph mailboxes through `graph()`.
 */
export function transportForMailboxes(
  mailboxes: ReadonlyArray<{ address: string; transport?: 'smtp' | 'graph' }>,
  smtp: Transport,
  graph: () => Transport,
): Transport {
  const graphMailboxes = mailboxes.filter((m) => m.transport === 'graph');
  if (graphMailboxes.length === 0) return smtp;
  const g = graph();
  return new RoutingTransport(new Map(graphMailboxes.map((m) => [m.address.toLowerCase(), g])), smtp);
}
