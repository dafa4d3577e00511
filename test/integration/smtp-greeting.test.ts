/**
 * The greeting delay of the SMTP front door (`smtp.listeners[].greetingDelayMs`): submission listeners
 * greet at once, a plain listener waits (100 ms unless configured), and a client that writes before
 * the greeting is refused with smtp-server's `421 You talk too soon`, even when the relay's event loop
 * was blocked past the delay (the robustness suite's known issue).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { configSchema, defaultGreetingDelayMs } from '../../src/config/index.js';
import { createSmtpIngress, type SmtpIngress } from '../../src/ingress/smtp/index.js';
import { createLogger } from '../../src/observe/index.js';
import { Router, openSqliteStore, type NewMessage, type OutboxStore, type StoredMessage } from '../../src/outbox/index.js';
import { until } from '../helpers/wait.js';

const MAILBOX = 'relay@contoso.example';
/** The configured delay of the `delayed` listener. */
const DELAY_MS = 400;
/** What "at once" allows: far below smtp-server's 100 ms, with room for a busy 2-core machine. */
const AT_ONCE_MS = 60;

/** Everything a raw connection received, and when its first line (the greeting or a refusal) came. */
interface RawSession {
  socket: net.Socket;
  text: () => string;
  closed: Promise<void>;
  /** Resolves with the first line and the milliseconds from `start` until it came. */
  firstLine: Promise<{ line: string; ms: number }>;
}

function watch(socket: net.Socket, start: () => number): RawSession {
  let text = '';
  let resolveFirst!: (v: { line: string; ms: number }) => void;
  const firstLine = new Promise<{ line: string; ms: number }>((r) => (resolveFirst = r));
  socket.on('data', (d: Buffer) => {
    text += d.toString('latin1');
    const i = text.indexOf('\r\n');
    if (i !== -1) resolveFirst({ line: text.slice(0, i), ms: performance.now() - start() });
  });
  socket.on('error', () => undefined);
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  return { socket, text: () => text, closed, firstLine };
}

/** A plain TCP connection; the clock starts when the client's connect completes. */
async function plain(port: number): Promise<RawSession> {
  const socket = net.connect({ port, host: '127.0.0.1' });
  let t0 = 0;
  const session = watch(socket, () => t0);
  await new Promise<void>((res, rej) => {
    socket.once('connect', () => {
      t0 = performance.now();
      res();
    });
    socket.once('error', rej);
  });
  return session;
}

/** Implicit TLS; the clock starts when the handshake completes (the relay greets after its own end of it). */
async function implicitTls(port: number): Promise<RawSession> {
  let t0 = 0;
  const socket = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false });
  const session = watch(socket, () => t0);
  await new Promise<void>((res, rej) => {
    socket.once('secureConnect', () => {
      t0 = performance.now();
      res();
    });
    socket.once('error', rej);
  });
  return session;
}

const transaction = (tag: string): string =>
  `EHLO early.example\r\nMAIL FROM:<${MAILBOX}>\r\nRCPT TO:<someone@example.net>\r\nDATA\r\n` +
  `From: ${MAILBOX}\r\nTo: someone@example.net\r\nSubject: ${tag}\r\n\r\nhello\r\n.\r\nQUIT\r\n`;

describe('SMTP greeting delay', () => {
  let dir: string;
  let store: OutboxStore;
  let ingress: SmtpIngress;
  const enqueued: string[] = [];
  const logs: string[] = [];
  let ports: { starttls: number; implicit: number; plainDefault: number; delayed: number };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'relay365-smtp-greeting-'));
    const config = configSchema.parse({
      dataDir: dir,
      auth: { flow: 'client-secret', tenant: 'contoso.example', clientId: '00000000-0000-0000-0000-000000000001', clientSecret: 'unused' },
      mailboxes: [{ address: MAILBOX }],
      smtp: {
        listeners: [
          { host: '127.0.0.1', port: 0, tls: 'starttls' },
          { host: '127.0.0.1', port: 0, tls: 'implicit' },
          { host: '127.0.0.1', port: 0, tls: 'none' },
          { host: '127.0.0.1', port: 0, tls: 'none', greetingDelayMs: DELAY_MS },
        ],
        // The test's own address may relay without AUTH: an early talker's transaction would be accepted.
        allowlist: [{ cidr: '127.0.0.1/32', allowedSenders: [MAILBOX] }],
      },
    });
    assert.deepEqual(
      config.smtp.listeners.map((l) => l.greetingDelayMs),
      [0, 0, 100, DELAY_MS],
      'the greeting delay of each listener after loading the config',
    );
    store = await openSqliteStore(join(dir, 'outbox.db'));
    await store.migrate();
    ingress = createSmtpIngress({
      config: config.smtp,
      limits: config.limits,
      dataDir: config.dataDir,
      router: new Router(config.mailboxes),
      outbox: {
        async enqueue(message: NewMessage): Promise<StoredMessage> {
          const stored = await store.enqueue(message);
          enqueued.push(stored.id);
          return stored;
        },
      },
      logger: createLogger({ level: 'info', destination: { write: (line: string) => void logs.push(line) } }),
      hostname: 'relay.test',
    });
    const [starttls, implicit, plainDefault, delayed] = (await ingress.listen()).map((l) => l.port);
    ports = { starttls: starttls!, implicit: implicit!, plainDefault: plainDefault!, delayed: delayed! };
  });

  after(async () => {
    await ingress?.close();
    await store?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('has no delay by default on STARTTLS and implicit-TLS listeners, and 100 ms on plain ones', () => {
    assert.equal(defaultGreetingDelayMs('starttls'), 0);
    assert.equal(defaultGreetingDelayMs('implicit'), 0);
    assert.equal(defaultGreetingDelayMs('none'), 100);
  });

  it('greets at once on a STARTTLS listener and on an implicit-TLS listener', async () => {
    for (const [name, open] of [
      ['starttls', () => plain(ports.starttls)],
      ['implicit', () => implicitTls(ports.implicit)],
    ] as const) {
      // The best of three: one late timer on a loaded machine says nothing about the relay.
      const times: number[] = [];
      for (let i = 0; i < 3; i += 1) {
        const s = await open();
        const { line, ms } = await s.firstLine;
        assert.match(line, /^220 relay\.test ESMTP/, `${name}: the greeting`);
        times.push(ms);
        s.socket.end('QUIT\r\n');
        await s.closed;
      }
      assert.ok(Math.min(...times) < AT_ONCE_MS, `${name}: the greeting came after ${times.map((t) => t.toFixed(1)).join(', ')} ms`);
    }
  });

  it('greets only after the delay on a plain listener: 100 ms by default, greetingDelayMs when configured', async () => {
    for (const [port, delay] of [
      [ports.plainDefault, 100],
      [ports.delayed, DELAY_MS],
    ] as const) {
      const s = await plain(port);
      const { line, ms } = await s.firstLine;
      assert.match(line, /^220 /);
      // The relay arms its timer after the client saw its connect: the greeting cannot come sooner.
      assert.ok(ms >= delay - 1, `the greeting came after ${ms.toFixed(1)} ms, before the ${delay} ms delay`);
      // Nor long after it (an unref'd immediate once held it until the next unrelated event, seconds later).
      assert.ok(ms < delay + 1500, `the greeting came ${ms.toFixed(0)} ms after the connection, for a ${delay} ms delay`);
      s.socket.end('QUIT\r\n');
      await s.closed;
    }
  });

  it('accepts the transaction of the allowlisted client that waits for the greeting on the delayed listener', async () => {
    const before = enqueued.length;
    const s = await plain(ports.delayed);
    assert.match((await s.firstLine).line, /^220 /);
    s.socket.write(transaction('patient'));
    await s.closed;
    assert.match(s.text(), /^250 2\.0\.0 OK queued as /m, `the session: ${s.text()}`);
    assert.equal(enqueued.length, before + 1);
  });

  it('refuses a client that writes its whole transaction before the greeting, with 421 You talk too soon', async () => {
    const before = enqueued.length;
    const s = await plain(ports.delayed);
    s.socket.write(transaction('early'));
    await s.closed;
    assert.match(s.text(), /^421 .*You talk too soon/, `the session: ${s.text()}`);
    assert.doesNotMatch(s.text(), /^2\d\d /m, 'nothing of the early session was accepted');
    assert.equal(enqueued.length, before, 'no message was queued');
    await until(() => logs.some((l) => l.includes('You talk too soon')), 2000, 'the refusal in the log');
  });

  it('refuses the early talker even when the event loop was blocked past the delay', async () => {
    const before = enqueued.length;
    const s = await plain(ports.delayed);
    // By now the relay (this process) accepted the connection and armed its timer. The transaction
    // reaches the socket before the greeting is due; then the loop is blocked until the delay is long
    // past, so the timer and the client's bytes are ready in the same turn of the event loop. Done in
    // the check phase (setImmediate): the next turn starts with the timers, as after any slow I/O
    // callback, whereas a block inside a timer callback leaves the timers phase with a stale clock.
    await sleep(DELAY_MS / 4);
    await new Promise<void>((resolve) =>
      setImmediate(() => {
        s.socket.write(transaction('early-blocked'));
        const end = performance.now() + DELAY_MS * 1.5;
        while (performance.now() < end) {
          // Busy: a slow synchronous task of the relay (a large header section, a GC pause, a scrypt on the main thread).
        }
        resolve();
      }),
    );
    await s.closed;
    assert.match(s.text(), /^421 .*You talk too soon/, `the session: ${s.text()}`);
    assert.doesNotMatch(s.text(), /^2\d\d /m, 'nothing of the early session was accepted');
    assert.equal(enqueued.length, before, 'no message was queued');
  });
});
