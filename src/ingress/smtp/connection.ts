import type net from 'node:net';
import type tls from 'node:tls';
import { SMTPServer, type SMTPServerConnectionInfo, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import { SMTPConnection, type SMTPConnectionOptions } from 'smtp-server/lib/smtp-connection.js';
import { REPLIES } from './replies.js';

/** A reply text that already carries its RFC 3463 enhanced code (`5.7.1 ...`). */
const ENHANCED_CODE = /^[245]\.\d{1,3}\.\d{1,3} /;

/** What one listener allows, beside the smtp-server options. */
export interface ListenerPolicy {
  tls: 'starttls' | 'implicit' | 'none';
  /** AUTH (and its advertisement) before TLS. */
  allowPlainAuth: boolean;
  /**
   * Milliseconds between accepting a connection and greeting it (`smtp.listeners[].greetingDelayMs`);
   * a command read before the greeting is refused with smtp-server's `421 You talk too soon`. 0: greet at once.
   */
  greetingDelayMs: number;
}

/** State and policy the connections of every listener share. */
export interface ConnectionHooks {
  /** True once close() began: idle connections are told 421 and new commands refused. */
  readonly draining: boolean;
  readonly maxCommandsPerConnection: number;
  /** When the AUTH lockout of a client address ends, if it is locked. */
  lockedUntil(client: string): Date | undefined;
  /** One log line per refusal; `details` are what the hook that refused knew (never secrets). */
  refused(connection: RelayConnection, line: string, details: Record<string, unknown> | undefined): void;
}

/**
 * smtp-server's own replies whose wording or enhanced code relay365 replaces. Each matches the
 * basic code and the library's text (smtp-server 3.21, lib/smtp-connection.js).
 */
const LIBRARY_REWRITES: ReadonlyArray<{ code: number; text: RegExp; line: (server: RelayServer) => string }> = [
  // init() (RelayConnection's, as smtp-server's): the `maxClients` backstop (our own per-client and total limits answer first, in onConnect).
  { code: 421, text: /Too many connected clients/, line: () => REPLIES.tooManyConnections },
  // The parser's error for a line over `maxCommandLength`: it cannot resynchronise and closes.
  { code: 421, text: /^Error: Command line too long/, line: () => REPLIES.commandTooLong },
  { code: 421, text: /^Error: too many unrecognized commands/, line: () => REPLIES.tooManyUnrecognized },
  { code: 421, text: /^HTTP requests not allowed/, line: () => REPLIES.httpRefused },
  // MAIL FROM:<...> SIZE=n over the limit (RFC 1870 6.1).
  { code: 552, text: /^Error: message exceeds fixed maximum message size/, line: (server) => REPLIES.tooBig(Number(server.options.size)) },
];

/**
 * One client connection. smtp-server owns the protocol; this subclass adds what it has no option
 * for: the listener's greeting delay, AUTH only where the listener allows it, the AUTH lockout, a cap
 * on commands per connection, a graceful shutdown that lets a transaction finish, enhanced codes of
 * our choosing, and one log line per refusal.
 */
export class RelayConnection extends SMTPConnection {
  /** Commands (and AUTH continuation lines) received so far. */
  private commands = 0;
  /** What the hook that is refusing something knew, for the refusal's log line. */
  private refusalDetails: Record<string, unknown> | undefined;

  constructor(server: RelayServer, socket: net.Socket | tls.TLSSocket, options?: SMTPConnectionOptions | null) {
    super(server, socket, options);
    // smtp-server keeps this one session object for the connection's life (_resetSession mutates it).
    server.bySession.set(this.session, this);
    server.live.add(this);
  }

  private get relay(): RelayServer {
    return this._server as RelayServer;
  }

  /**
   * Starts the session: replaces smtp-server's init() (3.21), which waits 100 ms before every
   * greeting, with the listener's `greetingDelayMs`. That wait is the whole early-talker check: a
   * command read while `_ready` is false gets `421 You talk too soon` (`_onCommand`) and the connection
   * closes. After the delay the greeting waits one more turn of the event loop (setImmediate runs after
   * the poll phase), so bytes that arrived during the delay are read first even when the loop was
   * blocked past it; smtp-server's timer raced those reads and greeted a client that had already
   * written its whole transaction.
   */
  override init(): void {
    this._setListeners(() => {
      const { maxClients } = this._server.options;
      if (maxClients && this._server.connections.size > maxClients) {
        return this.send(421, `${this.name} Too many connected clients, try again in a moment`, false);
      }
      const delay = this.relay.policy.greetingDelayMs;
      if (delay === 0) return this.connectionReady();
      // The timer is unref'd as smtp-server's (a connection waiting for its greeting does not keep the
      // process alive); the immediate is not: an unref'd one lets the poll phase block, and the greeting
      // would wait for the next unrelated event.
      setTimeout(() => setImmediate(() => this.connectionReady()), delay).unref();
    });
  }

  /** True once the socket has closed (an async check may outlive its connection). */
  get gone(): boolean {
    return this._closed;
  }

  /** True while the server is closing the connection or it is closed. */
  get ending(): boolean {
    return this._closing || this._closed;
  }

  /**
   * True while a mail transaction runs (MAIL given, DATA being received or stored) or a command is
   * being handled: a graceful close waits for it.
   */
  get busy(): boolean {
    const envelope = this.session.envelope as SMTPServerSession['envelope'] | undefined;
    return Boolean(envelope?.mailFrom) || Boolean(this._dataStream) || this._handlerPending;
  }

  /** Sets what the next refusal's log line says beside the reply. */
  noteRefusal(details: Record<string, unknown>): void {
    this.refusalDetails = details;
  }

  /** Ends the connection at once, without a reply. */
  destroy(): void {
    this._socket.destroy();
  }

  override _onCommand(command: Buffer, callback?: () => void): void {
    // Plaintext buffered behind STARTTLS is discarded by smtp-server: not the client's command.
    if (this._upgrading) return super._onCommand(command, callback);
    this.commands += 1;
    const hooks = this.relay.hooks;
    if (this.commands > hooks.maxCommandsPerConnection) return this.sendLine(REPLIES.tooManyCommands);
    // While closing, a transaction under way may finish; anything else gets 421 (QUIT still says goodbye).
    if (hooks.draining && !this.busy && !this._nextHandler) {
      const name = command.toString('latin1').trim().split(/\s+/)[0]!.toUpperCase();
      if (name !== 'QUIT') return this.sendLine(REPLIES.shuttingDown);
    }
    super._onCommand(command, callback);
  }

  override handler_AUTH(command: Buffer, callback: () => void): void {
    const { tls, allowPlainAuth } = this.relay.policy;
    if (!this.secure && !allowPlainAuth) {
      this.sendLine(tls === 'starttls' ? REPLIES.startTlsFirst : REPLIES.encryptionRequired);
      return callback();
    }
    if (this.session.envelope.mailFrom) {
      this.sendLine(REPLIES.authInTransaction);
      return callback();
    }
    const until = this.relay.hooks.lockedUntil(this.remoteAddress);
    if (until) {
      // Refused before the client sends its credentials: nothing to check, nothing learned.
      this.noteRefusal({ event: 'login.locked', lockedUntil: until.toISOString() });
      this.sendLine(REPLIES.authLockedOut);
      return callback();
    }
    super.handler_AUTH(command, callback);
  }

  override send(code: number, data?: string | string[] | null, context?: string | false): void {
    if (Array.isArray(data)) {
      // Only EHLO answers with several lines. AUTH is offered only where it may be used (RFC 4954 4).
      const hidden = !this.secure && !this.relay.policy.allowPlainAuth;
      super.send(code, hidden ? data.filter((line, i) => i === 0 || !/^AUTH\b/i.test(line)) : data, context);
      return;
    }
    const text = data ?? '';
    const rewrite = ENHANCED_CODE.test(text) ? undefined : LIBRARY_REWRITES.find((r) => r.code === code && r.text.test(text));
    if (rewrite) return this.sendLine(rewrite.line(this.relay));
    if (code >= 400) {
      const details = this.refusalDetails;
      this.refusalDetails = undefined;
      this.relay.hooks.refused(this, ENHANCED_CODE.test(text) ? `${code} ${text}` : `${code} ${text} (smtp-server)`, details);
    }
    // Our replies carry their own enhanced code: smtp-server would otherwise put its own in front.
    super.send(code, text === '' ? data : text, ENHANCED_CODE.test(text) ? false : context);
  }

  /** Sends one of {@link REPLIES} (`<code> <enhanced code> <text>`). */
  sendLine(line: string): void {
    this.send(Number(line.slice(0, 3)), line.slice(4));
  }

  override _onClose(): void {
    super._onClose();
    this.relay.live.delete(this);
  }
}

/** smtp-server with {@link RelayConnection} as its connection class, for one listener. */
export class RelayServer extends SMTPServer {
  /** The connection behind each session, so that hooks can reach it. */
  readonly bySession = new WeakMap<SMTPServerSession, RelayConnection>();
  /** Connections whose socket has not closed yet (smtp-server forgets a connection once it closes it). */
  readonly live = new Set<RelayConnection>();

  constructor(
    options: SMTPServerOptions,
    readonly policy: ListenerPolicy,
    readonly hooks: ConnectionHooks,
  ) {
    super(options);
  }

  // Mirrors SMTPServer.connect of smtp-server 3.21; only the connection class differs.
  override connect(socket: net.Socket | tls.TLSSocket, socketOptions?: SMTPConnectionOptions | null): void {
    const connection = new RelayConnection(this, socket, socketOptions);
    this.connections.add(connection);
    connection.on('error', (err: Error) => this._onError(err));
    connection.on('connect', (data: SMTPServerConnectionInfo) => this._onClientConnect(data));
    connection.init();
  }
}
