/**
 * relay365 as a nodemailer transport: `nodemailer.createTransport(relay365Transport(...)).sendMail()`
 * queues nodemailer's own bytes through the outbox (or sends them at once in direct mode) to the
 * sandbox's Exchange, and answers as nodemailer's SMTP transport does: `info.accepted`, `rejected`,
 * `response`, and errors with `code`, `response`, `responseCode` and `rejected`. sendMail's `relay365`
 * option carries createRelay's per-message options (sendAt, tags, metadata, ignoreSuppression).
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import nodemailer from 'nodemailer';
import { stringify } from 'yaml';
import { createRelay, relay365Transport, Relay365TransportError, type Relay365Transport, type Relay365TransportOptions } from '../../src/index.js';
import { checkLabels } from '../../src/outbox/index.js';
import { openOutboxStore } from '../../src/runtime/index.js';
import { DEFAULT_IDS, type ReceivedMessage, type Sandbox } from '../../src/sandbox/index.js';
import { sandboxConfig, sandboxSettings } from '../helpers/config.js';
import { scenario, startTestSandbox, tempDir } from '../helpers/sandbox.js';
import { until } from '../helpers/wait.js';

const MAILBOX = DEFAULT_IDS.mailbox;
// An address that does not exist at the tenant's own domain: Exchange refuses it at RCPT with 550 5.1.10.
const NOBODY = `nobody@${DEFAULT_IDS.tenantDomain}`;

describe('relay365Transport: nodemailer sends through relay365', () => {
  let sandbox: Sandbox & { dir: string };
  let dir: { path: string; cleanup: () => Promise<void> };
  // The relay365 transports, closed at the end (their close() is a promise; nodemailer's wrapper is typed void).
  const transports: Relay365Transport[] = [];
  const opened = (options: Relay365TransportOptions): Relay365Transport => {
    const t = relay365Transport(options);
    transports.push(t);
    return t;
  };

  /** A transporter on a dataDir of its own (two relays never share an outbox file here). */
  const transporter = (name: string, options: Omit<Relay365TransportOptions, 'config'> = {}) => {
    return nodemailer.createTransport(opened({ config: sandboxConfig(sandbox, join(dir.path, name)), ...options }));
  };
  const received = (messageId: string): ReceivedMessage | undefined => sandbox.state.messages.find((m) => m.raw.toString('utf8').includes(messageId));

  before(async () => {
    sandbox = await startTestSandbox({
      scenario: scenario((s) => {
        s.limits.unlimited = true;
        s.mailFlow.unknownRecipients = [NOBODY];
      }),
    });
    dir = await tempDir();
  });
  after(async () => {
    for (const t of transports) await t.close();
    await sandbox?.close();
    await dir?.cleanup();
  });

  it("queues nodemailer's message through the outbox: info as nodemailer's, the message as nodemailer built it at the sandbox", async () => {
    const t = transporter('queued');
    const info = await t.sendMail({
      from: `Relay <${MAILBOX}>`,
      to: 'ann@example.net',
      cc: 'bob@example.net',
      bcc: 'carol@example.net',
      subject: 'Switched by one line',
      text: 'Hello from nodemailer',
      headers: { 'X-App': 'billing' },
    });
    assert.match(info.messageId, /^<.+@.+>$/);
    assert.deepEqual(info.envelope, { from: MAILBOX, to: ['ann@example.net', 'bob@example.net', 'carol@example.net'] });
    assert.deepEqual(info.accepted, ['ann@example.net', 'bob@example.net', 'carol@example.net']);
    assert.deepEqual(info.rejected, []);
    assert.deepEqual(info.pending, []);
    assert.equal(info.relay365.state, 'queued');
    assert.equal(info.relay365.mailbox, MAILBOX);
    assert.ok(info.relay365.id);
    assert.equal(info.response, `250 2.0.0 OK queued as ${info.relay365.id}`);

    const got = await until(() => received(info.messageId), 15_000, 'the message at the sandbox');
    assert.equal(got.mailbox, MAILBOX);
    assert.equal(got.envelope.mailFrom, MAILBOX);
    assert.deepEqual([...got.envelope.rcptTo].sort(), ['ann@example.net', 'bob@example.net', 'carol@example.net']);
    const text = got.raw.toString('utf8');
    assert.match(text, new RegExp(`^Message-ID: ${info.messageId.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\r$`, 'mi'));
    assert.match(text, /^Subject: Switched by one line\r$/m);
    assert.match(text, /^X-App: billing\r$/m);
    assert.match(text, /^Cc: bob@example\.net\r$/m);
    assert.doesNotMatch(text, /^Bcc:/im, 'the Bcc header is not sent; its address is in the envelope');
    assert.match(text, /Hello from nodemailer/);
  });

  it("waitForOutcome resolves with Exchange's answer: the recipient it refused in rejected, with its reply and explanation", async () => {
    const t = transporter('outcome', { waitForOutcome: true, outcomeTimeoutMs: 30_000 });
    const info = await t.sendMail({ from: MAILBOX, to: ['dora@example.net', NOBODY], subject: 'mixed', text: 'one of two' });
    assert.equal(info.relay365.state, 'sent');
    assert.match(info.response, /^250 2\.0\.0 OK/);
    assert.deepEqual(info.accepted, ['dora@example.net']);
    assert.deepEqual(info.rejected, [NOBODY]);
    const [err] = info.rejectedErrors;
    assert.ok(err instanceof Relay365TransportError);
    assert.equal(err.recipient, NOBODY);
    assert.equal(err.responseCode, 550);
    assert.match(err.response ?? '', /^550 5\.1\.10 /);
    assert.match(err.message, new RegExp(`^${NOBODY} was refused: 550 5\\.1\\.10 .+ Fix: `));
    assert.deepEqual(
      info.relay365.recipients?.map((r) => [r.address, r.state]),
      [
        ['dora@example.net', 'accepted'],
        [NOBODY, 'refused'],
      ],
    );
    assert.deepEqual(received(info.messageId)?.envelope.rcptTo, ['dora@example.net']);

    // Every recipient refused: sendMail rejects, as nodemailer's SMTP transport does (EENVELOPE).
    await assert.rejects(t.sendMail({ from: MAILBOX, to: NOBODY, subject: 'nobody', text: 'x' }), (e: unknown) => {
      assert.ok(e instanceof Relay365TransportError, String(e));
      assert.equal(e.code, 'EENVELOPE');
      assert.equal(e.responseCode, 550);
      assert.deepEqual(e.rejected, [NOBODY]);
      assert.equal(e.relay365?.state, 'failed');
      assert.ok(e.relay365?.id);
      assert.match(e.message, /failed after 1 attempt\(s\): 550 5\.1\.10 .+ Fix: /);
      return true;
    });
  });

  it('rejects what admission refuses with the R365_ code, the SMTP reply and the fix, and queues nothing', async () => {
    const config = sandboxConfig(sandbox, join(dir.path, 'refusals'));
    // The suppression list lives in the outbox: add to it through the library on the same dataDir.
    const setup = await createRelay(config);
    await setup.relay.store.suppress({ address: 'gone@example.net', reason: '550 5.1.1 RESOLVER.ADR.RecipientNotFound', source: 'manual' });
    await setup.close();
    const t = nodemailer.createTransport(opened({ config }));
    const before = sandbox.state.messages.length;

    await assert.rejects(t.sendMail({ from: MAILBOX, to: 'gone@example.net', subject: 'x', text: 'y' }), (e: unknown) => {
      assert.ok(e instanceof Relay365TransportError, String(e));
      assert.equal(e.code, 'R365_SUPPRESSED');
      assert.match(e.response ?? '', /^550 5\.1\.1 /);
      assert.equal(e.responseCode, 550);
      assert.deepEqual(e.rejected, ['gone@example.net']);
      assert.match(e.message, /gone@example\.net/);
      return true;
    });
    await assert.rejects(
      t.sendMail({ from: 'someone@elsewhere.example', to: 'ann@example.net', subject: 'x', text: 'y' }),
      (e: unknown) => e instanceof Relay365TransportError && e.code === 'R365_NO_ROUTE_FOR_SENDER' && /^550 5\.7\.1 /.test(e.response ?? ''),
    );
    const reopened = await createRelay(config);
    try {
      assert.equal((await reopened.relay.store.counts()).queued, 0, 'nothing was queued');
    } finally {
      await reopened.close();
    }
    assert.equal(sandbox.state.messages.length, before);
    // relay365.ignoreSuppression reaches createRelay's send: the suppressed recipient is queued after all.
    const info = await t.sendMail({ from: MAILBOX, to: 'gone@example.net', subject: 'x', text: 'y', relay365: { ignoreSuppression: true } });
    assert.equal(info.relay365.state, 'queued');
    assert.deepEqual(info.accepted, ['gone@example.net']);
  });

  it("sendMail's relay365 option schedules and labels the message in the outbox as createRelay's send does: not sent before sendAt, sent after", async () => {
    const config = sandboxConfig(sandbox, join(dir.path, 'scheduled'));
    const t = nodemailer.createTransport(opened({ config }));
    const sendAt = new Date(Date.now() + 2_000);
    const info = await t.sendMail({
      from: MAILBOX,
      to: 'gil@example.net',
      subject: 'scheduled',
      text: 'later',
      relay365: { sendAt, tags: ['invoice', 'eu:west'], metadata: { orderId: '42', customer: 'c-7' } },
    });
    assert.equal(info.relay365.state, 'queued');
    assert.equal(info.response, `250 2.0.0 OK queued as ${info.relay365.id}`);
    assert.deepEqual(info.accepted, ['gil@example.net']);

    // Read back from the SQLite outbox itself, beside the transport's relay.
    const store = await openOutboxStore(config);
    try {
      const stored = await store.get(info.relay365.id!);
      assert.ok(stored, 'the outbox holds the message');
      assert.equal(stored.sendAt?.getTime(), sendAt.getTime());
      assert.deepEqual(stored.tags, ['invoice', 'eu:west']);
      assert.deepEqual(stored.metadata, { orderId: '42', customer: 'c-7' });
      assert.equal(stored.state, 'queued');
    } finally {
      await store.close();
    }

    // Not sent before sendAt: still absent at the sandbox shortly before it.
    await new Promise((r) => setTimeout(r, Math.max(0, sendAt.getTime() - Date.now() - 500)));
    assert.equal(received(info.messageId), undefined, 'not sent before sendAt');
    const got = await until(() => received(info.messageId), 15_000, 'the scheduled message at the sandbox');
    assert.ok(new Date(got.receivedAt).getTime() >= sendAt.getTime(), `received at ${got.receivedAt}, scheduled for ${sendAt.toISOString()}`);
    assert.deepEqual(got.envelope.rcptTo, ['gil@example.net']);
  });

  it("refuses a tag over the outbox's limits with createRelay's code and message, and a relay365 option it does not know; nothing is queued", async () => {
    const config = sandboxConfig(sandbox, join(dir.path, 'bad-labels'));
    const t = nodemailer.createTransport(opened({ config }));
    // The limits' own words (outbox/labels.ts), which createRelay's admission gives.
    const expected = ((): Error => {
      try {
        checkLabels(['has space'], undefined);
      } catch (err) {
        return err as Error;
      }
      throw new Error('checkLabels took a tag with a space');
    })();
    const sent = sandbox.state.messages.length;

    await assert.rejects(
      t.sendMail({ from: MAILBOX, to: 'hal@example.net', subject: 'x', text: 'y', relay365: { tags: ['ok', 'has space'] } }),
      (e: unknown) => {
        assert.ok(e instanceof Relay365TransportError, String(e));
        assert.equal(e.code, 'R365_MESSAGE_INVALID');
        assert.equal(e.message, expected.message);
        assert.equal(e.response, `550 5.6.0 Message labels refused: ${expected.message}`);
        assert.deepEqual(e.rejected, ['hal@example.net']);
        return true;
      },
    );
    // A misspelt key is not dropped: it would send at once, unscheduled.
    const misspelt = { sendat: new Date(Date.now() + 60_000) } as unknown as { sendAt: Date };
    await assert.rejects(
      t.sendMail({ from: MAILBOX, to: 'hal@example.net', subject: 'x', text: 'y', relay365: misspelt }),
      (e: unknown) => e instanceof Relay365TransportError && e.code === 'R365_MESSAGE_INVALID' && /"sendat", which relay365 does not know/.test(e.message),
    );
    // A string where the array belongs would be read letter by letter.
    await assert.rejects(
      t.sendMail({ from: MAILBOX, to: 'hal@example.net', subject: 'x', text: 'y', relay365: { tags: 'invoice' as unknown as string[] } }),
      (e: unknown) => e instanceof Relay365TransportError && e.code === 'R365_MESSAGE_INVALID' && /tags is not an array of strings/.test(e.message),
    );

    const store = await openOutboxStore(config);
    try {
      assert.equal((await store.counts()).queued, 0, 'nothing was queued');
    } finally {
      await store.close();
    }
    assert.equal(sandbox.state.messages.length, sent);
  });

  it("direct mode sends at once through createMailer and answers with Exchange's reply", async () => {
    const t = transporter('direct', { mode: 'direct' });
    const info = await t.sendMail({ from: MAILBOX, to: ['erin@example.net', NOBODY], subject: 'direct', text: 'now' });
    // Already at the sandbox when sendMail resolves: nothing was queued.
    const got = received(info.messageId);
    assert.ok(got, 'the sandbox has the message when sendMail resolves');
    assert.deepEqual(got.envelope.rcptTo, ['erin@example.net']);
    assert.match(info.response, /^250 2\.0\.0 OK/);
    assert.deepEqual(info.accepted, ['erin@example.net']);
    assert.deepEqual(info.rejected, [NOBODY]);
    assert.match(info.rejectedErrors[0]?.response ?? '', /^550 5\.1\.10 /);
    assert.equal(info.relay365.id, undefined);
    assert.equal(info.relay365.state, 'sent');
    assert.equal(info.relay365.mailbox, MAILBOX);

    await assert.rejects(t.sendMail({ from: MAILBOX, to: NOBODY, subject: 'x', text: 'y' }), (e: unknown) => {
      assert.ok(e instanceof Relay365TransportError, String(e));
      assert.equal(e.relay365?.state, 'failed');
      assert.deepEqual(e.rejected, [NOBODY]);
      assert.equal(e.responseCode, 550);
      assert.equal(e.code, 'EENVELOPE');
      assert.equal(e.command, 'RCPT');
      assert.match(e.message, /^Sending as .+ failed at RCPT: 550 5\.1\.10 .+ Fix: /);
      return true;
    });
  });

  it('direct mode refuses sendAt, tags and metadata, which need the outbox, and sends nothing', async () => {
    const t = transporter('direct-options', { mode: 'direct' });
    const sent = sandbox.state.messages.length;
    await assert.rejects(
      t.sendMail({ from: MAILBOX, to: 'ivy@example.net', subject: 'x', text: 'y', relay365: { sendAt: new Date(Date.now() + 60_000) } }),
      (e: unknown) => {
        assert.ok(e instanceof Relay365TransportError, String(e));
        assert.equal(e.code, 'R365_MESSAGE_INVALID');
        assert.match(
          e.message,
          /^relay365\.sendAt needs the outbox, and this transport is in direct mode \(mode: 'direct'\).+nothing was sent\. Use the default queued mode/,
        );
        assert.deepEqual(e.rejected, ['ivy@example.net']);
        return true;
      },
    );
    await assert.rejects(
      t.sendMail({ from: MAILBOX, to: 'ivy@example.net', subject: 'x', text: 'y', relay365: { tags: ['a'], metadata: { k: 'v' } } }),
      (e: unknown) =>
        e instanceof Relay365TransportError && e.code === 'R365_MESSAGE_INVALID' && /^relay365\.tags and relay365\.metadata need the outbox/.test(e.message),
    );
    assert.equal(sandbox.state.messages.length, sent, 'nothing reached the sandbox');
  });

  it('reads a relay365.yaml path; verify() starts the relay; close() closes it and later sends reject with R365_RELAY_CLOSED', async () => {
    const path = join(dir.path, 'relay365.yaml');
    await writeFile(
      path,
      stringify({
        dataDir: join(dir.path, 'from-yaml'),
        ...sandboxSettings(sandbox),
        auth: { flow: 'client-secret', tenant: DEFAULT_IDS.tenantId, clientId: DEFAULT_IDS.appClientId, clientSecret: 'env:APP_SECRET' },
        mailboxes: [{ address: MAILBOX }],
        smtp: { enabled: false },
        http: { enabled: false },
      }),
    );
    const transport = relay365Transport({ config: path, env: { ...process.env, APP_SECRET: DEFAULT_IDS.appSecret } });
    const t = nodemailer.createTransport(transport);
    assert.equal(await t.verify(), true);
    const info = await t.sendMail({ from: MAILBOX, to: 'fay@example.net', subject: 'from yaml', text: 'x' });
    assert.equal(info.relay365.state, 'queued');
    await transport.close();
    await assert.rejects(
      t.sendMail({ from: MAILBOX, to: 'fay@example.net', subject: 'late', text: 'x' }),
      (e: unknown) => (e as { code?: string }).code === 'R365_RELAY_CLOSED',
    );

    const missing = nodemailer.createTransport(opened({ config: join(dir.path, 'no-such.yaml') }));
    await assert.rejects(missing.verify(), (e: unknown) => (e as { code?: string }).code === 'R365_CONFIG_NOT_FOUND');
  });
});
