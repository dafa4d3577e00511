import net from 'node:net';
import tls from 'node:tls';

/** One SMTP reply as it came off the wire: its lines without CRLF, and the last line's basic code. */
export interface WireReply {
  code: number;
  lines: string[];
  /** The last line, e.g. `535 5.7.3 Authentication unsuccessful`. */
  last: string;
}

/**
 * A deliberately tiny SMTP client over a raw socket, for asserting the exact bytes a server sends:
 * it writes what it is told and reads replies line by line (RFC 5321 section 4.2: `xyz-` continues,
 * `xyz ` ends a reply). STARTTLS upgrades the same socket with `tls.connect`.
 */
export class SmtpWire {
  private socket: net.Socket;
  private buffer = '';
  private lines: string[] = [];
  private waiters: Array<() => void> = [];
  private closedFlag = false;
  /** Everything received, in order, as text (latin1 keeps bytes 1:1). */
  transcript = '';

  private constructor(socket: net.Socket) {
    this.socket = socket;
    this.attach(socket);
  }

  /** Connects and reads the greeting. */
  static async connect(port: number, host = '127.0.0.1', localAddress?: string): Promise<{ wire: SmtpWire; greeting: WireReply }> {
    // `localAddress`: another loopback address (127.0.0.2 ...) stands for another client machine.
    const socket = net.connect({ port, host, ...(localAddress ? { localAddress } : {}) });
    await new Promise<void>((res, rej) => {
      socket.once('connect', () => res());
      socket.once('error', rej);
    });
    const wire = new SmtpWire(socket);
    return { wire, greeting: await wire.reply() };
  }

  private attach(socket: net.Socket): void {
    socket.on('data', (chunk: Buffer) => {
      const text = chunk.toString('latin1');
      this.transcript += text;
      this.buffer += text;
      let i: number;
      while ((i = this.buffer.indexOf('\r\n')) !== -1) {
        this.lines.push(this.buffer.slice(0, i));
        this.buffer = this.buffer.slice(i + 2);
      }
      this.wake();
    });
    socket.on('close', () => {
      this.closedFlag = true;
      this.wake();
    });
    socket.on('error', () => {
      // A reset is reported through `closed`; tests assert on that.
    });
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** True once the server has closed the connection. */
  get closed(): boolean {
    return this.closedFlag;
  }

  /** Resolves when the connection is closed (by either side), or rejects after `ms`. */
  async waitClosed(ms = 3000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!this.closedFlag) {
      if (Date.now() > deadline) throw new Error('connection still open');
      await new Promise<void>((res) => {
        this.waiters.push(res);
        setTimeout(res, 50);
      });
    }
  }

  /** Reads one complete reply; rejects if the connection closes first or after `ms`. */
  async reply(ms = 5000): Promise<WireReply> {
    const deadline = Date.now() + ms;
    const lines: string[] = [];
    for (;;) {
      const line = this.lines.shift();
      if (line !== undefined) {
        lines.push(line);
        if (/^\d{3}(?: |$)/.test(line)) return { code: Number(line.slice(0, 3)), lines, last: line };
        continue;
      }
      if (this.closedFlag) throw new Error(`connection closed while reading a reply; got ${JSON.stringify(lines)}`);
      if (Date.now() > deadline) throw new Error(`no complete reply within ${ms} ms; got ${JSON.stringify(lines)}`);
      await new Promise<void>((res) => {
        this.waiters.push(res);
        setTimeout(res, 50);
      });
    }
  }

  /** Writes a line (CRLF added) without waiting. */
  write(line: string | Buffer): void {
    this.socket.write(typeof line === 'string' ? `${line}\r\n` : line);
  }

  /** Writes raw bytes as they are. */
  writeRaw(bytes: string | Buffer): void {
    this.socket.write(bytes);
  }

  /** Sends a command and reads its reply. */
  async command(line: string): Promise<WireReply> {
    this.write(line);
    return this.reply();
  }

  /** STARTTLS and the TLS handshake, trusting `ca`; returns the 220 reply. */
  async startTls(ca: string, options: tls.ConnectionOptions = {}): Promise<WireReply> {
    const ready = await this.command('STARTTLS');
    if (ready.code !== 220) return ready;
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('close');
    const secure = tls.connect({ socket: plain, ca, servername: 'localhost', ...options });
    await new Promise<void>((res, rej) => {
      secure.once('secureConnect', () => res());
      secure.once('error', rej);
    });
    this.socket = secure;
    this.attach(secure);
    return ready;
  }

  /** EHLO, STARTTLS and EHLO again: the state every AUTH starts from. Returns the second EHLO reply. */
  async secure(ca: string, name = 'client.example'): Promise<WireReply> {
    await this.command(`EHLO ${name}`);
    await this.startTls(ca);
    return this.command(`EHLO ${name}`);
  }

  /** Ends the connection from the client side at once. */
  destroy(): void {
    this.socket.destroy();
  }

  /** QUIT (ignoring a connection the server already closed) and close. */
  async quit(): Promise<void> {
    if (!this.closedFlag) {
      try {
        await this.command('QUIT');
      } catch {
        // already gone
      }
    }
    this.socket.destroy();
  }
}

/** The XOAUTH2 initial response: base64 of `user=<mailbox>^Aauth=Bearer <token>^A^A`. */
export function xoauth2(user: string, token: string): string {
  return Buffer.from(`user=${user}\x01auth=Bearer ${token}\x01\x01`).toString('base64');
}
