/**
 * `relay365/sandbox` (src/sandbox/public.ts), the entry users' own tests import: its config sends
 * through the library, what arrived is read back with envelope, headers and raw bytes, and staged
 * refusals reach the relay as Exchange's replies.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createMailer, createRelay, isRelay365Error, type QueuedRelay } from '../../src/index.js';
import { startSandbox, type TestSandbox } from '../../src/sandbox/public.js';
import { tempDir } from '../helpers/sandbox.js';

describe('relay365/sandbox: startSandbox for an app’s own tests', () => {
  let sandbox: TestSandbox;
  let dir: { path: string; cleanup: () => Promise<void> };
  let relay: QueuedRelay;

  before(async () => {
    sandbox = await startSandbox();
    dir = await tempDir();
    relay = await createRelay({ ...sandbox.config, dataDir: dir.path, log: { level: 'silent' } });
  });
  after(async () => {
    await relay?.close();
    await sandbox?.close();
    await dir?.cleanup();
  });

  it('its config sends through createRelay, and messages() gives the envelope, the unfolded headers and the exact bytes', async () => {
    const queued = await relay.send({ from: sandbox.mailbox, to: 'Ann@example.net', cc: 'carl@example.net', subject: 'Welcome aboard', text: 'Hello Ann' });
    assert.ok(queued.ok, JSON.stringify(queued));
    const done = await relay.outcome(queued.id, { timeoutMs: 30_000 });
    assert.equal(done.state, 'sent');
    const found = sandbox.messages({ to: 'ann@example.net', mailbox: 'RELAY@contoso.example' });
    assert.equal(found.length, 1);
    const [m] = found;
    assert.equal(m!.via, 'smtp');
    assert.equal(m!.mailbox, sandbox.mailbox);
    assert.deepEqual(m!.envelope, { mailFrom: sandbox.mailbox, rcptTo: ['Ann@example.net', 'carl@example.net'] });
    assert.equal(m!.subject, 'Welcome aboard');
    assert.deepEqual(m!.headers.subject, ['Welcome aboard']);
    assert.equal(m!.messageId, queued.messageId);
    assert.match(m!.raw.toString('utf8'), /\r\n\r\nHello Ann/);
    assert.match(m!.reply, /^250 2\.0\.0 OK /);
    assert.deepEqual(sandbox.messages({ to: 'nobody@example.net' }), []);
    assert.equal(sandbox.counters().smtpReplies['250 2.0.0'] !== undefined, true);
  });

  it('refuseRecipient makes Exchange refuse an address of the tenant at RCPT TO, and refuses an external one with the reason', async () => {
    const nobody = `nobody@${sandbox.tenantDomain}`;
    sandbox.refuseRecipient(nobody);
    const queued = await relay.send({ from: sandbox.mailbox, to: [nobody], subject: 'to no one', text: 'x' });
    assert.ok(queued.ok);
    const done = await relay.outcome(queued.id, { timeoutMs: 30_000 });
    assert.equal(done.state, 'failed');
    assert.equal(done.recipients[0]?.state, 'refused');
    assert.match(done.recipients[0]?.reply ?? '', /^550 5\.1\.10 /);
    assert.throws(
      () => sandbox.refuseRecipient('someone@example.net'),
      (err: unknown) => isRelay365Error(err) && err.code === 'R365_SCENARIO_INVALID' && /bounces it later by an NDR/.test(err.message),
    );
  });

  it('failSmtp stages a reply that the direct library reports as a failure with its explanation, until reset()', async () => {
    sandbox.failSmtp({ stage: 'mail', reply: '451 4.7.500 Server busy. Please try again later.', count: 1 });
    const mailer = await createMailer({ ...sandbox.config, dataDir: dir.path, log: { level: 'silent' } });
    try {
      const failed = await mailer.send({ from: sandbox.mailbox, to: 'dora@example.net', subject: 'busy', text: 'x' });
      assert.ok(!failed.ok, 'refused');
      assert.equal(failed.class, 'transient');
      assert.match(failed.reply ?? '', /^451 4\.7\.500 /);
      assert.ok(failed.explanation.cause.length > 0);
      // count: 1 — the next one goes.
      const sent = await mailer.send({ from: sandbox.mailbox, to: 'dora@example.net', subject: 'again', text: 'x' });
      assert.ok(sent.ok, JSON.stringify(sent));

      sandbox.failSmtp({ stage: 'data', reply: '554 5.6.0 Corrupt message content' });
      assert.equal((await mailer.send({ from: sandbox.mailbox, to: 'dora@example.net', subject: 'c', text: 'x' })).ok, false);
      sandbox.reset();
      assert.deepEqual(sandbox.messages(), []);
      assert.equal((await mailer.send({ from: sandbox.mailbox, to: 'dora@example.net', subject: 'd', text: 'x' })).ok, true);
      assert.equal(sandbox.messages().length, 1);
    } finally {
      await mailer.close();
    }
  });

  it('changeScenario checks the change as a scenario file is checked', () => {
    assert.throws(
      () => sandbox.changeScenario((s) => void (s.limits.messagesPerMinute = -1)),
      (err: unknown) => isRelay365Error(err) && err.code === 'R365_SCENARIO_INVALID',
    );
  });
});
