import type { Config, MailboxTransport } from '../../config/index.js';
import type { CloudEndpoints, Identity, PermissionNeeds } from '../../identity/index.js';
import type { Logger } from '../../observe/index.js';
import type { Transport } from '../types.js';

/** What a transport's builder gets: the config, identity (tokens, cloud, HTTPS client) and the shared settings. */
export interface TransportContext {
  config: Config;
  identity: Identity;
  logger: Logger;
  /** Extra CAs to trust (the sandbox's, `network.caFile`), read once by the caller. */
  ca: string[];
  /** Per-mailbox connection caps (lower-case address); the runtime keeps the map and a reload changes it in place. */
  connectionCaps: ReadonlyMap<string, number>;
  /** Keep connections open between sends (the relay on one node); false for the CLI and several nodes. */
  pool: boolean;
  /** Receives the scrubbed protocol transcript (`relay365 test`), for transports that have one. */
  transcript?: (line: string) => void;
}

/** One of Microsoft's limits that applies to a transport, with where it is documented. */
export interface TransportLimit {
  limit: string;
  value: string;
  /** What Microsoft does when it is exceeded, and what relay365 does about it. */
  overIt: string;
  source: string;
}

/** How the doctor treats a mailbox of this transport. */
export interface TransportDoctor {
  /** Checks (ids from src/doctor/checks.ts) that do not apply: they report `skip` with `skipDetail`. */
  skips: readonly string[];
  skipDetail: string;
  /** Added to the config check's line, e.g. `, sending through Microsoft Graph`; empty for the default transport. */
  configNote: string;
  /**
   * True when the claims check explains a wrong audience or a missing permission with the catalogue's
   * setup findings for Exchange tokens (token-audience, token-role-missing, ...); otherwise it uses the
   * least-privilege review's findings from `permissions`.
   */
  exchangeSetupFindings: boolean;
}

/**
 * Everything relay365 knows about one way out to Microsoft, as data: adding a transport is adding one
 * of these (see src/delivery/transports/index.ts and docs/architecture.md).
 */
export interface TransportDescriptor {
  /** The name in the config (`mailboxes[].transport`). */
  name: MailboxTransport;
  /** For people: `Exchange Online SMTP submission`, `Microsoft Graph sendMail`. */
  title: string;
  /** The OAuth scopes its tokens are asked with (identity asks with the same table: `TRANSPORT_SCOPES`). */
  scopes(cloud: CloudEndpoints, appOnly: boolean): string[];
  /** The permissions it needs, which `relay365 permissions` and the doctor's claims check compare with a token. */
  permissions: PermissionNeeds;
  doctor: TransportDoctor;
  /** The catalogue rows that explain its answers (src/catalogue), by id. */
  catalogue: ReadonlyArray<{ id: string }>;
  /** The Microsoft limits that apply to it; the outbox's defaults (`limits`, `delivery.maxConnections`) keep within them. */
  throttling: readonly TransportLimit[];
  /**
   * Where and how a mailbox's mail leaves (for `relay365 test` and the doctor), e.g. `smtp.office365.com:587`;
   * `smtp` is the SMTP submission host and port, for transports that speak SMTP (the doctor probes it).
   */
  endpoint(
    config: Pick<Config, 'cloud' | 'sandbox' | 'mailboxes'>,
    cloud: CloudEndpoints,
    mailbox: string,
  ): { where: string; how: string; smtp?: { host: string; port: number } };
  /** Builds the transport; no connection or request is made until the first send. */
  build(ctx: TransportContext): Transport;
}
