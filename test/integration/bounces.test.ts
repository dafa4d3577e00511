import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { spawn } from 'node:child_process';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { runDoctor } from '../../src/doctor/index.js';
import { generateApiKey, openSqliteIntegrationStore } from '../../src/ingress/http/index.js';
import { createLogger } from '../../src/observe/index.js';
import { startRelay, type Relay } from '../../src/runtime/index.js';
import { composeBounce } from '../../src/outbox/bounce.js';
import { DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';
import { sandboxConfig } from '../helpers/config.js';
import { scenario, startTestSandbox, tempDir } from '../helpers/sandbox.js';
import { SmtpWire } from '../helpers/smtp-wire.js';

const MAILBOX = DEFAULT_IDS.mailbox;
const OTHER = DEFAULT_IDS.user;
const GOOD = 'good@fabrikam.example';
const UNKNOWN = 'nobody@fabrikam.example';
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** The CLI from source, as its own process. */
function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', resolve(ROOT, 'src/cli/main.ts'), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => done({ code, stdout, stderr }));
  });
}

async function until<T>(check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs: number, what: string): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
}

async function startReceiver(): Promise<{ url: string; received: Received[]; server: Server }> {
  const received: Received[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      received.push({ headers: req.headers, body });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`, received, server };
}

/** docs/webhooks.md's check: `t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`. */
function signatureValid(body: string, header: string | string[] | undefined, secret: string): boolean {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(String(header));
  if (!m) return false;
  const want = createHmac('sha256', secret).update(`${m[1]}.${body}`).digest();
  return timingSafeEqual(want, Buffer.from(m[2]!, 'hex'));
}

/** A logger whose JSON lines the test reads. */
function capturingLogger(): { logger: ReturnType<typeof createLogger>; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { logger: createLogger({ level: 'info', destination: stream }), lines };
}

describe('reading NDRs back over the sandbox (HTTPS Graph, SMTP)', () => {
  let sandbox: Sandbox & { dir: string };
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let relay: Relay;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let key: string;
  const secret = 'whsec-bounces-test';
  const log = capturingLogger();

  before(async () => {
    sandbox = await startTestSandbox({
      scenario: scenario((s) => {
        const app = s.tenants[0]!.apps[0]!;
        // Mail.ReadWrite reads the Inbox and moves the processed reports; the RBAC scope keeps it to these two mailboxes.
        app.roles.graph = ['Mail.Send', 'Mail.ReadWrite'];
        app.mailboxScope = [MAILBOX, OTHER];
        s.mailFlow.unknownRecipients = [UNKNOWN];
        s.mailFlow.ndrDelayMs = 100;
        s.mailFlow.unreachableDomains = ['unreachable.example'];
        s.mailFlow.delayNotificationMs = 300;
        s.mailFlow.expirationMs = 1500;
      }),
    });
    dir = await tempDir();
    receiver = await startReceiver();
    const config = sandboxConfig(sandbox, dir.path, {
      log: { level: 'info' },
      mailboxes: [
        { address: MAILBOX, bounces: { read: true, everySeconds: 0.3 } },
        { address: OTHER, bounces: { read: true, everySeconds: 0.3 } },
      ],
      smtp: { enabled: true, listeners: [{ host: '127.0.0.1', port: 0, tls: 'none' }], allowlist: [{ cidr: '127.0.0.1/32' }] },
      http: { enabled: true, port: 0, webhooks: [{ url: receiver.url, secret }] },
      queue: { retryBaseSeconds: 0.1, retryMaxSeconds: 0.5 },
    });
    // The API key is made before the relay opens the file, as `relay365 apikey create` would.
    const integrationStore = await openSqliteIntegrationStore(resolve(dir.path, 'relay365.db'));
    const k = generateApiKey();
    await integrationStore.createApiKey({ name: 'test', hash: k.hash, prefix: k.prefix, scopes: ['send', 'read', 'admin'] });
    await integrationStore.close();
    key = k.key;
    relay = await startRelay(config, { logger: log.logger, webhooks: { backoffBaseMs: 100, backoffMaxMs: 400, pollMs: 100 } });
  });

  after(async () => {
    await relay?.close();
    await new Promise((r) => receiver?.server.close(r));
    await sandbox?.close();
    await dir?.cleanup();
  });

  const api = async (method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> => {
    const res = await fetch(`${relay.httpAddress}${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, json: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
  };

  it('a message to a good and an unknown external recipient ends accepted and bounced, with a signed message.bounced, and the address is refused next time', async () => {
    const sent = await api('POST', '/v1/messages', { from: MAILBOX, to: [GOOD, UNKNOWN], subject: 'hello', text: 'hi' });
    assert.equal(sent.status, 202, JSON.stringify(sent.json));
    const id = sent.json.id as string;

    const recipients = await until(
      async () => {
        const r = await relay.store.recipients(id);
        return r.find((x) => x.state === 'bounced') && r.find((x) => x.state === 'accepted') ? r : undefined;
      },
      15_000,
      'the NDR to be read and applied',
    );
    const good = recipients.find((r) => r.address === GOOD)!;
    const bounced = recipients.find((r) => r.address === UNKNOWN)!;
    assert.equal(good.state, 'accepted');
    assert.equal(bounced.state, 'bounced');
    assert.equal(bounced.dsnStatus, '5.1.1');
    // The sandbox's diagnostic is the remote server's reply Exchange relays (src/sandbox/ndr.ts, recipientUnknown).
    assert.equal(bounced.reply, `550 5.1.1 <${UNKNOWN}>: Recipient address rejected: User unknown in local recipient table`);
    assert.equal(bounced.remoteMta, 'mx.fabrikam.example');
    assert.ok(bounced.reportId);

    // message.bounced, signed as every webhook is.
    const hook = await until(
      () => receiver.received.find((r) => (JSON.parse(r.body) as { type: string }).type === 'message.bounced'),
      10_000,
      'the message.bounced webhook',
    );
    assert.ok(signatureValid(hook.body, hook.headers['x-relay365-signature'], secret), 'signed with the receiver secret');
    const data = (JSON.parse(hook.body) as { data: Record<string, unknown> }).data;
    assert.equal(data.id, id);
    assert.equal(data.recipient, UNKNOWN);
    assert.equal(data.dsnStatus, '5.1.1');
    assert.equal(data.diagnostic, bounced.reply);
    assert.equal(data.remoteMta, 'mx.fabrikam.example');
    assert.equal(data.bounceClass, 'hard');
    assert.equal(data.suppressed, true);
    const stored = await relay.store.get(id);
    assert.equal(data.messageId, stored!.messageId);
    assert.equal(
      receiver.received.filter((r) => (JSON.parse(r.body) as { type: string }).type === 'message.bounced').length,
      1,
      'one webhook for one bounced recipient',
    );

    // The report left the Inbox for the "relay365 reports" folder; the metric counted one hard bounce.
    const folder = await until(
      () => {
        const f = sandbox.state.mail.folders(MAILBOX).find((x) => x.displayName === 'relay365 reports');
        return f && sandbox.state.mail.items(MAILBOX, f.id).length === 1 ? f : undefined;
      },
      5000,
      'the report to be moved to the "relay365 reports" folder',
    );
    assert.equal(sandbox.state.mail.items(MAILBOX, folder.id).length, 1);
    const inbox = sandbox.state.mail.folder(MAILBOX, 'inbox')!;
    assert.equal(sandbox.state.mail.items(MAILBOX, inbox.id).filter((i) => /Undeliverable/.test(i.raw.toString('latin1'))).length, 0);
    const metrics = await relay.metrics.registry.getSingleMetricAsString('relay365_bounces_total');
    assert.match(metrics, new RegExp(`relay365_bounces_total\\{mailbox="${MAILBOX}",class="hard"\\} 1`));
    assert.match(metrics, new RegExp(`relay365_bounces_total\\{mailbox="${MAILBOX}",class="soft"\\} 0`));

    // Suppressed: the HTTP API answers 422 with the reason, SMTP refuses at RCPT TO.
    const [entry] = await relay.store.suppressed([UNKNOWN]);
    assert.ok(entry);
    assert.equal(entry.source, 'bounce');
    assert.equal(entry.dsnStatus, '5.1.1');
    const refused = await api('POST', '/v1/messages', { from: MAILBOX, to: [UNKNOWN], subject: 'again', text: 'hi' });
    assert.equal(refused.status, 422);
    const error = refused.json.error as { code: string; message: string; field: string };
    assert.equal(error.code, 'R365_SUPPRESSED');
    assert.equal(error.field, 'to');
    assert.match(
      error.message,
      new RegExp(
        `^<${UNKNOWN}>: suppressed by relay365 since ${entry.createdAt.toISOString().replace(/\./g, '\\.')} after a hard bounce 5\\.1\\.1 \\(bad destination mailbox address\\): 550 5\\.1\\.1 `,
      ),
    );
    assert.match(error.message, /remove with relay365 suppression remove nobody@fabrikam\.example/);
    const insisted = await api('POST', '/v1/messages', { from: MAILBOX, to: [UNKNOWN], subject: 'again', text: 'hi', ignoreSuppression: true });
    assert.equal(insisted.status, 202, 'ignoreSuppression sends it anyway');

    const { wire } = await SmtpWire.connect(relay.listeners[0]!.port);
    try {
      assert.equal((await wire.command('EHLO test.example')).code, 250);
      assert.equal((await wire.command(`MAIL FROM:<${MAILBOX}>`)).code, 250);
      const rcpt = await wire.command(`RCPT TO:<${UNKNOWN.toUpperCase()}>`);
      assert.equal(rcpt.code, 550);
      // The entry's spelling: the list compares addresses without regard to case.
      assert.match(
        rcpt.last,
        new RegExp(
          `^550 5\\.1\\.1 <${UNKNOWN.replace(/\./g, '\\.')}>: suppressed by relay365 since ${entry.createdAt.toISOString().replace(/\./g, '\\.')} after a hard bounce 5\\.1\\.1`,
        ),
      );
      assert.match(rcpt.last, /; remove with relay365 suppression remove nobody@fabrikam\.example$/);
      assert.equal((await wire.command(`RCPT TO:<${GOOD}>`)).code, 250, 'another recipient is still taken');
      await wire.command('QUIT');
    } finally {
      await wire.waitClosed().catch(() => undefined);
    }

    // The suppression API and its removal.
    const list = await api('GET', '/v1/suppressions');
    assert.equal(list.status, 200);
    assert.deepEqual(
      (list.json.items as Array<{ address: string }>).map((s) => s.address),
      [UNKNOWN],
    );
    assert.equal((await api('DELETE', `/v1/suppressions/${encodeURIComponent(UNKNOWN)}`)).status, 200);
    assert.equal((await api('DELETE', `/v1/suppressions/${encodeURIComponent(UNKNOWN)}`)).status, 404);
    assert.equal(
      (await api('POST', '/v1/messages', { from: MAILBOX, to: [UNKNOWN], subject: 'third', text: 'hi' })).status,
      202,
      'accepted again once removed',
    );
  });

  it('a delay notice makes the recipient delayed (message.delayed), the expiry NDR then bounces it soft, and neither suppresses it', async () => {
    const to = 'someone@unreachable.example';
    const sent = await api('POST', '/v1/messages', { from: MAILBOX, to: [to], subject: 'far away', text: 'hi' });
    assert.equal(sent.status, 202);
    const id = sent.json.id as string;
    const ofType = (type: string) =>
      receiver.received.filter(
        (r) => (JSON.parse(r.body) as { type: string; data: { id: string } }).type === type && (JSON.parse(r.body) as { data: { id: string } }).data.id === id,
      );
    const delayed = await until(() => ofType('message.delayed')[0], 15_000, 'the message.delayed webhook');
    assert.equal((JSON.parse(delayed.body) as { data: { dsnStatus: string } }).data.dsnStatus, '4.4.7');
    await until(async () => (await relay.store.recipients(id))[0]?.state === 'bounced', 15_000, 'the expiry NDR');
    const bounced = await until(() => ofType('message.bounced')[0], 10_000, 'the message.bounced webhook');
    const data = (JSON.parse(bounced.body) as { data: { bounceClass: string; suppressed: boolean; diagnostic: string } }).data;
    assert.equal(data.bounceClass, 'soft');
    assert.equal(data.suppressed, false);
    assert.equal(data.diagnostic, '550 4.4.7 QUEUE.Expired; message expired');
    assert.deepEqual(await relay.store.suppressed([to]), []);
    const metrics = await relay.metrics.registry.getSingleMetricAsString('relay365_bounces_total');
    assert.match(metrics, new RegExp(`relay365_bounces_total\\{mailbox="${MAILBOX}",class="delayed"\\} 1`));
    assert.match(metrics, new RegExp(`relay365_bounces_total\\{mailbox="${MAILBOX}",class="soft"\\} 1`));
  });

  it('doctor passes when the app can read the Inbox and explains the 403 with the RBAC for Applications commands when it cannot', async () => {
    const config = sandboxConfig(sandbox, dir.path, { mailboxes: [{ address: MAILBOX, bounces: { read: true } }] });
    const pass = (await runDoctor(config, { mailbox: MAILBOX })).results.find((r) => r.id === 'bounces');
    assert.equal(pass?.status, 'pass', JSON.stringify(pass));
    assert.match(pass.detail, /Graph answered 200 to GET \/users\/relay@contoso\.example\/mailFolders\/inbox/);
    const saved = sandbox.state.scenario;
    const narrowed = structuredClone(saved);
    narrowed.tenants[0]!.apps[0]!.mailboxScope = [OTHER];
    sandbox.state.setScenario(narrowed);
    try {
      const fail = (await runDoctor(config, { mailbox: MAILBOX })).results.find((r) => r.id === 'bounces');
      assert.equal(fail?.status, 'fail');
      assert.match(fail.detail, /^Graph answered 403 ErrorAccessDenied/);
      assert.match(fail.fix!, /New-ManagementScope -Name "relay365 mailboxes" -RecipientRestrictionFilter "PrimarySmtpAddress -eq 'relay@contoso\.example'"/);
      assert.match(fail.fix!, /New-ManagementRoleAssignment -App <appId> -Role "Application Mail\.Read" -CustomResourceScope "relay365 mailboxes"/);
    } finally {
      sandbox.state.setScenario(saved);
    }
    const off = (await runDoctor(sandboxConfig(sandbox, dir.path), { mailbox: MAILBOX })).results.find((r) => r.id === 'bounces');
    assert.equal(off?.status, 'skip');
  });

  it('documents /v1/suppressions and ignoreSuppression in the OpenAPI document, with the scopes the routes need', async () => {
    const doc = (await (await fetch(`${relay.httpAddress}/openapi.json`)).json()) as {
      paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: { properties: Record<string, unknown> } }> } }>>;
    };
    assert.ok(doc.paths['/v1/suppressions']?.get && doc.paths['/v1/suppressions'].post);
    assert.ok(doc.paths['/v1/suppressions/{address}']?.delete);
    for (const path of ['/v1/messages', '/v1/messages/mime'])
      assert.ok(doc.paths[path]!.post!.requestBody!.content['application/json']!.schema.properties.ignoreSuppression, path);
    // A key with only the read scope lists, but may not add.
    const store = await openSqliteIntegrationStore(resolve(dir.path, 'relay365.db'));
    const reader = generateApiKey();
    await store.createApiKey({ name: 'reader', hash: reader.hash, prefix: reader.prefix, scopes: ['read'] });
    await store.close();
    const as = (k: string, method: string, body?: unknown) =>
      fetch(`${relay.httpAddress}/v1/suppressions`, {
        method,
        headers: { authorization: `Bearer ${k}`, ...(body ? { 'content-type': 'application/json' } : {}) },
        ...(body ? { body: JSON.stringify(body) } : {}),
      });
    assert.equal((await as(reader.key, 'GET')).status, 200);
    const refused = await as(reader.key, 'POST', { address: 'x@fabrikam.example' });
    assert.equal(refused.status, 403);
    assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'R365_HTTP_FORBIDDEN');
    const bad = await as(key, 'POST', { address: 'not an address' });
    assert.equal(bad.status, 400);
  });

  it('relay365 suppression add, list --json and remove change what the running relay refuses', async () => {
    const configPath = resolve(dir.path, 'relay365.yaml');
    await import('node:fs/promises').then((fs) => fs.writeFile(configPath, stringify({ ...sandboxConfig(sandbox, dir.path), dataDir: dir.path })));
    const address = 'manual@fabrikam.example';
    const added = await cli(['suppression', 'add', address, '--reason', 'asked to stop', '--config', configPath, '--json']);
    assert.equal(added.code, 0, added.stderr);
    assert.equal((JSON.parse(added.stdout) as { source: string }).source, 'manual');
    const listed = await cli(['suppression', 'list', '--config', configPath, '--json']);
    assert.equal(listed.code, 0, listed.stderr);
    const entry = (JSON.parse(listed.stdout) as { items: Array<{ address: string; reason: string }> }).items.find((i) => i.address === address);
    assert.equal(entry?.reason, 'asked to stop');
    const refused = await api('POST', '/v1/messages', { from: MAILBOX, to: [address], subject: 's', text: 't' });
    assert.equal(refused.status, 422);
    assert.match((refused.json.error as { message: string }).message, /after asked to stop; remove with relay365 suppression remove manual@fabrikam\.example/);
    assert.equal((await cli(['suppression', 'remove', address, '--config', configPath])).code, 0);
    const again = await cli(['suppression', 'remove', address, '--config', configPath, '--json']);
    assert.notEqual(again.code, 0);
    assert.match(again.stdout + again.stderr, /R365_SUPPRESSION_NOT_FOUND/);
    assert.equal((await api('POST', '/v1/messages', { from: MAILBOX, to: [address], subject: 's', text: 't' })).status, 202);
  });

  it("relay365 permissions reviews the NDR reader's Graph token: Mail.ReadWrite consented tenant-wide is a warning with the RBAC commands", async () => {
    const configPath = resolve(dir.path, 'reading.yaml');
    const input = sandboxConfig(sandbox, dir.path, { mailboxes: [{ address: MAILBOX, bounces: { read: true } }] });
    await import('node:fs/promises').then((fs) => fs.writeFile(configPath, stringify({ ...input, dataDir: dir.path })));
    const run = await cli(['permissions', '--config', configPath, '--json']);
    const report = JSON.parse(run.stdout) as { findings: Array<{ level: string; permission: string; fix?: string }> };
    const reading = report.findings.filter((f) => f.permission.endsWith('(NDR reading)'));
    assert.deepEqual(
      reading.map((f) => [f.level, f.permission]),
      [['warn', 'Mail.ReadWrite (NDR reading)']],
    );
    assert.match(reading[0]!.fix!, /-Role "Application Mail\.Read" -CustomResourceScope "relay365 mailboxes"/);
    assert.equal(run.code, 1, 'a warning makes the exit status 1');
  });

  it('logs and skips malformed and hostile reports, never crashing the reader nor changing an unrelated message', async () => {
    const sent = await api('POST', '/v1/messages', { from: MAILBOX, to: [GOOD], subject: 'target', text: 'hi' });
    assert.equal(sent.status, 202);
    const id = sent.json.id as string;
    await until(async () => (await relay.store.recipients(id)).every((r) => r.state === 'accepted'), 10_000, 'the target to be sent');
    const target = (await relay.store.get(id))!;
    const fixture = (n: string): Promise<Buffer> => readFile(new URL(`../fixtures/ndr/${n}`, import.meta.url));
    const real = (await fixture('exchange-online-5.1.351-unknown-user.eml')).toString('latin1');
    const report = (to: string, mid: string, recipient: string): Buffer =>
      Buffer.from(
        real
          .replace(/^In-Reply-To: .*$/m, `In-Reply-To: ${mid}`)
          .replace(/^Message-ID: <SLXP216MB0381A2BCD997D05F53CDB50BA9220@SLXP216MB0381\.KORP216\.PROD\.OUTLOOK\.COM>$/m, `Message-ID: ${mid}`)
          .replaceAll('azumakuniyuki@example.ne.jp', recipient)
          .replace(/^To: <kijitora@outlook\.example\.com>$/m, `To: <${to}>`),
        'latin1',
      );
    const before = log.lines.length;
    const hostile: Array<[string, Buffer]> = [
      // Truncated in the middle of the delivery-status part.
      [MAILBOX, Buffer.from(real.slice(0, real.indexOf('Action: failed')), 'latin1')],
      // A multipart nested 3,000 deep.
      [
        MAILBOX,
        Buffer.from(
          `From: postmaster@contoso.example\r\nSubject: Undeliverable: x\r\n${Array.from({ length: 3000 }, (_, i) => `Content-Type: multipart/mixed; boundary="b${i}"\r\n\r\n--b${i}\r\n`).join('')}`,
        ),
      ],
      // 12 MB of one header line.
      [
        MAILBOX,
        Buffer.concat([Buffer.from('From: postmaster@contoso.example\r\nSubject: Undeliverable: big\r\nX-Pad: '), Buffer.alloc(12 * 1024 * 1024, 0x61)]),
      ],
      // A public report whose original has no Message-ID.
      [MAILBOX, await fixture('postfix-5.4.1-no-message-id.eml')],
      // A report naming a Message-ID relay365 never sent.
      [MAILBOX, report(MAILBOX, '<never-sent@contoso.example>', GOOD)],
      // Forged: the target's Message-ID and recipient, but in another mailbox's Inbox.
      [OTHER, report(OTHER, target.messageId!, GOOD)],
      // relay365's own delivery notice (queue.bounces) about the target, as a mailbox that is its own sender receives it.
      [
        MAILBOX,
        (
          await composeBounce({
            mailbox: MAILBOX,
            original: { id, envelope: target.envelope, headers: `Message-ID: ${target.messageId!}\r\nSubject: target`, messageId: target.messageId },
            reply: '550 5.1.1 User unknown',
            explanation: undefined,
          })
        ).raw,
      ],
    ];
    for (const [mailbox, raw] of hostile) sandbox.state.mail.deliver(mailbox, raw);
    await until(
      () => log.lines.slice(before).filter((l) => l.event === 'bounces.report_skipped' || l.event === 'bounces.report_unmatched').length >= hostile.length,
      15_000,
      'every hostile report to be logged',
    ).catch((err: unknown) => {
      console.error(log.lines.slice(before).filter((l) => (typeof l.event === 'string' && l.event.startsWith('bounces')) || l.component === 'bounces'));
      throw err;
    });
    const logged = log.lines.slice(before).filter((l) => l.event === 'bounces.report_skipped' || l.event === 'bounces.report_unmatched');
    assert.equal(logged.filter((l) => l.event === 'bounces.report_unmatched').length, 2, 'the unknown and the forged Message-ID');
    assert.ok(logged.some((l) => l.reason === 'no Message-ID'));
    assert.ok(logged.some((l) => l.reason === "relay365's own delivery notice"));
    assert.ok(logged.some((l) => /over the 10485760 read/.test(String(l.reason))));
    assert.equal(log.lines.slice(before).filter((l) => l.event === 'bounces.read_failed').length, 0, 'no read failed');
    // Nothing changed for the target, and nothing was suppressed.
    assert.deepEqual(
      (await relay.store.recipients(id)).map((r) => [r.address, r.state]),
      [[GOOD, 'accepted']],
    );
    assert.deepEqual(await relay.store.suppressed([GOOD]), []);
    // The reports stay where they were: only relay365's own mail is moved.
    const otherInbox = sandbox.state.mail.folder(OTHER, 'inbox')!;
    assert.equal(sandbox.state.mail.items(OTHER, otherInbox.id).length, 1);
    // The reader goes on: a real report after them is still applied.
    const next = await api('POST', '/v1/messages', { from: MAILBOX, to: ['nobody2@fabrikam.example'], subject: 'after', text: 'hi', ignoreSuppression: true });
    assert.equal(next.status, 202);
    sandbox.state.mail.deliver(
      MAILBOX,
      report(MAILBOX, await until(async () => (await relay.store.get(next.json.id as string))?.messageId, 5000, 'id'), 'nobody2@fabrikam.example'),
    );
    await until(async () => (await relay.store.recipients(next.json.id as string))[0]?.state === 'bounced', 10_000, 'the report after the hostile ones');
  });
});

describe('the NDR reader with mark: category (real sandbox Graph, real SQLite store)', () => {
  it('tags an applied report with the category, leaves it in the Inbox, and skips it on the next read', async () => {
    const sandbox = await startTestSandbox({
      scenario: scenario((s) => {
        const app = s.tenants[0]!.apps[0]!;
        app.roles.graph = ['Mail.Send', 'Mail.ReadWrite'];
        app.mailboxScope = [MAILBOX];
      }),
    });
    const dir = await tempDir();
    const { openSqliteStore } = await import('../../src/outbox/index.js');
    const { bounceIdentity, graphMailClient } = await import('../../src/runtime/bounces.js');
    const { BounceReader } = await import('../../src/bounces/index.js');
    const { EventBus } = await import('../../src/observe/index.js');
    const store = await openSqliteStore(resolve(dir.path, 'outbox.db'));
    const config = sandboxConfig(sandbox, dir.path, { mailboxes: [{ address: MAILBOX, bounces: { read: true, mark: 'category', category: 'NDR done' } }] });
    const identity = (await bounceIdentity(config, { logger: createLogger({ level: 'silent' }) }))!;
    try {
      await store.migrate();
      const messageId = '<category-test@contoso.example>';
      const stored = await store.enqueue({
        mailbox: MAILBOX,
        envelope: { from: MAILBOX, to: ['gone@fabrikam.example'] },
        raw: Buffer.from(`From: ${MAILBOX}\r\nTo: gone@fabrikam.example\r\nMessage-ID: ${messageId}\r\n\r\nhi\r\n`),
        source: { kind: 'library' },
        messageId,
      });
      const real = (await readFile(new URL('../fixtures/ndr/office365-5.1.10-recipient-not-found.eml', import.meta.url))).toString('latin1');
      const ndr = real.replaceAll('<560418D8.2010303@example.com>', messageId).replaceAll('rui-lopes@example.com', 'gone@fabrikam.example');
      const item = sandbox.state.mail.deliver(MAILBOX, Buffer.from(ndr, 'latin1'));
      const events = new EventBus();
      const seen: string[] = [];
      events.subscribe((e) => seen.push(e.type));
      const reader = new BounceReader({ mailbox: MAILBOX, settings: config.mailboxes[0]!.bounces!, store, graph: graphMailClient(identity), events });
      const first = await reader.runOnce();
      assert.equal(first.applied, 1);
      assert.deepEqual(seen, ['message.bounced']);
      assert.deepEqual(sandbox.state.mail.item(MAILBOX, item.id)?.categories, ['NDR done']);
      const inbox = sandbox.state.mail.folder(MAILBOX, 'inbox')!;
      assert.ok(
        sandbox.state.mail.items(MAILBOX, inbox.id).some((i) => i.id === item.id),
        'still in the Inbox',
      );
      const recipient = (await store.recipients(stored.id))[0]!;
      assert.equal(recipient.state, 'bounced');
      assert.equal(recipient.dsnStatus, '5.1.10');
      // The next read starts from the saved cursor: the categorized report is not applied again.
      const second = await reader.runOnce();
      assert.equal(second.applied, 0);
      assert.deepEqual(seen, ['message.bounced']);
      assert.ok(await store.bounceCursor(MAILBOX));
    } finally {
      identity.close();
      await store.close();
      await sandbox.close();
      await dir.cleanup();
    }
  });
});

describe('the NDR reader across a failure between a report applied and its webhook stored (real sandbox Graph, real SQLite stores)', () => {
  it('raises the event again under the same id when the report is read again, and the webhook outbox keeps one; the suppression came with the entry', async () => {
    const sandbox = await startTestSandbox({
      scenario: scenario((s) => {
        const app = s.tenants[0]!.apps[0]!;
        // Mail.Read only: the report can be read, not moved, so it stays in the Inbox to be read again.
        app.roles.graph = ['Mail.Send', 'Mail.Read'];
        app.mailboxScope = [MAILBOX];
      }),
    });
    const dir = await tempDir();
    const receiver = await startReceiver();
    const { openSqliteStore } = await import('../../src/outbox/index.js');
    const { bounceIdentity, graphMailClient } = await import('../../src/runtime/bounces.js');
    const { BounceReader, bounceEventId } = await import('../../src/bounces/index.js');
    const { EventBus, WebhookDispatcher } = await import('../../src/observe/index.js');
    const path = resolve(dir.path, 'relay365.db');
    const store = await openSqliteStore(path);
    const webhookStore = await openSqliteIntegrationStore(path);
    const config = sandboxConfig(sandbox, dir.path, { mailboxes: [{ address: MAILBOX, bounces: { read: true } }] });
    const identity = (await bounceIdentity(config, { logger: createLogger({ level: 'silent' }) }))!;
    const graph = graphMailClient(identity);
    const log = capturingLogger();
    /** A reader as a node runs it: its own bus and webhook dispatcher, the node's own lease owner. */
    const node = (outbox: ConstructorParameters<typeof WebhookDispatcher>[0]['outbox']) => {
      const events = new EventBus();
      const raised: Array<{ type: string; eventId?: string; replay?: boolean }> = [];
      events.subscribe((e) => raised.push(e));
      const webhooks = new WebhookDispatcher({ outbox, receivers: [{ url: receiver.url, secret: 'whsec-replay' }], pollMs: 50 });
      webhooks.follow(events);
      const reader = new BounceReader({ mailbox: MAILBOX, settings: config.mailboxes[0]!.bounces!, store, graph, events, logger: log.logger, owner: 'node-1' });
      return { reader, raised, webhooks };
    };
    try {
      const messageId = '<replay-test@contoso.example>';
      const gone = 'gone@fabrikam.example';
      const stored = await store.enqueue({
        mailbox: MAILBOX,
        envelope: { from: MAILBOX, to: [gone] },
        raw: Buffer.from(`From: ${MAILBOX}\r\nTo: ${gone}\r\nMessage-ID: ${messageId}\r\n\r\nhi\r\n`),
        source: { kind: 'library' },
        messageId,
      });
      const real = (await readFile(new URL('../fixtures/ndr/office365-5.1.10-recipient-not-found.eml', import.meta.url))).toString('latin1');
      const ndr = real.replaceAll('<560418D8.2010303@example.com>', messageId).replaceAll('rui-lopes@example.com', gone);
      const item = sandbox.state.mail.deliver(MAILBOX, Buffer.from(ndr, 'latin1'));
      const eventId = bounceEventId(MAILBOX, item.id, gone);

      // 1. The webhook outbox fails (its database closed) once the entry is applied: the read fails,
      // the report is applied and its address suppressed (one transaction), the cursor stays put.
      const broken = await openSqliteIntegrationStore(path);
      await broken.close();
      const first = node(broken);
      await assert.rejects(first.reader.runOnce());
      assert.equal((await store.recipients(stored.id))[0]?.state, 'bounced');
      assert.equal((await store.suppressed([gone]))[0]?.dsnStatus, '5.1.10', 'suppressed with the entry, not after it');
      assert.equal(await store.bounceCursor(MAILBOX), undefined, 'the cursor was not moved past the report');
      assert.deepEqual(first.raised.map((e) => [e.type, e.eventId, e.replay]), [['message.bounced', eventId, false]]);

      // 2. The node again, its webhook outbox working: the entry is a duplicate and its event is raised
      // again, under the same id, marked a replay; the receiver gets it.
      const second = node(webhookStore);
      second.webhooks.start();
      // An operator takes the address off the list meanwhile: reading the report again must not put it back.
      assert.equal(await store.unsuppress(gone), true);
      const run = await second.reader.runOnce();
      assert.deepEqual([run.applied, run.duplicates, run.suppressed], [0, 1, 0]);
      assert.deepEqual(second.raised.map((e) => [e.type, e.eventId, e.replay]), [['message.bounced', eventId, true]]);
      assert.deepEqual(await store.suppressed([gone]), []);
      await until(() => receiver.received.length >= 1, 10_000, 'the webhook of the replayed event');
      const body = JSON.parse(receiver.received[0]!.body) as { id: string; data: Record<string, unknown> };
      assert.equal(body.id, eventId);
      assert.equal(body.data.recipient, gone);
      assert.equal('replay' in body.data || 'eventId' in body.data, false, "the event's id and replay flag are not data");
      assert.ok(log.lines.some((l) => l.event === 'bounces.mark_failed'), 'Mail.Read only: the report stays in the Inbox');

      // 3. An expired delta cursor reads the Inbox from the start: the report comes again, its event is
      // raised again and the webhook outbox, which has it, stores nothing new.
      const cursor = (await store.bounceCursor(MAILBOX))!;
      await store.saveBounceCursor(MAILBOX, cursor.replace(/\$deltatoken=[^&]*/, '$deltatoken=expired'));
      const third = await second.reader.runOnce();
      assert.deepEqual([third.applied, third.duplicates], [0, 1]);
      assert.equal(second.raised.length, 2);
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(receiver.received.length, 1, 'one delivery of the event');
      await second.webhooks.stop();
    } finally {
      identity.close();
      await webhookStore.close();
      await store.close();
      await new Promise((r) => receiver.server.close(r));
      await sandbox.close();
      await dir.cleanup();
    }
  });
});
