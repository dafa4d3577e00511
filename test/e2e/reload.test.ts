import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { configSchema, type ConfigInput } from '../../src/config/index.js';
import { generateApiKey } from '../../src/ingress/http/index.js';
import { hashPassword } from '../../src/ingress/smtp/password.js';
import { openIntegrationStore } from '../../src/runtime/stores.js';
import { DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';
import { freePort, serveWithLogs, stop } from '../helpers/cli.js';
import { sandboxSettings } from '../helpers/config.js';
import { scenario, startTestSandbox, tempDir } from '../helpers/sandbox.js';
import { SmtpWire } from '../helpers/smtp-wire.js';
import { until as waitUntil } from '../helpers/wait.js';

// Alice's mailbox, added by the reload: the sandbox's app may send as it once it holds FullAccess there
// (Add-MailboxPermission, as docs/microsoft-365-setup.md says for every app-only mailbox).
const NEW_MAILBOX = DEFAULT_IDS.user;

/** An external recipient Exchange accepts, then bounces with an NDR in the sending mailbox's Inbox. */
const BOUNCING = 'gone@fabrikam.example';

const plain = (user: string, password: string): string => Buffer.from(`\0${user}\0${password}`).toString('base64');

/** Logs in on a new connection; resolves with the wire, or rejects with the reply. */
async function login(port: number, user: string, password: string): Promise<SmtpWire> {
  const { wire, greeting } = await SmtpWire.connect(port);
  assert.equal(greeting.code, 220);
  assert.equal((await wire.command('EHLO reload.test')).code, 250);
  const auth = await wire.command(`AUTH PLAIN ${plain(user, password)}`);
  if (auth.code !== 235) {
    wire.destroy();
    throw new Error(`AUTH as ${user}: ${auth.last}`);
  }
  return wire;
}

/** One message over an open, logged-in connection; the final reply. */
async function send(wire: SmtpWire, from: string, subject: string): Promise<string> {
  for (const [line, code] of [
    [`MAIL FROM:<${from}>`, 250],
    ['RCPT TO:<someone@example.net>', 250],
    ['DATA', 354],
  ] as const) {
    const reply = await wire.command(line);
    if (reply.code !== code) return reply.last;
  }
  return (await wire.command(`From: ${from}\r\nTo: someone@example.net\r\nSubject: ${subject}\r\n\r\nsent during a reload\r\n.`)).last;
}

describe('relay365 serve: SIGHUP reloads the config', () => {
  let sandbox: Sandbox & { dir: string };
  before(async () => {
    sandbox = await startTestSandbox({
      scenario: scenario((s) => {
        const alice = s.tenants[0]!.users.find((u) => u.upn === DEFAULT_IDS.user)!;
        alice.fullAccessApps = [DEFAULT_IDS.appClientId];
        // Reading NDRs back through Graph (mailboxes[].bounces.read); the recipient below bounces.
        s.tenants[0]!.apps[0]!.roles.graph = ['Mail.Send', 'Mail.ReadWrite'];
        s.mailFlow.unknownRecipients = [BOUNCING];
      }),
    });
  });
  after(() => sandbox.close());

  it('adds a mailbox and a user while a client keeps sending on one connection (none failed, none dropped); then refuses a broken config and keeps serving', async () => {
    const dir = await tempDir();
    const port = await freePort();
    const file = join(dir.path, 'relay365.yaml');
    const [hash1, hash2] = await Promise.all([hashPassword('first-password'), hashPassword('second-password')]);
    const base = {
      dataDir: dir.path,
      log: { level: 'info' },
      ...sandboxSettings(sandbox),
      auth: { flow: 'client-secret', tenant: DEFAULT_IDS.tenantId, clientId: DEFAULT_IDS.appClientId, clientSecret: DEFAULT_IDS.appSecret },
      http: { enabled: false },
    };
    const config = (change: { mailboxes: string[]; users: Array<{ name: string; passwordHash: string }>; allowlist?: Array<{ cidr: string }> }) =>
      stringify({
        ...base,
        mailboxes: change.mailboxes.map((address) => ({ address })),
        smtp: { listeners: [{ host: '127.0.0.1', port, tls: 'none', allowPlainAuth: true }], users: change.users, allowlist: change.allowlist ?? [] },
      });
    await writeFile(file, config({ mailboxes: [DEFAULT_IDS.mailbox], users: [{ name: 'printer', passwordHash: hash1 }] }));
    const relay = await serveWithLogs(file);
    try {
      // The persistent client: one connection, one message after another, all through the reload.
      const persistent = await login(port, 'printer', 'first-password');
      const replies: string[] = [];
      let reconnects = 0;
      let sending = true;
      const steady = (async () => {
        for (let i = 0; sending; i++) {
          replies.push(await send(persistent, DEFAULT_IDS.mailbox, `steady ${i}`));
          await new Promise((r) => setTimeout(r, 50));
        }
      })();
      // And a client that connects for each message, as many printers do.
      const perMessage = (async () => {
        for (let i = 0; sending; i++) {
          const wire = await login(port, 'printer', 'first-password');
          replies.push(await send(wire, DEFAULT_IDS.mailbox, `connect-per-message ${i}`));
          await wire.quit();
          reconnects += 1;
          await new Promise((r) => setTimeout(r, 50));
        }
      })();
      const until = async (n: number) => {
        while (replies.length < n) await new Promise((r) => setTimeout(r, 20));
      };
      await until(10);
      await assert.rejects(login(port, 'scanner', 'second-password'), /535/, 'the user to be added cannot log in yet');

      await writeFile(
        file,
        config({
          mailboxes: [DEFAULT_IDS.mailbox, NEW_MAILBOX],
          users: [
            { name: 'printer', passwordHash: hash1 },
            { name: 'scanner', passwordHash: hash2 },
          ],
        }),
      );
      const before = replies.length;
      relay.child.kill('SIGHUP');
      const reloaded = await relay.waitFor((l) => l.event === 'config.reloaded', 'config.reloaded');
      assert.deepEqual(reloaded.changed, ['mailboxes', 'smtp.users']);
      assert.deepEqual(reloaded.restartRequired, []);
      await until(before + 10);

      // The new user logs in, and the new mailbox sends.
      const scanner = await login(port, 'scanner', 'second-password');
      assert.match(await send(scanner, NEW_MAILBOX, 'from the added mailbox'), /^250 /);
      await scanner.quit();
      const deadline = Date.now() + 20_000;
      while (!sandbox.state.messages.some((m) => m.mailbox.toLowerCase() === NEW_MAILBOX && /Subject: from the added mailbox/.test(m.raw.toString()))) {
        if (Date.now() > deadline) throw new Error('the added mailbox sent nothing');
        await new Promise((r) => setTimeout(r, 50));
      }

      // A broken config: the SMTP checks that serve runs at start (a CIDR, a hash) refuse it, all at once.
      await writeFile(
        file,
        config({ mailboxes: [DEFAULT_IDS.mailbox], users: [{ name: 'printer', passwordHash: 'scrypt$not-a-hash' }], allowlist: [{ cidr: '10.0.0.0/33' }] }),
      );
      const refusedBefore = relay.lines.length;
      relay.child.kill('SIGHUP');
      const refused = await relay.waitFor((l) => l.event === 'config.reload_refused', 'config.reload_refused');
      assert.ok(relay.lines.indexOf(refused) >= refusedBefore);
      const problems = refused.problems as string[];
      assert.equal(problems.length, 2, JSON.stringify(problems));
      assert.ok(problems.some((p) => p.startsWith('smtp.users[0].passwordHash:')));
      assert.ok(problems.some((p) => p.startsWith('smtp.allowlist[0].cidr:')));
      assert.equal(refused.level, 50, 'logged as an error');
      // Still the previous config: the user the broken one drops still logs in, and the mailbox it drops still sends.
      const still = await login(port, 'scanner', 'second-password');
      assert.match(await send(still, NEW_MAILBOX, 'after the refused reload'), /^250 /);
      await still.quit();

      // What needs a restart is named and kept: the listener's port.
      await writeFile(
        file,
        config({
          mailboxes: [DEFAULT_IDS.mailbox, NEW_MAILBOX],
          users: [
            { name: 'printer', passwordHash: hash1 },
            { name: 'scanner', passwordHash: hash2 },
          ],
        }).replace(`port: ${port}`, `port: ${port + 1}`),
      );
      relay.child.kill('SIGHUP');
      const warned = await relay.waitFor((l) => l.event === 'config.restart_required', 'config.restart_required');
      assert.deepEqual(warned.paths, ['smtp.listeners']);

      const total = replies.length + 10;
      await until(total);
      sending = false;
      await Promise.all([steady, perMessage]);
      assert.equal(persistent.closed, false, 'the persistent connection was never dropped');
      await persistent.quit();
      const failed = replies.filter((r) => !r.startsWith('250 '));
      assert.deepEqual(failed, [], 'no message was refused');
      assert.ok(reconnects > 0);
    } finally {
      await stop(relay.child);
      await dir.cleanup();
    }
  });

  it('after a reload the HTTP API sends from an added mailbox, lists it and applies the new limits; its NDR reader starts, and stops when the config drops it', async () => {
    const dir = await tempDir();
    const httpPort = await freePort();
    const file = join(dir.path, 'relay365.yaml');
    const input = (change: { mailboxes: ConfigInput['mailboxes']; maxMessageBytes?: number }): ConfigInput => ({
      dataDir: dir.path,
      log: { level: 'info' },
      ...sandboxSettings(sandbox),
      auth: { flow: 'client-secret', tenant: DEFAULT_IDS.tenantId, clientId: DEFAULT_IDS.appClientId, clientSecret: DEFAULT_IDS.appSecret },
      mailboxes: change.mailboxes,
      limits: change.maxMessageBytes === undefined ? {} : { maxMessageBytes: change.maxMessageBytes },
      smtp: { enabled: false },
      http: { host: '127.0.0.1', port: httpPort },
    });
    const first = input({ mailboxes: [{ address: DEFAULT_IDS.mailbox }] });
    await writeFile(file, stringify(first));
    const integrationStore = await openIntegrationStore(configSchema.parse(first));
    const apiKey = generateApiKey();
    try {
      await integrationStore.createApiKey({ name: 'reload', hash: apiKey.hash, prefix: apiKey.prefix, scopes: ['send', 'read', 'admin'] });
    } finally {
      await integrationStore.close();
    }
    const api = async (method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> => {
      const res = await fetch(`http://127.0.0.1:${httpPort}${path}`, {
        method,
        headers: { authorization: `Bearer ${apiKey.key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      return { status: res.status, json: (await res.json()) as Record<string, unknown> };
    };
    const listed = async (): Promise<string[]> => ((await api('GET', '/v1/mailboxes')).json.items as Array<{ address: string }>).map((m) => m.address);
    const fromAlice = (subject: string, to = 'someone@example.net') => ({ mailbox: NEW_MAILBOX, from: NEW_MAILBOX, to: [to], subject, text: 'sent after a reload' });

    const relay = await serveWithLogs(file);
    // Each reload's own log line: the ones before it are left out.
    const reload = async (change: Parameters<typeof input>[0]): Promise<Record<string, unknown>> => {
      await writeFile(file, stringify(input(change)));
      const from = relay.lines.length;
      relay.child.kill('SIGHUP');
      return relay.waitFor((l) => relay.lines.indexOf(l) >= from && (l.event === 'config.reloaded' || l.event === 'config.reload_refused'), 'the reload');
    };
    try {
      assert.deepEqual(await listed(), [DEFAULT_IDS.mailbox]);
      const before = await api('POST', '/v1/messages', fromAlice('before the reload'));
      assert.equal(before.status, 422, JSON.stringify(before.json));
      assert.equal((before.json.error as { code: string }).code, 'R365_UNKNOWN_MAILBOX');

      const added = await reload({
        mailboxes: [{ address: DEFAULT_IDS.mailbox }, { address: NEW_MAILBOX, bounces: { read: true, everySeconds: 0.2 } }],
        maxMessageBytes: 4000,
      });
      assert.equal(added.event, 'config.reloaded', JSON.stringify(added));
      assert.deepEqual(added.changed, ['mailboxes', 'limits.maxMessageBytes', 'mailboxes[].bounces']);
      assert.deepEqual(added.restartRequired, []);
      await relay.waitFor((l) => l.event === 'bounces.reader_started' && l.mailbox === NEW_MAILBOX, 'the added mailbox\'s NDR reader');

      // The API lists the added mailbox, with its metrics series from 0.
      assert.deepEqual(await listed(), [DEFAULT_IDS.mailbox, NEW_MAILBOX]);
      const metrics = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
      assert.match(metrics, new RegExp(`relay365_bounces_total\\{mailbox="${NEW_MAILBOX.replace(/\./g, '\\.')}",class="hard"\\} 0`));
      // The new limits.maxMessageBytes applies to the next request.
      const tooBig = await api('POST', '/v1/messages', { from: DEFAULT_IDS.mailbox, to: ['someone@example.net'], subject: 'too big now', text: 'x'.repeat(5000) });
      assert.equal(tooBig.status, 413, JSON.stringify(tooBig.json));
      assert.equal((tooBig.json.error as { code: string }).code, 'R365_MESSAGE_TOO_LARGE');

      // A send from the added mailbox, to a recipient that bounces: sent, then its NDR read back by the new reader.
      const sent = await api('POST', '/v1/messages', fromAlice('from the added mailbox', BOUNCING));
      assert.equal(sent.status, 202, JSON.stringify(sent.json));
      const id = sent.json.id as string;
      const bounced = await waitUntil(
        async () => {
          const m = (await api('GET', `/v1/messages/${id}`)).json as { mailbox: string; recipientCounts: Record<string, number> };
          return m.recipientCounts.bounced === 1 && m;
        },
        30_000,
        'the NDR of the added mailbox to be read',
        100,
      );
      assert.equal(bounced.mailbox, NEW_MAILBOX);
      assert.ok(sandbox.state.messages.some((m) => m.mailbox.toLowerCase() === NEW_MAILBOX && /Subject: from the added mailbox/.test(m.raw.toString())));

      // The mailbox stays, its NDR reading goes: the reader stops.
      const unread = await reload({ mailboxes: [{ address: DEFAULT_IDS.mailbox }, { address: NEW_MAILBOX }], maxMessageBytes: 4000 });
      assert.deepEqual(unread.changed, ['mailboxes', 'mailboxes[].bounces']);
      await relay.waitFor((l) => l.event === 'bounces.reader_stopped' && l.mailbox === NEW_MAILBOX, 'the NDR reader to stop');

      // Removed: the API refuses it again and no longer lists it; the old limit is back.
      const removed = await reload({ mailboxes: [{ address: DEFAULT_IDS.mailbox }] });
      assert.deepEqual(removed.changed, ['mailboxes', 'limits.maxMessageBytes']);
      assert.deepEqual(await listed(), [DEFAULT_IDS.mailbox]);
      assert.equal(((await api('POST', '/v1/messages', fromAlice('after the removal'))).json.error as { code: string }).code, 'R365_UNKNOWN_MAILBOX');
      // validateOnly: every check runs, nothing is queued (the first test has used this minute's sends of the mailbox at Exchange).
      const large = await api('POST', '/v1/messages', {
        from: DEFAULT_IDS.mailbox,
        to: ['someone@example.net'],
        subject: 'large again',
        text: 'x'.repeat(5000),
        validateOnly: true,
      });
      assert.equal(large.status, 200, JSON.stringify(large.json));
    } finally {
      await stop(relay.child);
      await dir.cleanup();
    }
  });
});
