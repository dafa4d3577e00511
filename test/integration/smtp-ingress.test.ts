import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import nodemailer from 'nodemailer';
import { parse as parseYaml } from 'yaml';
import { configSchema, type Config, type ConfigInput } from '../../src/config/index.js';
import { isRelay365Error } from '../../src/errors.js';
import {
  createSmtpIngress,
  hashPassword,
  verifyPassword,
  type SmtpIngress,
  type SmtpIngressDeps,
  type SmtpListenerAddress,
} from '../../src/ingress/smtp/index.js';
import { createLogger, type FrontDoorEvent } from '../../src/observe/index.js';
import { Router, openSqliteStore, type NewMessage, type OutboxStore, type StoredMessage } from '../../src/outbox/index.js';
import { SmtpWire, type WireReply } from '../helpers/smtp-wire.js';

const PASSWORDS = { alice: 'alice-Secret-1!', bob: 'b0b horse battery' } as const;
const HOSTNAME = 'relay.test';
const QUEUED = /^250 2\.0\.0 OK queued as (\S+)$/;

async function until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Runs a program to completion, feeding `input` on stdin. */
function run(cmd: string, args: string[], input = '', timeoutMs = 20_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(input);
  });
}

const b64 = (text: string): string => Buffer.from(text).toString('base64');
const plain = (user: string, password: string): string => `AUTH PLAIN ${b64(`\0${user}\0${password}`)}`;

/** A message with CRLF line endings, as a client puts it on the wire (before dot-stuffing). */
function mime(headers: string[], body: string[]): string {
  return [...headers, '', ...body, ''].join('\r\n');
}

/** Dot-stuffs a message (RFC 5321 4.5.2) and ends it, for a raw-socket DATA. */
function dataOf(message: string): string {
  return message.replace(/^\./gm, '..') + '.\r\n';
}

/** The trace fields relay365 put in front of `sent`, or fails when the rest is not `sent` byte for byte. */
function addedHeaders(raw: Buffer, sent: string): string {
  const text = raw.toString('utf8');
  assert.ok(text.endsWith(sent), `the queued message ends with the bytes sent:\n${text}`);
  return text.slice(0, text.length - sent.length);
}

/** Connects from a chosen local address and reads the first reply line. */
function greet(port: number, localAddress = '127.0.0.1'): Promise<{ socket: net.Socket; line: string }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress });
    let buffer = '';
    socket.on('data', (d: Buffer) => {
      buffer += d.toString('latin1');
      const i = buffer.indexOf('\r\n');
      if (i !== -1) resolve({ socket, line: buffer.slice(0, i) });
    });
    socket.on('error', reject);
  });
}

interface Harness {
  ingress: SmtpIngress;
  listeners: SmtpListenerAddress[];
  store: OutboxStore;
  /** Ids of the messages the outbox accepted, in order. */
  enqueued: string[];
  /** Log lines (JSON) written so far. */
  logs: string[];
  /** While set, enqueue() waits for it. */
  gate: Promise<void> | undefined;
  /** The next enqueue() fails with this error. */
  failNext: Error | undefined;
  config: Config;
  close(): Promise<void>;
}

const MAILBOXES: ConfigInput['mailboxes'] = [
  { address: 'relay@contoso.example', aliases: ['scanner@contoso.example', 'noreply@fabrikam.example', 'alerts@contoso.example'] },
  { address: 'ops@contoso.example', aliases: ['alerts@contoso.example'] },
];

async function startHarness(dir: string, name: string, smtp: ConfigInput['smtp'], extra: Partial<SmtpIngressDeps> = {}): Promise<Harness> {
  const config = configSchema.parse({
    dataDir: dir,
    auth: { flow: 'client-secret', tenant: 'contoso.example', clientId: '00000000-0000-0000-0000-000000000001', clientSecret: 'unused' },
    mailboxes: MAILBOXES,
    smtp,
  });
  const store = await openSqliteStore(join(dir, `${name}.db`));
  await store.migrate();
  const logs: string[] = [];
  const logger = createLogger({ level: 'debug', destination: { write: (line: string) => void logs.push(line) } });
  const h: Harness = {
    ingress: undefined as unknown as SmtpIngress,
    listeners: [],
    store,
    enqueued: [],
    logs,
    gate: undefined,
    failNext: undefined,
    config,
    async close() {
      await h.ingress.close();
      await store.close();
    },
  };
  const outbox = {
    async enqueue(message: NewMessage): Promise<StoredMessage> {
      if (h.gate) await h.gate;
      if (h.failNext) {
        const err = h.failNext;
        h.failNext = undefined;
        throw err;
      }
      const stored = await store.enqueue(message);
      h.enqueued.push(stored.id);
      return stored;
    },
  };
  try {
    h.ingress = createSmtpIngress({
      config: config.smtp,
      limits: config.limits,
      dataDir: config.dataDir,
      router: new Router(config.mailboxes),
      outbox,
      logger,
      hostname: HOSTNAME,
      ...extra,
    });
    h.listeners = await h.ingress.listen();
  } catch (err) {
    // A harness that fails to start must not leave its store (and its checkpoint thread) writing into the
    // directory the suite removes at the end.
    await h.ingress?.close().catch(() => undefined);
    await store.close();
    throw err;
  }
  return h;
}

/** EHLO, STARTTLS (trusting the relay's own certificate), EHLO and AUTH PLAIN. */
async function loggedIn(port: number, ca: string, user: keyof typeof PASSWORDS, host = '127.0.0.1'): Promise<SmtpWire> {
  const { wire } = await SmtpWire.connect(port, host);
  await wire.secure(ca, 'device.lan');
  const auth = await wire.command(plain(user, PASSWORDS[user]));
  assert.equal(auth.last, '235 2.7.0 Authentication successful');
  return wire;
}

/** MAIL, RCPT (each), DATA and the message; returns the reply to the message (or the first refusal). */
async function transaction(wire: SmtpWire, from: string, to: string[], message: string): Promise<WireReply> {
  const mail = await wire.command(`MAIL FROM:<${from}>`);
  if (mail.code !== 250) return mail;
  for (const rcpt of to) {
    const r = await wire.command(`RCPT TO:<${rcpt}>`);
    if (r.code !== 250) return r;
  }
  const data = await wire.command('DATA');
  if (data.code !== 354) return data;
  wire.writeRaw(dataOf(message));
  return wire.reply();
}

const simple = (from: string, subject = 'test'): string => mime([`From: ${from}`, 'To: x@example.net', `Subject: ${subject}`], ['hello']);

describe('SMTP ingress', () => {
  let dir: string;
  let h: Harness;
  let ca: string;
  let certPath: string;
  /** Listeners of the main harness by role. */
  let L: { starttls: number; implicit: number; plainNoAuth: number; plainAuth: number; mapped: number; v6: number };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'relay365-smtp-ingress-'));
    h = await startHarness(dir, 'main', {
      listeners: [
        { host: '127.0.0.1', port: 0, tls: 'starttls' },
        { host: '127.0.0.1', port: 0, tls: 'implicit' },
        { host: '127.0.0.1', port: 0, tls: 'none' },
        { host: '127.0.0.1', port: 0, tls: 'none', allowPlainAuth: true },
        // A dual-stack style socket: IPv4 peers show up as ::ffff:a.b.c.d.
        { host: '::ffff:127.0.0.1', port: 0, tls: 'starttls' },
        { host: '::1', port: 0, tls: 'starttls' },
      ],
      users: [
        { name: 'alice', passwordHash: await hashPassword(PASSWORDS.alice), allowedSenders: ['relay@contoso.example', '@fabrikam.example'] },
        { name: 'bob', passwordHash: await hashPassword(PASSWORDS.bob) },
      ],
      // 127.0.0.1 is deliberately not allowlisted: raw-socket tests from it are strangers.
      allowlist: [{ cidr: '127.0.0.3/32', allowedSenders: ['scanner@contoso.example'] }, { cidr: '::ffff:127.0.0.4' }, { cidr: '::1/128' }],
      maxMessageBytes: 64 * 1024,
      maxRecipients: 3,
    });
    const ports = h.listeners.map((l) => l.port);
    L = { starttls: ports[0]!, implicit: ports[1]!, plainNoAuth: ports[2]!, plainAuth: ports[3]!, mapped: ports[4]!, v6: ports[5]! };
    certPath = join(dir, 'tls', 'relay.crt');
    ca = await readFile(certPath, 'utf8');
  });

  after(async () => {
    await h.close();
    await rm(dir, { recursive: true, force: true });
  });

  describe('listeners and TLS', () => {
    it('listens where configured and reports the real ports', () => {
      assert.deepEqual(
        h.listeners.map((l) => [l.host, l.tls]),
        [
          ['127.0.0.1', 'starttls'],
          ['127.0.0.1', 'implicit'],
          ['127.0.0.1', 'none'],
          ['127.0.0.1', 'none'],
          ['::ffff:127.0.0.1', 'starttls'],
          ['::1', 'starttls'],
        ],
      );
      assert.ok(h.listeners.every((l) => l.port > 0));
    });

    it('keeps a self-signed certificate in <dataDir>/tls, key mode 0600, and reuses it on restart', async () => {
      const key = await stat(join(dir, 'tls', 'relay.key'));
      assert.equal(key.mode & 0o777, 0o600);
      const again = await startHarness(dir, 'restart', { listeners: [{ host: '127.0.0.1', port: 0, tls: 'starttls' }] });
      try {
        assert.equal(await readFile(certPath, 'utf8'), ca, 'the certificate is not replaced');
        const { wire } = await SmtpWire.connect(again.listeners[0]!.port);
        const ehlo = await wire.secure(ca); // verifies the chain against the same certificate
        assert.equal(ehlo.code, 250);
        await wire.quit();
      } finally {
        await again.close();
      }
    });

    it("uses certFile and keyFile when configured, and refuses a key that is not the certificate's", async () => {
      const other = join(dir, 'other');
      const first = await startHarness(other, 'own-cert', { listeners: [{ host: '127.0.0.1', port: 0, tls: 'implicit' }] });
      await first.close();
      const certFile = join(other, 'tls', 'relay.crt');
      const keyFile = join(other, 'tls', 'relay.key');
      const own = await startHarness(dir, 'configured', { listeners: [{ host: '127.0.0.1', port: 0, tls: 'starttls' }], certFile, keyFile });
      try {
        const { wire } = await SmtpWire.connect(own.listeners[0]!.port);
        await wire.secure(await readFile(certFile, 'utf8'));
        await wire.quit();
      } finally {
        await own.close();
      }
      await assert.rejects(
        startHarness(dir, 'mismatch', { listeners: [{ host: '127.0.0.1', port: 0, tls: 'starttls' }], certFile: certPath, keyFile }),
        (err) => isRelay365Error(err, 'R365_TLS_CERTIFICATE_UNUSABLE') && /cannot be used together/.test(err.message),
      );
    });

    it('refuses TLS older than 1.2', async () => {
      const { wire } = await SmtpWire.connect(L.starttls);
      await wire.command('EHLO device.lan');
      await assert.rejects(wire.startTls(ca, { maxVersion: 'TLSv1.1', minVersion: 'TLSv1' }));
      wire.destroy();
    });

    it('advertises SIZE, PIPELINING, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES and STARTTLS, and AUTH only inside TLS', async () => {
      const { wire, greeting } = await SmtpWire.connect(L.starttls);
      assert.match(greeting.last, /^220 relay\.test ESMTP relay365$/);
      const before = await wire.command('EHLO device.lan');
      const keywords = before.lines.slice(1).map((l) => l.slice(4));
      for (const k of ['PIPELINING', '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES', 'STARTTLS', `SIZE ${64 * 1024}`])
        assert.ok(keywords.includes(k), `${k} in ${keywords.join(', ')}`);
      assert.ok(!keywords.some((k) => k.startsWith('AUTH')), 'no AUTH before STARTTLS');
      const auth = await wire.command(plain('alice', PASSWORDS.alice));
      assert.equal(auth.last, '530 5.7.0 Must issue a STARTTLS command first');
      await wire.startTls(ca);
      const after = await wire.command('EHLO device.lan');
      const secured = after.lines.slice(1).map((l) => l.slice(4));
      assert.ok(secured.includes('AUTH PLAIN LOGIN'));
      assert.ok(!secured.includes('STARTTLS'));
      await wire.quit();
    });

    it('refuses AUTH in clear text on a listener without TLS unless allowPlainAuth is set', async () => {
      const { wire } = await SmtpWire.connect(L.plainNoAuth);
      const ehlo = await wire.command('EHLO device.lan');
      assert.ok(!ehlo.lines.some((l) => /AUTH|STARTTLS/.test(l)), ehlo.lines.join('|'));
      assert.equal((await wire.command(plain('alice', PASSWORDS.alice))).last, '538 5.7.11 Encryption required for requested authentication mechanism');
      assert.equal((await wire.command('MAIL FROM:<relay@contoso.example>')).last, '530 5.7.0 Authentication required');
      await wire.quit();

      const open = await SmtpWire.connect(L.plainAuth);
      const offered = await open.wire.command('EHLO device.lan');
      assert.ok(offered.lines.some((l) => l.endsWith('AUTH PLAIN LOGIN')));
      assert.equal((await open.wire.command(plain('bob', PASSWORDS.bob))).last, '235 2.7.0 Authentication successful');
      const reply = await transaction(open.wire, 'ops@contoso.example', ['x@example.net'], simple('ops@contoso.example'));
      assert.match(reply.last, QUEUED);
      const raw = await h.store.getRaw(QUEUED.exec(reply.last)![1]!);
      assert.match(raw!.toString(), /^Received: from device\.lan \(\[127\.0\.0\.1\]\)\r\n\tby relay\.test \(relay365\) with ESMTPA id /);
      await open.wire.quit();
    });
  });

  describe('real clients', () => {
    it('accepts a message from swaks over STARTTLS with AUTH PLAIN and queues exactly the bytes sent, behind a Received header', async () => {
      const sent = mime(
        [
          'Date: Tue, 24 Nov 2026 07:27:00 +0000',
          'Message-ID: <swaks-1@contoso.example>',
          'From: Relay <relay@contoso.example>',
          'To: x@example.net',
          'Subject: =?UTF-8?Q?Scan_=C3=BC?=',
          'MIME-Version: 1.0',
          'Content-Type: text/plain; charset=utf-8',
          'Content-Transfer-Encoding: 8bit',
        ],
        ['Grüße from the printer.', '.a line that starts with a dot', '..and one with two', '', 'end'],
      );
      const file = join(dir, 'swaks.eml');
      // swaks ends DATA with CRLF . CRLF after the file, so the file holds the message without its last CRLF.
      await writeFile(file, sent.slice(0, -2));
      const before = h.enqueued.length;
      const out = await run('swaks', [
        '--server',
        '127.0.0.1',
        '--port',
        String(L.starttls),
        '--helo',
        'printer.lan',
        '--tls',
        '--auth',
        'PLAIN',
        '--auth-user',
        'alice',
        '--auth-password',
        PASSWORDS.alice,
        '--from',
        'relay@contoso.example',
        '--to',
        'x@example.net',
        '--data',
        file,
      ]);
      assert.equal(out.code, 0, out.stdout + out.stderr);
      const id = /250 2\.0\.0 OK queued as (\S+)/.exec(out.stdout)?.[1];
      assert.ok(id, out.stdout);
      assert.deepEqual(h.enqueued.slice(before), [id]);
      const stored = (await h.store.get(id))!;
      assert.deepEqual(stored.envelope, { from: 'relay@contoso.example', to: ['x@example.net'] });
      assert.equal(stored.mailbox, 'relay@contoso.example');
      assert.deepEqual(stored.source, { kind: 'smtp', client: '127.0.0.1', user: 'alice' });
      assert.equal(stored.messageId, '<swaks-1@contoso.example>');
      const added = addedHeaders((await h.store.getRaw(id))!, sent);
      assert.match(
        added,
        /^Received: from printer\.lan \(\[127\.0\.0\.1\]\)\r\n\tby relay\.test \(relay365\) with ESMTPSA id \S+\r\n\tfor <x@example\.net>;\r\n\t\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} \+0000\r\n$/,
      );
    });

    it('holds a device allowed one sender to it in every originator field, and refuses header sections another hop could read otherwise', async () => {
      const before = h.enqueued.length;
      const { wire } = await SmtpWire.connect(L.plainNoAuth, '127.0.0.1', '127.0.0.3');
      await wire.command('EHLO scanner.lan');
      const send = (headers: string[]) => transaction(wire, 'scanner@contoso.example', ['x@example.net'], mime(headers, ['page']));
      const cases: Array<[string[], string]> = [
        [
          ['From: scanner@contoso.example', 'Sender: relay@contoso.example'],
          '550 5.7.1 Sender not allowed: clients in 127.0.0.3/32 may not send as <relay@contoso.example>',
        ],
        [
          ['From: scanner@contoso.example', 'Resent-From: ops@contoso.example'],
          '550 5.7.1 Sender not allowed: clients in 127.0.0.3/32 may not send as <ops@contoso.example>',
        ],
        [
          ['From: <scanner@contoso.example> <relay@contoso.example>'],
          '550 5.7.1 Sender not allowed: the From field holds angle brackets or addresses that do not form a list of mailboxes',
        ],
        [
          [' X-Folded: joins the Date relay365 adds', 'From: scanner@contoso.example'],
          '554 5.6.0 Malformed header section: the first header line starts with white space (a continuation of no field)',
        ],
        [
          ['From: scanner@contoso.example\rFrom: relay@contoso.example'],
          '554 5.6.0 Malformed header section: a header line holds a bare carriage return (CR without LF)',
        ],
        [['From: scanner@contoso.example', 'From: relay@contoso.example'], '550 5.7.1 Sender not allowed: the message has more than one From field'],
      ];
      for (const [headers, reply] of cases) assert.equal((await send(headers)).last, reply, headers.join(' | '));
      assert.equal(h.enqueued.length, before, 'none of them was queued');
      // No From at all: relay365 names the envelope sender the policy checked, rather than leave Exchange to show the mailbox.
      const ok = await send(['To: x@example.net', 'Subject: no from']);
      const id = QUEUED.exec(ok.last)![1]!;
      const raw = (await h.store.getRaw(id))!.toString('utf8');
      assert.match(raw, /\r\nFrom: <scanner@contoso\.example>\r\n/);
      await wire.quit();
    });

    it('accepts a device on the allowlist without AUTH, and adds the missing Message-ID and Date', async () => {
      const sent = mime(['From: scanner@contoso.example', 'To: x@example.net', 'Subject: scan'], ['scanned page attached (not really)']);
      const file = join(dir, 'scanner.eml');
      await writeFile(file, sent.slice(0, -2));
      const out = await run('swaks', [
        '--server',
        '127.0.0.1',
        '--port',
        String(L.plainNoAuth),
        '--local-interface',
        '127.0.0.3',
        '--helo',
        'scanner.lan',
        '--from',
        'scanner@contoso.example',
        '--to',
        'x@example.net,y@example.net',
        '--data',
        file,
      ]);
      assert.equal(out.code, 0, out.stdout + out.stderr);
      const id = /250 2\.0\.0 OK queued as (\S+)/.exec(out.stdout)![1]!;
      const stored = (await h.store.get(id))!;
      assert.deepEqual(stored.source, { kind: 'smtp', client: '127.0.0.3', user: 'allowlist:127.0.0.3/32' });
      const added = addedHeaders((await h.store.getRaw(id))!, sent);
      const lines = added.split('\r\n');
      assert.match(lines[0]!, /^Received: from scanner\.lan \(\[127\.0\.0\.3\]\)$/);
      assert.match(lines[1]!, /^\tby relay\.test \(relay365\) with ESMTP id \S+;$/, 'two recipients: no "for" clause');
      assert.match(lines[3]!, /^Message-ID: <[0-9a-f-]{36}@relay\.test>$/);
      assert.equal(stored.messageId, lines[3]!.slice('Message-ID: '.length));
      assert.match(lines[4]!, /^Date: \w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} \+0000$/);

      // The same device may only use the senders its entry allows.
      const denied = await run('swaks', [
        '--server',
        '127.0.0.1',
        '--port',
        String(L.plainNoAuth),
        '--local-interface',
        '127.0.0.3',
        '--from',
        'relay@contoso.example',
        '--to',
        'x@example.net',
      ]);
      assert.notEqual(denied.code, 0);
      assert.match(denied.stdout, /550 5\.7\.1 Sender not allowed: clients in 127\.0\.0\.3\/32 may not send as <relay@contoso\.example>/);
    });

    it('matches an allowlisted IPv4 peer on a socket that reports ::ffff:a.b.c.d, and IPv6 peers', async () => {
      const out = await run('swaks', [
        '--server',
        '127.0.0.1',
        '--port',
        String(L.mapped),
        '--local-interface',
        '127.0.0.4',
        '--from',
        'ops@contoso.example',
        '--to',
        'x@example.net',
      ]);
      assert.equal(out.code, 0, out.stdout + out.stderr);
      const id = /250 2\.0\.0 OK queued as (\S+)/.exec(out.stdout)![1]!;
      assert.deepEqual((await h.store.get(id))!.source, { kind: 'smtp', client: '127.0.0.4', user: 'allowlist:::ffff:127.0.0.4' });

      const { wire } = await SmtpWire.connect(L.v6, '::1');
      await wire.command('EHLO v6.lan');
      const reply = await transaction(wire, 'ops@contoso.example', ['x@example.net'], simple('ops@contoso.example'));
      assert.match(reply.last, QUEUED);
      const raw = (await h.store.getRaw(QUEUED.exec(reply.last)![1]!))!.toString();
      assert.match(raw, /^Received: from v6\.lan \(\[IPv6:::1\]\)/);
      await wire.quit();
    });

    it("accepts a message from Python's smtplib over STARTTLS with AUTH LOGIN, verifying the certificate, to a pool address", async () => {
      const script = [
        'import smtplib, ssl, sys',
        'port, cafile, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]',
        'msg = sys.stdin.buffer.read()',
        'ctx = ssl.create_default_context(cafile=cafile)',
        'with smtplib.SMTP("127.0.0.1", port, local_hostname="python.lan") as s:',
        '    s.starttls(context=ctx)',
        '    s.ehlo("python.lan")',
        '    s.user, s.password = user, password',
        '    code, _ = s.auth("LOGIN", s.auth_login, initial_response_ok=False)',
        '    assert code == 235, code',
        '    assert s.mail("alerts@contoso.example")[0] == 250',
        '    assert s.rcpt("oncall@example.net")[0] == 250',
        '    code, resp = s.data(msg)',
        '    print(code, resp.decode())',
      ].join('\n');
      const message = mime(
        [
          'From: Alerts <alerts@contoso.example>',
          'To: oncall@example.net',
          'Subject: disk full',
          'Message-ID: <py-1@contoso.example>',
          'Date: Tue, 24 Nov 2026 07:27:00 +0000',
        ],
        ['/var is 99% full'],
      );
      const out = await run('python3', ['-c', script, String(L.starttls), certPath, 'bob', PASSWORDS.bob], message);
      assert.equal(out.code, 0, out.stderr);
      const [, id] = /^250 2\.0\.0 OK queued as (\S+)$/m.exec(out.stdout.trim()) ?? [];
      assert.ok(id, out.stdout);
      const stored = (await h.store.get(id))!;
      assert.equal(stored.pool, 'alerts@contoso.example');
      assert.equal(stored.mailbox, undefined);
      assert.deepEqual(stored.source, { kind: 'smtp', client: '127.0.0.1', user: 'bob' });
      addedHeaders((await h.store.getRaw(id))!, message);
    });

    it('accepts a message from curl over implicit TLS (smtps), verifying the certificate', async () => {
      const message = mime(
        [
          'From: noreply@fabrikam.example',
          'To: x@example.net',
          'Subject: from curl',
          'Message-ID: <curl-1@fabrikam.example>',
          'Date: Tue, 24 Nov 2026 07:27:00 +0000',
        ],
        ['hello from curl', '.dot'],
      );
      const file = join(dir, 'curl.eml');
      await writeFile(file, message);
      const out = await run('curl', [
        '--silent',
        '--show-error',
        '--verbose',
        '--url',
        `smtps://127.0.0.1:${L.implicit}`,
        '--ssl-reqd',
        '--cacert',
        certPath,
        '--mail-from',
        'noreply@fabrikam.example',
        '--mail-rcpt',
        'x@example.net',
        '--upload-file',
        file,
        '--user',
        `alice:${PASSWORDS.alice}`,
      ]);
      assert.equal(out.code, 0, out.stderr);
      const id = /< 250 2\.0\.0 OK queued as (\S+)/.exec(out.stderr)?.[1];
      assert.ok(id, out.stderr);
      const stored = (await h.store.get(id))!;
      assert.equal(stored.mailbox, 'relay@contoso.example');
      assert.match(addedHeaders((await h.store.getRaw(id))!, message), /with ESMTPSA id/);
    });

    it('serves a pooled nodemailer client: 200 messages over 8 connections, every one queued once', async () => {
      const before = h.enqueued.length;
      const transport = nodemailer.createTransport({
        host: '127.0.0.1',
        port: L.starttls,
        secure: false,
        requireTLS: true,
        tls: { ca, servername: 'localhost' },
        auth: { user: 'bob', pass: PASSWORDS.bob },
        pool: true,
        maxConnections: 8,
        maxMessages: 50,
      });
      try {
        const results = await Promise.all(
          Array.from(
            { length: 200 },
            (_, i) =>
              transport.sendMail({ from: 'ops@contoso.example', to: `r${i}@example.net`, subject: `pooled ${i}`, text: `message ${i}` }) as Promise<{
                response: string;
              }>,
          ),
        );
        assert.ok(results.every((r) => QUEUED.test(r.response)));
        assert.equal(new Set(results.map((r) => r.response)).size, 200);
        assert.equal(h.enqueued.length - before, 200);
      } finally {
        transport.close();
      }
    });
  });

  describe('not an open relay', () => {
    it('refuses a stranger without AUTH at MAIL FROM with 530 5.7.0 and queues nothing', async () => {
      const before = h.enqueued.length;
      const { wire } = await SmtpWire.connect(L.starttls);
      await wire.secure(ca);
      // PIPELINING: all at once, as a spammer would.
      wire.writeRaw('MAIL FROM:<relay@contoso.example>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\n');
      assert.equal((await wire.reply()).last, '530 5.7.0 Authentication required');
      assert.equal((await wire.reply()).last, '503 5.5.1 Error: need MAIL command');
      assert.equal((await wire.reply()).last, '503 5.5.1 Error: need RCPT command');
      await wire.quit();
      const swaks = await run('swaks', [
        '--server',
        '127.0.0.1',
        '--port',
        String(L.plainNoAuth),
        '--local-interface',
        '127.0.0.5',
        '--from',
        'relay@contoso.example',
        '--to',
        'x@example.net',
      ]);
      assert.notEqual(swaks.code, 0);
      assert.match(swaks.stdout, /530 5\.7\.0 Authentication required/);
      assert.equal(h.enqueued.length, before);
    });

    it('refuses a wrong password with 535 5.7.8, and an unknown user the same way', async () => {
      const { wire } = await SmtpWire.connect(L.starttls);
      await wire.secure(ca);
      assert.equal((await wire.command(plain('alice', 'not-her-password'))).last, '535 5.7.8 Authentication credentials invalid');
      assert.equal((await wire.command(plain('mallory', 'guess'))).last, '535 5.7.8 Authentication credentials invalid');
      // AUTH LOGIN, step by step.
      assert.equal((await wire.command('AUTH LOGIN')).last, '334 VXNlcm5hbWU6');
      assert.equal((await wire.command(b64('alice'))).last, '334 UGFzc3dvcmQ6');
      assert.equal((await wire.command(b64('wrong'))).last, '535 5.7.8 Authentication credentials invalid');
      assert.equal((await wire.command('MAIL FROM:<relay@contoso.example>')).last, '530 5.7.0 Authentication required');
      await wire.quit();
    });

    it('refuses senders a user may not use, at MAIL FROM and in the From header, and queues nothing', async () => {
      const before = h.enqueued.length;
      const alice = await loggedIn(L.starttls, ca, 'alice');
      assert.equal((await alice.command('MAIL FROM:<ops@contoso.example>')).last, '550 5.7.1 Sender not allowed: alice may not send as <ops@contoso.example>');
      assert.equal(
        (await alice.command('MAIL FROM:<>')).last,
        '550 5.7.1 Sender not allowed: an empty MAIL FROM:<> is only for bounces, which are not relayed',
      );
      // Allowed by her @fabrikam.example rule, but no mailbox may send as it.
      assert.equal(
        (await alice.command('MAIL FROM:<ceo@fabrikam.example>')).last,
        '550 5.7.1 Sender not allowed: no mailbox may send as <ceo@fabrikam.example>',
      );
      const header = await transaction(alice, 'relay@contoso.example', ['x@example.net'], simple('"Operations" <ops@contoso.example>'));
      assert.equal(header.last, '550 5.7.1 Sender not allowed: alice may not send as <ops@contoso.example>');
      const noFrom = await transaction(alice, 'relay@contoso.example', ['x@example.net'], mime(['From: undisclosed-senders:;', 'Subject: x'], ['x']));
      assert.equal(noFrom.last, '550 5.7.1 Sender not allowed: the From field is a group; name the addresses themselves');
      // The header From is sendable by a mailbox, but not together with MAIL FROM's mailbox.
      const bob = await loggedIn(L.starttls, ca, 'bob');
      const mixed = await transaction(bob, 'ops@contoso.example', ['x@example.net'], simple('scanner@contoso.example'));
      assert.equal(mixed.last, '550 5.7.1 Sender not allowed: no mailbox may send as <scanner@contoso.example>');
      assert.equal(h.enqueued.length, before);
      // The connection stays usable: a good message still goes through.
      assert.match((await transaction(alice, 'relay@contoso.example', ['x@example.net'], simple('noreply@fabrikam.example'))).last, QUEUED);
      await alice.quit();
      await bob.quit();
    });

    it('locks an address out after ten wrong passwords: the eleventh AUTH is refused with the right one', async () => {
      const lock = await startHarness(dir, 'lockout', {
        listeners: [{ host: '127.0.0.1', port: 0, tls: 'starttls' }],
        users: [{ name: 'alice', passwordHash: await hashPassword(PASSWORDS.alice) }],
      });
      try {
        const port = lock.listeners[0]!.port;
        const { wire } = await SmtpWire.connect(port);
        await wire.secure(ca);
        for (let i = 0; i < 10; i++) assert.equal((await wire.command(plain('alice', `guess-${i}`))).last, '535 5.7.8 Authentication credentials invalid');
        assert.equal((await wire.command(plain('alice', PASSWORDS.alice))).last, '454 4.7.0 Too many failed logins from your address; try again later');
        await wire.quit();
        const next = await SmtpWire.connect(port);
        await next.wire.secure(ca);
        assert.equal((await next.wire.command(plain('alice', PASSWORDS.alice))).last, '454 4.7.0 Too many failed logins from your address; try again later');
        assert.equal((await next.wire.command('MAIL FROM:<relay@contoso.example>')).last, '530 5.7.0 Authentication required');
        await next.wire.quit();
        assert.equal(lock.enqueued.length, 0);
        assert.ok(lock.logs.some((l) => l.includes('"lockedOut":true')));
      } finally {
        await lock.close();
      }
    });

    it('tells its observer and its log of each failed login, the lockout they start, the logins refused during it, refused senders and accepted messages', async () => {
      const seen: FrontDoorEvent[] = [];
      const count = (type: FrontDoorEvent['type'], extra: Record<string, string> = {}): number =>
        seen.filter((e) => e.type === type && Object.entries(extra).every(([k, v]) => (e as Record<string, unknown>)[k] === v)).length;
      const watched = await startHarness(
        dir,
        'observed',
        {
          listeners: [{ host: '127.0.0.1', port: 0, tls: 'starttls' }],
          users: [{ name: 'alice', passwordHash: await hashPassword(PASSWORDS.alice), allowedSenders: ['relay@contoso.example'] }],
          lockoutFailures: 3,
        },
        { observe: (e) => seen.push(e) },
      );
      try {
        const port = watched.listeners[0]!.port;
        // 127.0.0.5 is the guesser's machine: its lockout leaves alice's own address (127.0.0.1) alone.
        const guesser = await SmtpWire.connect(port, '127.0.0.1', '127.0.0.5');
        await guesser.wire.secure(ca);
        for (let i = 0; i < 3; i++) assert.match((await guesser.wire.command(plain('alice', `guess-${i}`))).last, /^535 5\.7\.8 /);
        assert.match((await guesser.wire.command(plain('alice', PASSWORDS.alice))).last, /^454 4\.7\.0 /);
        await guesser.wire.quit();

        const alice = await SmtpWire.connect(port, '127.0.0.1', '127.0.0.6');
        await alice.wire.secure(ca);
        assert.match((await alice.wire.command(plain('alice', PASSWORDS.alice))).last, /^235 /);
        assert.match((await alice.wire.command('MAIL FROM:<ceo@fabrikam.example>')).last, /^550 5\.7\.1 /);
        await alice.wire.command('RSET');
        // MAIL FROM is hers, the header From is not: refused after DATA, counted the same.
        assert.match((await transaction(alice.wire, 'relay@contoso.example', ['x@example.net'], simple('ceo@fabrikam.example'))).last, /^550 5\.7\.1 /);
        assert.match((await transaction(alice.wire, 'relay@contoso.example', ['x@example.net'], simple('relay@contoso.example'))).last, QUEUED);
        await alice.wire.quit();

        assert.equal(count('smtp.connection', { outcome: 'accepted' }), 2);
        assert.equal(count('smtp.auth_failed', { reason: 'invalid' }), 3);
        assert.equal(count('smtp.lockout'), 1);
        assert.equal(count('smtp.auth_failed', { reason: 'locked' }), 1);
        assert.equal(count('smtp.sender_refused'), 2);
        assert.equal(count('smtp.message_accepted'), 1);

        const lines = watched.logs.map((l) => JSON.parse(l) as Record<string, unknown>);
        const lockout = lines.find((l) => l.event === 'login.lockout');
        assert.ok(lockout, 'a login.lockout line');
        assert.equal(lockout.client, '127.0.0.5');
        assert.equal(lockout.attemptedUser, 'alice');
        assert.equal(lines.filter((l) => l.event === 'login.failed').length, 3);
        assert.equal(lines.filter((l) => l.event === 'login.locked').length, 1);
        assert.deepEqual(
          lines.filter((l) => l.event === 'sender.refused').map((l) => l.sender),
          ['ceo@fabrikam.example', 'ceo@fabrikam.example'],
        );
        const text = watched.logs.join('');
        for (const secret of [PASSWORDS.alice, 'guess-0', 'guess-2']) assert.ok(!text.includes(secret), `a password in the log: ${secret}`);
      } finally {
        await watched.close();
      }
    });
  });

  describe('logins under attack', () => {
    it('counts 20 parallel wrong passwords before they run (10 checked, 10 refused), and leaves a second user at the same address alone', async () => {
      const lock = await startHarness(dir, 'parallel-guesses', {
        listeners: [{ host: '127.0.0.1', port: 0, tls: 'starttls' }],
        // 20 connections of one address before they log in: the lockout, not the slot limit, is under test.
        maxPreAuthConnectionsPerClient: 20,
        users: [
          { name: 'alice', passwordHash: await hashPassword(PASSWORDS.alice) },
          { name: 'bob', passwordHash: await hashPassword(PASSWORDS.bob) },
        ],
      });
      try {
        const port = lock.listeners[0]!.port;
        const wires = await Promise.all(
          Array.from({ length: 20 }, async () => {
            const { wire } = await SmtpWire.connect(port);
            await wire.secure(ca);
            return wire;
          }),
        );
        const replies = await Promise.all(wires.map((w, i) => w.command(plain('alice', `guess-${i}`))));
        const counts = new Map<string, number>();
        for (const r of replies) counts.set(r.last, (counts.get(r.last) ?? 0) + 1);
        assert.equal(counts.get('535 5.7.8 Authentication credentials invalid'), 10, [...counts].join('; '));
        assert.equal(counts.get('454 4.7.0 Too many failed logins from your address; try again later'), 10);
        await Promise.all(wires.map((w) => w.quit()));
        // Bob is behind the same address (a NAT): the guesser at alice's password does not lock him out.
        // The relay counts a connection until its socket closes, a moment after the client read 221:
        // with no greeting delay, a connection at once may still find the 20 slots taken.
        let bob = await SmtpWire.connect(port);
        for (const end = Date.now() + 5000; bob.greeting.code !== 220 && Date.now() < end; bob = await SmtpWire.connect(port)) await bob.wire.quit();
        assert.equal(bob.greeting.code, 220, bob.greeting.last);
        await bob.wire.secure(ca);
        assert.equal((await bob.wire.command(plain('bob', PASSWORDS.bob))).last, '235 2.7.0 Authentication successful');
        await bob.wire.quit();
      } finally {
        await lock.close();
      }
    });

    it('lets 16 devices behind one address log in as one user at once (the logins past the limit wait for the verdicts, none is refused)', async () => {
      const nat = await startHarness(dir, 'nat-devices', {
        listeners: [{ host: '127.0.0.1', port: 0, tls: 'starttls' }],
        maxPreAuthConnectionsPerClient: 16,
        users: [{ name: 'alice', passwordHash: await hashPassword(PASSWORDS.alice) }],
      });
      try {
        const port = nat.listeners[0]!.port;
        const wires = await Promise.all(
          Array.from({ length: 16 }, async () => {
            const { wire } = await SmtpWire.connect(port);
            await wire.secure(ca);
            return wire;
          }),
        );
        const replies = await Promise.all(wires.map((w) => w.command(plain('alice', PASSWORDS.alice))));
        assert.deepEqual(
          replies.map((r) => r.last),
          Array<string>(16).fill('235 2.7.0 Authentication successful'),
        );
        await Promise.all(wires.map((w) => w.quit()));
      } finally {
        await nat.close();
      }
    });

    it('keeps room for an allowlisted device and a client that logs in while idle strangers hold every other slot', async () => {
      const full = await startHarness(dir, 'idle-strangers', {
        listeners: [{ host: '127.0.0.1', port: 0, tls: 'starttls' }],
        users: [{ name: 'alice', passwordHash: await hashPassword(PASSWORDS.alice) }],
        allowlist: [{ cidr: '127.0.0.50/32' }],
        maxConnections: 60,
        reservedConnections: 20,
        maxPreAuthConnectionsPerClient: 5,
      });
      const idle: SmtpWire[] = [];
      try {
        const port = full.listeners[0]!.port;
        // 14 machines x 5 connections (70) that never log in: more than the 40 slots strangers may use.
        const greetings: string[] = [];
        for (let a = 0; a < 14; a++) {
          for (let i = 0; i < 5; i++) {
            const { wire, greeting } = await SmtpWire.connect(port, '127.0.0.1', `127.0.1.${a + 1}`);
            idle.push(wire);
            greetings.push(greeting.last);
          }
        }
        assert.ok(
          greetings.every((g) => g.startsWith('220 ')),
          'each newcomer got in (the oldest idle ones made room)',
        );
        // The newest five (127.0.1.14) are still open: their address has no more room.
        const sixth = await SmtpWire.connect(port, '127.0.0.1', '127.0.1.14');
        assert.equal(sixth.greeting.last, '421 4.7.0 Too many connections; try again later', 'a sixth connection of one address waiting to log in');
        await new Promise((r) => setTimeout(r, 200));
        const evicted = idle.filter((w) => w.closed).length;
        assert.ok(evicted >= 30, `the oldest idle strangers were closed (${evicted})`);
        assert.match(idle[0]!.transcript, /421 4\.7\.0 Too many connections waiting to log in; closing the oldest/);

        let started = performance.now();
        const device = await SmtpWire.connect(port, '127.0.0.1', '127.0.0.50');
        await device.wire.command('EHLO scanner.lan');
        assert.match((await transaction(device.wire, 'relay@contoso.example', ['x@example.net'], simple('relay@contoso.example'))).last, QUEUED);
        assert.ok(performance.now() - started < 1000, 'the allowlisted device was answered within a second');
        await device.wire.quit();

        started = performance.now();
        const alice = await SmtpWire.connect(port, '127.0.0.1', '127.0.2.1');
        await alice.wire.secure(ca);
        assert.equal((await alice.wire.command(plain('alice', PASSWORDS.alice))).last, '235 2.7.0 Authentication successful');
        assert.match((await transaction(alice.wire, 'relay@contoso.example', ['x@example.net'], simple('relay@contoso.example'))).last, QUEUED);
        assert.ok(performance.now() - started < 1000, 'the client that logged in was answered within a second');
        await alice.wire.quit();
      } finally {
        for (const w of idle) w.destroy();
        await full.close();
      }
    });

    it('closes a client that does not log in within smtp.preAuthTimeoutSeconds, NOOPs or not, and cuts a DATA that trickles past smtp.dataTimeoutSeconds', async () => {
      const slow = await startHarness(dir, 'slow-clients', {
        listeners: [{ host: '127.0.0.1', port: 0, tls: 'starttls' }],
        users: [{ name: 'alice', passwordHash: await hashPassword(PASSWORDS.alice) }],
        allowlist: [{ cidr: '127.0.0.51/32' }],
        preAuthTimeoutSeconds: 1,
        dataTimeoutSeconds: 1,
      });
      try {
        const port = slow.listeners[0]!.port;
        const { wire } = await SmtpWire.connect(port);
        const started = Date.now();
        const noops = setInterval(() => wire.write('NOOP'), 200);
        while (!wire.closed && Date.now() - started < 5000) await new Promise((r) => setTimeout(r, 50));
        clearInterval(noops);
        assert.ok(wire.closed, 'the stranger was closed');
        assert.ok(Date.now() - started < 3000, `after ${Date.now() - started} ms`);
        assert.match(wire.transcript, /421 4\.4\.2 No login within the time allowed; closing connection/);

        const device = await SmtpWire.connect(port, '127.0.0.1', '127.0.0.51');
        await device.wire.command('EHLO scanner.lan');
        assert.match((await device.wire.command('MAIL FROM:<relay@contoso.example>')).last, /^250 /);
        assert.match((await device.wire.command('RCPT TO:<x@example.net>')).last, /^250 /);
        assert.match((await device.wire.command('DATA')).last, /^354 /);
        const dataStarted = Date.now();
        const trickle = setInterval(() => device.wire.write(Buffer.from('x')), 200);
        while (!device.wire.closed && Date.now() - dataStarted < 5000) await new Promise((r) => setTimeout(r, 50));
        clearInterval(trickle);
        assert.ok(device.wire.closed, 'the trickled DATA was cut');
        assert.ok(Date.now() - dataStarted < 3000, `after ${Date.now() - dataStarted} ms`);
        assert.equal(slow.enqueued.length, 0, 'nothing of it was queued');
        // Logged in, a client stays as long as it is not idle: the deadline is for strangers only.
        const alice = await SmtpWire.connect(port);
        await alice.wire.secure(ca);
        assert.equal((await alice.wire.command(plain('alice', PASSWORDS.alice))).last, '235 2.7.0 Authentication successful');
        await new Promise((r) => setTimeout(r, 1500));
        assert.match((await alice.wire.command('NOOP')).last, /^250 /);
        await alice.wire.quit();
      } finally {
        await slow.close();
      }
    });

    it('answers a logged-in client within a second while other addresses flood AUTH with wrong passwords', async () => {
      const flood = await startHarness(dir, 'auth-flood', {
        listeners: [{ host: '127.0.0.1', port: 0, tls: 'starttls' }],
        users: [{ name: 'alice', passwordHash: await hashPassword(PASSWORDS.alice) }],
        lockoutFailures: 1000,
      });
      let flooding = true;
      try {
        const port = flood.listeners[0]!.port;
        const alice = await SmtpWire.connect(port);
        await alice.wire.secure(ca);
        assert.equal((await alice.wire.command(plain('alice', PASSWORDS.alice))).last, '235 2.7.0 Authentication successful');
        // 5 other machines (127.0.0.2-6), 3 connections each, guessing as fast as the relay answers
        // (each guess waits its turn for a key derivation: an attacker's reply may take seconds).
        let guesses = 0;
        const attackers = Array.from({ length: 15 }, async (_, i) => {
          const { wire } = await SmtpWire.connect(port, '127.0.0.1', `127.0.0.${2 + (i % 5)}`);
          await wire.secure(ca);
          try {
            while (flooding && !wire.closed) {
              await wire.command(plain(i % 2 === 0 ? 'alice' : `nobody${i}`, `guess-${guesses}`));
              guesses += 1;
            }
            await wire.quit();
          } catch {
            // A reply slower than the wire's patience: this attacker gives up, the others go on.
          }
        });
        // Under way: the first wrong passwords have been checked (seconds on a loaded machine).
        await until(() => guesses > 0, 15_000, 'the flood under way');
        const before = guesses;
        const started = performance.now();
        const sent = await transaction(alice.wire, 'relay@contoso.example', ['x@example.net'], simple('relay@contoso.example'));
        const took = performance.now() - started;
        assert.match(sent.last, QUEUED);
        assert.ok(took < 1000, `the logged-in client's message took ${took.toFixed(0)} ms under the flood`);
        // The flood ran before and after the message, so it ran throughout.
        await until(() => guesses > before, 5000, 'more wrong passwords checked after the message');
        flooding = false;
        await Promise.all(attackers);
        await alice.wire.quit();
      } finally {
        flooding = false;
        await flood.close();
      }
    });
  });

  describe('limits and bad input', () => {
    it('refuses an oversized message, declared or not, with 552 5.3.4, and accepts the next one', async () => {
      const before = h.enqueued.length;
      const wire = await loggedIn(L.starttls, ca, 'alice');
      assert.equal(
        (await wire.command(`MAIL FROM:<relay@contoso.example> SIZE=${64 * 1024 + 1}`)).last,
        '552 5.3.4 Message size exceeds fixed maximum message size (65536 bytes)',
      );
      const big = mime(
        ['From: relay@contoso.example', 'Subject: big'],
        Array.from({ length: 1000 }, () => 'x'.repeat(76)),
      );
      assert.equal(
        (await transaction(wire, 'relay@contoso.example', ['x@example.net'], big)).last,
        '552 5.3.4 Message size exceeds fixed maximum message size (65536 bytes)',
      );
      assert.equal(h.enqueued.length, before);
      assert.match((await transaction(wire, 'relay@contoso.example', ['x@example.net'], simple('relay@contoso.example'))).last, QUEUED);
      await wire.quit();
    });

    it('refuses recipients beyond maxRecipients with 452 4.5.3 and sends to the ones accepted', async () => {
      const wire = await loggedIn(L.starttls, ca, 'alice');
      assert.equal((await wire.command('MAIL FROM:<relay@contoso.example>')).code, 250);
      for (const r of ['a@example.net', 'b@example.net', 'c@example.net', 'A@example.net'])
        assert.equal((await wire.command(`RCPT TO:<${r}>`)).code, 250, 'a repeated recipient adds nothing');
      assert.equal((await wire.command('RCPT TO:<d@example.net>')).last, '452 4.5.3 Too many recipients (at most 3 per message)');
      assert.equal((await wire.command('DATA')).code, 354);
      wire.writeRaw(dataOf(simple('relay@contoso.example')));
      const reply = await wire.reply();
      assert.match(reply.last, QUEUED);
      assert.deepEqual((await h.store.get(QUEUED.exec(reply.last)![1]!))!.envelope.to, ['A@example.net', 'b@example.net', 'c@example.net']);
      await wire.quit();
    });

    it('refuses a message line over 1000 octets with 500 5.5.2, and a command line over the limit by closing', async () => {
      const before = h.enqueued.length;
      const wire = await loggedIn(L.starttls, ca, 'alice');
      const long = mime(['From: relay@contoso.example', 'Subject: long'], ['y'.repeat(999)]);
      assert.match(
        (await transaction(wire, 'relay@contoso.example', ['x@example.net'], long)).last,
        /^500 5\.5\.2 Line too long: a message line has 1001 octets/,
      );
      const limit = mime(['From: relay@contoso.example', 'Subject: exactly 1000'], ['y'.repeat(998)]);
      assert.match((await transaction(wire, 'relay@contoso.example', ['x@example.net'], limit)).last, QUEUED);
      // A 1,500-byte command is only an unknown command; one over 4 KB ends the connection.
      assert.equal((await wire.command('X'.repeat(1500))).last, '500 5.5.2 Error: command not recognized');
      wire.write(`NOOP ${'z'.repeat(5000)}`);
      assert.equal((await wire.reply()).last, '421 4.5.0 Command line too long; closing connection');
      await wire.waitClosed();
      assert.equal(h.enqueued.length, before + 1);
    });

    it('refuses NUL bytes in a message (554 5.6.0) and in commands', async () => {
      const before = h.enqueued.length;
      const wire = await loggedIn(L.starttls, ca, 'alice');
      assert.equal(
        (await transaction(wire, 'relay@contoso.example', ['x@example.net'], mime(['From: relay@contoso.example'], ['a\0b']))).last,
        '554 5.6.0 Message contains NUL bytes, which SMTP cannot carry; encode binary content (base64)',
      );
      assert.equal((await wire.command('MAIL FROM:<relay\0@contoso.example>')).last, '501 5.1.7 Error: Bad sender address syntax');
      assert.equal((await wire.command('NO\0OP')).last, '500 5.5.2 Error: command not recognized');
      assert.equal(h.enqueued.length, before);
      assert.match((await transaction(wire, 'relay@contoso.example', ['x@example.net'], simple('relay@contoso.example'))).last, QUEUED);
      await wire.quit();
    });

    it('answers garbage with 500 5.5.2 and closes after ten unknown commands', async () => {
      const { wire } = await SmtpWire.connect(L.starttls);
      for (let i = 0; i < 9; i++) assert.equal((await wire.command(`\x01\xff garbage ${i}`)).last, '500 5.5.2 Error: command not recognized');
      assert.equal((await wire.command('GET / HTTP/1.1')).last, '421 4.7.0 HTTP requests are not accepted on an SMTP port');
      await wire.waitClosed();
      const again = await SmtpWire.connect(L.starttls);
      for (let i = 0; i < 9; i++) await again.wire.command(`BOGUS${i}`);
      assert.equal((await again.wire.command('BOGUS9')).last, '421 4.7.0 Too many unrecognized commands; closing connection');
      await again.wire.waitClosed();
    });

    it('queues nothing for a client that disconnects mid-DATA, while another client is served', async () => {
      const before = h.enqueued.length;
      const quitter = await loggedIn(L.starttls, ca, 'alice');
      assert.equal((await quitter.command('MAIL FROM:<relay@contoso.example>')).code, 250);
      assert.equal((await quitter.command('RCPT TO:<x@example.net>')).code, 250);
      assert.equal((await quitter.command('DATA')).code, 354);
      quitter.writeRaw('From: relay@contoso.example\r\nSubject: half\r\n\r\nthe first half of');
      const other = await loggedIn(L.starttls, ca, 'bob');
      const reply = await transaction(other, 'ops@contoso.example', ['x@example.net'], simple('ops@contoso.example'));
      assert.match(reply.last, QUEUED);
      quitter.destroy();
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.deepEqual(h.enqueued.slice(before), [QUEUED.exec(reply.last)![1]]);
      assert.ok(h.logs.some((l) => l.includes('SMTP DATA ended early')));
      assert.match((await transaction(other, 'ops@contoso.example', ['x@example.net'], simple('ops@contoso.example'))).last, QUEUED);
      await other.quit();
    });
  });

  describe('acceptance', () => {
    it('answers 250 only once the outbox has committed the message', async () => {
      const wire = await loggedIn(L.starttls, ca, 'alice');
      let open!: () => void;
      h.gate = new Promise((resolve) => (open = resolve));
      const before = h.enqueued.length;
      assert.equal((await wire.command('MAIL FROM:<relay@contoso.example>')).code, 250);
      assert.equal((await wire.command('RCPT TO:<x@example.net>')).code, 250);
      assert.equal((await wire.command('DATA')).code, 354);
      wire.writeRaw(dataOf(simple('relay@contoso.example')));
      await assert.rejects(wire.reply(400), /no complete reply/);
      h.gate = undefined;
      open();
      const reply = await wire.reply();
      assert.match(reply.last, QUEUED);
      assert.deepEqual(h.enqueued.slice(before), [QUEUED.exec(reply.last)![1]]);
      await wire.quit();
    });

    it('honours PIPELINING, 8BITMIME and SMTPUTF8, keeping 8-bit bytes and giving IDN domains in ASCII in the envelope', async () => {
      const wire = await loggedIn(L.starttls, ca, 'alice');
      const message = mime(
        ['From: relay@contoso.example', 'To: jürgen@bücher.example', 'Subject: Grüße', 'Content-Type: text/plain; charset=utf-8'],
        ['Ärger mit dem Drucker — ✓'],
      );
      // One write: MAIL, two RCPTs and DATA (RFC 2920), then the message once 354 is in.
      wire.writeRaw('MAIL FROM:<relay@contoso.example> BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<jürgen@bücher.example>\r\nRCPT TO:<x@example.net>\r\nDATA\r\n');
      assert.equal((await wire.reply()).last, '250 2.1.0 Accepted');
      assert.equal((await wire.reply()).last, '250 2.1.5 Accepted');
      assert.equal((await wire.reply()).last, '250 2.1.5 Accepted');
      assert.equal((await wire.reply()).code, 354);
      wire.writeRaw(Buffer.from(dataOf(message), 'utf8'));
      const reply = await wire.reply();
      assert.match(reply.last, QUEUED);
      const id = QUEUED.exec(reply.last)![1]!;
      assert.deepEqual((await h.store.get(id))!.envelope, { from: 'relay@contoso.example', to: ['jürgen@xn--bcher-kva.example', 'x@example.net'] });
      addedHeaders((await h.store.getRaw(id))!, message);
      await wire.quit();
    });

    it('answers 451 4.3.0 when the outbox cannot commit, so that the client keeps the message', async () => {
      const wire = await loggedIn(L.starttls, ca, 'alice');
      const before = h.enqueued.length;
      h.failNext = new Error('database is locked');
      assert.equal(
        (await transaction(wire, 'relay@contoso.example', ['x@example.net'], simple('relay@contoso.example'))).last,
        '451 4.3.0 Cannot queue the message right now; try again later',
      );
      assert.equal(h.enqueued.length, before);
      assert.match((await transaction(wire, 'relay@contoso.example', ['x@example.net'], simple('relay@contoso.example'))).last, QUEUED);
      await wire.quit();
    });

    it('logs one line per accepted message and per refusal, and never a password or AUTH data', () => {
      const entries = h.logs.map((l) => JSON.parse(l) as Record<string, unknown>);
      const queued = entries.filter((e) => e.msg === 'SMTP message queued');
      assert.equal(queued.length, new Set(queued.map((e) => e.id)).size);
      for (const e of queued) for (const key of ['id', 'client', 'user', 'size', 'recipients']) assert.ok(key in e, `${key} in ${JSON.stringify(e)}`);
      assert.ok(entries.some((e) => e.msg === 'SMTP refused' && e.reply === '535 5.7.8 Authentication credentials invalid' && e.attemptedUser === 'alice'));
      assert.ok(
        entries.some((e) => e.msg === 'SMTP refused' && e.reply === '535 5.7.8 Authentication credentials invalid' && e.attemptedUser === '(unknown user)'),
      );
      const all = h.logs.join('\n');
      for (const secret of [...Object.values(PASSWORDS), 'not-her-password', 'guess', b64('\0alice\0' + PASSWORDS.alice), b64(PASSWORDS.bob), 'mallory']) {
        assert.ok(!all.includes(secret), `the log holds ${secret}`);
      }
    });
  });

  describe('Message-ID', () => {
    it("names the sender's domain in a Message-ID it adds when the machine's name is a bare label, and smtp.hostname when that is a FQDN", async () => {
      const smtp: ConfigInput['smtp'] = { listeners: [{ host: '127.0.0.1', port: 0, tls: 'none' }], allowlist: [{ cidr: '127.0.0.1/32' }] };
      const ids: string[] = [];
      for (const [name, hostname] of [
        ['bare-host', 'vm'],
        ['fqdn-host', 'relay.contoso.example'],
      ] as const) {
        const relay = await startHarness(dir, name, smtp, { hostname });
        try {
          const { wire } = await SmtpWire.connect(relay.listeners[0]!.port);
          assert.equal((await wire.command('EHLO printer.lan')).code, 250);
          const reply = await transaction(wire, 'scanner@contoso.example', ['x@example.net'], simple('Scanner <scanner@contoso.example>'));
          assert.equal(reply.code, 250, reply.last);
          await wire.command('QUIT');
          const stored = (await relay.store.get(relay.enqueued[0]!))!;
          const header = /^Message-ID: (.*)$/m.exec((await relay.store.getRaw(stored.id))!.toString('latin1'))![1]!.trim();
          assert.equal(header, stored.messageId);
          ids.push(header);
        } finally {
          await relay.close();
        }
      }
      assert.match(ids[0]!, /^<[0-9a-f-]{36}@contoso\.example>$/, 'not @vm: a bare name means nothing outside the machine');
      assert.match(ids[1]!, /^<[0-9a-f-]{36}@relay\.contoso\.example>$/);
    });
  });

  describe('connection limits', () => {
    it('limits connections per client address and in all with 421 4.7.0, idle time, and commands per connection', async () => {
      // The idle limit gets a relay of its own: with 1 s here, the first connections could time out
      // while the later ones are still waiting for their greeting (each after the 100 ms greeting delay
      // of a tls: none listener, a timer a busy virtual machine fires hundreds of milliseconds late).
      const tight = await startHarness(dir, 'tight', {
        listeners: [{ host: '127.0.0.1', port: 0, tls: 'none' }],
        maxConnectionsPerClient: 2,
        maxConnections: 3,
        maxCommandsPerConnection: 5,
        idleTimeoutSeconds: 60,
      });
      try {
        const port = tight.listeners[0]!.port;
        const a1 = await greet(port);
        const a2 = await greet(port);
        assert.match(a1.line, /^220 /);
        assert.match(a2.line, /^220 /);
        const a3 = await greet(port);
        assert.equal(a3.line, '421 4.7.0 Too many connections; try again later');
        const b1 = await greet(port, '127.0.0.2');
        assert.match(b1.line, /^220 /);
        const c1 = await greet(port, '127.0.0.6');
        assert.equal(c1.line, '421 4.7.0 Too many connections; try again later', 'the total is 3');
        for (const s of [a1, a2, a3, b1, c1]) s.socket.destroy();
        await new Promise((resolve) => setTimeout(resolve, 100));

        const { wire } = await SmtpWire.connect(port);
        for (let i = 0; i < 5; i++) assert.equal((await wire.command('NOOP')).code, 250);
        assert.equal((await wire.command('NOOP')).last, '421 4.7.0 Too many commands on one connection; reconnect to continue');
        await wire.waitClosed();
      } finally {
        await tight.close();
      }
      const impatient = await startHarness(dir, 'impatient', { listeners: [{ host: '127.0.0.1', port: 0, tls: 'none' }], idleTimeoutSeconds: 1 });
      try {
        const idle = await SmtpWire.connect(impatient.listeners[0]!.port);
        const started = Date.now();
        assert.equal((await idle.wire.reply(3000)).last, '421 4.4.2 Timeout - closing connection');
        assert.ok(Date.now() - started >= 900);
        await idle.wire.waitClosed();
      } finally {
        await impatient.close();
      }
    });
  });

  describe('shutdown', () => {
    it('lets a transaction under way finish with 250 during close(), and tells idle clients 421', async () => {
      const g = await startHarness(dir, 'graceful', {
        listeners: [{ host: '127.0.0.1', port: 0, tls: 'starttls' }],
        users: [{ name: 'alice', passwordHash: await hashPassword(PASSWORDS.alice) }],
      });
      const port = g.listeners[0]!.port;
      const busy = await loggedIn(port, ca, 'alice');
      assert.equal((await busy.command('MAIL FROM:<relay@contoso.example>')).code, 250);
      assert.equal((await busy.command('RCPT TO:<x@example.net>')).code, 250);
      assert.equal((await busy.command('DATA')).code, 354);
      busy.writeRaw('From: relay@contoso.example\r\nSubject: in flight\r\n\r\nfirst half\r\n');
      const idle = await SmtpWire.connect(port);
      let closed = false;
      const closing = g.ingress.close().then(() => (closed = true));
      assert.equal((await idle.wire.reply()).last, '421 4.3.2 Service shutting down; try again later');
      await idle.wire.waitClosed();
      await assert.rejects(SmtpWire.connect(port), /ECONNREFUSED/);
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(closed, false, 'close() waits for the transaction');
      busy.writeRaw('second half\r\n.\r\n');
      const reply = await busy.reply();
      assert.match(reply.last, QUEUED);
      assert.deepEqual(g.enqueued, [QUEUED.exec(reply.last)![1]]);
      const bye = await busy.command('QUIT').catch(() => undefined);
      assert.ok(bye === undefined || bye.code === 221 || bye.code === 421);
      await closing;
      assert.equal(closed, true);
      await g.store.close();
    });

    it('reports a port already in use as R365_SMTP_LISTEN_FAILED', async () => {
      await assert.rejects(
        startHarness(dir, 'busy-port', { listeners: [{ host: '127.0.0.1', port: L.starttls, tls: 'starttls' }] }),
        (err) => isRelay365Error(err, 'R365_SMTP_LISTEN_FAILED') && /EADDRINUSE/.test(err.message),
      );
    });

    it("refuses a section with allowlist CIDRs and password hashes it cannot use, every one at once, by the config schema's rules", async () => {
      const h = await startHarness(dir, 'bad-config', { listeners: [{ host: '127.0.0.1', port: 0, tls: 'none' }] });
      try {
        // A section built in code: loadConfig and configSchema refuse it first, with the same problems.
        const bad = { ...h.config.smtp, users: [{ name: 'x', passwordHash: 'scrypt$1$2$3' }], allowlist: [{ cidr: '10.0.0.0/40' }, { cidr: 'printer.lan' }] };
        await assert.rejects(
          h.ingress.prepareReload({ config: bad, limits: h.config.limits }),
          (err) =>
            isRelay365Error(err, 'R365_CONFIG_INVALID') &&
            /smtp\.users\[0\]\.passwordHash: must be scrypt/.test(err.message) &&
            /smtp\.allowlist\[0\]\.cidr: 10\.0\.0\.0\/40 is not a CIDR range/.test(err.message) &&
            /smtp\.allowlist\[1\]\.cidr: printer\.lan is not a CIDR range/.test(err.message),
        );
      } finally {
        await h.close();
      }
    });
  });
});

describe('relay365 user add', () => {
  it('prints the lines to paste under smtp.users: with a hash that verifies, and never the password', async () => {
    const password = 'pr1nter pass wörd';
    const script =
      "import { userCommand } from './src/cli/commands/user.ts'; await userCommand().parseAsync(['add', 'printer-2nd-floor', '--password-stdin'], { from: 'user' });";
    const out = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], `${password}\n`);
    assert.equal(out.code, 0, out.stderr);
    assert.ok(!out.stdout.includes(password) && !out.stderr.includes(password));
    const users = parseYaml(out.stdout) as Array<{ name: string; passwordHash: string }>;
    assert.equal(users.length, 1);
    assert.equal(users[0]!.name, 'printer-2nd-floor');
    assert.equal(await verifyPassword(password, users[0]!.passwordHash), true);
    // What it prints is accepted by the config schema.
    configSchema.parse({ smtp: { users } });
  });

  it('refuses an empty password from stdin', async () => {
    const script =
      "import { userCommand } from './src/cli/commands/user.ts'; import { reportError } from './src/cli/output.ts'; try { await userCommand().parseAsync(['add', 'x', '--password-stdin'], { from: 'user' }); } catch (e) { process.exitCode = reportError(e); }";
    const out = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], '\n');
    assert.equal(out.code, 1);
    assert.match(out.stderr, /R365_PASSWORD_INPUT_INVALID/);
  });
});
