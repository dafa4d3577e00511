import net from 'node:net';
import tls from 'node:tls';

/** One SMTP reply: its lines without CRLF, the basic code, and the last line (`535 5.7.3 ...`). */
export interface SmtpReply {
  code: number;
  lines: string[];
  last: string;
}

/** An error of the probe's own (timeout, closed connection), with a Node-style `code` the catalogue knows. */
export class ProbeError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = 'ProbeError';
  }
}

/**
 * A small SMTP client over a raw socket, for the doctor: it must see each step on its own (the
 * greeting, the EHLO keywords before and after STARTTLS, the TLS session, the reply to AUTH), which
 * nodemailer hides behind one `sendMail`. It never logs, and keeps no transcript, so a token sent with
 * AUTH stays in the socket.
 */
export class SmtpProbe {
  private socket: net.Socket;
  private buffer = '';
  private lines: string[] = [];
  private wake: (() => void) | undefined;
  private failure: Error | undefined;
  private closedFlag = false;

  private constructor(
    socket: net.Socket,
    /** How long to wait for each reply and for the TLS handshake. */
    private readonly timeoutMs: number,
  ) {
    this.socket = socket;
    this.attach(socket);
  }

  /**
   * Opens a TCP connection; rejects with the socket error (`ECONNREFUSED`, ...) or `ETIMEDOUT`.
   * The greeting is read separately with {@link reply}.
   */
  static connect(host: string, port: number, timeouts: { connectMs: number; replyMs: number }): Promise<SmtpProbe> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new ProbeError(`no TCP connection to ${host}:${port} within ${timeouts.connectMs} ms`, 'ETIMEDOUT'));
      }, timeouts.connectMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new SmtpProbe(socket, timeouts.replyMs));
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  }

  private attach(socket: net.Socket): void {
    socket.on('data', (chunk: Buffer) => {
      this.buffer += chunk.toString('latin1');
      let i: number;
      while ((i = this.buffer.indexOf('\r\n')) !== -1) {
        this.lines.push(this.buffer.slice(0, i));
        this.buffer = this.buffer.slice(i + 2);
      }
      this.notify();
    });
    socket.on('error', (err) => {
      this.failure ??= err;
      this.notify();
    });
    socket.on('close', () => {
      this.closedFlag = true;
      this.notify();
    });
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  /** True once the connection is closed (by either side). */
  get closed(): boolean {
    return this.closedFlag;
  }

  /** The TLS socket once STARTTLS succeeded. */
  get tlsSocket(): tls.TLSSocket | undefined {
    return this.socket instanceof tls.TLSSocket ? this.socket : undefined;
  }

  /** Reads one complete reply (RFC 5321 section 4.2: `xyz-` continues a reply, `xyz ` ends it). */
  async reply(): Promise<SmtpReply> {
    const deadline = Date.now() + this.timeoutMs;
    const collected: string[] = [];
    for (;;) {
      const line = this.lines.shift();
      if (line !== undefined) {
        collected.push(line);
        if (/^\d{3}(?: |$)/.test(line)) return { code: Number(line.slice(0, 3)), lines: collected, last: line };
        continue;
      }
      if (this.failure) throw this.failure;
      if (this.closedFlag) throw new ProbeError('the server closed the connection', 'ECONNECTION');
      const left = deadline - Date.now();
      if (left <= 0) throw new ProbeError(`no answer from the server within ${this.timeoutMs} ms`, 'ETIMEDOUT');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /** Sends one command line and reads its reply. */
  async command(line: string): Promise<SmtpReply> {
    if (this.closedFlag) throw new ProbeError('the connection is closed', 'ECONNECTION');
    this.socket.write(`${line}\r\n`);
    return this.reply();
  }

  /**
   * Upgrades the connection after a `220` to STARTTLS (RFC 3207). The handshake verifies nothing by
   * itself (`rejectUnauthorized: false`) so that the doctor can name what is wrong with the
   * certificate; the caller must check `authorized` and close the connection before sending anything
   * when it is false.
   */
  startTls(options: tls.ConnectionOptions): Promise<tls.TLSSocket> {
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('close');
    plain.removeAllListeners('error');
    this.buffer = '';
    this.lines = [];
    return new Promise((resolve, reject) => {
      const secure = tls.connect({ ...options, socket: plain, rejectUnauthorized: false });
      const timer = setTimeout(() => {
        secure.destroy();
        reject(new ProbeError(`no TLS handshake within ${this.timeoutMs} ms`, 'ETIMEDOUT'));
      }, this.timeoutMs);
      secure.once('secureConnect', () => {
        clearTimeout(timer);
        secure.removeAllListeners('error');
        this.socket = secure;
        this.attach(secure);
        resolve(secure);
      });
      secure.once('error', (err: Error) => {
        clearTimeout(timer);
        this.closedFlag = true;
        reject(err);
      });
    });
  }

  /** Says QUIT when the connection is still usable, then closes it. */
  async close(): Promise<void> {
    if (!this.closedFlag) {
      try {
        this.socket.write('QUIT\r\n');
        await Promise.race([this.reply(), new Promise((resolve) => setTimeout(resolve, 500))]);
      } catch {
        // Closing anyway.
      }
    }
    this.socket.destroy();
    this.closedFlag = true;
  }
}
