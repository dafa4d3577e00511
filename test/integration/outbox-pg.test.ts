import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { isRelay365Error } from '../../src/errors.js';
import { PG_MIGRATIONS, migrationLedgerStatements } from '../../src/outbox/pg-sql.js';
import { openPgStore, type ClaimResult, type MailboxLimits, type NewMessage, type PgOutboxStore } from '../../src/outbox/index.js';
import { outboxStoreContract } from '../contract/outbox-store.js';
import { freePort } from '../helpers/cli.js';
import { PG_URL, dropSchema, pgQuery, pgUnavailable, testSchema } from '../helpers/pg.js';

const unavailable = await pgUnavailable();
const MAILBOX = 'relay@contoso.example';
const STORE_MODULE = new URL('../../src/outbox/pg-store.ts', import.meta.url).href;

function message(recipients = 1, change: Partial<NewMessage> = {}): NewMessage {
  return {
    mailbox: MAILBOX,
    envelope: { from: 'app@contoso.example', to: Array.from({ length: recipients }, (_, i) => `r${i}@example.net`) },
    raw: Buffer.from('Subject: test\r\n\r\nbody\r\n'),
    source: { kind: 'smtp' },
    ...change,
  };
}

if (unavailable !== undefined) {
  describe('PostgreSQL outbox store', () => {
    it('needs a PostgreSQL server', (t) => t.skip(unavailable));
  });
} else {
  // A fresh schema per test, as the contract wants an empty store each time; `connect` opens a second
  // pool on it, as a second node would.
  outboxStoreContract('PostgreSQL', async () => {
    const schema = testSchema();
    return {
      store: await openPgStore(PG_URL, { schema, poolSize: 4 }),
      cleanup: () => dropSchema(schema),
      connect: () => openPgStore(PG_URL, { schema, poolSize: 4 }),
    };
  });

  describe('PostgreSQL outbox store: upgrading to per-recipient state (schema 5)', () => {
    it('gives the messages of a schema-1 database recipient rows from their envelopes: accepted if sent, refused with the last reply if failed, pending otherwise', async () => {
      const schema = testSchema();
      try {
        // A schema as the release before left it: version 1 only, with messages in it.
        const ledger = migrationLedgerStatements(schema, 'schema_migrations');
        await pgQuery(ledger.createSchema);
        await pgQuery(ledger.createMigrationsTable);
        await pgQuery(PG_MIGRATIONS.find((m) => m.version === 1)!.sql(schema));
        await pgQuery(ledger.recordMigration, [1, 'messages, attempts and sends', 0]);
        // Exchange's refusal of a message over the mailbox's size limit (as src/sandbox/exchange-replies.ts gives it, with its source).
        const tooBig = '552 5.3.4 Message size exceeds fixed maximum message size';
        const explanation = { id: 'smtp-552-5.3.4', class: 'permanent', cause: 'Too big.', fix: 'Send less.' };
        const rows = [
          { id: '01sent', to: ['a@example.net', 'b@example.net'], state: 'sent', reply: '250 2.0.0 OK', explanation: null, messageId: '<old-sent@contoso.example>' },
          { id: '02failed', to: ['c@example.net'], state: 'failed', reply: tooBig, explanation, messageId: null },
          { id: '03queued', to: ['d@example.net', 'e@example.net'], state: 'queued', reply: null, explanation: null, messageId: null },
          { id: '04sending', to: ['f@example.net'], state: 'sending', reply: null, explanation: null, messageId: null },
        ];
        for (const [i, r] of rows.entries()) {
          await pgQuery(
            `INSERT INTO ${schema}.messages (id, mailbox, envelope_from, envelope_to, recipients, size, message_id, source, state, created_at, updated_at,
               next_attempt_at, last_reply, last_explanation, raw)
             VALUES ($1, $2, 'app@contoso.example', $3::jsonb, $4, 10, $5, '{"kind":"smtp"}', $6, 1000, $7, 1000, $8, $9::jsonb, $10)`,
            [r.id, MAILBOX, JSON.stringify(r.to), r.to.length, r.messageId, r.state, 2000 + i, r.reply, r.explanation === null ? null : JSON.stringify(r.explanation), Buffer.from('x')],
          );
        }
        const store = await openPgStore(PG_URL, { schema, poolSize: 2 });
        try {
          const states = async (id: string): Promise<unknown[]> => (await store.recipients(id)).map((r) => [r.address, r.state, r.reply, r.updatedAt.getTime()]);
          assert.deepEqual(await states('01sent'), [
            ['a@example.net', 'accepted', undefined, 2000],
            ['b@example.net', 'accepted', undefined, 2000],
          ]);
          assert.deepEqual(await states('02failed'), [['c@example.net', 'refused', tooBig, 2001]]);
          assert.deepEqual((await store.recipients('02failed'))[0]?.explanation, explanation);
          assert.deepEqual(await states('03queued'), [
            ['d@example.net', 'pending', undefined, 2002],
            ['e@example.net', 'pending', undefined, 2002],
          ]);
          assert.deepEqual(await states('04sending'), [['f@example.net', 'pending', undefined, 2003]]);
          const report = { mailbox: MAILBOX, reportId: 'r', originalMessageId: '<old-sent@contoso.example>', recipient: 'B@example.net', action: 'failed' as const, status: '5.1.1', receivedAt: new Date(3000) };
          assert.deepEqual(await store.recordBounce(report), { matched: '01sent', duplicate: false });
          const versions = (await pgQuery<{ version: number }>(`SELECT version FROM ${schema}.schema_migrations ORDER BY version`)).map((r) => r.version);
          assert.deepEqual(versions, PG_MIGRATIONS.map((m) => m.version).sort((a, b) => a - b));
        } finally {
          await store.close();
        }
      } finally {
        await dropSchema(schema);
      }
    });
  });

  describe('PostgreSQL outbox store: schema and migrations', () => {
    const schema = testSchema();
    after(() => dropSchema(schema));

    it('creates its schema and migrates it once when three nodes start at the same moment', async () => {
      const stores = await Promise.all([1, 2, 3].map(() => openPgStore(PG_URL, { schema, poolSize: 2, migrate: false })));
      try {
        const reports = await Promise.all(stores.map((s) => s.applyMigrations()));
        const latest = Math.max(...PG_MIGRATIONS.map((m) => m.version));
        assert.deepEqual(
          reports.map((r) => r.applied).sort((a, b) => b.length - a.length),
          [PG_MIGRATIONS.map((m) => m.version), [], []],
          'one node applied every step, the two others waited for it and found nothing to do',
        );
        for (const r of reports) assert.equal(r.version, latest);
        const ledger = await pgQuery<{ version: number }>(`SELECT version FROM ${schema}.schema_migrations ORDER BY version`);
        assert.deepEqual(
          ledger.map((r) => r.version),
          PG_MIGRATIONS.map((m) => m.version),
        );
        // And again, all at once, through open(): nothing breaks and nothing is applied twice.
        const more = await Promise.all([1, 2, 3].map(() => openPgStore(PG_URL, { schema, poolSize: 2 })));
        for (const s of more) await s.close();
        const m = await stores[0]!.enqueue(message());
        assert.deepEqual(await stores[2]!.get(m.id), m);
      } finally {
        for (const s of stores) await s.close();
      }
    });

    it('keeps every table in its schema, and raw bytes as bytea', async () => {
      const tables = await pgQuery<{ table_schema: string; table_name: string }>(
        `SELECT table_schema, table_name FROM information_schema.tables WHERE table_name IN ('messages', 'attempts', 'sends', 'schema_migrations') AND table_schema LIKE 'relay365%' AND table_schema = $1 ORDER BY table_name`,
        [schema],
      );
      assert.deepEqual(
        tables.map((t) => t.table_name),
        ['attempts', 'messages', 'schema_migrations', 'sends'],
      );
      const [raw] = await pgQuery<{ data_type: string }>(
        `SELECT data_type FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'messages' AND column_name = 'raw'`,
        [schema],
      );
      assert.equal(raw?.data_type, 'bytea');
    });

    it('refuses a schema a newer relay365 migrated, naming the fix', async () => {
      const newer = testSchema();
      try {
        await (await openPgStore(PG_URL, { schema: newer })).close();
        await pgQuery(`INSERT INTO ${newer}.schema_migrations (version, description, applied_at) VALUES (999, 'from the future', 0)`);
        await assert.rejects(
          openPgStore(PG_URL, { schema: newer }),
          (err) => isRelay365Error(err, 'R365_SCHEMA_TOO_NEW') && /999/.test(err.message) && /newer/.test(err.message) && !err.retryable,
        );
      } finally {
        await dropSchema(newer);
      }
    });

    it('refuses a schema name that would need quoting', async () => {
      await assert.rejects(openPgStore(PG_URL, { schema: 'Relay365; DROP' }), (err) => isRelay365Error(err, 'R365_CONFIG_INVALID'));
    });
  });

  describe('PostgreSQL outbox store: when the server is away or wrong', () => {
    it('reports a server that does not answer as R365_OUTBOX_UNAVAILABLE, retryable, without the password', async () => {
      const url = `postgresql://relay:hunter2-secret@127.0.0.1:${await freePort()}/relay365`;
      await assert.rejects(openPgStore(url), (err) => {
        assert.ok(isRelay365Error(err, 'R365_OUTBOX_UNAVAILABLE'), String(err));
        assert.equal(err.retryable, true);
        assert.match(err.message, /cannot be reached/);
        assert.ok(!err.message.includes('hunter2-secret'), err.message);
        assert.ok(!JSON.stringify(err.details).includes('hunter2-secret'));
        return true;
      });
    });

    it('reports a database that does not exist as R365_OUTBOX_UNAVAILABLE, not retryable', async () => {
      const url = new URL(PG_URL);
      url.pathname = '/relay365_no_such_database';
      await assert.rejects(
        openPgStore(url.toString()),
        (err) => isRelay365Error(err, 'R365_OUTBOX_UNAVAILABLE') && !err.retryable && /does not exist/.test(err.message),
      );
    });

    it('keeps every message enqueue resolved when its process is killed at once (kill -9)', async () => {
      const schema = testSchema();
      await (await openPgStore(PG_URL, { schema })).close();
      try {
        // The child prints an id only after enqueue resolved; it is killed while it stores the next.
        const code = `
          const { openPgStore } = await import(${JSON.stringify(STORE_MODULE)});
          const store = await openPgStore(${JSON.stringify(PG_URL)}, { schema: ${JSON.stringify(schema)} });
          for (let i = 0; ; i++) {
            const m = await store.enqueue({ mailbox: ${JSON.stringify(MAILBOX)}, envelope: { from: 'a@contoso.example', to: ['b@example.net'] }, raw: Buffer.alloc(20_000, i % 256), source: { kind: 'cli' } });
            process.stdout.write(m.id + '\\n');
          }`;
        const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
        const answered: string[] = [];
        let buffered = '';
        await new Promise<void>((resolve, reject) => {
          child.on('error', reject);
          child.on('exit', () => resolve());
          child.stdout.on('data', (chunk: Buffer) => {
            buffered += chunk.toString('utf8');
            const lines = buffered.split('\n');
            buffered = lines.pop() ?? '';
            answered.push(...lines);
            if (answered.length >= 200 && child.exitCode === null) child.kill('SIGKILL');
          });
        });
        assert.equal(child.signalCode, 'SIGKILL');
        const stored = new Set((await pgQuery<{ id: string }>(`SELECT id FROM ${schema}.messages`)).map((r) => r.id));
        assert.deepEqual(
          answered.filter((id) => !stored.has(id)),
          [],
          'every answered message survived',
        );
      } finally {
        await dropSchema(schema);
      }
    });
  });

  describe('PostgreSQL outbox store: three nodes', () => {
    const schema = testSchema();
    let nodes: PgOutboxStore[] = [];
    before(async () => {
      nodes = await Promise.all(['a', 'b', 'c'].map(() => openPgStore(PG_URL, { schema, poolSize: 4 })));
    });
    after(async () => {
      for (const n of nodes) await n.close();
      await dropSchema(schema);
    });

    it('keeps one mailbox within its limits and never hands a message out twice while three nodes claim at once', async () => {
      // Tight limits, so that every one of them stops claims: 3 connections, 4 messages per 10 s,
      // 15 recipients per 60 s. Time is simulated: a round every 2 s, in which each node runs four
      // claims at once (twelve transactions racing), then completes what it got.
      const limits: MailboxLimits = { maxConnections: 3, messagesPerMinute: 4, recipientsPerDay: 15, minuteMs: 10_000, dayMs: 60_000 };
      const total = 30;
      for (let i = 0; i < total; i++) await nodes[i % 3]!.enqueue(message(1 + (i % 3)));
      const t0 = Date.now() + 60_000;
      const sends: Array<{ at: number; recipients: number }> = [];
      const seen = new Set<string>();
      const blockedBy = new Set<string>();
      for (let round = 0; seen.size < total; round++) {
        assert.ok(round < 400, `still ${total - seen.size} messages left after 400 rounds`);
        const at = t0 + round * 2_000;
        const results: ClaimResult[] = await Promise.all(
          nodes.flatMap((node, n) =>
            [0, 1, 2, 3].map(() => node.claim({ mailbox: MAILBOX, pools: [], owner: `node-${n}`, leaseMs: 1_500, limits, max: 10, now: new Date(at) })),
          ),
        );
        const claimed = results.flatMap((r) => r.messages);
        for (const r of results) if (r.blockedBy) blockedBy.add(r.blockedBy);
        assert.ok(claimed.length <= limits.maxConnections, `round ${round}: ${claimed.length} messages leased at once`);
        for (const m of claimed) {
          assert.ok(!seen.has(m.id), `${m.id} handed out twice`);
          seen.add(m.id);
          sends.push({ at, recipients: m.envelope.to.length });
          // Completed at the claim time, so relay365's windows and this test's are the same.
          const owner = m.leaseOwner!;
          const node = nodes[Number(owner.slice(-1))]!;
          assert.equal(
            await node.complete({
              id: m.id,
              owner,
              state: 'sent',
              attempt: { at: new Date(at), mailbox: MAILBOX, reply: '250 2.0.0 OK', class: 'sent', explanation: undefined, durationMs: 1, owner },
            }),
            true,
          );
        }
        const inMinute = sends.filter((s) => s.at > at - limits.minuteMs).length;
        const inDay = sends.filter((s) => s.at > at - limits.dayMs).reduce((sum, s) => sum + s.recipients, 0);
        assert.ok(inMinute <= limits.messagesPerMinute, `round ${round}: ${inMinute} messages in the minute window`);
        assert.ok(inDay <= limits.recipientsPerDay, `round ${round}: ${inDay} recipients in the day window`);
      }
      assert.equal(seen.size, total);
      assert.deepEqual([...blockedBy].sort(), ['connections', 'rate', 'recipients'], 'every limit stopped some claim');
      assert.equal((await nodes[1]!.counts()).sent, total);
    });

    it('shares pool messages among members on different nodes without handing one out twice', async () => {
      const pool = 'noreply@contoso.example';
      const members = ['m1@contoso.example', 'm2@contoso.example', 'm3@contoso.example'];
      const total = 300;
      for (let i = 0; i < total; i++) await nodes[i % 3]!.enqueue(message(1, { mailbox: undefined, pool }));
      const wide: MailboxLimits = { maxConnections: 1_000, messagesPerMinute: 1_000, recipientsPerDay: 100_000, minuteMs: 60_000, dayMs: 86_400_000 };
      const got = await Promise.all(
        members.map(async (member, n) => {
          const ids: string[] = [];
          for (;;) {
            const { messages } = await nodes[n]!.claim({ mailbox: member, pools: [pool], owner: `node-${n}`, leaseMs: 600_000, limits: wide, max: 7 });
            if (messages.length === 0) return ids;
            ids.push(...messages.map((m) => m.id));
          }
        }),
      );
      const all = got.flat();
      assert.equal(new Set(all).size, all.length, 'no message leased twice');
      assert.equal(all.length, total);
      assert.ok(got.filter((ids) => ids.length > 0).length >= 2, `the members shared the work: ${got.map((g) => g.length).join(', ')}`);
    });
  });
}
