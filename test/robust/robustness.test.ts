/**
 * Robustness: for ROBUST_SECONDS (default 20), malformed and hostile SMTP sessions and HTTP requests
 * hit `relay365 serve` (the built CLI, a separate process) while real messages flow beside them.
 * The relay must not die, its memory must stay bounded, every real message must reach the sandbox,
 * and nothing malformed may be queued. Run with `npm run test:robust`; ROBUST_SEED replays a run.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import { stringify } from 'yaml';
import { defaultGreetingDelayMs } from '../../src/config/index.js';
import { generateApiKey, openSqliteIntegrationStore } from '../../src/ingress/http/index.js';
import { openSqliteStore } from '../../src/outbox/index.js';
import { DEFAULT_IDS } from '../../src/sandbox/index.js';
import { freePort, startServe } from '../helpers/cli.js';
import { sandboxSettings } from '../helpers/config.js';
import { scenario, startTestSandbox, tempDir } from '../helpers/sandbox.js';
import { seededRandom } from '../helpers/random.js';

const BUDGET_MS = Number(process.env.ROBUST_SECONDS ?? 20) * 1000;
const SEED = Number(process.env.ROBUST_SEED ?? Math.floor(Math.random() * 2 ** 31));
// Bounded, not small (issue 22 tracks the relay's memory): under this load Node 20 peaked at 145-149 MB
// and Node 24 at 213-290 MB (its V8 keeps more before collecting; a smaller young generation,
// --max-semi-space-size=16, still gave 213 MB). A leak would pass this in seconds.
const RSS_LIMIT_MB = 400;
const MAILBOX = DEFAULT_IDS.mailbox;
/** A sender the relay does not send as: sessions using it must be refused at MAIL FROM or RCPT TO. */
const STRANGER = 'evil@attacker.example';
const MAX_MESSAGE_BYTES = 1_000_000;
const HTTP_BODY_LIMIT = 1_000_000;

// A failing run is replayed with ROBUST_SEED.
const random = seededRandom(SEED);
const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
const int = (max: number): number => Math.floor(random() * max);
const bytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => int(256)));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function rssMb(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const m = new RegExp(`^${field}:\\s*(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/**
 * One raw SMTP session: writes `steps` (a buffer, or a pause in ms), reads and discards the replies,
 * and ends the socket after `lingerMs` (or half-closes it when `halfClose`). Errors are expected.
 */
async function rawSession(
  port: number,
  steps: Array<Buffer | string | number>,
  options: { lingerMs?: number; halfClose?: boolean; timing?: { firstWriteMs?: number } } = {},
): Promise<string> {
  const connectCalled = performance.now();
  const socket: Socket = connect({ host: '127.0.0.1', port });
  let replies = '';
  socket.on('data', (d: Buffer) => {
    if (replies.length < 4096) replies += d.toString('latin1');
  });
  socket.on('error', () => undefined);
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    for (const step of steps) {
      if (socket.destroyed) break;
      if (typeof step === 'number') await sleep(step);
      else {
        // A write to a socket with nothing queued reaches the kernel at once: the relay has the bytes from here.
        if (options.timing && options.timing.firstWriteMs === undefined) options.timing.firstWriteMs = performance.now() - connectCalled;
        await new Promise<void>((r) => socket.write(step, () => r()));
      }
    }
    if (options.halfClose) socket.end();
    await Promise.race([closed, sleep(options.lingerMs ?? 300)]);
  } catch {
    // Refused or reset: a hostile client gets no promise of a clean session.
  } finally {
    socket.destroy();
  }
  return replies;
}

/** The greeting delay of the plain LAN listener (`tls: none`, its default): the early-talker window. */
const LAN_GREETING_DELAY_MS = defaultGreetingDelayMs('none');
let earlyCount = 0;
/** Each early talker's tag, and how long after its connect() call it wrote its transaction. */
const earlyWrites = new Map<string, number>();
let earlyRefused = 0;

/**
 * The malformed SMTP sessions, one picked at random each time, given the STARTTLS listener's port
 * (greets at once) and the plain LAN listener's (greets after LAN_GREETING_DELAY_MS). None of them may
 * queue a message.
 */
const smtpAttacks: Record<string, (port: number, lanPort: number) => Promise<unknown>> = {
  garbage: (port) => rawSession(port, [bytes(1 + int(4096))]),
  'garbage after greeting': (port) => rawSession(port, [150, bytes(1 + int(2048)), '\r\n']),
  'long line': (port) => rawSession(port, [150, `EHLO ${'x'.repeat(20_000 + int(200_000))}`], { lingerMs: 500 }),
  'long command after EHLO': (port) => rawSession(port, [150, 'EHLO robust\r\n', `MAIL FROM:<${'a'.repeat(50_000)}@x.example>\r\n`]),
  NULs: (port) =>
    rawSession(port, [150, 'EHLO \0\0\0\r\n', `MAIL FROM:<${MAILBOX}\0>\r\n`, 'RCPT TO:<a\0b@example.net>\r\n', 'DATA\r\n', 'Subject: \0\r\n\r\n\0\r\n.\r\n']),
  'pipelined junk': (port) =>
    rawSession(port, [
      150,
      `EHLO robust\r\nMAIL FROM:<${STRANGER}>\r\nRCPT TO:<x@example.net>\r\nDATA\r\nSubject: junk\r\n\r\n${bytes(500).toString('latin1')}\r\n.\r\nQUIT\r\n`,
    ]),
  'pipelined before greeting': (_port, lanPort) =>
    rawSession(lanPort, [`EHLO early\r\nMAIL FROM:<${STRANGER}>\r\nRCPT TO:<x@example.net>\r\nDATA\r\nSubject: early\r\n\r\nhi\r\n.\r\n`]),
  /**
   * A whole transaction from an allowlisted client and an allowed sender, written before the greeting
   * on the LAN listener: the relay must answer 421 You talk too soon, even when its event loop was
   * blocked past the delay (smtp-server's own timer then greeted first and the message was accepted).
   * A session whose write came only after the delay had passed (this process stalled between connect()
   * and the write) may be greeted like any client: it is counted apart, not as an early talker.
   */
  'whole transaction before greeting': async (_port, lanPort) => {
    const tag = `robust-early-${earlyCount++}`;
    const timing: { firstWriteMs?: number } = {};
    const replies = await rawSession(
      lanPort,
      [`EHLO early\r\nMAIL FROM:<${MAILBOX}>\r\nRCPT TO:<x@example.net>\r\nDATA\r\nSubject: ${tag}\r\n\r\nhi\r\n.\r\n`],
      { timing },
    );
    earlyWrites.set(tag, timing.firstWriteMs ?? Number.POSITIVE_INFINITY);
    if (/^421 .*You talk too soon/.test(replies)) earlyRefused += 1;
  },
  'commands out of order': (port) =>
    rawSession(port, [
      150,
      'DATA\r\nRCPT TO:<x@example.net>\r\nMAIL FROM:<>\r\nRSET\r\nDATA\r\n.\r\nVRFY root\r\nEXPN all\r\nHELP\r\nNOOP\r\nBDAT 10 LAST\r\n0123456789',
    ]),
  'DATA abandoned midway': (port) =>
    rawSession(port, [
      150,
      `EHLO robust\r\nMAIL FROM:<${MAILBOX}>\r\nRCPT TO:<cut@example.net>\r\nDATA\r\n`,
      100,
      `Subject: cut\r\n\r\n${'y'.repeat(int(50_000))}`,
    ]),
  'too large': (port) =>
    rawSession(
      port,
      [
        150,
        `EHLO robust\r\nMAIL FROM:<${MAILBOX}>\r\nRCPT TO:<big@example.net>\r\nDATA\r\n`,
        100,
        `Subject: big\r\n\r\n${'z'.repeat(76)}\r\n`.repeat(Math.ceil((MAX_MESSAGE_BYTES * 1.3) / 78)),
        '\r\n.\r\n',
      ],
      { lingerMs: 1500 },
    ),
  'declared SIZE too large': (port) =>
    rawSession(port, [150, `EHLO robust\r\nMAIL FROM:<${MAILBOX}> SIZE=${MAX_MESSAGE_BYTES * 10}\r\nRCPT TO:<x@example.net>\r\nDATA\r\n`]),
  'stranger sender': (port) =>
    rawSession(port, [150, `EHLO robust\r\nMAIL FROM:<${STRANGER}>\r\nRCPT TO:<x@example.net>\r\nDATA\r\nFrom: <${STRANGER}>\r\n\r\nhi\r\n.\r\n`]),
  'STARTTLS then garbage': (port) => rawSession(port, [150, 'EHLO robust\r\nSTARTTLS\r\n', 50, bytes(200 + int(2000))]),
  'AUTH junk': (port) =>
    rawSession(port, [150, 'EHLO robust\r\nAUTH PLAIN !!!not-base64!!!\r\nAUTH LOGIN\r\n\0\0\0\r\nAUTH XOAUTH2 ' + 'A'.repeat(int(20_000)) + '\r\nAUTH\r\n']),
  'half-open': (port) => rawSession(port, [150, 'EHLO half\r\n'], { halfClose: true, lingerMs: 500 }),
  'silent client': (port) => rawSession(port, [], { lingerMs: 500 + int(2000) }),
  'slow client': (port) => rawSession(port, [150, ...Array.from(`EHLO slow\r\nMAIL FROM:<${STRANGER}>\r\n`).flatMap((ch) => [ch, 20])]),
  'bare LF and lone dots': (port) => rawSession(port, [150, `EHLO robust\nMAIL FROM:<${STRANGER}>\nRCPT TO:<x@example.net>\nDATA\n.\n\r.\r\n..\r\n`]),
  // Header policy (the hardening issue): the allowlisted device may send only as MAILBOX, so each of
  // these must be refused and never queued: a first header line that is a continuation (it
  // would join a header added in front), two addresses in From, a bare CR inside From (a new header
  // line to the next hop), and Sender / Resent-From naming another address. (A message with no From
  // is accepted: the SMTP door adds `From: <MAIL FROM>`, an address the device may use.)
  ...Object.fromEntries(
    (
      [
        ['first header line folded', [' Subject: folded', `From: ${MAILBOX}`]],
        ['two addresses in From', [`From: <${MAILBOX}> <${STRANGER}>`]],
        ['bare CR in From', [`From: ${MAILBOX}\rFrom: ${STRANGER}`]],
        ['space before the colon', [`From : ${STRANGER}`, `From: ${MAILBOX}`]],
        ['Sender another address', [`From: ${MAILBOX}`, `Sender: ${STRANGER}`]],
        ['Resent-From another address', [`From: ${MAILBOX}`, `Resent-From: ${STRANGER}`]],
      ] as const
    ).map(([name, headers]) => [
      `header policy: ${name}`,
      (port: number) =>
        rawSession(port, [150, `EHLO robust\r\nMAIL FROM:<${MAILBOX}>\r\nRCPT TO:<x@example.net>\r\nDATA\r\n`, 100, `${headers.join('\r\n')}\r\n\r\nhi\r\n.\r\nQUIT\r\n`], {
          lingerMs: 300,
        }),
    ]),
  ),
  'header injection in envelope': (port) =>
    rawSession(port, [150, `EHLO robust\r\nMAIL FROM:<${MAILBOX}>\rRCPT TO:<inject@example.net>\r\nRCPT TO:<x@example.net>\nBcc: y@example.net\r\n`]),
};

/** A random JSON value, never a valid address (no `@`). */
function randomJson(depth = 0): unknown {
  const k = int(depth > 2 ? 4 : 7);
  switch (k) {
    case 0:
      return random() * 1e6 - 5e5;
    case 1:
      return pick([true, false, null]);
    case 2:
    case 3:
      return Array.from({ length: int(40) }, () => String.fromCharCode(int(0x3000)))
        .join('')
        .replaceAll('@', '');
    case 4:
      return Array.from({ length: int(5) }, () => randomJson(depth + 1));
    default:
      return Object.fromEntries(
        Array.from({ length: int(6) }, () => [
          pick(['from', 'to', 'cc', 'bcc', 'subject', 'text', 'html', 'attachments', 'headers', 'mailbox', '__proto__', 'constructor']),
          randomJson(depth + 1),
        ]),
      );
  }
}

interface HttpAnswer {
  status: number;
}

function httpRequest(
  port: number,
  agent: Agent,
  options: { method?: string; path?: string; headers?: Record<string, string | number>; body?: string | Buffer },
): Promise<HttpAnswer> {
  return new Promise((resolve) => {
    const body = options.body ?? '';
    const req = request(
      {
        host: '127.0.0.1',
        port,
        agent,
        method: options.method ?? 'POST',
        path: options.path ?? '/v1/messages',
        headers: { 'content-length': Buffer.byteLength(body), ...options.headers },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0 }));
        res.on('error', () => resolve({ status: 0 }));
      },
    );
    req.setTimeout(10_000, () => req.destroy());
    req.on('error', () => resolve({ status: 0 }));
    req.end(body);
  });
}

/** The malformed HTTP requests. Any of them answered 202 is a failure. */
function httpAttacks(key: string, senderKey: string): Record<string, (port: number, agent: Agent) => Promise<HttpAnswer>> {
  const json = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
  const injected = (s: string) => `${s}\r\nBcc: victim@example.net`;
  return {
    'random JSON': (port, agent) => httpRequest(port, agent, { headers: json, body: JSON.stringify(randomJson()) }),
    'CRLF in every header field': (port, agent) =>
      httpRequest(port, agent, {
        headers: json,
        body: JSON.stringify({
          from: pick([injected(MAILBOX), MAILBOX]),
          to: [injected('a@example.net')],
          cc: [pick([injected('c@example.net'), 'c@example.net'])],
          replyTo: [injected('r@example.net')],
          subject: injected('hello'),
          text: 'body',
          attachments: [{ filename: injected('a.txt'), content: 'aGk=', contentType: injected('text/plain') }],
        }),
      }),
    'CRLF in the subject only': (port, agent) =>
      httpRequest(port, agent, {
        headers: json,
        body: JSON.stringify({ from: MAILBOX, to: ['a@example.net'], subject: `hi\r\nBcc: victim@example.net`, text: 'x' }),
      }),
    'CRLF in the address only': (port, agent) =>
      httpRequest(port, agent, { headers: json, body: JSON.stringify({ from: MAILBOX, to: ['a@example.net\r\nRCPT TO:<b@example.net>'], text: 'x' }) }),
    'huge body': (port, agent) =>
      httpRequest(port, agent, {
        headers: json,
        body: JSON.stringify({ from: MAILBOX, to: ['a@example.net'], text: 'h'.repeat(HTTP_BODY_LIMIT * 2 + int(HTTP_BODY_LIMIT)) }),
      }),
    'wrong content type': (port, agent) =>
      httpRequest(port, agent, {
        headers: {
          authorization: `Bearer ${key}`,
          'content-type': pick(['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml', 'image/png']),
        },
        body: JSON.stringify({ from: MAILBOX, to: ['a@example.net'], text: 'wrong type' }),
      }),
    'no content type': (port, agent) =>
      httpRequest(port, agent, { headers: { authorization: `Bearer ${key}` }, body: JSON.stringify({ from: MAILBOX, to: ['a@example.net'], text: 'x' }) }),
    'broken JSON': (port, agent) =>
      httpRequest(port, agent, {
        headers: json,
        body: pick(['{', '{"from":', '[1,2', '\0\0\0', '{"from": "a" "to": []}', bytes(int(3000)).toString('latin1')]),
      }),
    'no or bad API key': (port, agent) =>
      httpRequest(port, agent, {
        headers: {
          'content-type': 'application/json',
          ...pick<Record<string, string>>([
            {},
            { authorization: 'Bearer r365_wrong' },
            { authorization: `Basic ${key}` },
            { authorization: `Bearer ${key}\u0000` },
          ]),
        },
        body: JSON.stringify({ from: MAILBOX, to: ['a@example.net'], text: 'no key' }),
      }).catch(() => ({ status: 0 })),
    'random method and path': (port, agent) =>
      httpRequest(port, agent, {
        method: pick(['GET', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'POST']),
        path: pick(['/v1/messages/..%2f..%2fetc', '/v1/messages/%00', `/v1/${'a'.repeat(5000)}`, '/v1/messages?x=' + '%'.repeat(100), '/']),
        headers: json,
        body: '{}',
      }),
    'stranger sender': (port, agent) =>
      httpRequest(port, agent, { headers: json, body: JSON.stringify({ from: STRANGER, to: ['a@example.net'], text: 'not ours' }) }),
    // The raw MIME door under the same header policy as SMTP, for a key allowed one sender; and
    // recipients that are not addresses (they were rewritten or dropped and still answered 202). A
    // message without From is not here: both doors now add it from the envelope sender (8cd2b1d).
    'raw MIME against the header policy': (port, agent) => {
      const headers = pick([
        [`From : ${STRANGER}`, `From: ${MAILBOX}`],
        [`From: ${MAILBOX}`, `From: ${STRANGER}`],
        [`From: ${MAILBOX}`, `Sender: ${STRANGER}`],
        [`From: ${MAILBOX}`, `Resent-From: ${STRANGER}`],
        [' Subject: folded', `From: ${MAILBOX}`],
        [`From: ${MAILBOX}`, `Subject: ${'l'.repeat(1200)}`],
        [`From: ${MAILBOX}`, 'Subject: nul\0byte'],
      ]);
      const raw = `${headers.join('\r\n')}\r\nTo: a@example.net\r\n\r\nhi\r\n`;
      return httpRequest(port, agent, {
        path: '/v1/messages/mime',
        headers: { authorization: `Bearer ${senderKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ raw: Buffer.from(raw, 'latin1').toString('base64'), envelope: { from: MAILBOX, to: ['a@example.net'] } }),
      });
    },
    'recipients that are not addresses': (port, agent) =>
      httpRequest(port, agent, {
        headers: json,
        body: JSON.stringify({ from: MAILBOX, to: [pick(['x&y<b>@example.net', 'no-domain', 'a@', '@example.net', 'a b@example.net', 'a@example.net>'])], text: 'x' }),
      }),
    'truncated upload': (port) =>
      new Promise<HttpAnswer>((resolve) => {
        // Declares 500 KB, sends a little, then hangs up.
        const s = connect({ host: '127.0.0.1', port }, () => {
          s.write(
            `POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\nContent-Length: 500000\r\n\r\n{"from":"${MAILBOX}","to":["a@example.net"],"text":"`,
          );
          setTimeout(() => s.destroy(), 200);
        });
        s.on('error', () => undefined);
        s.on('close', () => resolve({ status: 0 }));
      }),
  };
}

describe('robustness (built CLI, hostile clients beside real traffic)', () => {
  it(
    `survives ${BUDGET_MS / 1000} s of malformed SMTP and HTTP, delivers every real message and queues nothing else (seed ${SEED})`,
    { timeout: BUDGET_MS + 180_000 },
    async () => {
      const sandbox = await startTestSandbox({ scenario: scenario((s) => void (s.limits.unlimited = true)) });
      const dir = await tempDir();
      const dataDir = join(dir.path, 'data');
      const dbPath = join(dataDir, 'relay365.db');
      const integrationStore = await openSqliteIntegrationStore(dbPath);
      const apiKey = generateApiKey();
      await integrationStore.createApiKey({ name: 'robust', hash: apiKey.hash, prefix: apiKey.prefix, scopes: ['send', 'read', 'admin'] });
      // An application's key: send only, as the one mailbox.
      const senderKey = generateApiKey();
      await integrationStore.createApiKey({ name: 'robust-app', hash: senderKey.hash, prefix: senderKey.prefix, scopes: ['send'], senders: [MAILBOX] });
      await integrationStore.close();
      const [smtpPort, lanPort, httpPort] = [await freePort(), await freePort(), await freePort()];
      const config = join(dir.path, 'relay365.yaml');
      await writeFile(
        config,
        stringify({
          dataDir,
          // info: every refusal, failed login and state change is logged, and none may carry a secret.
          log: { level: 'info' },
          ...sandboxSettings(sandbox),
          auth: { flow: 'client-secret', tenant: DEFAULT_IDS.tenantId, clientId: DEFAULT_IDS.appClientId, clientSecret: DEFAULT_IDS.appSecret },
          mailboxes: [{ address: MAILBOX }],
          limits: { messagesPerMinute: 1_000_000, recipientsPerDay: 100_000_000 },
          smtp: {
            // STARTTLS (no greeting delay) for the real client and most attacks; a plain LAN listener (its
            // default early-talker delay) for the sessions that write before the greeting.
            listeners: [
              { host: '127.0.0.1', port: smtpPort },
              { host: '127.0.0.1', port: lanPort, tls: 'none' },
            ],
            allowlist: [{ cidr: '127.0.0.1/32', allowedSenders: [MAILBOX] }],
            maxMessageBytes: MAX_MESSAGE_BYTES,
            maxConnectionsPerClient: 500,
            idleTimeoutSeconds: 5,
          },
          http: { host: '127.0.0.1', port: httpPort, bodyLimitBytes: HTTP_BODY_LIMIT },
        }),
      );
      const relay = (await startServe(config)).child;
      // Everything the relay prints, read for secrets as it comes (the client secret, both API keys).
      const secrets = [DEFAULT_IDS.appSecret, apiKey.key, senderKey.key];
      const leaks: string[] = [];
      let logLines = 0;
      let tail = '';
      const scan = (chunk: Buffer): void => {
        const text = tail + chunk.toString('utf8');
        logLines += (chunk.toString('utf8').match(/\n/g) ?? []).length;
        for (const secret of secrets) if (text.includes(secret) && leaks.length < 5) leaks.push(text.slice(Math.max(0, text.indexOf(secret) - 200), text.indexOf(secret)));
        // A secret split across two chunks is still seen.
        tail = text.slice(-200);
      };
      relay.stdout!.on('data', scan);
      relay.stderr!.on('data', scan);
      const pid = relay.pid!;
      let died: string | undefined;
      relay.once('exit', (code, signal) => (died = `exited with ${code ?? signal}`));
      let peakRss = 0;
      const sampler = setInterval(() => {
        if (!died) peakRss = Math.max(peakRss, rssMb(pid, 'VmRSS'));
      }, 200);

      const deadline = Date.now() + BUDGET_MS;
      const accepted = new Set<string>();
      const realFailures: string[] = [];
      const attacks = { smtp: new Map<string, number>(), http: new Map<string, number>() };
      const malformedAccepted: string[] = [];
      const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);

      // Real traffic: SMTP through a pooled client, and the HTTP API, both at a steady trickle.
      const smtpClient = nodemailer.createTransport({
        host: '127.0.0.1',
        port: smtpPort,
        secure: false,
        pool: true,
        maxConnections: 2,
        tls: { rejectUnauthorized: false },
      });
      const realSmtp = async () => {
        for (let i = 0; Date.now() < deadline; i++) {
          const tag = `robust-smtp-${i}`;
          try {
            await smtpClient.sendMail({ from: MAILBOX, to: `real${i}@example.net`, subject: tag, text: `real message ${tag}` });
            accepted.add(tag);
          } catch (err) {
            realFailures.push(`${tag}: ${(err as Error).message}`);
          }
          await sleep(20);
        }
      };
      const realAgent = new Agent({ keepAlive: true, maxSockets: 2 });
      const realHttp = async () => {
        for (let i = 0; Date.now() < deadline; i++) {
          const tag = `robust-http-${i}`;
          const r = await httpRequest(httpPort, realAgent, {
            headers: { authorization: `Bearer ${apiKey.key}`, 'content-type': 'application/json' },
            body: JSON.stringify({ from: MAILBOX, to: [`real${i}@example.net`], subject: tag, text: `real message ${tag}` }),
          });
          if (r.status === 202) accepted.add(tag);
          else realFailures.push(`${tag}: HTTP ${r.status}`);
          await sleep(20);
        }
      };
      // Hostile traffic: several loops of each kind.
      const smtpNames = Object.keys(smtpAttacks);
      const hostileSmtp = async () => {
        while (Date.now() < deadline && !died) {
          const name = pick(smtpNames);
          bump(attacks.smtp, name);
          await smtpAttacks[name]!(smtpPort, lanPort);
        }
      };
      const httpTable = httpAttacks(apiKey.key, senderKey.key);
      const httpNames = Object.keys(httpTable);
      const hostileAgent = new Agent({ keepAlive: true, maxSockets: 4 });
      const hostileHttp = async () => {
        while (Date.now() < deadline && !died) {
          const name = pick(httpNames);
          bump(attacks.http, name);
          const r = await httpTable[name]!(httpPort, hostileAgent);
          if (r.status === 202) malformedAccepted.push(`HTTP ${name}`);
        }
      };
      await Promise.all([realSmtp(), realHttp(), ...Array.from({ length: 6 }, hostileSmtp), ...Array.from({ length: 3 }, hostileHttp)]);
      smtpClient.close();
      realAgent.destroy();
      hostileAgent.destroy();

      // Every real message delivered, and nothing else.
      const tags = () =>
        new Set(sandbox.state.messages.map((m) => /robust-(?:smtp|http|early)-\d+/.exec(m.raw.toString('latin1'))?.[0] ?? `(untagged ${m.id})`));
      const end = Date.now() + 60_000;
      // One pass over what arrived per poll: a long run has tens of thousands of messages.
      const waiting = (): boolean => {
        const arrived = tags();
        return [...accepted].some((t) => !arrived.has(t));
      };
      while (!died && waiting() && Date.now() < end) await sleep(200);
      clearInterval(sampler);
      const peakHwm = died ? peakRss : rssMb(pid, 'VmHWM');
      const store = await openSqliteStore(dbPath);
      const counts = await store.counts();
      await store.close();
      const queuedTotal = Object.values(counts).reduce((a, b) => a + b, 0);
      const arrived = tags();
      const early = [...arrived].filter((t) => t.startsWith('robust-early-'));
      // Written before the relay's timer could have fired (it starts after the connect() call): must never be accepted.
      const earlyForSure = early.filter((t) => (earlyWrites.get(t) ?? Number.POSITIVE_INFINITY) < LAN_GREETING_DELAY_MS);
      const lateWriters = new Set(early.filter((t) => !earlyForSure.includes(t)));
      for (const t of lateWriters) arrived.delete(t);
      const lateWrites = [...earlyWrites.values()].filter((ms) => ms >= LAN_GREETING_DELAY_MS).length;
      const summary = (m: Map<string, number>) => [...m].map(([k, n]) => `${k} ${n}`).join(', ');
      console.log(
        `# robustness (seed ${SEED}): ${accepted.size} real messages accepted, ${arrived.size} arrived, ${queuedTotal} in the store; relay peak RSS ${peakHwm.toFixed(0)} MB`,
      );
      console.log(`#   SMTP attacks: ${summary(attacks.smtp)}`);
      console.log(`#   HTTP attacks: ${summary(attacks.http)}`);
      console.log(
        `#   early talkers: ${earlyWrites.size} whole transactions written before the greeting, ${earlyRefused} answered 421 You talk too soon, ` +
          `${earlyForSure.length} accepted; ${lateWrites} written only after the ${LAN_GREETING_DELAY_MS} ms delay (this process stalled), ${lateWriters.size} of them accepted`,
      );
      for (const m of sandbox.state.messages) {
        const tag = /robust-(?:smtp|http|early)-\d+/.exec(m.raw.toString('latin1'))?.[0];
        // What arrived without a 250 / 202 to a real client: show its start, to tell which session sent it.
        if (tag === undefined || (!accepted.has(tag) && !lateWriters.has(tag))) {
          console.log(`#   unexpected arrival: ${JSON.stringify(m.raw.subarray(0, 400).toString('latin1'))}`);
        }
      }
      if (realFailures.length > 0)
        console.log(`#   real sends refused: ${realFailures.slice(0, 5).join('; ')}${realFailures.length > 5 ? ` (+${realFailures.length - 5})` : ''}`);

      const diedUnderLoad = died;
      if (!died) {
        const exited = new Promise((r) => relay.once('exit', r));
        relay.kill('SIGTERM');
        await exited;
      }
      await sandbox.close();
      await dir.cleanup();

      assert.equal(diedUnderLoad, undefined, 'the relay died under hostile traffic');
      console.log(`#   ${logLines} log lines read, ${leaks.length} with a secret`);
      assert.ok(logLines > 100, `the relay logged its refusals (${logLines} lines)`);
      assert.deepEqual(leaks, [], "a secret reached the relay's output");
      assert.ok(peakHwm < RSS_LIMIT_MB, `the relay's peak RSS was ${peakHwm.toFixed(0)} MB (limit ${RSS_LIMIT_MB} MB)`);
      assert.ok(accepted.size > 0, 'no real message was accepted');
      assert.deepEqual(malformedAccepted, [], 'malformed requests were accepted');
      assert.deepEqual(earlyForSure, [], 'whole transactions written before the greeting was due were accepted');
      assert.ok(earlyWrites.size === 0 || earlyRefused > 0, 'no early talker was answered 421 You talk too soon');
      assert.deepEqual(
        [...accepted].filter((t) => !arrived.has(t)),
        [],
        'accepted real messages did not arrive',
      );
      assert.deepEqual(
        [...arrived].filter((t) => !accepted.has(t)),
        [],
        'messages arrived that no real client had acknowledged',
      );
      assert.equal(
        queuedTotal,
        accepted.size + lateWriters.size,
        `the store holds ${queuedTotal} messages for ${accepted.size} real ones (+${lateWriters.size} written after the greeting delay): something malformed was queued`,
      );
    },
  );
});
