import { hostname as osHostname } from 'node:os';
import type { AddressInfo } from 'node:net';
import type {
  SMTPServerAddress,
  SMTPServerAuthentication,
  SMTPServerAuthenticationResponse,
  SMTPServerDataStream,
  SMTPServerOptions,
  SMTPServerSession,
} from 'smtp-server';
import { smtpIngressSchema, toConfigIssues, type Config } from '../../config/index.js';
import { Relay365Error } from '../../errors.js';
import type { ConfigIssue } from '../../config/issues.js';
import type { FrontDoorObserver, Logger } from '../../observe/index.js';
import type { OutboxStore, Router } from '../../outbox/index.js';
import { Allowlist, unmapIPv4 } from './allowlist.js';
import { RelayServer, type ConnectionHooks, type ListenerPolicy, type RelayConnection } from './connection.js';
import { LoginLockout, lockoutAddress, type LoginAttempt } from './login-lockout.js';
import { MessageCollector } from '../../message/index.js';
import { SenderPolicy, asciiAddress, createAdmission, type Submitter } from '../../admission/index.js';
import { LoginsBusyError, PasswordChecker } from './password.js';
import { REPLIES, replyError } from './replies.js';
import { listenerAddressNames, loadTlsIdentity, type TlsIdentity } from './self-signed.js';

/** What the SMTP front door needs; the runtime wires the real ones, tests their own. */
export interface SmtpIngressDeps {
  config: Config['smtp'];
  limits: Config['limits'];
  /** Where a self-signed certificate is kept (`<dataDir>/tls`) when none is configured. */
  dataDir: string;
  router: Router;
  /** Resolves only once the message is committed: the 250 waits for it. */
  outbox: Pick<OutboxStore, 'enqueue'>;
  /** The suppression list (addresses that hard-bounced): a recipient on it is refused at RCPT TO; default none. */
  suppressions?: Pick<OutboxStore, 'suppressed'>;
  logger: Logger;
  /** Told of connections, failed logins, lockouts, refused senders and accepted messages (the metrics); default none. */
  observe?: FrontDoorObserver;
  /** Name in the greeting and `Received:`; default `smtp.hostname`, else the machine's name. */
  hostname?: string;
  /** How long close() lets transactions under way finish before it cuts them (default 30 s). */
  closeTimeoutMs?: number;
}

/** Where a listener listens. */
export interface SmtpListenerAddress {
  host: string;
  port: number;
  tls: 'starttls' | 'implicit' | 'none';
}

/** The SMTP front door: listeners that accept mail from local devices into the outbox. */
export interface SmtpIngress {
  /** Opens every configured listener; resolves with their addresses (port 0 becomes the real port). */
  listen(): Promise<SmtpListenerAddress[]>;
  /** Stops accepting connections, lets transactions under way finish (each gets its reply), then closes. */
  close(): Promise<void>;
  /** Closes every listener and connection at once; a message not yet answered is not accepted. */
  closeNow(): void;
  /** The certificate TLS listeners present, once {@link SmtpIngress.listen} has loaded it (undefined without a TLS listener). */
  certificate(): SmtpCertificate | undefined;
  /**
   * Checks a reloaded config's `smtp` section and limits (users, allowlist, certificate) and returns
   * what applies them: users, allowlist, sender rules, size, recipient and connection limits for the
   * commands and connections that come next, and the certificate for new TLS handshakes. A session under
   * way is held to the new users and sender rules at its next command. Listeners, `hostname` and `idleTimeoutSeconds` stay as they started.
   * @throws Relay365Error `R365_CONFIG_INVALID` or `R365_TLS_CERTIFICATE_UNUSABLE`, having changed nothing.
   */
  prepareReload(next: { config: Config['smtp']; limits: Config['limits'] }): Promise<() => void>;
}

/** The SMTP front door's certificate, as `serve` prints it and clients are told to trust it. */
export interface SmtpCertificate {
  /** The PEM file clients trust (`<dataDir>/tls/relay.crt`, or `smtp.certFile`). */
  path: string;
  /** SHA-256 fingerprint, `AB:CD:...`, as `openssl x509 -noout -fingerprint -sha256 -in PATH` prints it. */
  sha256: string;
  /** Its subjectAltName entries: the names and addresses a verifying client may use. */
  names: string[];
  /** `configured`, `generated` (made at this start) or `reused`. */
  origin: TlsIdentity['origin'];
  /** Where a pair replaced at this start was kept. */
  replacedPath?: string;
}

/** Who may relay on a connection: a logged-in user, or the allowlist entry holding its address. */
interface Principal {
  /** `NewMessage.source.user`: the user's name, or `allowlist:<cidr>`. */
  source: string;
  /** How a reply names it. */
  display: string;
  allowedSenders: readonly string[] | undefined;
  policy: SenderPolicy;
  rewrite: Submitter['rewrite'];
}

/** A logged-in user: its principal and its stored hash. */
interface LocalUser extends Principal {
  name: string;
  passwordHash: string;
}

/** smtp-server's command line limit; AUTH PLAIN of a long name and password stays far below it. */
const MAX_COMMAND_OCTETS = 4096;
const DEFAULT_CLOSE_TIMEOUT_MS = 30_000;

/**
 * The config schema's own rules for the section (CIDRs, hash formats, duplicate users), every problem at
 * once: loadConfig has refused a bad section already; this keeps a section built in code to the same verdict.
 */
function configProblems(config: Config['smtp']): ConfigIssue[] {
  const result = smtpIngressSchema.safeParse(config);
  return result.success ? [] : toConfigIssues(result.error).map((issue) => ({ ...issue, path: `smtp.${issue.path}` }));
}

/**
 * The local SMTP relay for printers, scanners and legacy apps (docs/devices.md). smtp-server owns
 * the protocol; this owns the policy: who may relay (local users with scrypt hashes, AUTH only over
 * TLS unless a listener allows it, an IP allowlist), as whom (`allowedSenders` and the Router), how
 * much (size, recipients, connections, commands), and it answers `250` only once the outbox has
 * committed the message. Nothing listens until {@link SmtpIngress.listen}.
 *
 * @throws Relay365Error `R365_CONFIG_INVALID` for an allowlist CIDR, password hash or user name
 *   the relay cannot use (every problem listed).
 * @example
 * const smtp = createSmtpIngress({ config: config.smtp, limits: config.limits, dataDir: config.dataDir, router, outbox: store, logger });
 * const listeners = await smtp.listen(); // [{ host: '127.0.0.1', port: 2525, tls: 'starttls' }]
 * await smtp.close();
 */
export function createSmtpIngress(deps: SmtpIngressDeps): SmtpIngress {
  // let: a reload (prepareReload) replaces the policy; every hook reads it when it runs.
  let { config } = deps;
  const { router, outbox, logger } = deps;
  const observe: FrontDoorObserver = deps.observe ?? (() => undefined);
  const issues = configProblems(config);
  if (issues.length > 0) {
    throw new Relay365Error(
      'R365_CONFIG_INVALID',
      `The smtp section has ${issues.length} problem(s):\n${issues.map((i) => `  - ${i.path}: ${i.message}`).join('\n')}`,
      {
        details: { issues },
      },
    );
  }
  const hostname = deps.hostname ?? config.hostname ?? osHostname();
  let maxMessageBytes = config.maxMessageBytes ?? deps.limits.maxMessageBytes;
  let maxRecipients = config.maxRecipients ?? deps.limits.recipientsPerMessage;
  const closeTimeoutMs = deps.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS;

  const usersOf = (smtp: Config['smtp']): Map<string, LocalUser> =>
    new Map(
      smtp.users.map((u) => [
        u.name,
        {
          name: u.name,
          passwordHash: u.passwordHash,
          source: u.name,
          display: u.name,
          allowedSenders: u.allowedSenders,
          policy: new SenderPolicy(u.allowedSenders),
          rewrite: u.rewriteSender,
        },
      ]),
    );
  const allowlistOf = (smtp: Config['smtp']): Allowlist<Principal> =>
    new Allowlist<Principal>(
      smtp.allowlist.map((e) => ({
        cidr: e.cidr,
        value: {
          source: `allowlist:${e.cidr}`,
          display: `clients in ${e.cidr}`,
          allowedSenders: e.allowedSenders,
          policy: new SenderPolicy(e.allowedSenders),
          rewrite: e.rewriteSender,
        },
      })),
    );
  let users = usersOf(config);
  let allowlist = allowlistOf(config);
  const passwords = new PasswordChecker();
  let lockout = new LoginLockout({ failures: config.lockoutFailures, windowMs: config.lockoutWindowSeconds * 1000, lockMs: config.lockoutSeconds * 1000 });

  /** Open connections per client address, and in all (counted from onConnect to onClose). */
  const perClient = new Map<string, number>();
  let total = 0;
  const counted = new WeakSet<SMTPServerSession>();

  let servers: RelayServer[] = [];
  let addresses: SmtpListenerAddress[] | undefined;
  let tlsIdentity: TlsIdentity | undefined;
  let draining = false;

  const clientOf = (session: SMTPServerSession): string => unmapIPv4(session.remoteAddress);
  const connectionOf = (session: SMTPServerSession): RelayConnection | undefined => {
    for (const server of servers) {
      const connection = server.bySession.get(session);
      if (connection) return connection;
    }
    return undefined;
  };
  const userOf = (session: SMTPServerSession): LocalUser | undefined => (typeof session.user === 'string' ? users.get(session.user) : undefined);
  const principalOf = (session: SMTPServerSession): Principal | undefined => userOf(session) ?? allowlist.match(session.remoteAddress)?.value;
  const submitterOf = (principal: Principal, session: SMTPServerSession): Submitter => ({
    source: { kind: 'smtp', client: clientOf(session), user: principal.source },
    display: principal.display,
    allowedSenders: principal.allowedSenders,
    policy: principal.policy,
    rewrite: principal.rewrite,
  });
  // The checks every door runs; SMTP runs the sender and recipient ones early, at MAIL and RCPT.
  const admission = createAdmission({
    limits: () => ({ maxMessageBytes, recipientsPerMessage: maxRecipients }),
    router,
    // No SMTP client names a mailbox: its From decides.
    mailboxes: () => [],
    suppressions: deps.suppressions,
    enqueue: (message) => outbox.enqueue(message),
    hostname,
  });

  /** Refuses through a hook's callback, with the details for the refusal's log line. */
  const refuse = (session: SMTPServerSession, line: string, details?: Record<string, unknown>): Error => {
    if (details) connectionOf(session)?.noteRefusal(details);
    return replyError(line);
  };

  const hooks: ConnectionHooks = {
    get draining() {
      return draining;
    },
    get maxCommandsPerConnection() {
      return config.maxCommandsPerConnection;
    },
    lockedUntil: (client) => lockout.lockedUntil(unmapIPv4(client)),
    refused: (connection, line, details) => {
      const session = connection.session;
      switch (details?.event) {
        case 'login.failed':
          observe({ type: 'smtp.auth_failed', reason: 'invalid' });
          if (details.lockedOut === true) observe({ type: 'smtp.lockout' });
          break;
        case 'login.locked':
          observe({ type: 'smtp.auth_failed', reason: 'locked' });
          break;
        case 'sender.refused':
          observe({ type: 'smtp.sender_refused' });
          break;
        case 'connection.refused':
          observe({ type: 'smtp.connection', outcome: 'refused' });
          break;
      }
      logger.info(
        { session: session.id, client: unmapIPv4(connection.remoteAddress), user: principalOf(session)?.source, reply: line, ...details },
        'SMTP refused',
      );
    },
  };

  /**
   * Connections of clients neither allowlisted nor logged in yet ("strangers"), oldest first, with
   * the timer that closes each at `preAuthTimeoutSeconds`. They may use every slot but the
   * `reservedConnections`, at most `maxPreAuthConnectionsPerClient` per address (IPv6 per /64).
   */
  const strangers = new Map<SMTPServerSession, { key: string; timer: NodeJS.Timeout }>();
  const strangersPerClient = new Map<string, number>();
  const strangerSlotsOf = (smtp: Config['smtp']): number =>
    smtp.maxConnections - Math.min(smtp.reservedConnections ?? Math.floor(smtp.maxConnections / 5), smtp.maxConnections - 1);
  let strangerSlots = strangerSlotsOf(config);

  /** The session is no stranger any more: logged in, or gone. */
  const welcome = (session: SMTPServerSession): void => {
    const stranger = strangers.get(session);
    if (!stranger) return;
    strangers.delete(session);
    clearTimeout(stranger.timer);
    const left = (strangersPerClient.get(stranger.key) ?? 1) - 1;
    if (left > 0) strangersPerClient.set(stranger.key, left);
    else strangersPerClient.delete(stranger.key);
  };

  /** Closes the oldest stranger that is not in the middle of a command; false when every one is. */
  const evictOldestStranger = (): boolean => {
    for (const session of strangers.keys()) {
      const connection = connectionOf(session);
      if (connection?.busy) continue;
      welcome(session);
      connection?.noteRefusal({ evicted: true });
      connection?.sendLine(REPLIES.preAuthEvicted); // 421 closes the connection
      return true;
    }
    return false;
  };

  const onConnect = (session: SMTPServerSession, callback: (err?: Error | null) => void): void => {
    if (draining) return callback(refuse(session, REPLIES.shuttingDown, { event: 'connection.refused' }));
    const client = clientOf(session);
    const mine = perClient.get(client) ?? 0;
    if (mine >= config.maxConnectionsPerClient || total >= config.maxConnections) {
      return callback(refuse(session, REPLIES.tooManyConnections, { event: 'connection.refused', connections: { client: mine, total } }));
    }
    if (!allowlist.match(session.remoteAddress)) {
      const key = lockoutAddress(client);
      const waiting = strangersPerClient.get(key) ?? 0;
      if (waiting >= config.maxPreAuthConnectionsPerClient) {
        return callback(refuse(session, REPLIES.tooManyConnections, { event: 'connection.refused', connections: { notLoggedIn: waiting } }));
      }
      if (strangers.size >= strangerSlots && !evictOldestStranger()) {
        return callback(refuse(session, REPLIES.tooManyConnections, { event: 'connection.refused', connections: { notLoggedIn: strangers.size, total } }));
      }
      const timer = setTimeout(() => {
        const connection = connectionOf(session);
        welcome(session);
        if (connection && !connection.ending && session.user === undefined) {
          connection.noteRefusal({ preAuthTimeoutSeconds: config.preAuthTimeoutSeconds });
          connection.sendLine(REPLIES.preAuthTimeout);
        }
      }, config.preAuthTimeoutSeconds * 1000);
      timer.unref();
      strangers.set(session, { key, timer });
      strangersPerClient.set(key, waiting + 1);
    }
    perClient.set(client, mine + 1);
    total += 1;
    counted.add(session);
    observe({ type: 'smtp.connection', outcome: 'accepted' });
    callback();
  };

  const onClose = (session: SMTPServerSession): void => {
    welcome(session);
    if (!counted.delete(session)) return;
    const client = clientOf(session);
    const left = (perClient.get(client) ?? 1) - 1;
    if (left > 0) perClient.set(client, left);
    else perClient.delete(client);
    total -= 1;
  };

  const onAuth = (
    auth: SMTPServerAuthentication,
    session: SMTPServerSession,
    callback: (err: Error | null | undefined, response?: SMTPServerAuthenticationResponse) => void,
  ): void => {
    const client = clientOf(session);
    if (auth.method === 'PLAIN' && auth.authzid && auth.authcid && auth.authzid !== auth.authcid) {
      return callback(refuse(session, REPLIES.authzidRefused));
    }
    const user = users.get(auth.username ?? '');
    const checkPassword = (attempt: LoginAttempt): void => {
      const password = auth.password ?? '';
      const check = user ? passwords.check(user.name, password, user.passwordHash, client) : passwords.refuseUnknown(password, client);
      check.then(
        (ok) => {
          const locked = attempt.settle(ok && user !== undefined);
          if (ok && user) {
            welcome(session);
            logger.debug({ session: session.id, client, user: user.name, method: auth.method }, 'SMTP login');
            return callback(null, { user: user.name });
          }
          // Only a configured name is logged: a password typed into the name field must not reach a log.
          const attemptedUser = user ? user.name : '(unknown user)';
          if (locked) {
            logger.warn(
              { event: 'login.lockout', session: session.id, client, attemptedUser, lockoutSeconds: config.lockoutSeconds },
              'SMTP logins locked out after repeated failures',
            );
          }
          callback(refuse(session, REPLIES.authInvalid, { event: 'login.failed', attemptedUser, ...(locked ? { lockedOut: true } : {}) }));
        },
        (err: unknown) => {
          // Not the client's failure: neither a wrong password nor a reason to lock anyone.
          attempt.release();
          if (err instanceof LoginsBusyError) return callback(refuse(session, REPLIES.authBusy));
          logger.error({ err, session: session.id, client }, 'SMTP password check failed');
          callback(refuse(session, REPLIES.authInvalid));
        },
      );
    };
    // Counted from here, before the check runs: parallel guesses cannot get past the limit. The lock
    // may have started while this client typed its password. Logins beyond the limit's worth under
    // way wait for those verdicts rather than being refused (printers behind one NAT log in together).
    void lockout.beginWhenFree(client, user?.name).then((attempt) => {
      if ('lockedUntil' in attempt) {
        return callback(refuse(session, REPLIES.authLockedOut, { event: 'login.locked', lockedUntil: attempt.lockedUntil.toISOString() }));
      }
      checkPassword(attempt);
    });
  };

  const onMailFrom = (address: SMTPServerAddress, session: SMTPServerSession, callback: (err?: Error | null) => void): void => {
    const principal = principalOf(session);
    if (!principal) return callback(refuse(session, REPLIES.authRequired));
    const refused = admission.checkSender(address.address, submitterOf(principal, session));
    if (refused) return callback(refuse(session, refused.smtp, refused.reason === 'sender-not-allowed' ? refused.details : undefined));
    callback();
  };

  const onRcptTo = (address: SMTPServerAddress, session: SMTPServerSession, callback: (err?: Error | null) => void): void => {
    if (!principalOf(session)) return callback(refuse(session, REPLIES.relayingDenied));
    // RFC 5321 4.1.1.3 makes servers accept a bare `postmaster`; a relay has nowhere to send it.
    if (!address.address.includes('@')) return callback(refuse(session, REPLIES.recipientWithoutDomain));
    const rcpts = session.envelope.rcptTo;
    // A repeated recipient replaces its earlier entry in smtp-server, so it adds nothing.
    const repeat = rcpts.some((r) => r.address.toLowerCase() === address.address.toLowerCase());
    const tooMany = repeat ? undefined : admission.checkRecipientCount(rcpts.length + 1);
    if (tooMany) return callback(refuse(session, tooMany.smtp));
    if (!deps.suppressions) return callback();
    // A hard-bounced address draws an NDR again: refuse it here, with when and why (SMTP has no override).
    admission.checkSuppressed([address.address]).then(
      (suppressed) => {
        if (!suppressed) return callback();
        callback(refuse(session, suppressed.smtp, { event: 'recipient.suppressed', recipient: address.address }));
      },
      (err: unknown) => {
        deps.logger.warn({ event: 'suppressions.unavailable', err }, 'cannot read the suppression list; answering 451');
        callback(refuse(session, REPLIES.storeUnavailable));
      },
    );
  };

  /** Decides on a message received in full (the admission pipeline): the reply line, after the outbox committed it if accepted. */
  const finishData = async (session: SMTPServerSession, collector: MessageCollector, connection: RelayConnection | undefined): Promise<string> => {
    const principal = principalOf(session);
    const { mailFrom } = session.envelope;
    // MAIL checked these already; the session may have changed since (a defence, not a path).
    if (!collector.oversized && (!principal || !mailFrom)) return REPLIES.authRequired;
    const client = clientOf(session);
    const traceId = `${session.id}.${session.transaction}`;
    const submitter: Submitter = principal ? submitterOf(principal, session) : { source: { kind: 'smtp', client }, display: client };
    const verdict = await admission.admit(
      {
        raw: collector.oversized ? Buffer.alloc(0) : collector.bytes(),
        head: collector.oversized ? Buffer.alloc(0) : collector.head(),
        scan: { size: collector.size, hasNul: collector.hasNul, bareLf: collector.bareLf, longest: collector.longest },
        envelope: { from: mailFrom ? mailFrom.address : '', to: session.envelope.rcptTo.map((r) => r.address) },
        // RCPT TO refused too many and suppressed recipients one by one, with the same checks.
        recipientsChecked: true,
        received: { helo: session.hostNameAppearsAs, clientAddress: client, protocol: session.transmissionType, id: traceId },
        gone: () => connection?.gone === true,
      },
      submitter,
    );
    if (!verdict.ok) {
      if (verdict.reason === 'sender-not-allowed') connection?.noteRefusal(verdict.details ?? {});
      if (verdict.reason === 'store-unavailable' && verdict.cause !== undefined) {
        logger.error({ err: verdict.cause, trace: traceId, client, user: principal?.source }, 'SMTP message could not be queued');
        connection?.noteRefusal({ cause: (verdict.cause as { code?: string }).code ?? 'error' });
      }
      return verdict.smtp;
    }
    const { message, stored, route } = verdict;
    observe({ type: 'smtp.message_accepted' });
    logger.info(
      {
        id: stored!.id,
        trace: traceId,
        client,
        user: principal!.source,
        size: message.raw.length,
        recipients: message.envelope.to.length,
        mailbox: route.mailbox,
        pool: route.pool,
        ...(verdict.rewritten && mailFrom ? { rewrittenFrom: asciiAddress(mailFrom.address) } : {}),
      },
      'SMTP message queued',
    );
    return REPLIES.queued(stored!.id);
  };

  const onData = (stream: SMTPServerDataStream, session: SMTPServerSession, callback: (err?: Error | null, message?: string) => void): void => {
    const connection = connectionOf(session);
    const collector = new MessageCollector(maxMessageBytes);
    // However slowly it comes (a byte every few seconds keeps the idle timeout from firing), DATA ends
    // by this deadline: then the connection is cut and nothing of the message is kept.
    const deadline = setTimeout(() => {
      logger.info(
        { session: session.id, client: clientOf(session), received: collector.size, dataTimeoutSeconds: config.dataTimeoutSeconds },
        'SMTP DATA too slow; connection cut',
      );
      connection?.destroy();
    }, config.dataTimeoutSeconds * 1000);
    deadline.unref();
    stream.once('end', () => clearTimeout(deadline));
    stream.once('error', () => clearTimeout(deadline));
    stream.on('data', (chunk: Buffer) => collector.push(chunk));
    stream.on('error', (err) => {
      // The client went away mid-DATA: nothing to answer, nothing stored.
      logger.info(
        { session: session.id, client: clientOf(session), user: principalOf(session)?.source, received: collector.size, reason: err.message },
        'SMTP DATA ended early',
      );
    });
    stream.on('end', () => {
      // smtp-server hands the message over dot-unstuffed and otherwise as received.
      finishData(session, collector, connection).then(
        (line) => (line.startsWith('2') ? callback(null, line.slice(4)) : callback(replyError(line))),
        (err: unknown) => {
          logger.error({ err, session: session.id }, 'SMTP DATA handling failed');
          callback(replyError(REPLIES.storeUnavailable));
        },
      );
    });
  };

  const serverOptions = (listener: Config['smtp']['listeners'][number]): SMTPServerOptions => {
    const tlsOptions = listener.tls === 'none' || !tlsIdentity ? {} : { key: tlsIdentity.keyPem, cert: tlsIdentity.certPem };
    return {
      ...tlsOptions,
      secure: listener.tls === 'implicit',
      // TLS 1.2 or newer only, as Exchange Online itself requires.
      minVersion: 'TLSv1.2',
      name: hostname,
      banner: 'relay365',
      heloResponse: '%s Hello %s',
      // Devices on a LAN rarely have PTR records; the lookup would only delay every greeting.
      disableReverseLookup: true,
      authMethods: ['PLAIN', 'LOGIN'],
      // Allowlisted devices relay without AUTH: onMailFrom answers 530 to everyone else.
      authOptional: true,
      allowInsecureAuth: listener.allowPlainAuth,
      hideSTARTTLS: listener.tls !== 'starttls',
      disabledCommands: [
        ...(listener.tls === 'starttls' ? [] : ['STARTTLS']),
        ...(users.size === 0 ? ['AUTH'] : []),
        // sendmail jokes and proxy commands: a relay for devices has no use for them.
        'WIZ',
        'SHELL',
        'KILL',
        'XCLIENT',
        'XFORWARD',
      ],
      // Every reply but the greeting and EHLO carries its RFC 3463 code (RFC 2034).
      hideENHANCEDSTATUSCODES: false,
      // 8BITMIME, SMTPUTF8 and PIPELINING stay advertised (smtp-server's defaults); DSN stays off.
      size: maxMessageBytes,
      // A backstop for sockets still in their TLS handshake; onConnect applies the real limits.
      maxClients: config.maxConnections,
      maxCommandLength: MAX_COMMAND_OCTETS,
      socketTimeout: config.idleTimeoutSeconds * 1000,
      logger: false,
      onConnect,
      onAuth,
      onMailFrom,
      onRcptTo,
      onData,
      onClose,
    };
  };

  const listenOne = (server: RelayServer, host: string, port: number): Promise<AddressInfo> =>
    new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      server.server.once('error', onError);
      server.server.listen(port, host, () => {
        server.server.off('error', onError);
        resolve(server.server.address() as AddressInfo);
      });
    });

  const allConnections = (): RelayConnection[] => servers.flatMap((s) => [...s.live]);

  const stopListening = (): Promise<void[]> =>
    Promise.all(
      servers.map(
        (server) =>
          new Promise<void>((resolve) => {
            if (!server.server.listening) return resolve();
            server.server.close(() => resolve());
            // Sockets still in their implicit-TLS handshake have no session that could finish.
            server._pendingSockets.forEach((socket) => socket.destroy());
          }),
      ),
    );

  const closeNow = (): void => {
    draining = true;
    void stopListening();
    for (const connection of allConnections()) connection.destroy();
    addresses = undefined;
  };

  return {
    async listen() {
      if (addresses) return addresses;
      draining = false;
      if (config.listeners.some((l) => l.tls !== 'none')) {
        tlsIdentity ??= await loadTlsIdentity({
          certFile: config.certFile,
          keyFile: config.keyFile,
          dataDir: deps.dataDir,
          hostname,
          // Every name a client may dial: the machine's own, the configured ones and each listener's addresses.
          extraNames: [osHostname(), ...config.tls.names, ...listenerAddressNames(config.listeners.map((l) => l.host))],
        });
        const cert = { cert: tlsIdentity.certPath, sha256: tlsIdentity.fingerprint256, names: tlsIdentity.names };
        if (tlsIdentity.origin === 'generated') logger.info({ ...cert, replaced: tlsIdentity.replacedPath }, 'SMTP made a self-signed TLS certificate');
      }
      const opened: SmtpListenerAddress[] = [];
      servers = [];
      for (const listener of config.listeners) {
        const policy: ListenerPolicy = { tls: listener.tls, allowPlainAuth: listener.allowPlainAuth, greetingDelayMs: listener.greetingDelayMs };
        const server = new RelayServer(serverOptions(listener), policy, hooks);
        // A failed handshake or a reset must never take the relay down; smtp-server reports them here.
        server.on('error', (err: Error & { code?: string }) => logger.debug({ err, code: err.code }, 'SMTP connection error'));
        servers.push(server);
        try {
          const bound = await listenOne(server, listener.host, listener.port);
          opened.push({ host: bound.address, port: bound.port, tls: listener.tls });
        } catch (cause) {
          closeNow();
          servers = [];
          const code = (cause as NodeJS.ErrnoException).code;
          throw new Relay365Error(
            'R365_SMTP_LISTEN_FAILED',
            `The SMTP relay cannot listen on ${listener.host}:${listener.port} (${code ?? (cause as Error).message}). ` +
              (code === 'EADDRINUSE'
                ? 'Another program uses the port: stop it or choose another port in smtp.listeners.'
                : code === 'EACCES'
                  ? 'Ports below 1024 need privileges: choose a port above 1024 or grant CAP_NET_BIND_SERVICE.'
                  : 'Check smtp.listeners.'),
            { cause, details: { host: listener.host, port: listener.port } },
          );
        }
        logger.info(
          { event: 'listener.started', host: listener.host, port: opened.at(-1)!.port, tls: listener.tls, allowPlainAuth: listener.allowPlainAuth },
          'SMTP listening',
        );
      }
      addresses = opened;
      return opened;
    },

    async close() {
      if (!addresses) return;
      draining = true;
      const stopped = stopListening();
      const deadline = Date.now() + closeTimeoutMs;
      for (;;) {
        let waiting = 0;
        for (const connection of allConnections()) {
          if (connection.ending) continue;
          if (connection.busy) waiting += 1;
          else connection.sendLine(REPLIES.shuttingDown); // 421 closes the connection
        }
        if (waiting === 0) break;
        if (Date.now() > deadline) {
          logger.warn({ connections: waiting }, 'SMTP close timed out; cutting transactions still under way');
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      // Clients normally hang up on a 421 at once; do not wait for one that does not.
      const grace = setTimeout(() => allConnections().forEach((c) => c.destroy()), 1000);
      await stopped;
      clearTimeout(grace);
      for (const a of addresses) logger.info({ event: 'listener.stopped', host: a.host, port: a.port, tls: a.tls }, 'SMTP listener stopped');
      addresses = undefined;
    },

    closeNow,

    async prepareReload(next) {
      const problems = configProblems(next.config);
      if (problems.length > 0) {
        throw new Relay365Error(
          'R365_CONFIG_INVALID',
          `The smtp section has ${problems.length} problem(s):\n${problems.map((i) => `  - ${i.path}: ${i.message}`).join('\n')}`,
          { details: { issues: problems } },
        );
      }
      const certChanged =
        next.config.certFile !== config.certFile || next.config.keyFile !== config.keyFile || JSON.stringify(next.config.tls) !== JSON.stringify(config.tls);
      // Loaded before anything changes: a certificate that cannot be read refuses the whole reload.
      const newIdentity =
        certChanged && tlsIdentity
          ? await loadTlsIdentity({
              certFile: next.config.certFile,
              keyFile: next.config.keyFile,
              dataDir: deps.dataDir,
              hostname,
              extraNames: [osHostname(), ...next.config.tls.names, ...listenerAddressNames(config.listeners.map((l) => l.host))],
            })
          : undefined;
      return () => {
        const lockoutChanged =
          next.config.lockoutFailures !== config.lockoutFailures ||
          next.config.lockoutWindowSeconds !== config.lockoutWindowSeconds ||
          next.config.lockoutSeconds !== config.lockoutSeconds;
        // Listeners, hostname and the idle timeout belong to the servers already listening.
        config = { ...next.config, listeners: config.listeners, hostname: config.hostname, idleTimeoutSeconds: config.idleTimeoutSeconds };
        users = usersOf(config);
        allowlist = allowlistOf(config);
        maxMessageBytes = config.maxMessageBytes ?? next.limits.maxMessageBytes;
        maxRecipients = config.maxRecipients ?? next.limits.recipientsPerMessage;
        strangerSlots = strangerSlotsOf(config);
        if (lockoutChanged)
          lockout = new LoginLockout({ failures: config.lockoutFailures, windowMs: config.lockoutWindowSeconds * 1000, lockMs: config.lockoutSeconds * 1000 });
        if (newIdentity) tlsIdentity = newIdentity;
        for (const server of servers) {
          // smtp-server reads these per connection and per command (EHLO's SIZE, AUTH on or off).
          server.options.size = maxMessageBytes;
          server.options.maxClients = config.maxConnections;
          const disabled = (server.options.disabledCommands ?? []).filter((c) => c !== 'AUTH');
          server.options.disabledCommands = users.size === 0 ? [...disabled, 'AUTH'] : disabled;
          // New TLS handshakes (STARTTLS and implicit) take the new pair; sessions under way keep theirs.
          if (newIdentity && (server.options.secure === true || server.options.hideSTARTTLS !== true))
            server.updateSecureContext({ key: newIdentity.keyPem, cert: newIdentity.certPem });
        }
      };
    },

    certificate() {
      if (!tlsIdentity) return undefined;
      const { certPath: path, fingerprint256: sha256, names, origin, replacedPath } = tlsIdentity;
      return { path, sha256, names, origin, ...(replacedPath ? { replacedPath } : {}) };
    },
  };
}
