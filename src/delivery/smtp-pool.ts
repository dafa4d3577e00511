import type { Readable } from 'node:stream';
import SMTPConnection, { type SMTPConnectionOptions } from 'nodemailer/lib/smtp-connection';
import XOAuth2 from 'nodemailer/lib/xoauth2';
import type { NodemailerError } from 'nodemailer/lib/errors';

/** What a successful SMTP transaction reports. */
export interface SentInfo {
  response?: string;
  rejected?: unknown[];
  rejectedErrors?: NodemailerError[];
}

/** nodemailer's XOAUTH2 token callback: `renew` is set after a 334 challenge. */
export type ProvisionCallback = (user: string, renew: boolean, callback: (err: Error | null, token?: string, expires?: number) => void) => void;

export interface MailboxPoolOptions {
  mailbox: string;
  connection: SMTPConnectionOptions;
  provision: ProvisionCallback;
  maxConnections: number;
  maxMessagesPerConnection: number;
  /** An idle connection is closed (QUIT) after this long. */
  idleTimeoutMs: number;
}

interface Pooled {
  connection: SMTPConnection;
  messages: number;
  idleTimer: NodeJS.Timeout | undefined;
  closed: boolean;
}

interface Waiter {
  resolve: (pooled: Pooled) => void;
  reject: (err: unknown) => void;
}

/**
 * A message handed to SMTPConnection as the least of a stream it uses (`on`, `removeListener`,
 * `destroy`, `pipe`), so the pool knows whether a byte of it was sent. It cannot fail.
 */
interface Body {
  started: boolean;
  on: () => void;
  removeListener: () => void;
  destroy: () => void;
  pipe: (stream: NodeJS.WritableStream) => void;
}

function bodyOf(raw: Buffer): Body {
  const body: Body = {
    started: false,
    on: () => undefined,
    removeListener: () => undefined,
    destroy: () => undefined,
    pipe: (stream) => {
      body.started = true;
      stream.end(raw);
    },
  };
  return body;
}

/** Errors of the connection rather than replies about the message. */
const CONNECTION_ERRORS = new Set(['ECONNECTION', 'ETIMEDOUT', 'ESOCKET', 'EPROTOCOL', 'ETLS', 'EDNS']);

/**
 * Up to `maxConnections` authenticated SMTP connections to Exchange for one mailbox, each carrying one
 * message at a time: a send takes an idle connection, or opens one (connect, EHLO, STARTTLS, AUTH
 * XOAUTH2), or waits for one to free. Messages go out as the exact stored bytes on nodemailer's
 * SMTPConnection, without its mail composer. A connection is replaced after `maxMessagesPerConnection`
 * messages, closed after `idleTimeoutMs` idle or when the server ends it, reset (RSET) after a reply
 * that refused only the message, and dropped after any other error.
 */
export class MailboxPool {
  private readonly idle: Pooled[] = [];
  private readonly waiters: Waiter[] = [];
  private open = 0;
  private closed = false;

  constructor(private readonly options: MailboxPoolOptions) {}

  async send(envelope: { from: string; to: string[] }, raw: Buffer): Promise<SentInfo> {
    const pooled = await this.acquire();
    const reused = pooled.messages > 0;
    const body = bodyOf(raw);
    try {
      const info = await this.transact(pooled, envelope, body);
      this.release(pooled);
      return info;
    } catch (err) {
      const e = err as NodemailerError;
      // 432 4.3.2: this connection is one more than Exchange allows the mailbox; keeping it open would
      // hold the slot it is refused for (Microsoft Learn, "Exchange Online limits": 3 concurrent connections per mailbox), so it is closed.
      if ((e.code === 'EENVELOPE' || e.code === 'EMESSAGE') && e.responseCode !== 421 && e.responseCode !== 432 && !pooled.closed) {
        // Exchange refused this message; the session itself is fine: RSET and keep it.
        pooled.connection.reset((resetError) => (resetError ? this.discard(pooled) : this.release(pooled)));
        throw err;
      }
      this.discard(pooled);
      // A connection that sat idle may have been dropped by the server just as the message went out:
      // nothing of it was sent, so it goes again, once, on a new connection.
      if (reused && !body.started && CONNECTION_ERRORS.has(e.code ?? '')) return this.send(envelope, raw);
      throw err;
    }
  }

  /** Closes idle connections at once; a connection busy with a message closes when that send ends. */
  close(): void {
    this.closed = true;
    for (const pooled of this.idle.splice(0)) this.quit(pooled);
    for (const waiter of this.waiters.splice(0)) waiter.reject(new Error('the SMTP pool was closed'));
  }

  private transact(pooled: Pooled, envelope: { from: string; to: string[] }, body: Body): Promise<SentInfo> {
    return new Promise((resolve, reject) => {
      pooled.connection.send(envelope, body as unknown as Readable, (err, info) => (err ? reject(err) : resolve(info)));
    });
  }

  private acquire(): Promise<Pooled> {
    if (this.closed) return Promise.reject(new Error('the SMTP pool was closed'));
    const pooled = this.idle.pop();
    if (pooled) {
      clearTimeout(pooled.idleTimer);
      return Promise.resolve(pooled);
    }
    if (this.open < this.options.maxConnections) {
      this.open += 1;
      return this.connect().catch((err: unknown) => {
        this.open -= 1;
        this.next();
        throw err;
      });
    }
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  private connect(): Promise<Pooled> {
    const { mailbox } = this.options;
    return new Promise((resolve, reject) => {
      const connection = new SMTPConnection(this.options.connection);
      const pooled: Pooled = { connection, messages: 0, idleTimer: undefined, closed: false };
      let settled = false;
      const fail = (err: Error): void => {
        if (settled) return;
        settled = true;
        pooled.closed = true;
        connection.close();
        reject(err);
      };
      // Errors while a message is in flight reach the send callback too; errors of an idle connection end it.
      connection.on('error', (err: Error) => (settled ? this.discard(pooled) : fail(err)));
      connection.once('end', () => {
        if (!settled) fail(new Error('the connection closed before it was ready'));
        else this.forget(pooled);
      });
      connection.connect((err?: Error) => {
        if (err) return fail(err);
        const oauth2 = new XOAuth2({ user: mailbox, provisionCallback: this.options.provision });
        connection.login({ type: 'OAuth2', user: mailbox, method: 'XOAUTH2', oauth2 }, (err) => {
          if (err) return fail(err);
          settled = true;
          resolve(pooled);
        });
      });
    });
  }

  /** Hands the connection to the next waiting send, or keeps it idle; retires it after its quota of messages. */
  private release(pooled: Pooled): void {
    pooled.messages += 1;
    if (pooled.closed) return;
    if (this.closed || pooled.messages >= this.options.maxMessagesPerConnection) {
      this.quit(pooled);
      return;
    }
    const waiter = this.waiters.shift();
    if (waiter) {
      waiter.resolve(pooled);
      return;
    }
    pooled.idleTimer = setTimeout(() => {
      const at = this.idle.indexOf(pooled);
      if (at >= 0) this.idle.splice(at, 1);
      this.quit(pooled);
    }, this.options.idleTimeoutMs);
    pooled.idleTimer.unref();
    this.idle.push(pooled);
  }

  private quit(pooled: Pooled): void {
    if (pooled.closed) return;
    this.forget(pooled);
    pooled.connection.quit();
  }

  private discard(pooled: Pooled): void {
    if (pooled.closed) return;
    this.forget(pooled);
    pooled.connection.close();
  }

  /** Takes a connection out of the count (once), and lets a waiting send open a new one. */
  private forget(pooled: Pooled): void {
    if (pooled.closed) return;
    pooled.closed = true;
    clearTimeout(pooled.idleTimer);
    const at = this.idle.indexOf(pooled);
    if (at >= 0) this.idle.splice(at, 1);
    this.open -= 1;
    this.next();
  }

  /** A waiting send gets a new connection when one may be opened. */
  private next(): void {
    if (this.closed || this.waiters.length === 0 || this.open >= this.options.maxConnections) return;
    const waiter = this.waiters.shift()!;
    this.open += 1;
    this.connect().then(waiter.resolve, (err: unknown) => {
      this.open -= 1;
      waiter.reject(err);
      this.next();
    });
  }
}
