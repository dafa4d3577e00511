/**
 * The library's queued path (`createRelay`): a send is on disk before it resolves, leaves through the
 * worker to the sandbox's Exchange, runs the admission checks every door runs, and a message queued
 * while Microsoft cannot be reached is sent by the next relay on the same dataDir.
 */
import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { createRelay, type QueuedRelay } from '../../src/index.js';
import { DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';
import { sandboxConfig } from '../helpers/config.js';
import { startTestSandbox, tempDir } from '../helpers/sandbox.js';

const MAILBOX = DEFAULT_IDS.mailbox;

/** A port with nothing listening on it (bound, then closed). */
async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

/** The outbox row of `id`, read from the SQLite file by a connection of its own. */
function rowOnDisk(dataDir: string, id: string): { state: string } | undefined {
  const db = new Database(join(dataDir, 'relay365.db'), { readonly: true, fileMustExist: true });
  try {
    return db.prepare('SELECT state FROM messages WHERE id = ?').get(id) as { state: string } | undefined;
  } finally {
    db.close();
  }
}

describe('createRelay: the library queues through the outbox', () => {
  let sandbox: Sandbox & { dir: string };
  let dir: { path: string; cleanup: () => Promise<void> };
  let relay: QueuedRelay;

  before(async () => {
    sandbox = await startTestSandbox();
    dir = await tempDir();
    relay = await createRelay(sandboxConfig(sandbox, dir.path, { mailboxes: [{ address: MAILBOX }] }));
  });
  after(async () => {
    await relay?.close();
    await sandbox?.close();
    await dir?.cleanup();
  });

  it('resolves with the id once the message is on disk; outcome() waits for Exchange and lists the recipients', async () => {
    const queued = await relay.send({ from: MAILBOX, to: ['ann@example.net', 'bob@example.net'], subject: 'queued', text: 'through the outbox' });
    assert.equal(queued.ok, true, JSON.stringify(queued));
    if (!queued.ok) return;
    assert.equal(queued.state, 'queued');
    assert.equal(queued.mailbox, MAILBOX);
    assert.match(queued.messageId ?? '', /^<.+@.+>$/);
    // On disk before anything else is asked: another connection to the file sees it.
    assert.ok(rowOnDisk(dir.path, queued.id), 'the outbox row is committed when send() resolves');

    const done = await relay.outcome(queued.id, { timeoutMs: 30_000 });
    assert.equal(done.state, 'sent');
    assert.match(done.lastReply ?? '', /^250 2\.0\.0 OK/);
    assert.deepEqual(done.recipients.map((r) => [r.address, r.state]).sort(), [
      ['ann@example.net', 'accepted'],
      ['bob@example.net', 'accepted'],
    ]);
    const got = sandbox.state.messages.find((m) => m.raw.toString('utf8').includes(queued.messageId!));
    assert.ok(got, 'the sandbox received the message');
    assert.equal(got.mailbox, MAILBOX);
    assert.deepEqual([...got.envelope.rcptTo].sort(), ['ann@example.net', 'bob@example.net']);
    assert.equal(got.raw.toString('utf8').includes('Subject: queued'), true);
  });

  it('refuses what every door refuses, with the same code, and queues nothing', async () => {
    await relay.relay.store.suppress({ address: 'gone@example.net', reason: '550 5.1.1 RESOLVER.ADR.RecipientNotFound', source: 'manual' });
    const before = (await relay.relay.store.counts()).queued;
    const suppressed = await relay.send({ from: MAILBOX, to: 'gone@example.net', subject: 'x', text: 'y' });
    assert.equal(suppressed.ok, false);
    if (suppressed.ok) return;
    assert.equal(suppressed.code, 'R365_SUPPRESSED');
    assert.match(suppressed.message, /gone@example\.net/);
    assert.match(suppressed.reply, /^550 5\.1\.1 /);

    const foreign = await relay.send({ from: 'someone@elsewhere.example', to: 'ann@example.net', subject: 'x', text: 'y' });
    assert.equal(foreign.ok, false);
    if (!foreign.ok) assert.equal(foreign.code, 'R365_NO_ROUTE_FOR_SENDER');
    assert.equal((await relay.relay.store.counts()).queued, before, 'nothing was queued');

    const overridden = await relay.send({ from: MAILBOX, to: 'gone@example.net', subject: 'x', text: 'y' }, { ignoreSuppression: true });
    assert.equal(overridden.ok, true, JSON.stringify(overridden));
  });

  it('keeps tags, metadata and a scheduled time, holds the message until then, and cancel() stops it', async () => {
    const sendAt = new Date(Date.now() + 3_600_000);
    const seen: string[] = [];
    const unsubscribe = relay.subscribe((event) => void ('id' in event && seen.push(`${event.type} ${event.id}`)));
    const queued = await relay.send(
      { from: MAILBOX, to: 'later@example.net', subject: 'Later', text: 'x' },
      { sendAt, tags: ['digest'], metadata: { user: 'u-7' } },
    );
    assert.ok(queued.ok, JSON.stringify(queued));
    const status = (await relay.status(queued.id))!;
    assert.deepEqual([status.state, status.tags, status.metadata, status.sendAt?.getTime()], ['queued', ['digest'], { user: 'u-7' }, sendAt.getTime()]);
    assert.equal(await relay.cancel(queued.id), true);
    assert.equal((await relay.outcome(queued.id, { timeoutMs: 5_000 })).state, 'cancelled');
    assert.ok(!sandbox.state.messages.some((m) => m.envelope.rcptTo.includes('later@example.net')), 'it never left');
    assert.equal(await relay.cancel(queued.id), false, 'a cancelled message is not cancelled twice');
    unsubscribe();
    assert.deepEqual(
      seen.filter((e) => e.endsWith(queued.id)),
      [`message.queued ${queued.id}`],
      'subscribe() saw the message queued (a cancel by the store raises no event)',
    );

    const refused = await relay.send({ from: MAILBOX, to: 'a@example.net', subject: 'x', text: 'x' }, { tags: ['has space'] });
    assert.equal(refused.ok, false);
    assert.ok(!refused.ok && refused.code === 'R365_MESSAGE_INVALID' && /tag/.test(refused.message), JSON.stringify(refused));
    // The HTTP API's 30-day limit holds for the library too (admission's), and a time that is none is refused.
    const before = (await relay.relay.store.counts()).queued ?? 0;
    const tooFar = await relay.send({ from: MAILBOX, to: 'a@example.net', subject: 'x', text: 'x' }, { sendAt: new Date(Date.now() + 31 * 86_400_000) });
    assert.ok(!tooFar.ok && tooFar.code === 'R365_MESSAGE_INVALID', JSON.stringify(tooFar));
    assert.match(tooFar.ok ? '' : tooFar.message, /^sendAt is 31 days ahead; a message can be scheduled at most 30 days ahead\.$/);
    const notATime = await relay.send({ from: MAILBOX, to: 'a@example.net', subject: 'x', text: 'x' }, { sendAt: new Date('soon') });
    assert.ok(!notATime.ok && notATime.message === 'sendAt is not a valid time.', JSON.stringify(notATime));
    assert.equal((await relay.relay.store.counts()).queued ?? 0, before, 'nothing queued');
  });

  it('outcome() of an unknown id rejects with R365_MESSAGE_NOT_FOUND', async () => {
    await assert.rejects(relay.outcome('no-such-id', { timeoutMs: 2000 }), (err: Error & { code?: string }) => err.code === 'R365_MESSAGE_NOT_FOUND');
  });
});

describe('createRelay: a queued message outlives the relay that took it', () => {
  it('is sent by the next relay on the same dataDir after Microsoft could not be reached', async () => {
    const sandbox = await startTestSandbox();
    const dir = await tempDir();
    try {
      const good = sandboxConfig(sandbox, dir.path, { mailboxes: [{ address: MAILBOX }] });
      // The first relay's Exchange is a port nobody listens on: the message waits, deferred.
      const first = await createRelay({ ...good, sandbox: { ...good.sandbox, smtpPort: await deadPort() } });
      const queued = await first.send({ from: MAILBOX, to: 'carol@example.net', subject: 'survives', text: 'across a restart' });
      assert.equal(queued.ok, true, JSON.stringify(queued));
      if (!queued.ok) return;
      await assert.rejects(first.outcome(queued.id, { timeoutMs: 1500 }), (err: Error & { code?: string }) => err.code === 'R365_OUTCOME_TIMEOUT');
      const waiting = await first.status(queued.id);
      assert.ok(waiting && ['queued', 'sending', 'deferred'].includes(waiting.state), JSON.stringify(waiting));
      await first.close();
      await assert.rejects(
        first.send({ from: MAILBOX, to: 'carol@example.net', subject: 'late', text: 'x' }),
        (err: Error & { code?: string }) => err.code === 'R365_RELAY_CLOSED',
      );
      assert.equal(sandbox.state.messages.length, 0);

      const second = await createRelay(good);
      try {
        await second.relay.store.retry(queued.id).catch(() => false); // a deferred message is due at its next attempt; ask for it now
        const done = await second.outcome(queued.id, { timeoutMs: 30_000 });
        assert.equal(done.state, 'sent', JSON.stringify(done));
        assert.equal(sandbox.state.messages.filter((m) => m.raw.toString('utf8').includes(queued.messageId!)).length, 1);
      } finally {
        await second.close();
      }
    } finally {
      await sandbox.close();
      await dir.cleanup();
    }
  });
});
