/**
 * The two "Done when" measurements of the hardening issue that need the built relay at full scale:
 *
 * - A hostile LAN: 500 idle connections from 25 strangers' addresses and an AUTH flood from ten more,
 *   all at once, against `relay365 serve` with its default limits. An allowlisted device and a client
 *   that logs in must each get their `250` within a second.
 * - A database that goes away: `serve` on PostgreSQL through a TCP proxy this test controls, which cuts
 *   every connection twice and then stalls them for 30 s (a failover, a network partition) while mail
 *   is submitted and delivered. The relay must never exit; every acknowledged message must arrive and
 *   none may fail.
 *
 * Both run with `npm run test:robust` (CI runs it). Loads are bounded in count and time.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import { stringify } from 'yaml';
import { hashPassword, verifyPassword } from '../../src/ingress/smtp/index.js';
import { DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';
import { freePort, startServe, stop } from '../helpers/cli.js';
import { sandboxSettings } from '../helpers/config.js';
import { dropSchema, pgUnavailable, testSchema } from '../helpers/pg.js';
import { scenario, startTestSandbox, tempDir } from '../helpers/sandbox.js';
import { SmtpWire } from '../helpers/smtp-wire.js';

const FULL = process.env.RELAY365_FULL_TESTS === '1';
const QUEUED = /^250 2\.0\.0 OK queued as \S+$/;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

function mime(from: string, subject: string): string {
  return [`From: ${from}`, 'To: x@example.net', `Subject: ${subject}`, `Message-ID: <${randomBytes(8).toString('hex')}@test.example>`, '', 'hello', ''].join('\r\n');
}

/** MAIL, RCPT, DATA and the message; the final reply. */
async function transaction(wire: SmtpWire, from: string, subject: string): Promise<string> {
  for (const line of [`MAIL FROM:<${from}>`, 'RCPT TO:<x@example.net>']) {
    const r = await wire.command(line);
    if (r.code !== 250) return r.last;
  }
  const data = await wire.command('DATA');
  if (data.code !== 354) return data.last;
  wire.writeRaw(Buffer.from(`${mime(from, subject)}.\r\n`));
  return (await wire.reply(10_000)).last;
}

describe('robustness at full scale (built CLI)', () => {
  let sandbox: Sandbox & { dir: string };
  before(async () => {
    sandbox = await startTestSandbox({ scenario: scenario((s) => void (s.limits.unlimited = true)) });
  });
  after(async () => {
    await sandbox.close();
  });

  it('answers an allowlisted device and a logged-in client within a second while 500 idle strangers and an AUTH flood hit the default limits', { timeout: 180_000 }, async () => {
    const dir = await tempDir();
    const port = await freePort();
    const config = join(dir.path, 'relay365.yaml');
    const password = randomBytes(12).toString('base64url');
    const bobPassword = randomBytes(12).toString('base64url');
    const bobHash = await hashPassword(bobPassword);
    // What one key derivation costs on this machine now: a first login waits for at most the one
    // running and its own (derivations take clients in turn), however many addresses flood.
    const t0 = performance.now();
    await verifyPassword(bobPassword, bobHash);
    const derivationMs = performance.now() - t0;
    await writeFile(
      config,
      stringify({
        dataDir: join(dir.path, 'data'),
        log: { level: 'error' },
        ...sandboxSettings(sandbox),
        auth: { flow: 'client-secret', tenant: DEFAULT_IDS.tenantId, clientId: DEFAULT_IDS.appClientId, clientSecret: DEFAULT_IDS.appSecret },
        mailboxes: [{ address: DEFAULT_IDS.mailbox }],
        // The SMTP door's limits are its defaults (500 connections, a fifth reserved, 10 waiting per address).
        smtp: {
          listeners: [{ host: '127.0.0.1', port }],
          allowlist: [{ cidr: '127.0.0.60/32', allowedSenders: [DEFAULT_IDS.mailbox] }],
          users: [
            { name: 'alice', passwordHash: await hashPassword(password), allowedSenders: [DEFAULT_IDS.mailbox] },
            { name: 'bob', passwordHash: bobHash, allowedSenders: [DEFAULT_IDS.mailbox] },
          ],
        },
      }),
      { mode: 0o600 },
    );
    const { child } = await startServe(config);
    const ca = await readFile(join(dir.path, 'data', 'tls', 'relay.crt'), 'utf8');
    const login = async (user: string, secret: string, from: string): Promise<{ reply: string; tlsMs: number; authMs: number; totalMs: number; auth: string }> => {
      const started = performance.now();
      const { wire } = await SmtpWire.connect(port, '127.0.0.1', from);
      await wire.secure(ca);
      const tlsMs = performance.now() - started;
      const auth = await wire.command(`AUTH PLAIN ${Buffer.from(`\0${user}\0${secret}`).toString('base64')}`);
      const authMs = performance.now() - started - tlsMs;
      const reply = auth.code === 235 ? await transaction(wire, DEFAULT_IDS.mailbox, `${user} under attack`) : auth.last;
      await wire.quit();
      return { reply, tlsMs, authMs, totalMs: performance.now() - started, auth: auth.last };
    };
    // A device that logs in for every message has logged in before the attack began.
    const warmUp = await login('alice', password, '127.0.0.61');
    assert.match(warmUp.reply, QUEUED);
    const idle: SmtpWire[] = [];
    const greetings = new Map<string, number>();
    let flooding = true;
    let guesses = 0;
    let floodReplies = 0;
    const flood: Array<Promise<void>> = [];
    try {
      // 25 strangers' machines (127.0.3.1-25), 20 connections each, opened together and left idle.
      const opened = await Promise.allSettled(
        Array.from({ length: 500 }, async (_, i) => {
          const { wire, greeting } = await SmtpWire.connect(port, '127.0.0.1', `127.0.3.${1 + (i % 25)}`);
          idle.push(wire);
          const code = greeting.last.slice(0, 3);
          greetings.set(code, (greetings.get(code) ?? 0) + 1);
        }),
      );
      const refusedAtConnect = opened.filter((o) => o.status === 'rejected').length;
      // Ten more machines (127.0.4.1-10), three connections each, guessing passwords as fast as they are answered.
      for (let i = 0; i < 30; i++) {
        flood.push(
          (async () => {
            try {
              const { wire } = await SmtpWire.connect(port, '127.0.0.1', `127.0.4.${1 + (i % 10)}`);
              await wire.secure(ca);
              while (flooding && !wire.closed) {
                const r = await wire.command(`AUTH PLAIN ${Buffer.from(`\0${i % 2 === 0 ? 'alice' : `nobody${i}`}\0guess-${guesses++}`).toString('base64')}`);
                floodReplies += r.code > 0 ? 1 : 0;
              }
              wire.destroy();
            } catch {
              // Refused, locked out or too slow for the wire's patience: this attacker stops, the rest go on.
            }
          })(),
        );
      }
      await until(() => floodReplies >= 20, 30_000, 'the AUTH flood under way');

      const started = performance.now();
      const device = await SmtpWire.connect(port, '127.0.0.1', '127.0.0.60');
      await device.wire.command('EHLO scanner.lan');
      const deviceReply = await transaction(device.wire, DEFAULT_IDS.mailbox, 'device under attack');
      const deviceMs = performance.now() - started;
      await device.wire.quit();

      const alice = await login('alice', password, '127.0.0.61');
      // A first login under the flood: it waits its turn among the flooding addresses.
      const bob = await login('bob', bobPassword, '127.0.0.62');
      const idleOpen = idle.filter((w) => !w.closed).length;
      console.log(
        `# hostile LAN: greetings ${JSON.stringify(Object.fromEntries(greetings))}, ${refusedAtConnect} refused at connect, ${idleOpen} idle still open; ` +
          `${floodReplies} AUTH guesses answered; device 250 after ${deviceMs.toFixed(0)} ms; ` +
          `logged-in client 250 after ${alice.totalMs.toFixed(0)} ms (TLS ${alice.tlsMs.toFixed(0)}, AUTH ${alice.authMs.toFixed(0)}); ` +
          `a first login 250 after ${bob.totalMs.toFixed(0)} ms (AUTH ${bob.authMs.toFixed(0)}; one key derivation here ${derivationMs.toFixed(0)} ms)`,
      );
      assert.ok((greetings.get('220') ?? 0) >= 250, 'the strangers did get in, up to their share');
      assert.match(deviceReply, QUEUED);
      assert.match(alice.reply, QUEUED);
      assert.match(bob.reply, QUEUED, bob.auth);
      assert.ok(deviceMs < 1000, `the allowlisted device waited ${deviceMs.toFixed(0)} ms`);
      assert.ok(alice.totalMs < 1000, `the logged-in client waited ${alice.totalMs.toFixed(0)} ms`);
      // The running derivation, its own, and slack for a loaded machine: never the whole flood.
      assert.ok(bob.authMs < 3 * derivationMs + 1000, `a first login waited ${bob.authMs.toFixed(0)} ms for its check (one derivation: ${derivationMs.toFixed(0)} ms)`);
      assert.equal(child.exitCode, null, 'the relay is still running');
    } finally {
      flooding = false;
      for (const w of idle) w.destroy();
      await Promise.allSettled(flood);
      await stop(child);
      await dir.cleanup();
    }
  });

  it('never exits, loses nothing and fails nothing while PostgreSQL is cut twice and stalls for 30 s', { timeout: 300_000 }, async (t) => {
    const unavailable = await pgUnavailable();
    if (unavailable) {
      if (FULL) assert.fail(`PostgreSQL is needed: ${unavailable}`);
      t.skip(unavailable);
      return;
    }
    const schema = testSchema();
    const proxy = new PgProxy();
    await proxy.listen();
    const dir = await tempDir();
    const port = await freePort();
    const config = join(dir.path, 'relay365.yaml');
    await writeFile(
      config,
      stringify({
        dataDir: join(dir.path, 'data'),
        log: { level: 'error' },
        ...sandboxSettings(sandbox),
        auth: { flow: 'client-secret', tenant: DEFAULT_IDS.tenantId, clientId: DEFAULT_IDS.appClientId, clientSecret: DEFAULT_IDS.appSecret },
        mailboxes: [{ address: DEFAULT_IDS.mailbox }],
        limits: { messagesPerMinute: 1_000_000, recipientsPerDay: 100_000_000 },
        queue: { url: `postgresql://postgres@127.0.0.1:${proxy.port}/test`, schema, leaseSeconds: 10, retryBaseSeconds: 0.5, retryMaxSeconds: 2 },
        smtp: { listeners: [{ host: '127.0.0.1', port }], allowlist: [{ cidr: '127.0.0.1/32' }] },
      }),
      { mode: 0o600 },
    );
    const { child } = await startServe(config, { RELAY365_SECRET_KEY: randomBytes(32).toString('base64') });
    let exitedWith: number | null | undefined;
    child.once('exit', (code) => (exitedWith = code));
    const total = FULL ? 600 : 300;
    const acked = new Set<number>();
    let clientRetries = 0;
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, tls: { rejectUnauthorized: false }, pool: true, maxConnections: 4, socketTimeout: 120_000 });
    const submit = async (i: number): Promise<void> => {
      for (let tries = 0; ; tries++) {
        try {
          await transport.sendMail({ from: DEFAULT_IDS.mailbox, to: `r${i}@example.net`, subject: `pg outage ${i}`, text: `message ${i}`, messageId: `<pg-outage-${i}@test.example>` });
          acked.add(i);
          return;
        } catch (err) {
          // A 4xx while the database is away: a real client tries again later, and so does this one.
          if (tries > 200) throw err;
          clientRetries += 1;
          await sleep(250);
        }
      }
    };
    try {
      const queue = Array.from({ length: total }, (_, i) => i);
      const submitting = Promise.all(
        Array.from({ length: 4 }, async () => {
          for (let i = queue.shift(); i !== undefined; i = queue.shift()) {
            await submit(i);
            await sleep(20);
          }
        }),
      );
      // While mail flows: cut every connection, again a few seconds later, then stall them all for 30 s.
      await until(() => acked.size >= total * 0.15, 60_000, 'mail flowing');
      const cut1 = proxy.cut();
      await until(() => acked.size >= total * 0.3, 60_000, 'mail flowing after the first cut');
      const cut2 = proxy.cut();
      await until(() => acked.size >= total * 0.45, 60_000, 'mail flowing after the second cut');
      const stalledAt = acked.size;
      proxy.stall(true);
      await sleep(30_000);
      const duringStall = acked.size - stalledAt;
      proxy.stall(false);
      await submitting;
      await until(() => new Set(arrived()).size >= total, 120_000, 'every acknowledged message at Exchange');
      const counts = await countStates(schema);
      console.log(
        `# PostgreSQL outage: ${cut1} + ${cut2} connections cut, a 30 s stall (${duringStall} acknowledged during it, ${proxy.stalledBytes} bytes held); ` +
          `${acked.size} acknowledged, ${new Set(arrived()).size} arrived, states ${JSON.stringify(counts)}, ${clientRetries} client retries`,
      );
      assert.ok(cut1 > 0 && cut2 > 0, 'both cuts reached live connections');
      assert.equal(exitedWith, undefined, 'the relay never exited');
      assert.equal(acked.size, total);
      const missing = [...acked].filter((i) => !new Set(arrived()).has(i));
      assert.deepEqual(missing, [], 'acknowledged messages were lost');
      assert.equal(counts.failed ?? 0, 0, 'no message failed because of the outage');
    } finally {
      transport.close();
      await stop(child);
      proxy.close();
      await dropSchema(schema);
      await dir.cleanup();
    }

    function arrived(): number[] {
      return sandbox.state.messages
        .map((m) => /^Message-ID: <pg-outage-(\d+)@/im.exec(m.raw.toString('latin1'))?.[1])
        .filter((x): x is string => x !== undefined)
        .map(Number);
    }
  });
});

async function countStates(schema: string): Promise<Record<string, number>> {
  const { pgQuery } = await import('../helpers/pg.js');
  const rows = await pgQuery<{ state: string; n: string }>(`SELECT state, count(*) AS n FROM "${schema}".messages GROUP BY state`);
  return Object.fromEntries(rows.map((r) => [r.state, Number(r.n)]));
}

/**
 * A TCP proxy in front of PostgreSQL (127.0.0.1:5432) that can cut every connection (what a failover
 * or `pg_terminate_backend` does to the client) or stall them (a partition: bytes are held, nothing is
 * closed, so the relay's statement and query timeouts are what it has).
 */
class PgProxy {
  private server: Server = createServer((client) => this.pipe(client));
  private pairs = new Set<[Socket, Socket]>();
  private stalled = false;
  stalledBytes = 0;
  port = 0;

  async listen(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as AddressInfo).port;
  }

  private pipe(client: Socket): void {
    const upstream = connect(5432, '127.0.0.1');
    const pair: [Socket, Socket] = [client, upstream];
    this.pairs.add(pair);
    const held: Array<[Socket, Buffer]> = [];
    const forward = (to: Socket) => (chunk: Buffer) => {
      if (this.stalled) {
        held.push([to, chunk]);
        this.stalledBytes += chunk.length;
      } else to.write(chunk);
    };
    client.on('data', forward(upstream));
    upstream.on('data', forward(client));
    const flush = setInterval(() => {
      if (this.stalled) return;
      for (const [to, chunk] of held.splice(0)) to.write(chunk);
    }, 50);
    const end = (): void => {
      clearInterval(flush);
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  }

  /** Cuts every open connection; the number cut. */
  cut(): number {
    const n = this.pairs.size;
    for (const [a, b] of [...this.pairs]) {
      a.destroy();
      b.destroy();
    }
    return n;
  }

  stall(on: boolean): void {
    this.stalled = on;
  }

  close(): void {
    this.cut();
    this.server.close();
  }
}
