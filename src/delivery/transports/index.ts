import type { MailboxTransport } from '../../config/index.js';
import { reviewPermissions, type PermissionFinding, type TokenSummary } from '../../identity/index.js';
import type { OutgoingMessage, SendResult, Transport } from '../types.js';
import type { TransportContext, TransportDescriptor } from './descriptor.js';
import { graphTransport } from './graph.js';
import { smtpTransport } from './smtp.js';

export type { TransportContext, TransportDescriptor, TransportDoctor, TransportLimit } from './descriptor.js';

/**
 * Adding a transport (say Azure Communication Services Email) touches these files:
 * 1. `src/config/schema.ts`: its name in `MAILBOX_TRANSPORTS` (and the `transport` field's description);
 * 2. `src/identity/clouds.ts`: its scopes in `TRANSPORT_SCOPES` (identity asks tokens with them);
 * 3. `src/delivery/transports/<name>.ts`: its descriptor (permissions, doctor skips, catalogue rows, limits,
 *    endpoint, builder) and, unless it is large, the transport itself;
 * 4. this file: one line in {@link TRANSPORTS};
 * 5. its catalogue rows: in the descriptor's file while they are few; as the catalogue grows, a file in
 *    `src/catalogue/` exported from its `index.ts` (then six files);
 * and its docs page (docs/configuration.md is generated from the schema). TypeScript fails on 2 and 4 until
 * they are done. Nothing in the runtime, the library, the CLI, the doctor
 * or `relay365 permissions` changes: they all read the descriptor.
 *
 * Every transport, by its config name: the one place that knows them. The relay runtime, the library
 * (`createMailer`), the CLI and the doctor all look transports up here. The record's type makes a name
 * added to the config's `MAILBOX_TRANSPORTS` fail to compile until its descriptor is listed.
 */
export const TRANSPORTS: Readonly<Record<MailboxTransport, TransportDescriptor>> = {
  smtp: smtpTransport,
  graph: graphTransport,
};

/** The descriptor of a config's transport name; `smtp` (the config's default) when none is given. */
export function transportDescriptor(name: MailboxTransport | undefined): TransportDescriptor {
  return TRANSPORTS[name ?? 'smtp'];
}

/**
 * The least-privilege review of a token for a mailbox of `transport`: what it grants against what that
 * transport's descriptor says sending needs.
 */
export function reviewTransportPermissions(summary: TokenSummary, transport: MailboxTransport = 'smtp'): PermissionFinding[] {
  return reviewPermissions(summary, transportDescriptor(transport).permissions);
}

/**
 * Each mailbox's way out, as the config says (`mailboxes[].transport`), each transport built from its
 * descriptor the first time a mailbox needs it. {@link update} takes a reloaded config's mailboxes: a
 * mailbox moved to another transport uses it from its next send; a send in flight finishes on the one it
 * started on.
 */
export class MailboxTransports implements Transport {
  private readonly built = new Map<MailboxTransport, Transport>();
  private byMailbox = new Map<string, MailboxTransport>();

  constructor(
    mailboxes: ReadonlyArray<{ address: string; transport?: MailboxTransport }>,
    private readonly ctx: TransportContext,
  ) {
    this.update(mailboxes);
  }

  update(mailboxes: ReadonlyArray<{ address: string; transport?: MailboxTransport }>): void {
    this.byMailbox = new Map(mailboxes.map((m) => [m.address.toLowerCase(), m.transport ?? 'smtp']));
  }

  /** The transport a mailbox sends through now (a mailbox not configured goes through SMTP). */
  transportOf(mailbox: string): Transport {
    const name = this.byMailbox.get(mailbox.toLowerCase()) ?? 'smtp';
    let transport = this.built.get(name);
    if (!transport) {
      transport = TRANSPORTS[name].build(this.ctx);
      this.built.set(name, transport);
    }
    return transport;
  }

  send(mailbox: string, message: OutgoingMessage): Promise<SendResult> {
    return this.transportOf(mailbox).send(mailbox, message);
  }

  async close(): Promise<void> {
    await Promise.all([...this.built.values()].map((t) => t.close()));
  }
}

/** Builds the transports of a config's mailboxes (lazily, one per transport in use). */
export function buildTransports(ctx: TransportContext): MailboxTransports {
  return new MailboxTransports(ctx.config.mailboxes, ctx);
}
