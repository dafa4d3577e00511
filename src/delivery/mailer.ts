import { parseConfig, type Config, type ConfigInput } from '../config/index.js';
import { Relay365Error } from '../errors.js';
import { createIdentity, extraCas, type Identity, type TokenCacheStore } from '../identity/index.js';
import { silentLogger, type Logger } from '../observe/index.js';
import { composeMessage, type MessageInput } from './compose.js';
import { buildTransports } from './transports/index.js';
import { recipientResults, type MailerResult } from './recipients.js';

export interface MailerOptions {
  logger?: Logger;
  env?: NodeJS.ProcessEnv;
  /** Receives the scrubbed SMTP transcript (for diagnostics). */
  transcript?: (line: string) => void;
  /** Pool connections per mailbox (default true); false opens one connection per send. */
  pool?: boolean;
  /** Where tokens are cached (default: encrypted files under `dataDir`); a shared store for several nodes. */
  cacheStore?: TokenCacheStore;
}

/** The library API: send messages through Microsoft 365 as a configured mailbox. */
export interface Mailer {
  /**
   * Composes (or takes raw) and sends one message now, as `options.mailbox` or the mailbox whose address
   * is the envelope sender, or the only configured one. Resolves with the outcome; never throws for a
   * refusal by Microsoft (see `result.ok`, `result.class` and `result.explanation`).
   */
  send(message: MessageInput, options?: { mailbox?: string }): Promise<MailerResult>;
  /** The identity part (token provider), for callers that also want tokens. */
  readonly identity: Identity;
  close(): Promise<void>;
}

/**
 * Creates a mailer from a config object (as in relay365.yaml).
 * @example
 * ```ts
 * import { createMailer } from 'relay365';
 * const mailer = await createMailer({
 *   auth: { flow: 'client-secret', tenant: 'contoso.onmicrosoft.com', clientId: '...', clientSecret: 'env:RELAY365_CLIENT_SECRET' },
 *   mailboxes: [{ address: 'relay@contoso.com' }],
 * });
 * const result = await mailer.send({ from: 'relay@contoso.com', to: 'you@example.net', subject: 'Hi', text: 'Hello' });
 * console.log(result.ok ? result.reply : result.explanation?.fix);
 * await mailer.close();
 * ```
 */
export async function createMailer(config: ConfigInput | Config, options: MailerOptions = {}): Promise<Mailer> {
  // The checks loadConfig runs, with their paths (smtp.allowlist[0].cidr).
  const cfg = parseConfig(config, { source: 'The mailer config', ...(options.env ? { env: options.env } : {}) });
  const logger = options.logger ?? silentLogger();
  const identity = await createIdentity(cfg, {
    logger,
    ...(options.env ? { env: options.env } : {}),
    ...(options.cacheStore ? { cacheStore: options.cacheStore } : {}),
  });
  const transport = buildTransports({
    config: cfg,
    identity,
    logger,
    ca: await extraCas(cfg),
    connectionCaps: new Map(cfg.mailboxes.filter((m) => m.maxConnections).map((m) => [m.address.toLowerCase(), m.maxConnections!])),
    pool: options.pool !== false,
    ...(options.transcript ? { transcript: options.transcript } : {}),
  });
  const mailboxes = cfg.mailboxes.map((m) => ({ address: m.address, aliases: m.aliases ?? [] }));
  return {
    identity,
    async send(message, sendOptions = {}) {
      const outgoing = await composeMessage(message);
      const mailbox = pickSendingMailbox(mailboxes, sendOptions.mailbox, outgoing.envelope.from);
      const result = await transport.send(mailbox, outgoing);
      return { ...result, recipients: recipientResults(outgoing.envelope.to, result) };
    },
    async close() {
      await transport.close();
      identity.close();
    },
  };
}

/**
 * The explicit mailbox, else the mailbox whose address or alias is the sender (the first listed when
 * several list the alias, as a pool's member; `createRelay` spreads a pool's messages over its members),
 * else the only one.
 */
export function pickSendingMailbox(
  mailboxes: ReadonlyArray<{ address: string; aliases?: readonly string[] }>,
  explicit: string | undefined,
  sender: string,
): string {
  const same = (a: string, b: string): boolean => a.toLowerCase() === b.toLowerCase();
  if (explicit) {
    const found = mailboxes.find((m) => same(m.address, explicit));
    if (!found) throw new Relay365Error('R365_UNKNOWN_MAILBOX', `${explicit} is not a configured mailbox; add it under mailboxes: in the config.`);
    return found.address;
  }
  const bySender = mailboxes.find((m) => same(m.address, sender)) ?? mailboxes.find((m) => (m.aliases ?? []).some((a) => same(a, sender)));
  if (bySender) return bySender.address;
  if (mailboxes.length === 1) return mailboxes[0]!.address;
  if (mailboxes.length === 0) throw new Relay365Error('R365_NO_MAILBOX_CONFIGURED', 'No mailbox is configured: add one under mailboxes: in the config.');
  throw new Relay365Error(
    'R365_UNKNOWN_MAILBOX',
    `No configured mailbox has the address or alias ${sender}: add it to a mailbox's aliases, or choose one with the mailbox option (${mailboxes.map((m) => m.address).join(', ')}).`,
  );
}
