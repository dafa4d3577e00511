import { randomUUID } from 'node:crypto';
import type net from 'node:net';
import type tls from 'node:tls';
import addressparser from 'nodemailer/lib/addressparser';
import {
  SMTPServer,
  type SMTPServerAddress,
  type SMTPServerAuthentication,
  type SMTPServerAuthenticationResponse,
  type SMTPServerConnectionInfo,
  type SMTPServerDataStream,
  type SMTPServerError,
  type SMTPServerOptions,
  type SMTPServerSession,
} from 'smtp-server';
import { SMTPConnection, type SMTPConnectionOptions } from 'smtp-server/lib/smtp-connection.js';
import type { Logger } from '../observe/index.js';
import {
  EXCHANGE_REPLIES,
  LIBRARY_REPLY_REWRITES,
  SANDBOX_FRONTEND,
  SANDBOX_HOST,
  acceptedReply,
  greetingText,
  isThrottleReply,
  recipientNotFoundReply,
  sendAsDeniedReply,
  splitReply,
  withTail,
  type ExchangeReplyName,
} from './exchange-replies.js';
import { RESOURCES, type SmtpFault, type Tenant, type User } from './scenario.js';
import type { NdrRecipient } from './ndr.js';
import type { ContinuousErrorKind, SandboxState } from './state.js';

/** The 550 5.2.25x reply of each continuous-error block (shared/M365.md, "continuous-error throttling"). */
const CONTINUOUS_REPLY: Record<ContinuousErrorKind, ExchangeReplyName> = {
  mailboxFull: 'continuousMailboxFull',
  sendAsDenied: 'continuousSendAsDenied',
  invalidLicense: 'continuousInvalidLicense',
  tooManyRecipients: 'continuousTooManyRecipients',
  invalidRecipients: 'continuousInvalidRecipients',
};
import { delegatedSmtpLoginRefusal } from './graph-access.js';
import type { CertificatePair } from './tls.js';
import { TokenIssuer, type AccessTokenClaims } from './tokens.js';

/** What the Exchange SMTP simulator needs; `startSandbox` wires the real ones. */
export interface ExchangeSmtpDeps {
  state: SandboxState;
  issuer: TokenIssuer;
  /** Server certificate and key offered after STARTTLS. */
  tls: CertificatePair;
  logger: Logger;
  /**
   * Which endpoint this listener plays: client submission (smtp.office365.com) or High Volume Email
   * (smtp-hve.office365.com; MS Learn "High volume email for Microsoft 365"). Default `submission`.
   */
  endpoint?: 'submission' | 'hve';
}

/** The mailbox a connection authenticated as, and with which app's token. */
interface Submitter {
  tenantId: string;
  /** The mailbox's UPN, whatever alias the client put in XOAUTH2 `user=`. */
  mailbox: string;
  appId: string;
}

/**
 * The `aud` values Exchange Online accepts for SMTP AUTH: the delegated and app-only resource URIs
 * and the resource's app id (M365.md, "Token shape"). A Graph token is refused.
 */
const EXCHANGE_AUDIENCES = new Set<string>([RESOURCES.exchange.appAudience, RESOURCES.exchange.delegatedAudience, RESOURCES.exchange.appId]);

/** A reply text that already carries its RFC 3463 enhanced code. */
const ENHANCED_CODE = /^[245]\.\d{1,3}\.\d{1,3} /;

/** `SIZE` in Exchange Online's EHLO reply. */
const EXCHANGE_ADVERTISED_SIZE = 157_286_400;

/** Exchange's EHLO keyword order (smtp.office365.com transcripts, see exchange-replies.ts). */
const EHLO_ORDER = ['SIZE', 'PIPELINING', 'DSN', 'ENHANCEDSTATUSCODES', 'STARTTLS', 'AUTH', '8BITMIME', 'BINARYMIME', 'CHUNKING', 'SMTPUTF8'];

function ehloRank(line: string): number {
  const i = EHLO_ORDER.indexOf(line.split(' ')[0]!.toUpperCase());
  return i === -1 ? EHLO_ORDER.length : i;
}

/**
 * One client connection. smtp-server owns the protocol; this subclass only changes the wording on
 * the wire to Exchange's: the greeting, the EHLO list (AUTH only inside TLS), AUTH refusals before
 * STARTTLS, and replies whose text already carries Microsoft's enhanced code (smtp-server would
 * otherwise put its own RFC 3463 code in front of ours).
 */
class ExchangeConnection extends SMTPConnection {
  constructor(server: ExchangeSmtpServer, socket: net.Socket | tls.TLSSocket, options?: SMTPConnectionOptions | null) {
    super(server, socket, options);
    // smtp-server keeps this one session object for the connection's life (_resetSession mutates it).
    server.bySession.set(this.session, this);
  }

  private get exchange(): ExchangeSmtpServer {
    return this._server as ExchangeSmtpServer;
  }

  /** True once the socket has closed (an async check may outlive its connection). */
  get gone(): boolean {
    return this._closed;
  }

  /** Ends the connection without a reply, as a `drop` fault asks. */
  drop(): void {
    this._socket.destroy();
  }

  /**
   * Greets at once, as Exchange Online does. smtp-server first waits 100 ms to catch clients that talk
   * before the greeting (spam bots); a simulator has no use for it, and it would add to every
   * connection measured against the sandbox (a ceiling benchmark, a relay sending one message per
   * connection) a delay that Microsoft does not have. Otherwise as smtp-server 3.21's `init`.
   */
  override init(): void {
    this._setListeners(() => {
      const { maxClients } = this._server.options;
      if (maxClients && this._server.connections.size > maxClients) {
        this.send(421, `${this.name} Too many connected clients, try again in a moment`, false);
        return;
      }
      this.connectionReady();
    });
  }

  override _sendGreeting(): void {
    // RFC 2034 section 3: the greeting carries no enhanced code.
    this.send(220, greetingText(), false);
  }

  override handler_AUTH(command: Buffer, callback: () => void): void {
    const mechanism = (command.toString().trim().split(/\s+/)[1] ?? '').toUpperCase();
    // Exchange answers any AUTH before STARTTLS, and any mechanism besides LOGIN and XOAUTH2, with
    // 504 5.7.4 (smtp-server would answer 538 or 504 with its own text).
    if (!this.secure || !this._server.options.authMethods.includes(mechanism)) {
      this.exchange.recordReply(EXCHANGE_REPLIES.unrecognizedAuthType.line);
      this.sendLine(EXCHANGE_REPLIES.unrecognizedAuthType.line);
      callback();
      return;
    }
    super.handler_AUTH(command, callback);
  }

  override send(code: number, data?: string | string[] | null, context?: string | false): void {
    if (Array.isArray(data)) {
      // Only EHLO answers with several lines. Exchange lists AUTH only once TLS is up.
      const [hello, ...keywords] = data;
      const kept = keywords.filter((k) => this.secure || !/^AUTH\b/i.test(k)).sort((a, b) => ehloRank(a) - ehloRank(b));
      super.send(code, [hello ?? '', ...kept], context);
      return;
    }
    const text = data ?? '';
    if (ENHANCED_CODE.test(text)) {
      super.send(code, text, false);
      return;
    }
    const rewrite = LIBRARY_REPLY_REWRITES.find((r) => r.match(code, text, context));
    if (rewrite) {
      if (rewrite.counted) this.exchange.recordReply(rewrite.line);
      this.sendLine(rewrite.line);
      return;
    }
    super.send(code, data, context);
  }

  private sendLine(line: string): void {
    const { code, text } = splitReply(line);
    super.send(code, text, false);
  }
}

/** smtp-server with {@link ExchangeConnection} as its connection class. */
class ExchangeSmtpServer extends SMTPServer {
  /** The connection behind each session, so hooks can drop it. */
  readonly bySession = new WeakMap<SMTPServerSession, ExchangeConnection>();

  constructor(
    options: SMTPServerOptions,
    /** Counts a reply the sandbox stands behind (`counters.smtpReplies`). */
    readonly recordReply: (line: string) => void,
  ) {
    super(options);
  }

  // Mirrors SMTPServer.connect of smtp-server 3.21; only the connection class differs.
  override connect(socket: net.Socket | tls.TLSSocket, socketOptions?: SMTPConnectionOptions | null): void {
    const connection = new ExchangeConnection(this, socket, socketOptions);
    this.connections.add(connection);
    connection.on('error', (err: Error) => this._onError(err));
    connection.on('connect', (data: SMTPServerConnectionInfo) => this._onClientConnect(data));
    connection.init();
  }
}

type AuthOutcome = { submitter: Submitter } | { refusal: ExchangeReplyName; reason: string };

const refusal = (name: ExchangeReplyName, reason: string): AuthOutcome => ({ refusal: name, reason });

/** The header block of a message, unfolded (RFC 5322 section 2.2.3). */
function headerBlock(raw: Buffer): string {
  const crlf = raw.indexOf('\r\n\r\n');
  const lf = raw.indexOf('\n\n');
  const ends = [crlf, lf].filter((i) => i !== -1);
  const end = ends.length ? Math.min(...ends) : raw.length;
  return raw
    .subarray(0, end)
    .toString('utf8')
    .replace(/\r?\n[ \t]+/g, ' ');
}

/** An address in a scenario list, compared case-insensitively. */
function listed(list: readonly string[], address: string): boolean {
  return list.some((a) => a.toLowerCase() === address.toLowerCase());
}

function headerValues(head: string, name: string): string[] {
  const re = new RegExp(`^${name}:[ \\t]*(.*)$`, 'gim');
  return [...head.matchAll(re)].map((m) => m[1]!.trim());
}

/**
 * Exchange Online SMTP client submission (smtp.office365.com:587, M365.md "Endpoints"): STARTTLS
 * with TLS 1.2 or newer, AUTH XOAUTH2 checked the way Exchange checks it (signature, audience,
 * mailbox, SMTP AUTH switches, role or scope, FullAccess), and the store driver's decisions at the
 * end of DATA (size, sender thread limit, SendAs, submission quota). Every refusal is Microsoft's
 * own reply (exchange-replies.ts); scenario faults can replace any reply or drop the connection.
 *
 * @example
 * const smtp = createExchangeSmtp({ state, issuer, tls: sandboxTls.server, logger });
 * smtp.listen(587, '127.0.0.1');
 */
export function createExchangeSmtp(deps: ExchangeSmtpDeps): SMTPServer {
  const { state, issuer } = deps;
  const hve = deps.endpoint === 'hve';
  const log = deps.logger.child({ component: hve ? 'sandbox-smtp-hve' : 'sandbox-smtp' });
  const submitters = new WeakMap<SMTPServerSession, Submitter>();
  /** Per mailbox, its authenticated sessions, oldest first: the first N hold Exchange's threads. */
  const threadHolders = new Map<string, Set<SMTPServerSession>>();

  const limits = () => state.scenario.limits;

  /** Counts a refusal and turns it into the error smtp-server sends as `<code> <text>`. */
  const refuse = (line: string): SMTPServerError => {
    state.recordSmtpReply(line);
    if (isThrottleReply(line)) state.recordThrottle();
    const { code, text } = splitReply(line);
    return Object.assign(new Error(text), { responseCode: code });
  };

  /** The scenario fault for this stage, if one fires: `drop` (connection already closed) or a reply. */
  const takeFault = (stage: SmtpFault['stage'], session: SMTPServerSession, mailbox: string | undefined): 'drop' | SMTPServerError | undefined => {
    const fault = state.takeSmtpFault(stage, mailbox);
    if (!fault) return undefined;
    log.info({ session: session.id, stage, mailbox, fault: fault.drop ? 'drop' : fault.reply }, 'SMTP fault fired');
    if (fault.drop || fault.reply === undefined) {
      server.bySession.get(session)?.drop();
      return 'drop';
    }
    return refuse(fault.reply);
  };

  const holdThread = (session: SMTPServerSession, submitter: Submitter): void => {
    submitters.set(session, submitter);
    state.openConnection(submitter.mailbox);
    const key = submitter.mailbox.toLowerCase();
    const holders = threadHolders.get(key) ?? new Set();
    holders.add(session);
    threadHolders.set(key, holders);
  };

  const releaseThread = (session: SMTPServerSession): void => {
    const submitter = submitters.get(session);
    if (!submitter) return;
    submitters.delete(session);
    state.closeConnection(submitter.mailbox);
    const key = submitter.mailbox.toLowerCase();
    threadHolders.get(key)?.delete(session);
    if (threadHolders.get(key)?.size === 0) threadHolders.delete(key);
  };

  /**
   * Exchange's sender thread limit (M365.md "Limits": 3 concurrent connections per mailbox): when the
   * mailbox holds more authenticated connections than the limit, the ones beyond it, youngest first,
   * get 432 4.3.2 at submission while the older ones keep sending.
   */
  const overThreadLimit = (session: SMTPServerSession, mailbox: string): boolean => {
    const { connectionsPerMailbox, unlimited } = limits();
    if (unlimited || state.connectionCount(mailbox) <= connectionsPerMailbox) return false;
    const holders = [...(threadHolders.get(mailbox.toLowerCase()) ?? [])];
    return holders.indexOf(session) + 1 > connectionsPerMailbox;
  };

  /** The XOAUTH2 checks, in Exchange's order; the first that fails decides the reply. */
  const checkXoauth2 = async (username: string, token: string): Promise<AuthOutcome> => {
    let claims: AccessTokenClaims;
    try {
      claims = await issuer.verify(token);
    } catch (err) {
      // Bad signature, alg none, another key, expired: jose's code says which (never the token).
      return refusal('authUnsuccessful', `token rejected (${(err as { code?: string }).code ?? 'not a JWT'})`);
    }
    const aud: unknown = claims.aud;
    const audiences = (Array.isArray(aud) ? aud : [aud]).filter((a): a is string => typeof a === 'string');
    if (!audiences.some((a) => EXCHANGE_AUDIENCES.has(a))) {
      return refusal('authUnsuccessful', `audience ${audiences.join(',')} is not Exchange Online`);
    }
    const tid = typeof claims.tid === 'string' ? claims.tid.toLowerCase() : '';
    const tenant = state.scenario.tenants.find((t) => t.id.toLowerCase() === tid);
    if (!tenant || claims.iss !== TokenIssuer.accessTokenIssuer(tenant.id)) return refusal('authUnsuccessful', `tenant ${tid} unknown`);
    const found = state.findUser(username);
    if (!found || found.tenant.id !== tenant.id || !found.user.mailbox) {
      return refusal('authUnsuccessful', `${username} has no mailbox in tenant ${tenant.id}`);
    }
    const { user } = found;
    if (hve || user.hve) return checkHveToken(claims, tenant, user);
    // Set-CASMailbox wins over Set-TransportConfig (M365.md "Scopes and permissions").
    if (!state.smtpAuthEnabled(tenant, user)) {
      return user.smtpAuthEnabled === false
        ? refusal('smtpAuthDisabledForMailbox', 'SMTP AUTH disabled for the mailbox')
        : refusal('smtpAuthDisabledForTenant', 'SMTP AUTH disabled for the tenant');
    }
    const appId = typeof claims.appid === 'string' ? claims.appid : '';
    if (claims.idtyp === 'app' || claims.roles !== undefined) {
      // App-only (M365.md "Scopes and permissions"): SMTP.SendAsApp, New-ServicePrincipal, FullAccess.
      const roles = Array.isArray(claims.roles) ? claims.roles : [];
      if (!roles.includes('SMTP.SendAsApp')) return refusal('authUnsuccessful', 'app-only token without the SMTP.SendAsApp role');
      if (!state.findApp(tenant, appId)?.exchangeServicePrincipal) {
        return refusal('authUnsuccessful', `app ${appId} has no Exchange service principal (New-ServicePrincipal)`);
      }
      if (!user.fullAccessApps.some((id) => id.toLowerCase() === appId.toLowerCase())) {
        return refusal('authUnsuccessful', `app ${appId} has no FullAccess on ${user.upn} (Add-MailboxPermission)`);
      }
    } else {
      const scopes = typeof claims.scp === 'string' ? claims.scp.split(' ') : [];
      if (!scopes.includes('SMTP.Send')) return refusal('authUnsuccessful', 'delegated token without the SMTP.Send scope');
      // The user's own mailbox, or a shared mailbox the user has FullAccess on (graph-access.ts).
      const refused = delegatedSmtpLoginRefusal(tenant, claims, user);
      if (refused !== undefined) return refusal('authUnsuccessful', refused);
    }
    return { submitter: { tenantId: tenant.id, mailbox: user.upn, appId } };
  };

  /**
   * High Volume Email with OAuth (MS Learn "OAuth authentication for high volume emails for Microsoft
   * 365"): an app-only token with the application permission Mail.Send of Office 365 Exchange Online,
   * for an HVE account whose Allowed Apps list holds the app (Add-HVEAppAccess). HVE accounts are mail
   * users that send only through the HVE endpoint, and the tenant's SmtpClientAuthenticationDisabled
   * does not apply to them (MS Learn "Troubleshoot issues with high volume email (HVE) for Microsoft 365").
   */
  const checkHveToken = (claims: AccessTokenClaims, tenant: Tenant, user: User): AuthOutcome => {
    if (!hve) return refusal('authUnsuccessful', `${user.upn} is an HVE account: it submits through the HVE endpoint`);
    if (!user.hve) return refusal('authUnsuccessful', `${user.upn} is not an HVE account`);
    const appId = typeof claims.appid === 'string' ? claims.appid : '';
    const roles = Array.isArray(claims.roles) ? claims.roles : [];
    if (claims.idtyp !== 'app' && claims.roles === undefined) return refusal('authUnsuccessful', 'HVE takes app-only tokens');
    if (!roles.includes('Mail.Send')) return refusal('authUnsuccessful', 'app-only token without the Mail.Send role of Office 365 Exchange Online');
    if (!user.hveApps.some((id) => id.toLowerCase() === appId.toLowerCase())) {
      return refusal('authUnsuccessful', `app ${appId} is not on ${user.upn}'s Allowed Apps list (Add-HVEAppAccess)`);
    }
    return { submitter: { tenantId: tenant.id, mailbox: user.upn, appId } };
  };

  /** HVE accounts may also sign in with their password (MS Learn HVE troubleshooting: "Sign in with credentials of HVE account"). */
  const checkHvePassword = (username: string, password: string): AuthOutcome => {
    const found = state.findUser(username);
    if (!found?.user.hve || found.user.password === undefined || found.user.password !== password) {
      return refusal('authUnsuccessful', `${username}: not an HVE account, or a wrong password`);
    }
    return { submitter: { tenantId: found.tenant.id, mailbox: found.user.upn, appId: '' } };
  };

  const onConnect = (session: SMTPServerSession, callback: (err?: Error | null) => void): void => {
    state.counters.smtpConnections += 1;
    const fault = takeFault('connect', session, undefined);
    if (fault === 'drop') return;
    callback(fault ?? null);
  };

  const onAuth = (
    auth: SMTPServerAuthentication,
    session: SMTPServerSession,
    callback: (err: Error | null | undefined, response?: SMTPServerAuthenticationResponse) => void,
  ): void => {
    const username = auth.username ?? '';
    const fault = takeFault('auth', session, username);
    if (fault === 'drop') return;
    if (fault) return callback(fault);
    if (auth.method !== 'XOAUTH2' && hve) {
      const outcome = checkHvePassword(username, auth.password ?? '');
      if ('refusal' in outcome) {
        log.info({ session: session.id, mailbox: username, reason: outcome.reason }, 'HVE password refused');
        return callback(refuse(withTail(EXCHANGE_REPLIES.authUnsuccessful.line)));
      }
      holdThread(session, outcome.submitter);
      state.recordSmtpReply(EXCHANGE_REPLIES.authSuccessful.line);
      log.info({ session: session.id, mailbox: outcome.submitter.mailbox }, 'HVE password accepted');
      return callback(null, { user: outcome.submitter.mailbox });
    }
    if (auth.method !== 'XOAUTH2') {
      // Basic authentication for SMTP AUTH is retired in Exchange Online (M365.md).
      log.info({ session: session.id, mailbox: username, method: auth.method }, 'Basic AUTH refused');
      return callback(refuse(withTail(EXCHANGE_REPLIES.basicAuthDisabled.line)));
    }
    checkXoauth2(username, auth.accessToken ?? '').then(
      (outcome) => {
        if ('refusal' in outcome) {
          log.info({ session: session.id, mailbox: username, reason: outcome.reason }, 'XOAUTH2 refused');
          // Since 2023 Exchange ends AUTH refusals with `[HOST TIMESTAMP ID]` (exchange-replies.ts withTail).
          return callback(refuse(withTail(EXCHANGE_REPLIES[outcome.refusal].line)));
        }
        if (server.bySession.get(session)?.gone) return; // the client left while the token was checked
        holdThread(session, outcome.submitter);
        state.recordSmtpReply(EXCHANGE_REPLIES.authSuccessful.line);
        log.info({ session: session.id, mailbox: outcome.submitter.mailbox, appId: outcome.submitter.appId }, 'XOAUTH2 accepted');
        // smtp-server answers `235` + its 2.7.0 + "Authentication successful": Exchange's exact reply.
        callback(null, { user: outcome.submitter.mailbox });
      },
      (err: unknown) => {
        log.error({ err, session: session.id }, 'XOAUTH2 check failed');
        callback(refuse(withTail(EXCHANGE_REPLIES.authUnsuccessful.line)));
      },
    );
  };

  const onMailFrom = (address: SMTPServerAddress, session: SMTPServerSession, callback: (err?: Error | null) => void): void => {
    const submitter = submitters.get(session);
    // authOptional lets MAIL through smtp-server so that Exchange's 530 5.7.57 is the answer.
    if (!submitter) return callback(refuse(withTail(EXCHANGE_REPLIES.notAuthenticated.line)));
    const fault = takeFault('mail', session, submitter.mailbox);
    if (fault === 'drop') return;
    if (fault) return callback(fault);
    // Only SIZE= over what EHLO advertised is refused here (smtp-server checks it too): a message over
    // the mailbox's own MaxSendSize is taken at MAIL FROM, as Exchange takes it.
    const declared = address.args ? address.args.SIZE : undefined;
    if (typeof declared === 'string' && Number(declared) > EXCHANGE_ADVERTISED_SIZE) {
      return callback(refuse(EXCHANGE_REPLIES.messageTooBig.line));
    }
    callback();
  };

  const onRcptTo = (address: SMTPServerAddress, session: SMTPServerSession, callback: (err?: Error | null) => void): void => {
    const fault = takeFault('rcpt', session, submitters.get(session)?.mailbox);
    if (fault === 'drop') return;
    if (fault) return callback(fault);
    const { recipientsPerMessage, unlimited } = limits();
    const rcpts = session.envelope.rcptTo;
    // A repeated recipient replaces its earlier entry in smtp-server, so it adds nothing.
    const repeat = rcpts.some((r) => r.address.toLowerCase() === address.address.toLowerCase());
    if (!unlimited && !repeat && rcpts.length >= recipientsPerMessage) return callback(refuse(EXCHANGE_REPLIES.tooManyRecipients.line));
    // An address that does not exist at one of the tenant's own domains is refused here (Directory
    // Based Edge Blocking); at another domain Exchange accepts it and the NDR comes later.
    const submitter = submitters.get(session);
    const tenant = submitter ? state.findTenant(submitter.tenantId) : undefined;
    if (tenant && !state.isExternal(tenant, address.address) && listed(state.scenario.mailFlow.unknownRecipients, address.address)) {
      state.recordSubmissionError(submitter!.mailbox, 'invalidRecipients');
      return callback(refuse(recipientNotFoundReply(address.address)));
    }
    callback();
  };

  /** SendAs (M365.md reply catalogue): the mailbox itself, its aliases, or an address it holds SendAs on. */
  const maySendAs = (mailbox: string, addresses: string[]): boolean => {
    const found = state.findUser(mailbox);
    if (!found) return false;
    const allowed = new Set([found.user.upn, ...found.user.aliases, ...found.user.sendAs].map((a) => a.toLowerCase()));
    return addresses.every((a) => allowed.has(a.toLowerCase()));
  };

  /** What the end of DATA comes to: a reply for an accepted message, a refusal, or a dropped connection. */
  type DataOutcome = { reply: string } | { error: SMTPServerError } | 'drop';

  const finishData = async (session: SMTPServerSession, stream: SMTPServerDataStream, raw: Buffer, size: number): Promise<DataOutcome> => {
    const submitter = submitters.get(session);
    if (!submitter) return { error: refuse(withTail(EXCHANGE_REPLIES.notAuthenticated.line)) };
    const { mailbox } = submitter;
    const fault = takeFault('data', session, mailbox);
    if (fault === 'drop') return fault;
    if (fault) {
      // A 2xx fault reply claims acceptance without keeping the message.
      return (fault.responseCode ?? 500) < 400 ? { reply: fault.message } : { error: fault };
    }
    // Exchange's store driver decides at the end of DATA, in this order. Only a message over what EHLO
    // advertised is refused here; one over the mailbox's MaxSendSize is taken and bounced (NDR 5.2.3).
    if (stream.sizeExceeded || size > EXCHANGE_ADVERTISED_SIZE) return { error: refuse(EXCHANGE_REPLIES.messageTooBig.line) };
    if (overThreadLimit(session, mailbox)) return { error: refuse(EXCHANGE_REPLIES.senderThreadLimit.line) };
    // Continuous-error throttling blocks every submission of the mailbox for a while (MS Learn
    // "Continuous error throttling for SMTP AUTH submissions", as shared/M365.md gives it).
    const block = state.continuousErrorBlock(mailbox);
    if (block) return { error: refuse(withTail(EXCHANGE_REPLIES[CONTINUOUS_REPLY[block]].line)) };
    const user = state.findUser(mailbox)?.user;
    // Every message sent by SMTP AUTH is saved in Sent Items; a full mailbox cannot send (shared/M365.md "mailbox storage").
    if (user && state.mailboxFull(user, size)) {
      state.recordSubmissionError(mailbox, 'mailboxFull');
      return { error: refuse(withTail(EXCHANGE_REPLIES.mailboxFull.line)) };
    }
    const head = headerBlock(raw);
    const headerFrom = headerValues(head, 'From').flatMap((v) => addressparser(v, { flatten: true }).map((a) => a.address));
    const mailFrom = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
    const senders = [...headerFrom, ...(mailFrom ? [mailFrom] : [])];
    if (!maySendAs(mailbox, senders)) {
      log.info({ session: session.id, mailbox, senders }, 'SendAs denied');
      state.recordSubmissionError(mailbox, 'sendAsDenied');
      const denied = senders.find((a) => a.toLowerCase() !== mailbox.toLowerCase()) ?? senders[0] ?? '';
      return { error: refuse(sendAsDeniedReply(mailbox, denied)) };
    }
    const rcptTo = session.envelope.rcptTo.map((r) => r.address);
    // The message arrives when its quota is taken: its receivedAt is that instant, so that what the
    // quota window admitted and what a reader counts from the arrival times agree to the millisecond.
    let acceptedAt = Date.now();
    let verdict = state.consumeQuota(mailbox, rcptTo.length, acceptedAt);
    // Over 30 a minute, Exchange carries the excess over to the following minutes: the DATA reply
    // waits for a slot instead of refusing ("any excess in message submission will be throttled and
    // successively carried over", MS Learn Exchange Online limits, quoted in
    // https://github.com/MicrosoftDocs/OfficeDocs-Support/issues/1150).
    while (verdict === 'rate') {
      const waitMs = state.minuteSlotFreesInMs(mailbox);
      log.info({ session: session.id, mailbox, waitMs }, 'over the message rate: submission delayed');
      await new Promise((resolve) => setTimeout(resolve, waitMs));
      acceptedAt = Date.now();
      verdict = state.consumeQuota(mailbox, rcptTo.length, acceptedAt);
    }
    if (verdict !== 'ok') {
      log.info({ session: session.id, mailbox, verdict }, 'submission quota exceeded');
      return { error: refuse(EXCHANGE_REPLIES.submissionQuotaExceeded.line) };
    }
    const headerId = headerValues(head, 'Message-ID')[0];
    const messageId = headerId && /^<[^<>\s]+>$/.test(headerId) ? headerId : `<${randomUUID()}@${SANDBOX_HOST}>`;
    const reply = acceptedReply(messageId);
    await state.addMessage({ via: 'smtp', tenantId: submitter.tenantId, mailbox, appId: submitter.appId, envelope: { mailFrom, rcptTo }, size, raw, reply }, new Date(acceptedAt));
    // An HVE account is a mail user: it has no Sent Items (MS Learn "High volume email for Microsoft 365").
    if (!user?.hve) state.saveSentItem(mailbox, size);
    if (user) scheduleReports(session, user, raw, size, rcptTo, new Date(acceptedAt));
    state.recordSubmissionError(mailbox, undefined);
    state.recordSmtpReply(reply);
    log.info({ session: session.id, mailbox, size, recipients: rcptTo.length, messageId }, 'message accepted');
    return { reply: splitReply(reply).text };
  };

  /**
   * What becomes of each recipient after the 250, and the reports Exchange sends the sender for it:
   * over the mailbox's MaxSendSize every recipient bounces (5.2.3); otherwise, per recipient, the tenant
   * external recipient rate limit (5.7.233; HVE mail does not count), an unknown address at another
   * domain (5.1.1), a full mailbox (5.2.2), an unreachable domain (a delay notification, then 4.4.7
   * when the message expires). The reports come after the scenario's delays (mailFlow).
   */
  const scheduleReports = (session: SMTPServerSession, user: User, raw: Buffer, size: number, rcptTo: string[], arrivalDate: Date): void => {
    const found = state.findUser(user.upn);
    if (!found) return;
    const { tenant } = found;
    const flow = state.scenario.mailFlow;
    const maxSendSize = user.maxSendSizeBytes ?? limits().maxMessageBytes;
    const failed: NdrRecipient[] = [];
    const delayed: NdrRecipient[] = [];
    if (size > maxSendSize) {
      failed.push(...rcptTo.map((address) => ({ address, reason: 'messageTooLarge' as const })));
    } else {
      for (const address of rcptTo) {
        const external = state.isExternal(tenant, address);
        if (external && !user.hve && !state.takeExternalRecipient(tenant)) {
          failed.push({ address, reason: tenant.trial ? 'trialTenantExternalLimit' : 'tenantExternalLimit' });
        } else if (external && listed(flow.unknownRecipients, address)) {
          failed.push({ address, reason: 'recipientUnknown' });
        } else if (listed(flow.fullMailboxes, address)) {
          failed.push({ address, reason: 'recipientMailboxFull' });
        } else if (listed(flow.unreachableDomains, address.split('@')[1] ?? '')) {
          delayed.push({ address, reason: 'domainUnreachableDelayed', willRetryUntil: new Date(arrivalDate.getTime() + flow.expirationMs) });
        }
      }
    }
    const base = {
      tenantDomain: tenant.domain,
      mailbox: user.upn,
      original: raw,
      originalSize: size,
      maxSendSizeBytes: maxSendSize,
      arrivalDate,
      receivedFromMta: session.hostNameAppearsAs || session.remoteAddress,
    };
    if (failed.length > 0) state.scheduleReport({ ...base, recipients: failed }, flow.ndrDelayMs);
    if (delayed.length > 0) {
      state.scheduleReport({ ...base, recipients: delayed }, flow.delayNotificationMs);
      const expired = delayed.map((r) => ({ address: r.address, reason: 'domainUnreachableExpired' as const }));
      state.scheduleReport({ ...base, recipients: expired }, flow.expirationMs);
    }
    if (failed.length + delayed.length > 0) {
      log.info({ session: session.id, mailbox: user.upn, failed: failed.map((r) => `${r.address} ${r.reason}`), delayed: delayed.map((r) => r.address) }, 'reports scheduled');
    }
  };

  const onData = (stream: SMTPServerDataStream, session: SMTPServerSession, callback: (err?: Error | null, message?: string) => void): void => {
    // Keep what EHLO's SIZE allows; a message over the mailbox's MaxSendSize is still taken (and bounced).
    const max = EXCHANGE_ADVERTISED_SIZE;
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on('data', (chunk: Buffer) => {
      size += chunk.length;
      // Keep memory bounded: an oversized message is refused anyway.
      if (size <= max) chunks.push(chunk);
    });
    stream.on('error', (err) => {
      // The client went away mid-DATA: nothing to answer, nothing stored.
      log.info({ session: session.id, reason: err.message }, 'DATA ended early');
    });
    stream.on('end', () => {
      // smtp-server hands over the message dot-unstuffed and otherwise as received.
      const raw = size <= max ? Buffer.concat(chunks, size) : Buffer.alloc(0);
      finishData(session, stream, raw, size).then(
        (outcome) => {
          if (outcome === 'drop') return;
          if ('error' in outcome) return callback(outcome.error);
          callback(null, outcome.reply);
        },
        (err: unknown) => {
          log.error({ err, session: session.id }, 'storing a message failed');
          callback(refuse(EXCHANGE_REPLIES.serverBusy.line));
        },
      );
    });
  };

  const onClose = (session: SMTPServerSession): void => {
    releaseThread(session);
  };

  const options: SMTPServerOptions = {
    key: deps.tls.keyPem,
    cert: deps.tls.certPem,
    // TLS 1.2 or newer only (M365.md "Endpoints").
    minVersion: 'TLSv1.2',
    name: SANDBOX_FRONTEND,
    // `250-<front end> Hello [<client address>]` (transcripts, exchange-replies.ts).
    heloResponse: '%s Hello %s',
    disableReverseLookup: true,
    // Exchange offers exactly these (DESIGN.md "Checked on this machine"); PLAIN gets 504 5.7.4.
    authMethods: ['LOGIN', 'XOAUTH2'],
    // MAIL before AUTH must reach onMailFrom, which answers Exchange's 530 5.7.57.
    authOptional: true,
    // Exchange advertises ENHANCEDSTATUSCODES and puts a code on every reply but the greeting and EHLO.
    hideENHANCEDSTATUSCODES: false,
    // 8BITMIME, SMTPUTF8 and PIPELINING stay advertised (smtp-server's defaults), and DSN, which
    // Exchange lists too (transcripts in exchange-replies.ts) and smtp-server implements (RFC 3461
    // NOTIFY, RET, ENVID, ORCPT are parsed and checked). BINARYMIME and CHUNKING, which Exchange also
    // lists, are left out: smtp-server has no BDAT command (RFC 3030), and advertising CHUNKING without
    // it would make a client's BDAT fail (docs/sandbox.md says so).
    hideDSN: false,
    // RFC 4954 section 4 allows 12,288-octet AUTH lines and a real XOAUTH2 line is ~3 KB: keep
    // smtp-server's 16 KB command limit, above both.
    maxCommandLength: 16 * 1024,
    // Stop waiting for open sessions quickly when the sandbox closes (tests, Ctrl-C).
    closeTimeout: 1000,
    logger: false,
    onConnect,
    onAuth,
    onMailFrom,
    onRcptTo,
    onData,
    onClose,
  };
  // EHLO advertises SIZE 157286400 (150 MB, the highest MaxSendSize) to everyone, whatever the
  // mailbox's own limit (transcripts: https://github.com/datawookie/emayili/issues/147,
  // https://github.com/python/cpython/issues/115251); the mailbox's limit is applied after DATA.
  options.size = EXCHANGE_ADVERTISED_SIZE;

  const server = new ExchangeSmtpServer(options, (line) => state.recordSmtpReply(line));
  // Connection errors (a TLS handshake that fails, a reset mid-transaction) must never crash the sandbox.
  server.on('error', (err) => log.warn({ err }, 'SMTP connection error'));
  return server;
}
