import type { SecureContext } from 'node:tls';
import SMTPConnection, { type SMTPConnectionOptions } from 'nodemailer/lib/smtp-connection';
import XOAuth2 from 'nodemailer/lib/xoauth2';
import type { NodemailerError } from 'nodemailer/lib/errors';
import { explainConnectionError, explainSmtpReply } from '../catalogue/index.js';
import type { Config } from '../config/index.js';
import { isRelay365Error } from '../errors.js';
import { failureOf, tokenFailure, trustingContext, type CloudEndpoints, type TokenProvider } from '../identity/index.js';
import { scrubSecrets, silentLogger, type Logger } from '../observe/index.js';
import { MailboxPool, type ProvisionCallback, type SentInfo } from './smtp-pool.js';
import type { OutgoingMessage, SendResult, Transport } from './types.js';

/** A pooled connection left idle this long is closed; the next message opens a new one. */
const IDLE_TIMEOUT_MS = 60_000;

export interface SmtpTransportOptions {
  cloud: CloudEndpoints;
  tokens: TokenProvider;
  delivery: Config['delivery'];
  /** Per-mailbox connection caps (lower-case address), below `delivery.maxConnections`. */
  maxConnections?: ReadonlyMap<string, number>;
  /** Extra CAs (the sandbox's, a TLS-inspecting proxy's); Node's roots stay trusted. */
  ca?: string[];
  logger?: Logger;
  /** Receives nodemailer's protocol transcript lines (already scrubbed), for `relay365 test`. */
  transcript?: (line: string) => void;
  /** No pooling: one connection per send, closed before the send resolves (CLI sends; several nodes). */
  pool?: boolean;
  /** The High Volume Email endpoint, and the mailboxes (lower case) that are HVE accounts and go through it. */
  hve?: { host: string; port: number; mailboxes: ReadonlySet<string> };
}

/**
 * Where a config's HVE accounts submit: smtp-hve.office365.com:587 (MS Learn "High volume email for
 * Microsoft 365" and its troubleshooting page, which also names smtp.hve.mx.microsoft as the coming
 * name), or the sandbox's HVE port. Undefined when no mailbox is an HVE account.
 */
export function hveEndpoint(config: Pick<Config, 'cloud' | 'sandbox' | 'mailboxes'>): SmtpTransportOptions['hve'] {
  const mailboxes = new Set(config.mailboxes.filter((m) => m.hve).map((m) => m.address.toLowerCase()));
  if (mailboxes.size === 0) return undefined;
  return config.cloud === 'sandbox'
    ? { host: config.sandbox.smtpHost, port: config.sandbox.hveSmtpPort, mailboxes }
    : { host: 'smtp-hve.office365.com', port: 587, mailboxes };
}

/** nodemailer's stage names for where a send failed. */
const STAGES: Record<string, string> = { CONN: 'connect', AUTH: 'AUTH', EENVELOPE: 'MAIL FROM/RCPT TO', MESSAGE: 'DATA' };

/**
 * Sends through Exchange Online SMTP submission with XOAUTH2: one connection pool per mailbox
 * (smtp-pool.ts), STARTTLS required, TLS 1.2+, certificates verified, tokens from the provider. An
 * auth refusal invalidates the token and retries the message once with a fresh one.
 */
export class SmtpTransport implements Transport {
  private readonly pools = new Map<string, MailboxPool>();
  private readonly logger: Logger;
  /** With extra CAs, one context for every connection (see {@link trustingContext}). */
  private readonly secureContext: SecureContext | undefined;

  constructor(private readonly options: SmtpTransportOptions) {
    this.logger = options.logger ?? silentLogger();
    this.secureContext = options.ca && options.ca.length > 0 ? trustingContext(options.ca) : undefined;
  }

  /** Connection settings shared by pooled and one-off connections; an HVE account's go to the HVE endpoint. */
  private connectionOptions(mailbox: string): SMTPConnectionOptions {
    const { cloud, delivery } = this.options;
    const transcript = this.options.transcript;
    const hve = this.options.hve?.mailboxes.has(mailbox.toLowerCase()) ? this.options.hve : undefined;
    const host = hve?.host ?? cloud.smtpHost;
    return {
      host,
      port: hve?.port ?? cloud.smtpPort,
      secure: false, // Exchange Online offers STARTTLS on 587 only (Microsoft Learn, "National cloud deployments" and "POP, IMAP, and SMTP settings for Outlook.com")
      requireTLS: true,
      tls: {
        minVersion: 'TLSv1.2',
        rejectUnauthorized: true,
        ...(this.secureContext ? { secureContext: this.secureContext } : {}),
        // Certificates name a host, not an address: the sandbox listens on 127.0.0.1 with a cert for localhost.
        ...(/^[\d.]+$|:/.test(host) ? { servername: 'localhost' } : {}),
      },
      connectionTimeout: delivery.connectionTimeoutMs,
      greetingTimeout: delivery.greetingTimeoutMs,
      socketTimeout: delivery.socketTimeoutMs,
      ...(transcript ? { logger: transcriptLogger(transcript), debug: true } : { logger: false }),
    };
  }

  /** nodemailer asks for a token each time a connection authenticates; `renew` is set after a 334 challenge. */
  private readonly provision: ProvisionCallback = (user, renew, callback) => {
    if (renew) this.options.tokens.invalidate(user);
    this.options.tokens.getToken(user).then(
      (t) => callback(null, t.accessToken, t.expiresOn.getTime()),
      (err: unknown) => callback(err as Error),
    );
  };

  private pool(mailbox: string): MailboxPool {
    const key = mailbox.toLowerCase();
    let pool = this.pools.get(key);
    if (pool) return pool;
    const { delivery } = this.options;
    pool = new MailboxPool({
      mailbox,
      connection: this.connectionOptions(mailbox),
      provision: this.provision,
      maxConnections: Math.min(delivery.maxConnections, this.options.maxConnections?.get(key) ?? delivery.maxConnections),
      maxMessagesPerConnection: delivery.maxMessagesPerConnection,
      idleTimeoutMs: IDLE_TIMEOUT_MS,
    });
    this.pools.set(key, pool);
    return pool;
  }

  /**
   * One connection for one message, resolved only once the connection has closed: the next send may
   * then open its own without Exchange ever seeing more open connections than were leased.
   */
  private sendOnce(mailbox: string, message: OutgoingMessage): Promise<SentInfo> {
    return new Promise((resolve, reject) => {
      const connection = new SMTPConnection(this.connectionOptions(mailbox));
      const oauth2 = new XOAuth2({ user: mailbox, provisionCallback: this.provision });
      let info: SentInfo | undefined;
      let failure: Error | undefined;
      connection.once('end', () => (info && !failure ? resolve(info) : reject(failure ?? new Error('connection closed before the message was sent'))));
      connection.on('error', (err: Error) => {
        failure ??= err;
        connection.close();
      });
      connection.connect(() => {
        connection.login({ type: 'OAuth2', user: mailbox, method: 'XOAUTH2', oauth2 }, (loginError) => {
          if (loginError) {
            failure ??= loginError;
            connection.close();
            return;
          }
          connection.send({ from: message.envelope.from, to: [...message.envelope.to] }, message.raw, (sendError, sent) => {
            if (sendError) failure ??= sendError;
            else info = sent;
            connection.quit();
          });
        });
      });
    });
  }

  async send(mailbox: string, message: OutgoingMessage): Promise<SendResult> {
    const first = await this.attempt(mailbox, message);
    if (first.ok || first.class !== 'auth' || first.failure?.kind === 'token') return first;
    // Exchange answers a bad token with a plain 535 (no 334 challenge), so nodemailer does not renew it
    // itself: drop the token and try once more on a new connection with a fresh one.
    this.options.tokens.invalidate(mailbox);
    const second = await this.attempt(mailbox, message);
    return { ...second, retriedWithFreshToken: true };
  }

  private async attempt(mailbox: string, message: OutgoingMessage): Promise<SendResult> {
    const base = { mailbox, messageId: message.messageId };
    try {
      const info =
        this.options.pool === false
          ? await this.sendOnce(mailbox, message)
          : await this.pool(mailbox).send({ from: message.envelope.from, to: [...message.envelope.to] }, message.raw);
      const rejected = (info.rejected ?? []).map((address) => {
        const err = info.rejectedErrors?.find((e) => e.recipient === address);
        const reply = err?.response ? scrubSecrets(err.response) : undefined;
        return { address: String(address), reply, explanation: reply ? explainSmtpReply(reply, mailbox) : undefined };
      });
      return { ...base, ok: true, class: 'sent', reply: info.response, ...(rejected.length > 0 ? { rejected } : {}) };
    } catch (err) {
      return this.failure(base, err);
    }
  }

  private failure(base: { mailbox: string; messageId: string | undefined }, err: unknown): SendResult {
    // A token the identity platform would not give: the explanation is identity's (AADSTS).
    if (isRelay365Error(err)) {
      const failure = tokenFailure(err, base.mailbox);
      return { ...base, ok: false, class: failure.class, reply: undefined, explanation: failure.explanation, stage: 'token', errorCode: failure.code, failure };
    }
    const e = err as NodemailerError;
    const reply = e.response ? scrubSecrets(e.response.split(/\r?\n/).pop() ?? e.response) : undefined;
    const explanation = reply
      ? explainSmtpReply(reply, base.mailbox)
      : (explainConnectionError(e.originalCode ?? e.code, e.message) ?? {
          id: 'net-unknown',
          class: 'transient' as const,
          cause: scrubSecrets(e.message),
          fix: 'Check the network path to the SMTP host; relay365 retries.',
        });
    const stage = e.command ? (e.command.startsWith('AUTH') ? 'AUTH' : e.command.split(' ')[0]) : STAGES[e.code ?? ''];
    this.logger.info({ mailbox: base.mailbox, messageId: base.messageId, reply, code: e.code, stage, class: explanation.class }, 'send failed');
    // Every recipient refused at RCPT: nodemailer gives each one's reply with the error.
    const rejected = ((err as { rejectedErrors?: Array<{ recipient?: unknown; response?: string }> }).rejectedErrors ?? []).map((r) => {
      const own = r.response ? scrubSecrets(r.response) : undefined;
      return { address: String(r.recipient), reply: own, explanation: own ? explainSmtpReply(own, base.mailbox) : undefined };
    });
    return {
      ...base,
      ok: false,
      class: explanation.class,
      reply,
      explanation,
      ...(stage ? { stage } : {}),
      ...(e.code ? { errorCode: e.code } : {}),
      ...(rejected.length > 0 ? { rejected } : {}),
      failure: failureOf(reply ? 'reply' : 'connection', explanation, e.code),
    };
  }

  async close(): Promise<void> {
    for (const pool of this.pools.values()) pool.close();
    this.pools.clear();
    await Promise.resolve();
  }
}

/** A bunyan-style logger for nodemailer that hands each (scrubbed) protocol line to `sink`. */
function transcriptLogger(sink: (line: string) => void): Record<string, (...args: unknown[]) => void> {
  const log = (...args: unknown[]): void => {
    const [first, message] = args;
    const entry = typeof first === 'object' && first !== null ? (first as { tnx?: string }) : undefined;
    const text = typeof message === 'string' ? message : typeof first === 'string' ? first : '';
    if (entry?.tnx === 'client' || entry?.tnx === 'server') sink(scrubSecrets(`${entry.tnx === 'client' ? 'C:' : 'S:'} ${text}`));
  };
  return { trace: log, debug: log, info: log, warn: log, error: log, fatal: log };
}
