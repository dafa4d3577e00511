/**
 * `relay365/sandbox`: the offline Microsoft 365 (identity platform, Exchange Online SMTP, Graph) for
 * the tests of your own app. Start it, point `createRelay` (or `relay365 serve`) at it with
 * {@link TestSandbox.config}, read what "Microsoft" received, stage refusals, stop it.
 * @example
 * ```ts
 * import { createRelay } from 'relay365';
 * import { startSandbox } from 'relay365/sandbox';
 *
 * const sandbox = await startSandbox();
 * const relay = await createRelay({ ...sandbox.config, dataDir: './test-data' });
 * const queued = await relay.send({ from: sandbox.mailbox, to: 'ann@example.net', subject: 'Hi', text: 'Hello' });
 * if (queued.ok) await relay.outcome(queued.id);
 * console.log(sandbox.messages({ to: 'ann@example.net' })[0]?.subject); // 'Hi'
 * await relay.close();
 * await sandbox.close();
 * ```
 * @packageDocumentation
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Relay365Error } from '../errors.js';
import type { Logger } from '../observe/index.js';
import { startSandbox as startSimulator, type Sandbox } from './index.js';
import { DEFAULT_IDS, defaultScenario, parseScenario, type Scenario, type SmtpFault } from './scenario.js';
import type { ReceivedMessage, SandboxCounters } from './state.js';

export { DEFAULT_IDS, type Scenario, type SmtpFault, type SandboxCounters };

/** Options of {@link startSandbox}. */
export interface StartSandboxOptions {
  /** Changes to the built-in scenario (docs/sandbox.md, "Scenario file"), applied before it starts and checked. */
  scenario?: (scenario: Scenario) => void;
  /** Where the sandbox writes its CA certificate. Default: a new temporary folder, removed by `close()`. */
  dataDir?: string;
  /** A pino-compatible logger for the sandbox's own lines (default: silent). */
  logger?: Logger;
}

/**
 * The relay365 config fragment that points a relay at the sandbox, as an app-only client-secret app
 * with one mailbox. Spread it into `createRelay({ ...sandbox.config, dataDir })`, `createMailer` or a
 * relay365.yaml; everything else keeps its default.
 */
export interface SandboxRelayConfig {
  cloud: 'sandbox';
  sandbox: { url: string; smtpHost: string; smtpPort: number; caFile: string };
  auth: { flow: 'client-secret'; tenant: string; clientId: string; clientSecret: string };
  mailboxes: Array<{ address: string }>;
}

/** One message "Microsoft" accepted, as it arrived. */
export interface SandboxMessage {
  id: string;
  /** ISO time of the acceptance. */
  receivedAt: string;
  /** The door it came through: Exchange SMTP submission (or HVE) or Graph `sendMail`. */
  via: 'smtp' | 'graph';
  /** The mailbox that authenticated (the XOAUTH2 user, or Graph's `/users/{id}`). */
  mailbox: string;
  /** The SMTP envelope (for Graph: the sender and the To, Cc and Bcc addresses). */
  envelope: { mailFrom: string; rcptTo: string[] };
  /** Header fields by lower-case name, unfolded, each occurrence in order. */
  headers: Record<string, string[]>;
  /** The first Subject, From and Message-ID headers, as they are in the message (not decoded). */
  subject: string | undefined;
  from: string | undefined;
  messageId: string | undefined;
  /** The exact bytes received. */
  raw: Buffer;
  /** The reply the sandbox gave, e.g. `250 2.0.0 OK <...> [Hostname=...]`. */
  reply: string;
}

/** Which received messages {@link TestSandbox.messages} returns; every field given must match (addresses in any case). */
export interface MessageFilter {
  /** The mailbox that sent it. */
  mailbox?: string;
  /** One of the envelope recipients. */
  to?: string;
}

/** A running sandbox, from {@link startSandbox}. */
export interface TestSandbox {
  /** What to give relay365 to send to this sandbox: `createRelay({ ...sandbox.config, dataDir })`. */
  readonly config: SandboxRelayConfig;
  /** The mailbox in {@link TestSandbox.config} (`relay@contoso.example`), which may send as itself. */
  readonly mailbox: string;
  /** The tenant's own domain (`contoso.example`): its unknown addresses are refused at RCPT TO. */
  readonly tenantDomain: string;
  /** Where it listens: the identity platform and Graph over HTTPS, Exchange SMTP (STARTTLS) and HVE, all on 127.0.0.1. */
  readonly endpoints: { https: string; smtpHost: string; smtpPort: number; hveSmtpPort: number };
  /** The PEM CA certificate that signed the sandbox's TLS certificates, and its file (`config.sandbox.caFile`). */
  readonly caPem: string;
  readonly caPath: string;
  /** The messages accepted so far, oldest first, that match `filter`. */
  messages(filter?: MessageFilter): SandboxMessage[];
  /** How many replies of each kind were given, tokens issued, throttles, connections (docs/sandbox.md). */
  counters(): SandboxCounters;
  /**
   * Makes Exchange refuse `address` at RCPT TO with `550 5.1.10 RESOLVER.ADR.RecipientNotFound`, as
   * it does for an address of the tenant's domain that does not exist. The address must be at
   * {@link TestSandbox.tenantDomain}: Exchange takes a message for an unknown external address and
   * bounces it later by an NDR instead (docs/sandbox.md, "After the 250").
   * @throws Relay365Error `R365_SCENARIO_INVALID` when the address is at another domain.
   */
  refuseRecipient(address: string): void;
  /**
   * Stages a reply Exchange gives instead of going on, after a stage of the SMTP conversation, e.g.
   * `{ stage: 'data', reply: '554 5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException...', count: 1 }`
   * or `{ stage: 'mail', reply: '451 4.7.500 Server busy. Please try again later.' }` (until `reset()`
   * when `count` is unset).
   */
  failSmtp(fault: { stage: SmtpFault['stage']; reply: string; mailbox?: string; count?: number }): void;
  /** Changes the running scenario (checked as a scenario file is); the received messages and counters stay. */
  changeScenario(change: (scenario: Scenario) => void): void;
  /** Forgets the received messages and the counters, and goes back to the scenario it started with. */
  reset(): void;
  /** Stops the listeners and removes the temporary folder it made. */
  close(): Promise<void>;
}

/** Header fields of a raw message by lower-case name (RFC 5322 section 2.2.3 unfolding). */
function headerFields(raw: Buffer): Record<string, string[]> {
  const end = raw.indexOf('\r\n\r\n');
  const head = raw
    .subarray(0, end === -1 ? Math.min(raw.length, 256 * 1024) : end)
    .toString('utf8')
    .replace(/\r?\n[ \t]+/g, ' ');
  const out: Record<string, string[]> = {};
  for (const line of head.split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    (out[name] ??= []).push(line.slice(colon + 1).trim());
  }
  return out;
}

function toSandboxMessage(m: ReceivedMessage): SandboxMessage {
  const headers = headerFields(m.raw);
  return {
    id: m.id,
    receivedAt: m.receivedAt,
    via: m.via,
    mailbox: m.mailbox,
    envelope: { mailFrom: m.envelope.mailFrom, rcptTo: [...m.envelope.rcptTo] },
    headers,
    subject: headers.subject?.[0],
    from: headers.from?.[0],
    messageId: headers['message-id']?.[0],
    raw: m.raw,
    reply: m.reply,
  };
}

/**
 * Starts the sandbox on free loopback ports, with the built-in scenario (changed by
 * `options.scenario`). Each call is a sandbox of its own: tests can run several side by side.
 * @throws Relay365Error `R365_SANDBOX_START_FAILED` when it cannot listen or write its CA;
 *   `R365_SCENARIO_INVALID` when the changed scenario is not valid.
 */
export async function startSandbox(options: StartSandboxOptions = {}): Promise<TestSandbox> {
  const initial = defaultScenario();
  options.scenario?.(initial);
  const scenario = parseScenario(initial, 'startSandbox({ scenario })');
  const temporary = options.dataDir === undefined ? await mkdtemp(join(tmpdir(), 'relay365-sandbox-')) : undefined;
  let sandbox: Sandbox;
  try {
    sandbox = await startSimulator({
      scenario,
      host: '127.0.0.1',
      dataDir: options.dataDir ?? temporary,
      ...(options.logger ? { logger: options.logger } : {}),
    });
  } catch (err) {
    if (temporary) await rm(temporary, { recursive: true, force: true });
    throw err;
  }
  const { state } = sandbox;
  const change = (edit: (s: Scenario) => void, source: string): void => {
    const next = structuredClone(state.scenario);
    edit(next);
    state.setScenario(parseScenario(next, source));
  };
  const tenant = scenario.tenants.find((t) => t.id === DEFAULT_IDS.tenantId);
  const tenantDomain = tenant?.domain ?? DEFAULT_IDS.tenantDomain;
  return {
    config: {
      cloud: 'sandbox',
      sandbox: { url: sandbox.baseUrl, smtpHost: sandbox.smtpHost, smtpPort: sandbox.smtpPort, caFile: sandbox.caPath },
      auth: { flow: 'client-secret', tenant: DEFAULT_IDS.tenantId, clientId: DEFAULT_IDS.appClientId, clientSecret: DEFAULT_IDS.appSecret },
      mailboxes: [{ address: DEFAULT_IDS.mailbox }],
    },
    mailbox: DEFAULT_IDS.mailbox,
    tenantDomain,
    endpoints: { https: sandbox.baseUrl, smtpHost: sandbox.smtpHost, smtpPort: sandbox.smtpPort, hveSmtpPort: sandbox.hveSmtpPort },
    caPem: sandbox.caPem,
    caPath: sandbox.caPath,
    messages(filter = {}) {
      const mailbox = filter.mailbox?.toLowerCase();
      const to = filter.to?.toLowerCase();
      return state.messages
        .filter((m) => (mailbox === undefined || m.mailbox.toLowerCase() === mailbox) && (to === undefined || m.envelope.rcptTo.some((r) => r.toLowerCase() === to)))
        .map(toSandboxMessage);
    },
    counters: () => structuredClone(state.counters),
    refuseRecipient(address) {
      const domain = (address.split('@')[1] ?? '').toLowerCase();
      const own = [tenantDomain, ...(tenant?.acceptedDomains ?? [])].map((d) => d.toLowerCase());
      if (!own.includes(domain))
        throw new Relay365Error(
          'R365_SCENARIO_INVALID',
          `refuseRecipient(${JSON.stringify(address)}): Exchange refuses at RCPT TO only unknown addresses of the tenant's own domains (${own.join(', ')}); it accepts an unknown external address and bounces it later by an NDR. Use an address such as nobody@${tenantDomain}.`,
        );
      change((s) => s.mailFlow.unknownRecipients.push(address), `refuseRecipient(${JSON.stringify(address)})`);
    },
    failSmtp(fault) {
      change((s) => s.faults.smtp.push({ drop: false, ...fault }), 'failSmtp()');
    },
    changeScenario: (edit) => change(edit, 'changeScenario()'),
    reset() {
      state.reset();
      state.setScenario(scenario);
    },
    async close() {
      await sandbox.close();
      if (temporary) await rm(temporary, { recursive: true, force: true });
    },
  };
}
