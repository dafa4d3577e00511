/**
 * A submission client that pipelines (RFC 2920), as a busy application server's mail library does:
 * one connection (EHLO, STARTTLS, EHLO), then per message MAIL FROM, RCPT TO and DATA in one write,
 * and the content with its final dot as the next. A message asked for while the one before waits for
 * its final reply goes out at once after that one's dot: up to `depth` messages are in flight on the
 * connection, and the server reads commands that arrived before it answered the ones before them.
 * nodemailer does not do this (it waits for each reply), hence this small client of the bench's own.
 */
import { connect as connectTcp, type Socket } from 'node:net';
import { connect as connectTls, type TLSSocket } from 'node:tls';

interface Waiter {
  /** The reply code that is a success for this step (250, 354). */
  expect: number;
  resolve: (reply: string) => void;
  reject: (err: Error) => void;
}

export class PipeliningClient {
  private socket!: Socket | TLSSocket;
  private buffer = '';
  private lines: string[] = [];
  private readonly waiters: Waiter[] = [];
  /** Resolves once the previous message's content is written: the next command group may follow it. */
  private contentWritten: Promise<void> = Promise.resolve();
  private failed: Error | undefined;

  static async open(host: string, port: number, name = 'bench.example'): Promise<PipeliningClient> {
    const client = new PipeliningClient();
    await client.start(host, port, name);
    return client;
  }

  private async start(host: string, port: number, name: string): Promise<void> {
    const plain = connectTcp({ host, port });
    this.attach(plain);
    await this.reply(220);
    this.write(`EHLO ${name}\r\n`);
    const ehlo = await this.reply(250);
    if (!/^250[ -]PIPELINING$/im.test(ehlo)) throw new Error(`the server does not offer PIPELINING: ${ehlo}`);
    this.write('STARTTLS\r\n');
    await this.reply(220);
    plain.removeAllListeners('data');
    const tls = connectTls({ socket: plain, rejectUnauthorized: false, servername: 'localhost' });
    await new Promise<void>((resolve, reject) => tls.once('secureConnect', resolve).once('error', reject));
    this.attach(tls);
    this.write(`EHLO ${name}\r\n`);
    await this.reply(250);
  }

  private attach(socket: Socket | TLSSocket): void {
    this.socket = socket;
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', (err: Error) => this.fail(err));
    socket.on('close', () => this.fail(new Error('the connection closed')));
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let end: number;
    while ((end = this.buffer.indexOf('\r\n')) >= 0) {
      const line = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      this.lines.push(line);
      // The last line of a reply has a space (or nothing) after its code.
      if (line.length <= 3 || line[3] === ' ') {
        const reply = this.lines.join('\n');
        this.lines = [];
        const waiter = this.waiters.shift();
        if (!waiter) return this.fail(new Error(`unexpected reply: ${reply}`));
        if (Number(reply.slice(0, 3)) === waiter.expect) waiter.resolve(reply);
        else waiter.reject(new Error(`expected ${waiter.expect}, got: ${reply}`));
      }
    }
  }

  private fail(err: Error): void {
    this.failed ??= err;
    for (const w of this.waiters.splice(0)) w.reject(err);
  }

  private reply(expect: number): Promise<string> {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => this.waiters.push({ expect, resolve, reject }));
  }

  private write(text: string | Buffer): void {
    this.socket.write(text);
  }

  /** Sends one message; resolves on the server's final 250. */
  async send(envelope: { from: string; to: string[] }, raw: Buffer): Promise<void> {
    const previous = this.contentWritten;
    let written!: () => void;
    this.contentWritten = new Promise((resolve) => (written = resolve));
    try {
      await previous;
      if (this.failed) throw this.failed;
      // One command group: the replies are read in order as they come.
      const replies = [this.reply(250), ...envelope.to.map(() => this.reply(250)), this.reply(354)];
      this.write(`MAIL FROM:<${envelope.from}>\r\n${envelope.to.map((to) => `RCPT TO:<${to}>\r\n`).join('')}DATA\r\n`);
      // Each reply is awaited, so a refusal of one step leaves no rejection unhandled.
      const settled = await Promise.allSettled(replies);
      const refused = settled.find((r) => r.status === 'rejected');
      if (refused?.status === 'rejected') throw refused.reason;
      const done = this.reply(250);
      this.write(Buffer.concat([dotStuffed(raw), Buffer.from(raw.subarray(-2).toString() === '\r\n' ? '.\r\n' : '\r\n.\r\n')]));
      written();
      await done;
    } finally {
      written();
    }
  }

  close(): void {
    this.socket.end('QUIT\r\n');
  }
}

/** RFC 5321 section 4.5.2: a line that starts with a dot gets one more. */
function dotStuffed(raw: Buffer): Buffer {
  if (raw[0] !== 0x2e && raw.indexOf('\r\n.') < 0) return raw;
  return Buffer.from(raw.toString('latin1').replace(/(^|\r\n)\./g, '$1..'), 'latin1');
}
