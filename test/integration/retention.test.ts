import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { composeMessage } from '../../src/delivery/index.js';
import { isRelay365Error } from '../../src/errors.js';
import {
  RetentionSweeper,
  bodyCipher,
  openPgStore,
  openSqliteStore,
  type BodyCipher,
  type MailboxLimits,
  type NewMessage,
  type OutboxStore,
} from '../../src/outbox/index.js';
import { startRelay } from '../../src/runtime/index.js';
import { DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';
import { sandboxConfig } from '../helpers/config.js';
import { PG_URL, dropSchema, pgQuery, pgUnavailable, testSchema } from '../helpers/pg.js';
import { startTestSandbox, tempDir } from '../helpers/sandbox.js';

const MAILBOX = 'relay@contoso.example';
const DAY = 86_400_000;
const WIDE: MailboxLimits = { messagesPerMinute: 1000, recipientsPerDay: 100_000, maxConnections: 100, minuteMs: 60_000, dayMs: DAY };

function message(text: string, recipients = ['a@example.net', 'b@example.net']): NewMessage {
  return {
    mailbox: MAILBOX,
    envelope: { from: 'app@contoso.example', to: recipients },
    raw: Buffer.from(`Subject: ${text}\r\n\r\n${text}\r\n`),
    source: { kind: 'library' },
  };
}

/** Sends `id` (claim + complete as the worker does), with one attempt and the recipients accepted. */
async function finish(store: OutboxStore, id: string, state: 'sent' | 'failed'): Promise<void> {
  const claimed = await store.claim({ mailbox: MAILBOX, pools: [], owner: 'node-a', leaseMs: 30_000, limits: WIDE, max: 100, now: new Date(Date.now() + 1000) });
  assert.ok(claimed.messages.some((m) => m.id === id), 'the message was claimed');
  const ok = await store.complete({
    id,
    owner: 'node-a',
    state,
    attempt: attempt(state === 'sent' ? '250 2.0.0 OK' : '550 5.7.1 refused'),
    recipients: [
      { address: 'a@example.net', state: state === 'sent' ? 'accepted' : 'refused' },
      { address: 'b@example.net', state: state === 'sent' ? 'accepted' : 'refused' },
    ],
  });
  assert.equal(ok, true);
}

function attempt(reply = '250 2.0.0 OK') {
  return { at: new Date(), mailbox: MAILBOX, reply, class: reply.startsWith('2') ? ('sent' as const) : ('permanent' as const), explanation: undefined, durationMs: 5, owner: 'node-a' };
}

/** The same behaviour on both stores: each opens a fresh store, with the given cipher. */
function retentionSuite(name: string, open: (cipher?: BodyCipher) => Promise<{ store: OutboxStore; reopen: (cipher?: BodyCipher) => Promise<OutboxStore>; cleanup: (secret?: string) => Promise<void> }>) {
  describe(`${name}: retention and purge`, () => {
    it('deletes the content of messages finished past retention.bodies and keeps the message, its attempts and recipients; then the records past retention.records', async () => {
      const { store, cleanup } = await open();
      try {
        const sent = await store.enqueue(message('sent one'));
        await finish(store, sent.id, 'sent');
        const failed = await store.enqueue(message('failed one'));
        await finish(store, failed.id, 'failed');
        const cancelled = await store.enqueue(message('cancelled one'));
        assert.equal(await store.cancel(cancelled.id), true);
        // Enqueued last, so no claim above took it: it waits, and retention never touches a message not finished.
        const waiting = await store.enqueue({ ...message('still queued'), notBefore: new Date(Date.now() + 365 * DAY) });

        const sweeper = (days: number) => new RetentionSweeper({ store, retention: { bodies: '7d', records: '90d' }, now: () => Date.now() + days * DAY, batch: 2 });
        assert.deepEqual(await sweeper(6).sweep(), { bodies: 0, records: 0 }, 'nothing is 7 days old yet');
        assert.deepEqual(await sweeper(8).sweep(), { bodies: 3, records: 0 }, 'three finished bodies, in batches of 2');
        for (const m of [sent, failed, cancelled]) assert.equal(await store.getRaw(m.id), undefined, `${m.id}'s content is gone`);
        assert.equal((await store.getRaw(waiting.id))?.toString(), 'Subject: still queued\r\n\r\nstill queued\r\n', 'a waiting message keeps its content');
        assert.equal((await store.get(sent.id))?.state, 'sent', 'the message stays');
        assert.equal((await store.attempts(sent.id)).length, 1, 'with its attempt');
        assert.deepEqual(
          (await store.recipients(sent.id)).map((r) => [r.address, r.state]),
          [
            ['a@example.net', 'accepted'],
            ['b@example.net', 'accepted'],
          ],
          'and its recipients',
        );
        assert.equal((await store.get(failed.id))?.lastReply, '550 5.7.1 refused');
        assert.equal(await store.retry(failed.id), false, 'a failed message without content cannot be retried');
        assert.deepEqual(await sweeper(8).sweep(), { bodies: 0, records: 0 }, 'a second sweep finds nothing more');

        assert.deepEqual(await sweeper(91).sweep(), { bodies: 0, records: 3 });
        for (const m of [sent, failed, cancelled]) assert.equal(await store.get(m.id), undefined, `${m.id} is gone`);
        assert.deepEqual(await store.recipients(sent.id), []);
        assert.equal((await store.get(waiting.id))?.state, 'queued', 'the waiting message is still there');
        assert.deepEqual(await new RetentionSweeper({ store, retention: { bodies: 'off', records: 'off' }, now: () => Date.now() + 9999 * DAY }).sweep(), {
          bodies: 0,
          records: 0,
        });
      } finally {
        await cleanup();
      }
    });

    it('purges by state and date, counts first with dryRun, and deletes only content with bodiesOnly', async () => {
      const { store, cleanup } = await open();
      try {
        const sent = await store.enqueue(message('sent'));
        await finish(store, sent.id, 'sent');
        const cancelled = await store.enqueue(message('cancelled'));
        await store.cancel(cancelled.id);
        const later = new Date(Date.now() + 1000);
        assert.deepEqual(await store.purge({ before: new Date(Date.now() - DAY), bodiesOnly: false, dryRun: true }), { count: 0 }, 'none finished a day ago');
        assert.deepEqual(await store.purge({ before: later, states: ['cancelled'], bodiesOnly: true, dryRun: true }), { count: 1 });
        assert.ok(await store.getRaw(cancelled.id), 'dryRun deletes nothing');
        assert.deepEqual(await store.purge({ before: later, states: ['cancelled'], bodiesOnly: true }), { count: 1 });
        assert.equal(await store.getRaw(cancelled.id), undefined);
        assert.ok(await store.getRaw(sent.id), 'a sent message is not in --state cancelled');
        assert.deepEqual(await store.purge({ before: later, states: ['cancelled'], bodiesOnly: true, dryRun: true }), { count: 0 }, 'its content is already gone');
        assert.deepEqual(await store.purge({ before: later, bodiesOnly: false }), { count: 2 });
        assert.equal(await store.get(sent.id), undefined);
        assert.equal(await store.get(cancelled.id), undefined);
      } finally {
        await cleanup();
      }
    });

    it('encrypts new bodies with queue.encryptBodies, reads them back intact with the key, plain ones too, and refuses without the key', async () => {
      const key = randomBytes(32);
      const { store, reopen, cleanup } = await open(bodyCipher(key, { encrypt: false }));
      try {
        const plain = await store.enqueue(message('stored before encryption was on'));
        await store.close();
        const encrypting = await reopen(bodyCipher(key, { encrypt: true }));
        const secret = `confidential-${randomBytes(8).toString('hex')}`;
        const raw = Buffer.concat([Buffer.from(`Subject: ${secret}\r\n\r\n`), randomBytes(3 * 1024 * 1024), Buffer.from(`\r\n${secret}\r\n`)]);
        const sealed = await encrypting.enqueue({ ...message(secret), raw });
        assert.equal(sealed.size, raw.length, 'the size is the message’s own');
        assert.deepEqual(await encrypting.getRaw(sealed.id), raw, 'read back intact');
        assert.equal((await encrypting.getRaw(plain.id))?.toString(), 'Subject: stored before encryption was on\r\n\r\nstored before encryption was on\r\n');
        await encrypting.close();
        const off = await reopen(bodyCipher(key, { encrypt: false }));
        assert.deepEqual(await off.getRaw(sealed.id), raw, 'readable after encryptBodies is turned off');
        await off.close();
        const otherKey = await reopen(bodyCipher(randomBytes(32), { encrypt: false }));
        await assert.rejects(otherKey.getRaw(sealed.id), (err) => isRelay365Error(err, 'R365_OUTBOX_UNAVAILABLE') && /RELAY365_SECRET_KEY/.test(err.message));
        await otherKey.close();
        const noKey = await reopen();
        await assert.rejects(noKey.getRaw(sealed.id), (err) => isRelay365Error(err, 'R365_OUTBOX_UNAVAILABLE') && /encrypted/.test(err.message));
        await noKey.close();
        await cleanup(secret);
      } finally {
        await cleanup();
      }
    });
  });
}

retentionSuite('SQLite', async (cipher) => {
  const dir = await tempDir();
  const path = join(dir.path, 'relay365.db');
  let current: OutboxStore | undefined;
  const reopen = async (c?: BodyCipher) => (current = await openSqliteStore(path, c ? { bodies: c } : {}));
  const store = await reopen(cipher);
  return {
    store,
    reopen,
    cleanup: async (secret?: string) => {
      await current?.close().catch(() => undefined);
      if (secret !== undefined) {
        // The database file and its log, byte for byte: the marker is nowhere in clear.
        for (const f of await readdir(dir.path)) {
          const bytes = await readFile(join(dir.path, f));
          assert.equal(bytes.includes(Buffer.from(secret)), false, `${f} holds the message in clear`);
        }
        return;
      }
      await dir.cleanup();
    },
  };
});

const unavailable = await pgUnavailable();
if (unavailable !== undefined) {
  describe('PostgreSQL: retention and purge', () => {
    it('needs a PostgreSQL server', (t) => t.skip(unavailable));
  });
} else {
  const schemas: string[] = [];
  after(async () => {
    for (const s of schemas) await dropSchema(s);
  });
  retentionSuite('PostgreSQL', async (cipher) => {
    const schema = testSchema();
    schemas.push(schema);
    let current: OutboxStore | undefined;
    const reopen = async (c?: BodyCipher) => (current = await openPgStore(PG_URL, { schema, poolSize: 2, ...(c ? { bodies: c } : {}) }));
    const store = await reopen(cipher);
    return {
      store,
      reopen,
      cleanup: async (secret?: string) => {
        if (secret !== undefined) {
          const rows = await pgQuery<{ n: number }>(`SELECT count(*)::int AS n FROM ${schema}.messages WHERE position(convert_to($1, 'UTF8') in raw) > 0`, [secret]);
          assert.equal(rows[0]?.n, 0, 'no stored body holds the message in clear');
          const sealed = await pgQuery<{ n: number }>(`SELECT count(*)::int AS n FROM ${schema}.messages WHERE body_encrypted`);
          assert.equal(sealed[0]?.n, 1);
          return;
        }
        await current?.close().catch(() => undefined);
      },
    };
  });

  describe('PostgreSQL: two nodes sweeping at once', () => {
    const schema = testSchema();
    after(() => dropSchema(schema));
    it('delete each finished body once between them, and none twice', async () => {
      const a = await openPgStore(PG_URL, { schema, poolSize: 4 });
      const b = await openPgStore(PG_URL, { schema, poolSize: 4 });
      try {
        const ids: string[] = [];
        for (let i = 0; i < 60; i++) {
          const m = await a.enqueue(message(`m${i}`));
          await a.cancel(m.id);
          ids.push(m.id);
        }
        const sweep = (store: OutboxStore) => new RetentionSweeper({ store, retention: { bodies: '1d', records: '90d' }, now: () => Date.now() + 2 * DAY, batch: 5 }).sweep();
        const [x, y] = await Promise.all([sweep(a), sweep(b)]);
        assert.equal(x.bodies + y.bodies, 60, `every body deleted once (${x.bodies} + ${y.bodies})`);
        const left = await pgQuery<{ n: number }>(`SELECT count(*)::int AS n FROM ${schema}.messages WHERE body_deleted_at IS NULL`);
        assert.equal(left[0]?.n, 0);
      } finally {
        await a.close();
        await b.close();
      }
    });
  });
}

describe('queue.encryptBodies through the relay', () => {
  let sandbox: Sandbox & { dir: string };
  before(async () => {
    sandbox = await startTestSandbox();
  });
  after(() => sandbox.close());

  it('stores the body encrypted (not in the SQLite file in clear) and Exchange receives it byte for byte', async () => {
    const dir = await tempDir();
    try {
      const relay = await startRelay(sandboxConfig(sandbox, dir.path, { queue: { encryptBodies: true } }));
      const secret = `payroll-${randomBytes(8).toString('hex')}`;
      const m = await composeMessage({ from: DEFAULT_IDS.mailbox, to: 'r@example.net', subject: secret, text: `${secret}\n`.repeat(200) });
      let stored;
      try {
        stored = await relay.enqueue({ mailbox: DEFAULT_IDS.mailbox, envelope: m.envelope, raw: m.raw, source: { kind: 'library' } });
        const end = Date.now() + 20_000;
        while ((await relay.store.get(stored.id))?.state !== 'sent') {
          if (Date.now() > end) throw new Error('not sent');
          await new Promise((r) => setTimeout(r, 50));
        }
      } finally {
        await relay.close();
      }
      const received = sandbox.state.messages.find((r) => r.raw.includes(Buffer.from(secret)));
      assert.ok(received, 'Exchange received it');
      assert.ok(received.raw.includes(m.raw.subarray(m.raw.indexOf('\r\n\r\n'))), 'the body arrived intact');
      for (const f of (await readdir(dir.path)).filter((f) => f.startsWith('relay365.db'))) {
        assert.equal((await readFile(join(dir.path, f))).includes(Buffer.from(secret)), false, `${f} holds the message in clear`);
      }
    } finally {
      await dir.cleanup();
    }
  });
});

describe('relay365 queue purge', () => {
  /** Runs `relay365 queue <args>` in-process and returns what it printed. */
  async function queue(args: string[]): Promise<string> {
    const { queueCommand } = await import('../../src/cli/commands/queue.js');
    const printed: string[] = [];
    const log = console.log;
    console.log = (...parts: unknown[]) => void printed.push(parts.join(' '));
    try {
      await queueCommand().exitOverride().parseAsync(args, { from: 'user' });
    } finally {
      console.log = log;
    }
    return printed.join('\n');
  }

  it('counts without --yes, deletes with it, by state and age, and only the content with --bodies-only', async () => {
    const dir = await tempDir();
    try {
      const file = join(dir.path, 'relay365.yaml');
      const { writeFile } = await import('node:fs/promises');
      await writeFile(file, `dataDir: ${dir.path}\nlog: { level: silent }\n`);
      const store = await openSqliteStore(join(dir.path, 'relay365.db'));
      const sent = await store.enqueue(message('sent'));
      await finish(store, sent.id, 'sent');
      const cancelled = await store.enqueue(message('cancelled'));
      await store.cancel(cancelled.id);
      const waiting = await store.enqueue(message('waiting'));
      await store.close();

      assert.match(await queue(['purge', '--config', file, '--before', '1d']), /Would delete the 0 /);
      const dry = JSON.parse(await queue(['purge', '--config', file, '--before', new Date(Date.now() + 60_000).toISOString(), '--json'])) as { dryRun: boolean; count: number };
      assert.deepEqual([dry.dryRun, dry.count], [true, 2]);
      assert.match(await queue(['purge', '--config', file, '--state', 'cancelled', '--bodies-only', '--yes']), /Deleted the content of 1 cancelled message/);
      assert.match(await queue(['purge', '--config', file, '--yes']), /Deleted the 2 sent\/failed\/cancelled message/);
      await assert.rejects(queue(['purge', '--config', file, '--state', 'queued']), (err) => isRelay365Error(err, 'R365_CLI_OPTION_INVALID'));

      const after = await openSqliteStore(join(dir.path, 'relay365.db'));
      try {
        assert.equal(await after.get(sent.id), undefined);
        assert.equal(await after.get(cancelled.id), undefined);
        assert.equal((await after.get(waiting.id))?.state, 'queued', 'a message not finished is never purged');
        assert.ok(await after.getRaw(waiting.id));
      } finally {
        await after.close();
      }
    } finally {
      await dir.cleanup();
    }
  });
});
