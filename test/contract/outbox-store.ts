/**
 * The outbox store contract: what every `OutboxStore` (SQLite, PostgreSQL) must do, tested only
 * through the interface. A store's test file calls {@link outboxStoreContract} with a factory that
 * opens a fresh, empty, migrated store.
 *
 * Times are explicit (`now`, `notBefore`, `attempt.at`) and placed a minute ahead of the wall clock,
 * so every message enqueued during a test is already due and no test sleeps.
 */
import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { Explanation } from '../../src/catalogue/index.js';
import { isRelay365Error } from '../../src/errors.js';
import {
  MESSAGE_STATES,
  type Attempt,
  type ClaimRequest,
  type MailboxLimits,
  type NewMessage,
  type OutboxStore,
  type StoredMessage,
} from '../../src/outbox/index.js';

/** What the factory hands the suite. */
export interface OpenedStore {
  /** A fresh, empty, migrated store. */
  store: OutboxStore;
  /** Removes what the factory made (files, schemas); the suite closes every store before calling it. */
  cleanup: () => Promise<void>;
  /**
   * Another, independent connection to the same database, as a second process would open it. Tests
   * of durability across a reopen and of claims from two processes are skipped without it.
   */
  connect?: () => Promise<OutboxStore>;
}

const MAILBOX = 'relay@contoso.example';
const OTHER = 'other@contoso.example';
const POOL = 'noreply@contoso.example';

/** Limits so wide they never stop a claim; tests narrow the one they are about. */
const WIDE: MailboxLimits = { messagesPerMinute: 100_000, recipientsPerDay: 1_000_000, maxConnections: 100_000, minuteMs: 60_000, dayMs: 86_400_000 };

function message(change: Partial<NewMessage> = {}): NewMessage {
  return {
    mailbox: MAILBOX,
    envelope: { from: 'app@contoso.example', to: ['someone@example.net'] },
    raw: Buffer.from('From: app@contoso.example\r\nTo: someone@example.net\r\nSubject: test\r\n\r\nbody\r\n'),
    source: { kind: 'smtp', client: '192.0.2.10', user: 'printer' },
    ...change,
  };
}

function pooled(change: Partial<NewMessage> = {}): NewMessage {
  return message({ mailbox: undefined, pool: POOL, ...change });
}

function attempt(change: Partial<Attempt> = {}): Attempt {
  return { at: new Date(), mailbox: MAILBOX, reply: '250 2.0.0 OK', class: 'sent', explanation: undefined, durationMs: 120, owner: 'node-a', ...change };
}

/** What a test gets besides its store. */
interface Helpers {
  /** Whether `second()` works. */
  twoConnections: boolean;
  /** Opens another connection to the same database; the suite closes it. */
  second: () => Promise<OutboxStore>;
  /** Closes the test's first store (the suite then leaves it closed). */
  closeFirst: () => Promise<void>;
}

const ids = (messages: readonly StoredMessage[]): string[] => messages.map((m) => m.id);

/**
 * Registers the contract's `describe` blocks for one store implementation.
 *
 * @param name - shown in every test name, e.g. `'SQLite'`.
 * @param open - opens a fresh, empty, migrated store for one test.
 */
export function outboxStoreContract(name: string, open: () => Promise<OpenedStore>): void {
  /** Runs one test against a fresh store, then closes it (and any second connection) and cleans up. */
  const withStore =
    (test: (store: OutboxStore, t: TestContext, helpers: Helpers) => Promise<void>) =>
    async (t: TestContext): Promise<void> => {
      const opened = await open();
      const stores = [opened.store];
      let mainClosed = false;
      const connect = opened.connect;
      const helpers: Helpers = {
        twoConnections: connect !== undefined,
        second: async () => {
          if (connect === undefined) throw new Error('the factory gives no second connection');
          const store = await connect();
          stores.push(store);
          return store;
        },
        closeFirst: async () => {
          mainClosed = true;
          await opened.store.close();
        },
      };
      try {
        await test(opened.store, t, helpers);
      } finally {
        for (const store of stores.slice(1)) await store.close();
        if (!mainClosed) await opened.store.close();
        await opened.cleanup();
      }
    };

  /** A minute ahead of the wall clock: every message enqueued during the test is due by then. */
  const later = (): number => Date.now() + 60_000;

  const claimOf =
    (t0: number) =>
    (change: Partial<ClaimRequest> & { at?: number } = {}): ClaimRequest => {
      const { at, ...rest } = change;
      return { mailbox: MAILBOX, pools: [], owner: 'node-a', leaseMs: 30_000, limits: WIDE, max: 100, now: new Date(at ?? t0), ...rest };
    };

  describe(`${name} outbox store: storing messages`, () => {
    it(
      'returns a message exactly as it was enqueued: raw bytes, envelope, source, Message-ID, state queued',
      withStore(async (store) => {
        const raw = Buffer.concat([
          Buffer.from('Subject: =?UTF-8?B?R3LDvMOfZQ==?=\r\n\r\n'),
          Buffer.from(Array.from({ length: 4096 }, (_, i) => i % 256)),
          Buffer.from('\r\n.\r\n'),
        ]);
        const before = Date.now();
        const stored = await store.enqueue(
          message({
            raw,
            envelope: { from: 'app@contoso.example', to: ['zoë@example.net', 'b@example.net', 'c@example.net'] },
            messageId: '<abc.123@contoso.example>',
            source: { kind: 'http', client: '2001:db8::1', user: 'erp-key' },
          }),
        );
        const after = Date.now();
        assert.match(stored.id, /^[A-Za-z0-9_-]+$/, 'ids are safe in a URL path');
        assert.equal(stored.state, 'queued');
        assert.equal(stored.mailbox, MAILBOX);
        assert.equal(stored.pool, undefined);
        assert.deepEqual(stored.envelope, { from: 'app@contoso.example', to: ['zoë@example.net', 'b@example.net', 'c@example.net'] });
        assert.deepEqual(stored.source, { kind: 'http', client: '2001:db8::1', user: 'erp-key' });
        assert.equal(stored.messageId, '<abc.123@contoso.example>');
        assert.equal(stored.size, raw.length);
        assert.equal(stored.attempts, 0);
        assert.ok(stored.createdAt.getTime() >= before && stored.createdAt.getTime() <= after, 'createdAt is the time of enqueue');
        assert.equal(stored.nextAttemptAt.getTime(), stored.createdAt.getTime(), 'due at once without notBefore');
        assert.equal(stored.leaseOwner, undefined);
        assert.equal(stored.leaseUntil, undefined);
        assert.equal(stored.lastReply, undefined);
        assert.equal(stored.lastClass, undefined);
        assert.equal(stored.lastExplanation, undefined);
        assert.deepEqual(await store.get(stored.id), stored);
        assert.ok((await store.getRaw(stored.id))?.equals(raw), 'raw bytes come back exactly');
        assert.deepEqual(await store.attempts(stored.id), []);
      }),
    );

    it(
      "keeps a 35 MB message (Exchange Online's maximum size) byte for byte",
      withStore(async (store) => {
        const raw = Buffer.alloc(35 * 1024 * 1024);
        for (let i = 0; i < raw.length; i += 4096) raw.writeUInt32BE(i, i);
        const stored = await store.enqueue(message({ raw }));
        assert.equal(stored.size, raw.length);
        const back = await store.getRaw(stored.id);
        assert.ok(back?.equals(raw));
        assert.equal((await store.get(stored.id))?.size, raw.length);
      }),
    );

    it(
      'keeps every enqueued message when the store is closed and opened again',
      withStore(async (store, t, { twoConnections, second, closeFirst }) => {
        if (!twoConnections) return t.skip('the factory gives no second connection');
        const a = await store.enqueue(message());
        const b = await store.enqueue(pooled({ raw: Buffer.from('second') }));
        await closeFirst();
        const reopened = await second();
        assert.deepEqual(await reopened.get(a.id), a);
        assert.deepEqual(await reopened.get(b.id), b);
        assert.deepEqual(await reopened.getRaw(b.id), Buffer.from('second'));
      }),
    );

    it(
      'refuses a message with neither or both of mailbox and pool, or without a recipient',
      withStore(async (store) => {
        const invalid = (err: unknown): boolean => isRelay365Error(err, 'R365_MESSAGE_INVALID');
        await assert.rejects(store.enqueue(message({ mailbox: undefined })), invalid);
        await assert.rejects(store.enqueue(message({ pool: POOL })), invalid);
        await assert.rejects(store.enqueue(message({ envelope: { from: 'app@contoso.example', to: [] } })), invalid);
        assert.deepEqual((await store.list({})).items, []);
      }),
    );

    it(
      'answers nothing for an unknown id and changes nothing',
      withStore(async (store) => {
        const unknown = '00000000-0000-7000-8000-000000000000';
        assert.equal(await store.get(unknown), undefined);
        assert.equal(await store.getRaw(unknown), undefined);
        assert.deepEqual(await store.attempts(unknown), []);
        assert.equal(await store.retry(unknown), false);
        assert.equal(await store.cancel(unknown), false);
        assert.equal(await store.complete({ id: unknown, owner: 'node-a', state: 'sent', attempt: attempt() }), false);
      }),
    );

    it(
      'runs migrate() again without harm: the data stays',
      withStore(async (store) => {
        const a = await store.enqueue(message());
        await store.migrate();
        await store.migrate();
        assert.deepEqual(await store.get(a.id), a);
        await store.enqueue(message());
        assert.equal((await store.counts()).queued, 2);
      }),
    );
  });

  describe(`${name} outbox store: claiming`, () => {
    it(
      'leases due messages oldest first, no more than max, and marks them sending under the lease',
      withStore(async (store) => {
        const t0 = later();
        const claim = claimOf(t0);
        const queued = [];
        for (let i = 0; i < 5; i++) queued.push(await store.enqueue(message({ messageId: `<${i}@x>` })));
        const result = await store.claim(claim({ max: 3 }));
        assert.deepEqual(ids(result.messages), ids(queued.slice(0, 3)), 'the three oldest, in order');
        assert.equal(result.blockedBy, undefined, 'max is not a mailbox limit');
        for (const m of result.messages) {
          assert.equal(m.state, 'sending');
          assert.equal(m.mailbox, MAILBOX);
          assert.equal(m.leaseOwner, 'node-a');
          assert.equal(m.leaseUntil?.getTime(), t0 + 30_000);
          assert.deepEqual(await store.get(m.id), m, 'the returned message is what the store now holds');
        }
        assert.deepEqual(ids((await store.claim(claim({ owner: 'node-b' }))).messages), ids(queued.slice(3)), 'leased messages are not handed out again');
        const empty = await store.claim(claim());
        assert.deepEqual(empty.messages, []);
        assert.equal(empty.blockedBy, undefined);
        assert.equal(empty.blockedUntil, undefined);
      }),
    );

    it(
      'does not lease a message before its notBefore time, and leases it from then on',
      withStore(async (store) => {
        const t0 = later();
        const claim = claimOf(t0);
        const m = await store.enqueue(message({ notBefore: new Date(t0 + 10_000) }));
        assert.equal((await store.get(m.id))?.nextAttemptAt.getTime(), t0 + 10_000);
        const early = await store.claim(claim({ at: t0 + 9_999 }));
        assert.deepEqual(early.messages, []);
        assert.equal(early.blockedBy, undefined, 'nothing due is not a block');
        assert.deepEqual(ids((await store.claim(claim({ at: t0 + 10_000 }))).messages), [m.id]);
      }),
    );

    it(
      "never leases another mailbox's messages",
      withStore(async (store) => {
        const claim = claimOf(later());
        await store.enqueue(message({ mailbox: OTHER }));
        await store.enqueue(pooled());
        assert.deepEqual((await store.claim(claim())).messages, [], 'not the other mailbox, and not a pool it is not a member of');
        assert.equal((await store.claim(claim({ mailbox: OTHER }))).messages.length, 1);
      }),
    );

    it(
      'counts live leases against maxConnections and frees a slot when a send completes',
      withStore(async (store) => {
        const t0 = later();
        const limits = { ...WIDE, maxConnections: 2 };
        const claim = claimOf(t0);
        for (let i = 0; i < 4; i++) await store.enqueue(message());
        const first = await store.claim(claim({ limits }));
        assert.equal(first.messages.length, 2);
        assert.equal(first.blockedBy, 'connections', 'two more wait, and both connections are taken');
        const until = first.blockedUntil?.getTime() ?? 0;
        assert.ok(until > t0 && until <= t0 + 30_000 + 1, `blockedUntil ${until - t0} ms after now: soon, and no later than the leases expire`);

        const other = await store.claim(claim({ limits, owner: 'node-b', at: t0 + 100 }));
        assert.deepEqual(other.messages, [], 'the leases count for every owner of the mailbox');
        assert.equal(other.blockedBy, 'connections');

        assert.equal(await store.complete({ id: first.messages[0]!.id, owner: 'node-a', state: 'sent', attempt: attempt({ at: new Date(t0 + 200) }) }), true);
        const third = await store.claim(claim({ limits, owner: 'node-b', at: t0 + 300 }));
        assert.equal(third.messages.length, 1, 'the completed send freed one connection');
        assert.equal((await store.quotaUsage(MAILBOX, WIDE, new Date(t0 + 300))).sending, 2);
      }),
    );

    it(
      'holds messages per minute to the limit over a sliding window, and says when the oldest send leaves it',
      withStore(async (store) => {
        const t0 = later();
        const limits = { ...WIDE, messagesPerMinute: 3 };
        const claim = claimOf(t0);
        for (let i = 0; i < 10; i++) await store.enqueue(message());

        const a = await store.claim(claim({ limits, max: 2 }));
        assert.equal(a.messages.length, 2);
        assert.equal(a.blockedBy, undefined, 'one more would still fit this minute');

        const b = await store.claim(claim({ limits, at: t0 + 20_000 }));
        assert.equal(b.messages.length, 1, 'the third of the minute');
        assert.equal(b.blockedBy, 'rate');
        assert.equal(b.blockedUntil?.getTime(), t0 + 60_000, 'when the sends made at t0 leave the window');

        const c = await store.claim(claim({ limits, at: t0 + 59_999 }));
        assert.deepEqual(c.messages, []);
        assert.equal(c.blockedBy, 'rate');
        assert.equal(c.blockedUntil?.getTime(), t0 + 60_000);

        const d = await store.claim(claim({ limits, at: t0 + 60_000 }));
        assert.equal(d.messages.length, 2, 'the two sends of t0 have left; the one of t0+20s has not');
        assert.equal(d.blockedBy, 'rate');
        assert.equal(d.blockedUntil?.getTime(), t0 + 80_000);
      }),
    );

    it(
      'holds recipients per rolling day to the limit, oldest first, and says when enough recipients leave the window',
      withStore(async (store) => {
        const t0 = later();
        const limits = { ...WIDE, recipientsPerDay: 5, dayMs: 3_600_000 };
        // Leases outlast the test's two hours, so no expired lease comes back into the claims.
        const claim = (change: Partial<ClaimRequest> & { at?: number }): ClaimRequest => claimOf(t0)({ leaseMs: 36_000_000, ...change });
        const to = (n: number): { from: string; to: string[] } => ({
          from: 'app@contoso.example',
          to: Array.from({ length: n }, (_, i) => `r${i}@example.net`),
        });
        const a = await store.enqueue(message({ envelope: to(2) }));
        const b = await store.enqueue(message({ envelope: to(2) }));
        const c = await store.enqueue(message({ envelope: to(4) }));
        const d = await store.enqueue(message({ envelope: to(1) }));

        assert.deepEqual(ids((await store.claim(claim({ limits, max: 1 }))).messages), [a.id]);
        assert.deepEqual(ids((await store.claim(claim({ limits, max: 1, at: t0 + 1_000 }))).messages), [b.id]);
        const blocked = await store.claim(claim({ limits, at: t0 + 2_000 }));
        assert.deepEqual(blocked.messages, [], 'c needs 4 with 4 of 5 used; d behind it would fit, but waits its turn');
        assert.equal(blocked.blockedBy, 'recipients');
        assert.equal(blocked.blockedUntil?.getTime(), t0 + 1_000 + 3_600_000, 'both earlier sends must leave the window before 4 more fit');

        assert.deepEqual((await store.claim(claim({ limits, at: t0 + 3_600_000 }))).messages, [], 'a has left (2 used), still not room for 4');
        const freed = await store.claim(claim({ limits, at: t0 + 1_000 + 3_600_000 }));
        assert.deepEqual(ids(freed.messages), [c.id, d.id], 'the window is empty: 4 + 1 fill it exactly');
        assert.equal(freed.blockedBy, undefined);
        assert.equal((await store.quotaUsage(MAILBOX, limits, new Date(t0 + 1_000 + 3_600_000))).recipientsLastDay, 5);
      }),
    );

    it(
      'reports no block when the mailbox simply has nothing due, even at its limits',
      withStore(async (store) => {
        const t0 = later();
        const claim = claimOf(t0);
        await store.enqueue(message());
        const limits = { ...WIDE, maxConnections: 1, messagesPerMinute: 1 };
        assert.equal((await store.claim(claim({ limits }))).messages.length, 1);
        const none = await store.claim(claim({ limits, at: t0 + 1 }));
        assert.deepEqual(none.messages, []);
        assert.equal(none.blockedBy, undefined);
        assert.equal(none.blockedUntil, undefined);
      }),
    );

    it(
      'lets another owner take a message whose lease expired; the first owner can no longer complete it',
      withStore(async (store) => {
        const t0 = later();
        const claim = claimOf(t0);
        const m = await store.enqueue(message());
        assert.equal((await store.claim(claim({ leaseMs: 1_000 }))).messages.length, 1);
        assert.deepEqual((await store.claim(claim({ owner: 'node-b', at: t0 + 500 }))).messages, [], 'the lease is live');
        const taken = await store.claim(claim({ owner: 'node-b', at: t0 + 1_001 }));
        assert.deepEqual(ids(taken.messages), [m.id]);
        assert.equal(taken.messages[0]?.leaseOwner, 'node-b');
        assert.equal(taken.messages[0]?.attempts, 0, 'a lost lease is not an attempt');

        assert.equal(await store.complete({ id: m.id, owner: 'node-a', state: 'sent', attempt: attempt({ at: new Date(t0 + 1_100) }) }), false);
        assert.equal((await store.get(m.id))?.leaseOwner, 'node-b', 'the stale complete changed nothing');
        assert.equal(await store.complete({ id: m.id, owner: 'node-b', state: 'sent', attempt: attempt({ owner: 'node-b', at: new Date(t0 + 1_200) }) }), true);
        assert.deepEqual(
          (await store.attempts(m.id)).map((a) => a.owner),
          ['node-b'],
        );
        assert.equal(
          (await store.quotaUsage(MAILBOX, WIDE, new Date(t0 + 1_200))).messagesLastMinute,
          2,
          'both leases counted against the rate: the first may have been sent',
        );
      }),
    );

    it(
      'leases pool messages to a member, oldest first among its own, and records the member as their mailbox',
      withStore(async (store) => {
        const t0 = later();
        const claim = claimOf(t0);
        const own1 = await store.enqueue(message());
        const pool1 = await store.enqueue(pooled());
        const own2 = await store.enqueue(message());
        assert.equal(pool1.mailbox, undefined);
        assert.equal(pool1.pool, POOL);

        const result = await store.claim(claim({ pools: [POOL] }));
        assert.deepEqual(ids(result.messages), [own1.id, pool1.id, own2.id]);
        const got = await store.get(pool1.id);
        assert.equal(got?.mailbox, MAILBOX);
        assert.equal(got?.pool, POOL);
        assert.deepEqual((await store.claim(claim({ mailbox: OTHER, pools: [POOL], owner: 'node-b' }))).messages, [], 'another member does not get it twice');
        assert.equal((await store.counts(MAILBOX)).sending, 3);
      }),
    );

    it(
      'returns a deferred pool message to its pool, so any member may take the retry',
      withStore(async (store) => {
        const t0 = later();
        const claim = claimOf(t0);
        const m = await store.enqueue(pooled());
        assert.deepEqual(ids((await store.claim(claim({ pools: [POOL] }))).messages), [m.id]);
        assert.equal(
          await store.complete({
            id: m.id,
            owner: 'node-a',
            state: 'deferred',
            nextAttemptAt: new Date(t0 + 5_000),
            attempt: attempt({ class: 'throttled', reply: '432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded', at: new Date(t0 + 1_000) }),
          }),
          true,
        );
        assert.equal((await store.get(m.id))?.mailbox, undefined);
        const retried = await store.claim(claim({ mailbox: OTHER, pools: [POOL], owner: 'node-b', at: t0 + 5_000 }));
        assert.deepEqual(ids(retried.messages), [m.id]);
        assert.equal(retried.messages[0]?.mailbox, OTHER);
        assert.equal((await store.attempts(m.id))[0]?.mailbox, MAILBOX, 'the attempt keeps the member that made it');
      }),
    );

    it(
      'never hands the same message to two owners claiming at once, through one connection or two',
      withStore(async (store, _t, { twoConnections, second }) => {
        const t0 = later();
        const claim = claimOf(t0);
        const total = 300;
        for (let i = 0; i < total; i++) await store.enqueue(i % 3 === 0 ? pooled() : message());
        const stores = twoConnections ? [store, await second()] : [store];
        const claims = Array.from({ length: 60 }, (_, i) =>
          stores[i % stores.length]!.claim(claim({ owner: `node-${i % 4}`, pools: [POOL], max: 7, at: t0 + (i % 5) })),
        );
        const got = (await Promise.all(claims)).flatMap((r) => ids(r.messages));
        assert.equal(new Set(got).size, got.length, 'no message leased twice');
        assert.equal(got.length, total, 'every message leased once');
        assert.equal((await store.counts()).sending, total);
      }),
    );
  });

  describe(`${name} outbox store: completing`, () => {
    const throttled: Explanation = {
      id: 'smtp-432-4.3.2-concurrency',
      class: 'throttled',
      cause: 'More than 3 connections sent as this mailbox at once — “über” limits apply.',
      fix: 'Lower delivery.maxConnections to 3 or fewer.',
      doc: 'https://learn.microsoft.com/exchange/mail-flow-best-practices/how-to-set-up-a-multifunction-device-or-application-to-send-email-using-microsoft-365-or-office-365',
    };

    it(
      'records a sent attempt: state sent, one attempt, last reply, lease released; not offered again',
      withStore(async (store) => {
        const t0 = later();
        const claim = claimOf(t0);
        const m = await store.enqueue(message());
        await store.claim(claim());
        const sent = attempt({
          at: new Date(t0 + 250),
          reply: '250 2.0.0 OK <abc@contoso.example> [Hostname=AM0PR01MB1234.eurprd01.prod.exchangelabs.com]',
          durationMs: 250,
        });
        assert.equal(await store.complete({ id: m.id, owner: 'node-a', state: 'sent', attempt: sent }), true);
        const got = await store.get(m.id);
        assert.equal(got?.state, 'sent');
        assert.equal(got?.attempts, 1);
        assert.equal(got?.lastReply, sent.reply);
        assert.equal(got?.lastClass, 'sent');
        assert.equal(got?.lastExplanation, undefined);
        assert.equal(got?.leaseOwner, undefined);
        assert.equal(got?.leaseUntil, undefined);
        assert.deepEqual(await store.attempts(m.id), [sent]);
        assert.deepEqual((await store.claim(claim({ at: t0 + 3_600_000 }))).messages, []);
        assert.equal(await store.complete({ id: m.id, owner: 'node-a', state: 'sent', attempt: sent }), false, 'completing twice is refused');
      }),
    );

    it(
      'records a deferred attempt with its explanation, and offers the message again only from its next attempt time',
      withStore(async (store) => {
        const t0 = later();
        const claim = claimOf(t0);
        const m = await store.enqueue(message());
        await store.claim(claim());
        const deferred = attempt({
          at: new Date(t0 + 100),
          class: 'throttled',
          reply: '432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded',
          explanation: throttled,
          durationMs: 80,
        });
        assert.equal(await store.complete({ id: m.id, owner: 'node-a', state: 'deferred', nextAttemptAt: new Date(t0 + 30_000), attempt: deferred }), true);
        const got = await store.get(m.id);
        assert.equal(got?.state, 'deferred');
        assert.equal(got?.nextAttemptAt.getTime(), t0 + 30_000);
        assert.equal(got?.lastClass, 'throttled');
        assert.deepEqual(got?.lastExplanation, throttled, 'the explanation round-trips, Unicode included');
        assert.deepEqual(await store.attempts(m.id), [deferred]);

        assert.deepEqual((await store.claim(claim({ at: t0 + 29_999 }))).messages, []);
        const again = await store.claim(claim({ at: t0 + 30_000, owner: 'node-b' }));
        assert.deepEqual(ids(again.messages), [m.id]);
        assert.equal(again.messages[0]?.attempts, 1);
        const sent = attempt({ at: new Date(t0 + 30_500), owner: 'node-b' });
        assert.equal(await store.complete({ id: m.id, owner: 'node-b', state: 'sent', attempt: sent }), true);
        assert.deepEqual(await store.attempts(m.id), [deferred, sent], 'attempts in the order they were made');
        assert.equal((await store.get(m.id))?.attempts, 2);
      }),
    );

    it(
      'records a failed attempt and keeps the content, so an operator may retry it',
      withStore(async (store) => {
        const t0 = later();
        const claim = claimOf(t0);
        const raw = Buffer.from('Subject: keep me\r\n\r\n.\r\n');
        const m = await store.enqueue(message({ raw }));
        await store.claim(claim());
        const failed = attempt({
          at: new Date(t0 + 10),
          class: 'permanent',
          reply: '550 5.7.60 SMTP; Client does not have permissions to send as this sender',
          explanation: {
            id: 'smtp-550-5.7.60',
            class: 'permanent',
            cause: 'No SendAs right.',
            fix: 'Add-RecipientPermission -Identity x -Trustee y -AccessRights SendAs',
          },
        });
        assert.equal(await store.complete({ id: m.id, owner: 'node-a', state: 'failed', attempt: failed }), true);
        assert.equal((await store.get(m.id))?.state, 'failed');
        assert.ok((await store.getRaw(m.id))?.equals(raw));
        assert.equal(await store.retry(m.id), true);
        assert.deepEqual(ids((await store.claim(claim({ at: t0 + 20 }))).messages), [m.id]);
      }),
    );

    it(
      'refuses to complete for an owner without the lease, or a message that is not being sent',
      withStore(async (store) => {
        const t0 = later();
        const claim = claimOf(t0);
        const leased = await store.enqueue(message());
        const queued = await store.enqueue(message());
        assert.deepEqual(ids((await store.claim(claim({ max: 1 }))).messages), [leased.id]);
        assert.equal(await store.complete({ id: queued.id, owner: 'node-a', state: 'sent', attempt: attempt() }), false, 'not leased');
        assert.equal(await store.complete({ id: leased.id, owner: 'node-x', state: 'failed', attempt: attempt() }), false, 'someone else holds the lease');
        for (const id of [queued.id, leased.id]) assert.deepEqual(await store.attempts(id), []);
        assert.equal((await store.get(queued.id))?.state, 'queued');
        assert.equal((await store.get(queued.id))?.attempts, 0);
        assert.equal((await store.get(leased.id))?.state, 'sending');
        assert.equal((await store.get(leased.id))?.leaseOwner, 'node-a');
      }),
    );
  });

  describe(`${name} outbox store: recipients, bounces and suppressions`, () => {
    // Exchange's refusal of an unknown recipient at its own domain, as its NDRs quote it (Microsoft
    // Learn, "Fix email delivery issues for error code 5.1.10 in Exchange Online").
    const notFound = '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient b@example.net not found by SMTP address lookup';
    const unknownUser: Explanation = {
      id: 'smtp-550-5.1.10',
      class: 'permanent',
      cause: 'The recipient’s address does not exist.',
      fix: 'Correct the address.',
      doc: 'https://learn.microsoft.com/exchange/troubleshoot/email-delivery/ndr/fix-error-code-550-5-1-10-in-exchange-online',
    };
    const ab = { from: 'app@contoso.example', to: ['a@example.net', 'B@Example.NET'] };

    /** Enqueues a message, claims it and records `state` with these recipient answers. */
    const sendOne = async (
      store: OutboxStore,
      t0: number,
      change: Partial<NewMessage>,
      outcome: { state: 'sent' | 'failed' | 'deferred'; at?: number; reply?: string; recipients?: Parameters<OutboxStore['complete']>[0]['recipients'] },
    ): Promise<StoredMessage> => {
      const m = await store.enqueue(message(change));
      const claimed = await store.claim(claimOf(t0)({ mailbox: m.mailbox ?? MAILBOX }));
      assert.ok(ids(claimed.messages).includes(m.id));
      const done = await store.complete({
        id: m.id,
        owner: 'node-a',
        state: outcome.state,
        nextAttemptAt: new Date(t0 + 60_000),
        attempt: attempt({ at: new Date(outcome.at ?? t0 + 100), mailbox: m.mailbox ?? MAILBOX, reply: outcome.reply ?? '250 2.0.0 OK', class: outcome.state === 'sent' ? 'sent' : 'permanent' }),
        ...(outcome.recipients === undefined ? {} : { recipients: outcome.recipients }),
      });
      assert.equal(done, true);
      return m;
    };

    it(
      'creates every envelope recipient pending, in envelope order, with the message; an unknown id has none',
      withStore(async (store) => {
        const before = Date.now();
        const m = await store.enqueue(message({ envelope: { from: 'app@contoso.example', to: ['z@example.net', 'a@example.net', 'm@example.net'] } }));
        const recipients = await store.recipients(m.id);
        assert.deepEqual(
          recipients.map((r) => [r.address, r.state]),
          [
            ['z@example.net', 'pending'],
            ['a@example.net', 'pending'],
            ['m@example.net', 'pending'],
          ],
        );
        assert.ok(recipients.every((r) => r.updatedAt.getTime() >= before && r.reply === undefined && r.dsnStatus === undefined));
        assert.deepEqual(await store.recipients('no-such-message'), []);
      }),
    );

    it(
      "records each recipient's answer with a sent outcome: the refused one with its reply and explanation, the rest accepted",
      withStore(async (store) => {
        const t0 = later();
        const m = await sendOne(store, t0, { envelope: ab }, {
          state: 'sent',
          recipients: [{ address: 'B@Example.NET', state: 'refused', reply: notFound, explanation: unknownUser }],
        });
        const [a, b] = await store.recipients(m.id);
        assert.deepEqual(a, { address: 'a@example.net', state: 'accepted', updatedAt: new Date(t0 + 100) });
        assert.deepEqual(b, { address: 'B@Example.NET', state: 'refused', reply: notFound, explanation: unknownUser, updatedAt: new Date(t0 + 100) });
        assert.equal((await store.get(m.id))?.state, 'sent');
      }),
    );

    it('refuses every pending recipient of a failed message with its reply; a deferral leaves them pending', withStore(async (store) => {
      const t0 = later();
      const permanent = '554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException';
      const deferred = await sendOne(store, t0, { envelope: ab }, { state: 'deferred', reply: '432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded' });
      assert.deepEqual((await store.recipients(deferred.id)).map((r) => r.state), ['pending', 'pending']);
      const failed = await sendOne(store, t0, { envelope: ab }, { state: 'failed', reply: permanent });
      assert.deepEqual(
        (await store.recipients(failed.id)).map((r) => [r.state, r.reply]),
        [
          ['refused', permanent],
          ['refused', permanent],
        ],
      );
      // Lease lost: nothing of it is recorded.
      const lost = await store.enqueue(message({ envelope: ab }));
      await store.claim(claimOf(t0)());
      const refused = { address: 'a@example.net', state: 'refused' as const, reply: notFound };
      assert.equal(await store.complete({ id: lost.id, owner: 'node-b', state: 'sent', attempt: attempt({ at: new Date(t0 + 200) }), recipients: [refused] }), false);
      assert.deepEqual((await store.recipients(lost.id)).map((r) => r.state), ['pending', 'pending']);
    }));

    it(
      "makes a retried message's refused recipients pending again, so the next outcome answers for all of them",
      withStore(async (store) => {
        const t0 = later();
        const failed = await sendOne(store, t0, { envelope: ab }, { state: 'failed', reply: notFound });
        assert.equal(await store.retry(failed.id), true);
        const reopened = await store.recipients(failed.id);
        assert.deepEqual(reopened.map((r) => [r.state, r.reply, r.explanation]), [
          ['pending', undefined, undefined],
          ['pending', undefined, undefined],
        ]);
        assert.ok(reopened.every((r) => r.updatedAt.getTime() <= Date.now() && r.updatedAt.getTime() < t0), 'updated at the retry, not the attempt');
        const claimed = await store.claim(claimOf(t0 + 1_000)());
        assert.deepEqual(ids(claimed.messages), [failed.id]);
        await store.complete({ id: failed.id, owner: 'node-a', state: 'sent', attempt: attempt({ at: new Date(t0 + 1_100) }) });
        assert.deepEqual((await store.recipients(failed.id)).map((r) => r.state), ['accepted', 'accepted']);
        assert.equal(await store.retry(failed.id), false, 'a sent message is not retried');
        assert.deepEqual((await store.recipients(failed.id)).map((r) => r.state), ['accepted', 'accepted']);
      }),
    );

    it(
      "applies an NDR entry to the recipient its Message-ID and address name (case aside), once: a repeat is a duplicate, changes nothing and names the message it matched",
      withStore(async (store) => {
        const t0 = later();
        const m = await sendOne(store, t0, { envelope: ab, messageId: '<n1@contoso.example>' }, { state: 'sent' });
        const report = {
          mailbox: MAILBOX,
          reportId: 'AAMkAGI2TG93AAA=',
          originalMessageId: '<n1@contoso.example>',
          recipient: 'b@example.net',
          action: 'failed' as const,
          status: '5.1.10',
          diagnostic: notFound,
          remoteMta: 'dns; AM0PR01MB1234.eurprd01.prod.exchangelabs.com',
          receivedAt: new Date(t0 + 5_000),
        };
        assert.deepEqual(await store.recordBounce(report), { matched: m.id, duplicate: false });
        const bounced = {
          address: 'B@Example.NET',
          state: 'bounced',
          reply: notFound,
          dsnStatus: '5.1.10',
          remoteMta: report.remoteMta,
          reportId: report.reportId,
          updatedAt: new Date(t0 + 5_000),
        };
        assert.deepEqual(await store.recipients(m.id), [{ address: 'a@example.net', state: 'accepted', updatedAt: new Date(t0 + 100) }, bounced]);
        assert.deepEqual(await store.recordBounce({ ...report, recipient: 'B@EXAMPLE.NET', receivedAt: new Date(t0 + 9_000), diagnostic: 'changed' }), {
          matched: m.id,
          duplicate: true,
        });
        assert.deepEqual((await store.recipients(m.id))[1], bounced, 'the repeat changed nothing');
        assert.equal((await store.get(m.id))?.state, 'sent', "the message's own state stays: Exchange took it for one recipient");
      }),
    );

    it(
      'remembers an NDR entry that matches no message, so it is not applied twice, and changes no message',
      withStore(async (store) => {
        const t0 = later();
        const m = await sendOne(store, t0, { envelope: ab, messageId: '<n2@contoso.example>' }, { state: 'sent' });
        const stray = {
          mailbox: MAILBOX,
          reportId: 'stray-1',
          originalMessageId: '<elsewhere@contoso.example>',
          recipient: 'a@example.net',
          action: 'failed' as const,
          status: '5.1.1',
          receivedAt: new Date(t0 + 1_000),
        };
        assert.deepEqual(await store.recordBounce(stray), { matched: undefined, duplicate: false });
        assert.deepEqual(await store.recordBounce(stray), { matched: undefined, duplicate: true });
        const wrongRecipient = { ...stray, reportId: 'stray-2', originalMessageId: '<n2@contoso.example>', recipient: 'c@example.net' };
        assert.deepEqual(await store.recordBounce(wrongRecipient), { matched: undefined, duplicate: false });
        assert.deepEqual((await store.recipients(m.id)).map((r) => r.state), ['accepted', 'accepted']);
      }),
    );

    it(
      'suppresses a hard-bounced recipient with its entry when asked, once, and never for an entry that matches no message',
      withStore(async (store) => {
        const t0 = later();
        const m = await sendOne(store, t0, { envelope: ab, messageId: '<n5@contoso.example>' }, { state: 'sent' });
        const report = {
          mailbox: MAILBOX,
          reportId: 'hard-1',
          originalMessageId: '<n5@contoso.example>',
          recipient: 'B@Example.NET',
          action: 'failed' as const,
          status: '5.1.10',
          diagnostic: notFound,
          receivedAt: new Date(t0 + 2_000),
          suppress: { reason: 'a hard bounce 5.1.10 (recipient not found)' },
        };
        assert.deepEqual(await store.recordBounce(report), { matched: m.id, duplicate: false });
        const entry = { address: 'B@Example.NET', reason: report.suppress.reason, dsnStatus: '5.1.10', messageId: m.id, source: 'bounce', createdAt: new Date(t0 + 2_000) };
        assert.deepEqual(await store.suppressed(['b@example.net']), [entry]);
        // An operator takes it off the list; the report read again (a restart) does not put it back.
        assert.equal(await store.unsuppress('b@example.net'), true);
        assert.deepEqual(await store.recordBounce({ ...report, receivedAt: new Date(t0 + 9_000) }), { matched: m.id, duplicate: true });
        assert.deepEqual(await store.suppressed(['b@example.net']), []);
        const stray = { ...report, reportId: 'hard-2', originalMessageId: '<not-ours@contoso.example>', recipient: 'a@example.net' };
        assert.deepEqual(await store.recordBounce(stray), { matched: undefined, duplicate: false });
        assert.deepEqual(await store.suppressed(['a@example.net']), [], 'an entry naming no message of the mailbox suppresses nothing');
      }),
    );

    it(
      'makes a recipient delayed on a delay notice, bounced on a later failure, and never takes a bounce back for a delay read after it',
      withStore(async (store) => {
        const t0 = later();
        const m = await sendOne(store, t0, { envelope: ab, messageId: '<n3@contoso.example>' }, { state: 'sent' });
        const base = { mailbox: MAILBOX, originalMessageId: '<n3@contoso.example>', recipient: 'a@example.net', receivedAt: new Date(t0 + 1_000) };
        await store.recordBounce({ ...base, reportId: 'd1', action: 'delayed', status: '4.4.7' });
        assert.deepEqual(
          (await store.recipients(m.id)).map((r) => [r.state, r.dsnStatus, r.reportId]),
          [
            ['delayed', '4.4.7', 'd1'],
            ['accepted', undefined, undefined],
          ],
        );
        await store.recordBounce({ ...base, reportId: 'f1', action: 'failed', status: '5.4.7', receivedAt: new Date(t0 + 2_000) });
        assert.equal(await store.recordBounce({ ...base, reportId: 'd2', action: 'delayed', status: '4.4.7', receivedAt: new Date(t0 + 3_000) }).then((r) => r.matched), m.id);
        const [a] = await store.recipients(m.id);
        assert.deepEqual([a?.state, a?.dsnStatus, a?.reportId, a?.updatedAt.getTime()], ['bounced', '5.4.7', 'f1', t0 + 2_000]);
      }),
    );

    it(
      "matches the sending mailbox's message, the newest, when several messages carry the NDR's Message-ID",
      withStore(async (store) => {
        const t0 = later();
        const env = { from: 'app@contoso.example', to: ['a@example.net'] };
        const older = await sendOne(store, t0, { envelope: env, messageId: '<same@contoso.example>' }, { state: 'sent' });
        const newer = await sendOne(store, t0, { envelope: env, messageId: '<same@contoso.example>' }, { state: 'sent' });
        const other = await sendOne(store, t0, { envelope: env, messageId: '<same@contoso.example>', mailbox: OTHER }, { state: 'sent' });
        const report = { originalMessageId: '<same@contoso.example>', recipient: 'a@example.net', action: 'failed' as const, status: '5.1.1', receivedAt: new Date(t0 + 1_000) };
        assert.equal((await store.recordBounce({ ...report, mailbox: MAILBOX, reportId: 'r1' })).matched, newer.id);
        assert.equal((await store.recordBounce({ ...report, mailbox: OTHER, reportId: 'r1' })).matched, other.id, 'the same report id in another mailbox is another report');
        assert.equal((await store.recipients(older.id))[0]?.state, 'accepted');
      }),
    );

    it(
      'never matches a message another mailbox sent: an NDR is only ever in the sender\'s Inbox, so one elsewhere naming it is forged',
      withStore(async (store) => {
        const t0 = later();
        const env = { from: 'app@contoso.example', to: ['a@example.net'] };
        const sent = await sendOne(store, t0, { envelope: env, messageId: '<forged@contoso.example>' }, { state: 'sent' });
        const forged = { mailbox: OTHER, reportId: 'x1', originalMessageId: '<forged@contoso.example>', recipient: 'a@example.net', action: 'failed' as const, status: '5.1.1', receivedAt: new Date(t0 + 1_000) };
        assert.deepEqual(await store.recordBounce(forged), { matched: undefined, duplicate: false });
        assert.equal((await store.recipients(sent.id))[0]?.state, 'accepted');
        assert.equal((await store.recordBounce({ ...forged, mailbox: MAILBOX.toUpperCase(), reportId: 'x2' })).matched, sent.id, 'the sender\'s own Inbox, whatever the case of its address');
      }),
    );

    it(
      'applies an NDR entry once when two connections record it at the same moment',
      withStore(async (store, t, { twoConnections, second }) => {
        if (!twoConnections) return t.skip('the factory gives no second connection');
        const t0 = later();
        const m = await sendOne(store, t0, { envelope: ab, messageId: '<n4@contoso.example>' }, { state: 'sent' });
        const other = await second();
        const report = { mailbox: MAILBOX, reportId: 'race', originalMessageId: '<n4@contoso.example>', recipient: 'a@example.net', action: 'failed' as const, status: '5.1.1', receivedAt: new Date(t0) };
        const results = await Promise.all([store.recordBounce(report), other.recordBounce(report), store.recordBounce(report), other.recordBounce(report)]);
        assert.deepEqual(results.filter((r) => !r.duplicate), [{ matched: m.id, duplicate: false }]);
      }),
    );

    it(
      "keeps each mailbox's delta cursor, replacing it on save",
      withStore(async (store, t, { twoConnections, second }) => {
        assert.equal(await store.bounceCursor(MAILBOX), undefined);
        await store.saveBounceCursor(MAILBOX, 'https://graph.microsoft.com/v1.0/users/x/mailFolders/inbox/messages/delta?$deltatoken=1');
        await store.saveBounceCursor(MAILBOX, 'https://graph.microsoft.com/v1.0/users/x/mailFolders/inbox/messages/delta?$deltatoken=2');
        await store.saveBounceCursor(OTHER, 'other');
        assert.equal(await store.bounceCursor(MAILBOX), 'https://graph.microsoft.com/v1.0/users/x/mailFolders/inbox/messages/delta?$deltatoken=2');
        assert.equal(await store.bounceCursor(OTHER), 'other');
        // A lease on the same row leaves the cursor alone.
        assert.equal(await store.leaseBounceReader(MAILBOX, 'node-a', 30_000), true);
        if (twoConnections) assert.equal(await (await second()).bounceCursor(MAILBOX), 'https://graph.microsoft.com/v1.0/users/x/mailFolders/inbox/messages/delta?$deltatoken=2');
        else t.diagnostic('no second connection: the cursor was read on the first only');
      }),
    );

    it(
      "leases a mailbox's bounce reader to one owner at a time: renewed by its holder, taken by another only once it expired",
      withStore(async (store) => {
        const t0 = later();
        assert.equal(await store.leaseBounceReader(MAILBOX, 'node-a', 30_000, new Date(t0)), true);
        assert.equal(await store.leaseBounceReader(MAILBOX, 'node-b', 30_000, new Date(t0 + 1_000)), false);
        assert.equal(await store.leaseBounceReader(OTHER, 'node-b', 30_000, new Date(t0 + 1_000)), true, 'another mailbox is another lease');
        assert.equal(await store.leaseBounceReader(MAILBOX, 'node-a', 30_000, new Date(t0 + 20_000)), true, 'renewed until t0+50s');
        assert.equal(await store.leaseBounceReader(MAILBOX, 'node-b', 30_000, new Date(t0 + 49_999)), false);
        assert.equal(await store.leaseBounceReader(MAILBOX, 'node-b', 30_000, new Date(t0 + 50_001)), true);
        assert.equal(await store.leaseBounceReader(MAILBOX, 'node-a', 30_000, new Date(t0 + 50_002)), false, 'the old holder lost it');
      }),
    );

    it(
      'gives a contended bounce-reader lease to exactly one of two connections',
      withStore(async (store, t, { twoConnections, second }) => {
        if (!twoConnections) return t.skip('the factory gives no second connection');
        const other = await second();
        const now = new Date(later());
        for (let round = 0; round < 5; round++) {
          const mailbox = `reader${round}@contoso.example`;
          const won = await Promise.all([store.leaseBounceReader(mailbox, 'node-a', 30_000, now), other.leaseBounceReader(mailbox, 'node-b', 30_000, now)]);
          assert.equal(won.filter(Boolean).length, 1, `round ${round}: ${JSON.stringify(won)}`);
        }
      }),
    );

    it(
      'suppresses an address case-insensitively, replaces its entry, finds it among addresses, and removes it',
      withStore(async (store) => {
        const t0 = later();
        await store.suppress({ address: 'Gone@Example.NET', reason: notFound, dsnStatus: '5.1.10', messageId: 'm-1', source: 'bounce', createdAt: new Date(t0) });
        assert.deepEqual(await store.suppressed(['a@example.net', 'gone@example.net', 'GONE@EXAMPLE.NET']), [
          { address: 'Gone@Example.NET', reason: notFound, dsnStatus: '5.1.10', messageId: 'm-1', source: 'bounce', createdAt: new Date(t0) },
        ]);
        await store.suppress({ address: 'gone@example.net', reason: 'added by hand', source: 'manual', createdAt: new Date(t0 + 1) });
        assert.deepEqual(await store.suppressed(['GONE@example.net']), [{ address: 'gone@example.net', reason: 'added by hand', source: 'manual', createdAt: new Date(t0 + 1) }]);
        assert.deepEqual(await store.suppressed([]), []);
        assert.equal(await store.unsuppress('GONE@EXAMPLE.net'), true);
        assert.equal(await store.unsuppress('gone@example.net'), false);
        assert.deepEqual(await store.suppressed(['gone@example.net']), []);
        const before = Date.now();
        await store.suppress({ address: 'now@example.net', reason: 'r', source: 'manual' });
        const [entry] = await store.suppressed(['now@example.net']);
        assert.ok(entry !== undefined && entry.createdAt.getTime() >= before && entry.createdAt.getTime() <= Date.now(), 'createdAt defaults to now');
      }),
    );

    it(
      'lists suppressions newest first, page by page, each entry once',
      withStore(async (store) => {
        const t0 = later();
        // Two entries share a time: the key orders them, so no page loses or repeats one.
        const times = [t0, t0 + 5, t0 + 5, t0 + 9, t0 + 2];
        for (const [i, at] of times.entries()) await store.suppress({ address: `s${i}@example.net`, reason: 'r', source: 'manual', createdAt: new Date(at) });
        const seen: string[] = [];
        let cursor: string | undefined;
        let pages = 0;
        do {
          const page = await store.suppressions({ limit: 2, ...(cursor === undefined ? {} : { cursor }) });
          seen.push(...page.items.map((s) => s.address));
          cursor = page.nextCursor;
          pages++;
        } while (cursor !== undefined);
        assert.deepEqual(seen, ['s3@example.net', 's2@example.net', 's1@example.net', 's4@example.net', 's0@example.net']);
        assert.equal(pages, 3);
        await assert.rejects(store.suppressions({ cursor: 'not-a-cursor' }), (err: unknown) => isRelay365Error(err) && err.code === 'R365_LIST_CURSOR_INVALID');
      }),
    );
  });

  describe(`${name} outbox store: retry and cancel`, () => {
    /** One message in each state, reached through the interface only. */
    async function oneOfEach(
      store: OutboxStore,
      t0: number,
    ): Promise<Record<'queued' | 'deferred' | 'failed' | 'sent' | 'sending' | 'cancelled', StoredMessage>> {
      const claim = claimOf(t0);
      const [deferred, failed, sent, sending] = [
        await store.enqueue(message()),
        await store.enqueue(message()),
        await store.enqueue(message()),
        await store.enqueue(message()),
      ];
      assert.equal((await store.claim(claim())).messages.length, 4);
      await store.complete({
        id: deferred.id,
        owner: 'node-a',
        state: 'deferred',
        nextAttemptAt: new Date(t0 + 3_600_000),
        attempt: attempt({ class: 'transient', at: new Date(t0) }),
      });
      await store.complete({ id: failed.id, owner: 'node-a', state: 'failed', attempt: attempt({ class: 'permanent', at: new Date(t0) }) });
      await store.complete({ id: sent.id, owner: 'node-a', state: 'sent', attempt: attempt({ at: new Date(t0) }) });
      const queued = await store.enqueue(message({ notBefore: new Date(t0 + 3_600_000) }));
      const cancelled = await store.enqueue(message());
      assert.equal(await store.cancel(cancelled.id), true);
      return { queued, deferred, failed, sent, sending, cancelled };
    }

    it(
      'retries failed, deferred and queued messages by making them due now; refuses sent, sending and cancelled ones',
      withStore(async (store) => {
        const t0 = later();
        const m = await oneOfEach(store, t0);
        for (const state of ['sent', 'sending', 'cancelled'] as const) {
          assert.equal(await store.retry(m[state].id), false, `retry of a ${state} message`);
          assert.equal((await store.get(m[state].id))?.state, state);
        }
        for (const state of ['failed', 'deferred', 'queued'] as const) {
          const before = Date.now();
          assert.equal(await store.retry(m[state].id), true, `retry of a ${state} message`);
          const got = await store.get(m[state].id);
          assert.equal(got?.state, 'queued');
          assert.ok(got !== undefined && got.nextAttemptAt.getTime() <= Date.now() && got.nextAttemptAt.getTime() >= before - 1, 'due now');
        }
        const claimed = await store.claim(claimOf(t0)({ at: t0 + 1 }));
        assert.deepEqual(new Set(ids(claimed.messages)), new Set([m.deferred.id, m.failed.id, m.queued.id]));
      }),
    );

    it(
      'cancels queued, deferred and failed messages; refuses one being sent, sent or already cancelled',
      withStore(async (store) => {
        const t0 = later();
        const m = await oneOfEach(store, t0);
        for (const state of ['sent', 'sending', 'cancelled'] as const) {
          assert.equal(await store.cancel(m[state].id), false, `cancel of a ${state} message`);
          assert.equal((await store.get(m[state].id))?.state, state);
        }
        for (const state of ['queued', 'deferred', 'failed'] as const) {
          assert.equal(await store.cancel(m[state].id), true, `cancel of a ${state} message`);
          assert.equal((await store.get(m[state].id))?.state, 'cancelled');
        }
        const afterAll = await store.claim(claimOf(t0)({ at: t0 + 7_200_000 }));
        assert.deepEqual(ids(afterAll.messages), [m.sending.id], 'cancelled messages are never sent; only the expired lease comes back');
        assert.equal(await store.retry(m.queued.id), false, 'nor retried');
      }),
    );
  });

  describe(`${name} outbox store: listing and counting`, () => {
    it(
      'lists newest first in pages that neither skip nor repeat a message; 50 by default, at most 500',
      withStore(async (store) => {
        const all: string[] = [];
        for (let i = 0; i < 501; i++) all.push((await store.enqueue(message())).id);
        const newestFirst = [...all].reverse();

        const first = await store.list({});
        assert.equal(first.items.length, 50);
        assert.deepEqual(ids(first.items), newestFirst.slice(0, 50));
        assert.equal(typeof first.nextCursor, 'string');

        const big = await store.list({ limit: 10_000 });
        assert.equal(big.items.length, 500);
        const rest = await store.list({ limit: 10_000, cursor: big.nextCursor });
        assert.deepEqual(ids(rest.items), newestFirst.slice(500));
        assert.equal(rest.nextCursor, undefined, 'no cursor after the last page');

        const seen: string[] = [];
        let cursor: string | undefined;
        do {
          const page = await store.list({ limit: 37, cursor });
          assert.ok(page.items.length <= 37);
          seen.push(...ids(page.items));
          cursor = page.nextCursor;
        } while (cursor !== undefined);
        assert.deepEqual(seen, newestFirst);

        const exact = await store.list({ limit: 1, cursor: (await store.list({ limit: 500 })).nextCursor });
        assert.deepEqual(ids(exact.items), [all[0]]);
        assert.equal(exact.nextCursor, undefined, 'a page that ends exactly at the last message has no cursor');
      }),
    );

    it(
      'filters the list by state and by mailbox, and pages within the filter',
      withStore(async (store) => {
        const t0 = later();
        const mine = [await store.enqueue(message()), await store.enqueue(message()), await store.enqueue(message())];
        const theirs = [await store.enqueue(message({ mailbox: OTHER })), await store.enqueue(message({ mailbox: OTHER }))];
        const inPool = await store.enqueue(pooled());
        await store.claim(claimOf(t0)({ max: 1 }));
        await store.cancel(theirs[1]!.id);

        assert.deepEqual(ids((await store.list({ mailbox: MAILBOX })).items), ids([...mine].reverse()));
        assert.deepEqual(ids((await store.list({ mailbox: OTHER })).items), ids([...theirs].reverse()));
        assert.deepEqual(ids((await store.list({ state: 'sending' })).items), [mine[0]!.id]);
        assert.deepEqual(ids((await store.list({ state: 'queued' })).items), [inPool.id, theirs[0]!.id, mine[2]!.id, mine[1]!.id]);
        assert.deepEqual(ids((await store.list({ state: 'queued', mailbox: MAILBOX })).items), [mine[2]!.id, mine[1]!.id]);
        assert.deepEqual(ids((await store.list({ state: 'cancelled', mailbox: MAILBOX })).items), []);

        const page1 = await store.list({ state: 'queued', limit: 3 });
        const page2 = await store.list({ state: 'queued', limit: 3, cursor: page1.nextCursor });
        assert.deepEqual(ids([...page1.items, ...page2.items]), [inPool.id, theirs[0]!.id, mine[2]!.id, mine[1]!.id]);
        assert.equal(page2.nextCursor, undefined);
      }),
    );

    it(
      'keeps tags, metadata and the scheduled time with the message, refuses labels over their limits, and purges them with it',
      withStore(async (store) => {
        const sendAt = new Date(Date.now() + 3_600_000);
        const labelled = await store.enqueue(message({ tags: ['invoice', 'eu-west', 'invoice'], metadata: { customer: 'c-42', plan: 'gold' }, notBefore: sendAt }));
        assert.deepEqual(labelled.tags, ['invoice', 'eu-west'], 'a repeated tag is kept once, in the order given');
        assert.deepEqual(labelled.metadata, { customer: 'c-42', plan: 'gold' });
        assert.equal(labelled.sendAt?.getTime(), sendAt.getTime());
        assert.equal(labelled.nextAttemptAt.getTime(), sendAt.getTime(), 'a scheduled message is due at its time');
        const read = (await store.get(labelled.id))!;
        assert.deepEqual([read.tags, read.metadata, read.sendAt?.getTime()], [['invoice', 'eu-west'], { customer: 'c-42', plan: 'gold' }, sendAt.getTime()]);
        assert.deepEqual((await store.list({})).items[0]!.tags, ['invoice', 'eu-west']);

        const plain = (await store.get((await store.enqueue(message())).id))!;
        assert.deepEqual([plain.tags, plain.metadata, plain.sendAt], [[], {}, undefined], 'a message without labels reads back empty ones');
        assert.equal(await store.claim(claimOf(later())({})).then((r) => r.messages.map((m) => m.id).includes(labelled.id)), false, 'not leased before its time');

        const refused: Array<Partial<NewMessage>> = [
          { tags: Array.from({ length: 11 }, (_, i) => `t${i}`) },
          { tags: ['has space'] },
          { tags: ['x'.repeat(65)] },
          { metadata: Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`k${i}`, 'v'])) },
          { metadata: { 'bad key': 'v' } },
          { metadata: { k: 'v'.repeat(501) } },
        ];
        for (const change of refused) {
          await assert.rejects(store.enqueue(message(change)), (err) => isRelay365Error(err, 'R365_MESSAGE_INVALID'), JSON.stringify(change).slice(0, 80));
        }
        assert.equal((await store.list({ limit: 500 })).items.length, 2, 'a refused message stores nothing');

        assert.equal(await store.cancel(labelled.id), true, 'a scheduled message can be cancelled before its time');
        const purged = await store.purge({ before: new Date(Date.now() + 60_000), bodiesOnly: false });
        assert.equal(purged.count, 1);
        assert.equal(await store.get(labelled.id), undefined);
        assert.deepEqual(ids((await store.list({ tag: 'invoice' })).items), [], 'its tags went with it');
      }),
    );

    it(
      'searches by recipient (any case), tag and creation time, with the other filters, page by page',
      withStore(async (store) => {
        const a = await store.enqueue(message({ envelope: { from: 'app@contoso.example', to: ['Ann@Example.net', 'bob@example.net'] }, tags: ['welcome'] }));
        const b = await store.enqueue(message({ envelope: { from: 'app@contoso.example', to: ['bob@example.net'] }, tags: ['invoice', 'welcome'] }));
        const c = await store.enqueue(message({ mailbox: OTHER, envelope: { from: 'app@contoso.example', to: ['ann@example.net'] }, tags: ['invoice'] }));
        await store.cancel(b.id);

        assert.deepEqual(ids((await store.list({ recipient: 'ann@example.net' })).items), [c.id, a.id], 'an address in any case');
        assert.deepEqual(ids((await store.list({ recipient: 'BOB@EXAMPLE.NET' })).items), [b.id, a.id]);
        assert.deepEqual(ids((await store.list({ recipient: 'nobody@example.net' })).items), []);
        assert.deepEqual(ids((await store.list({ tag: 'welcome' })).items), [b.id, a.id]);
        assert.deepEqual(ids((await store.list({ tag: 'Welcome' })).items), [], 'tags are exact');
        assert.deepEqual(ids((await store.list({ tag: 'invoice', state: 'queued' })).items), [c.id]);
        assert.deepEqual(ids((await store.list({ tag: 'invoice', recipient: 'ann@example.net', mailbox: OTHER })).items), [c.id]);
        assert.deepEqual(ids((await store.list({ tag: 'invoice', mailbox: MAILBOX })).items), [b.id]);

        // Creation times: since is inclusive, until exclusive.
        // Messages made within one millisecond share a creation time; the expected lists say so.
        const newestFirst = [c, b, a];
        const made = (test: (t: number) => boolean): string[] => ids(newestFirst.filter((m) => test(m.createdAt.getTime())));
        assert.deepEqual(ids((await store.list({ since: b.createdAt })).items), made((t) => t >= b.createdAt.getTime()));
        assert.deepEqual(ids((await store.list({ until: b.createdAt })).items), made((t) => t < b.createdAt.getTime()));
        assert.deepEqual(ids((await store.list({ until: a.createdAt })).items), []);
        assert.deepEqual(ids((await store.list({ since: a.createdAt, until: new Date(c.createdAt.getTime() + 1) })).items), [c.id, b.id, a.id]);
        assert.deepEqual(ids((await store.list({ since: new Date(c.createdAt.getTime() + 1) })).items), []);

        const first = await store.list({ recipient: 'bob@example.net', limit: 1 });
        assert.deepEqual(ids(first.items), [b.id]);
        const second = await store.list({ recipient: 'bob@example.net', limit: 1, cursor: first.nextCursor });
        assert.deepEqual(ids(second.items), [a.id]);
        assert.equal(second.nextCursor, undefined);
      }),
    );

    it(
      'rejects a cursor it did not make',
      withStore(async (store) => {
        await store.enqueue(message());
        for (const cursor of ['not-a-cursor', Buffer.from('[1]').toString('base64url'), Buffer.from('{"a":1}').toString('base64url')]) {
          await assert.rejects(store.list({ cursor }), (err) => isRelay365Error(err, 'R365_LIST_CURSOR_INVALID'), cursor);
        }
      }),
    );

    it(
      'counts every state, zeros included, overall and for one mailbox',
      withStore(async (store) => {
        const t0 = later();
        const zero = Object.fromEntries(MESSAGE_STATES.map((s) => [s, 0]));
        assert.deepEqual(await store.counts(), zero);
        assert.deepEqual(await store.counts(MAILBOX), zero);
        const m = await store.enqueue(message());
        await store.enqueue(message());
        await store.enqueue(message({ mailbox: OTHER }));
        await store.claim(claimOf(t0)({ max: 1 }));
        await store.complete({ id: m.id, owner: 'node-a', state: 'failed', attempt: attempt({ class: 'permanent' }) });
        await store.enqueue(message({ mailbox: OTHER }));
        await store.cancel((await store.list({ mailbox: OTHER, limit: 1 })).items[0]!.id);
        assert.deepEqual(await store.counts(), { ...zero, queued: 2, failed: 1, cancelled: 1 });
        assert.deepEqual(await store.counts(MAILBOX), { ...zero, queued: 1, failed: 1 });
        assert.deepEqual(await store.counts(OTHER), { ...zero, queued: 1, cancelled: 1 });
      }),
    );

    it(
      'tells the creation time of the oldest queued or deferred message, and nothing when none waits',
      withStore(async (store) => {
        const t0 = later();
        assert.equal(await store.oldestWaiting(), undefined);
        const first = await store.enqueue(message());
        const second = await store.enqueue(message({ mailbox: OTHER }));
        assert.deepEqual(await store.oldestWaiting(), first.createdAt);
        await store.claim(claimOf(t0)({ max: 1 }));
        assert.deepEqual(await store.oldestWaiting(), second.createdAt, 'a message being sent no longer waits');
        await store.complete({
          id: first.id,
          owner: 'node-a',
          state: 'deferred',
          nextAttemptAt: new Date(t0 + 60_000),
          attempt: attempt({ class: 'transient' }),
        });
        assert.deepEqual(await store.oldestWaiting(), first.createdAt, 'a deferred message waits again');
        await store.cancel(first.id);
        await store.cancel(second.id);
        assert.equal(await store.oldestWaiting(), undefined);
      }),
    );

    it(
      "tells when the next message of a mailbox or its pools becomes due, ignoring other mailboxes' messages",
      withStore(async (store) => {
        const t0 = later();
        assert.equal(await store.nextDue(MAILBOX, [POOL]), undefined);
        await store.enqueue(message({ mailbox: OTHER, notBefore: new Date(t0 + 1_000) }));
        await store.enqueue(message({ notBefore: new Date(t0 + 5_000) }));
        await store.enqueue(pooled({ notBefore: new Date(t0 + 3_000) }));
        assert.equal((await store.nextDue(MAILBOX, []))?.getTime(), t0 + 5_000);
        assert.equal((await store.nextDue(MAILBOX, [POOL]))?.getTime(), t0 + 3_000);
        assert.equal((await store.nextDue(OTHER, []))?.getTime(), t0 + 1_000);
        const due = await store.enqueue(message());
        assert.equal((await store.nextDue(MAILBOX, [POOL]))?.getTime(), due.nextAttemptAt.getTime(), 'a message due already');
      }),
    );

    it(
      "tells a mailbox's quota usage: messages in the last minute, recipients in the last day, live leases",
      withStore(async (store) => {
        const t0 = later();
        const claim = claimOf(t0);
        const limits = { minuteMs: 60_000, dayMs: 3_600_000 };
        assert.deepEqual(await store.quotaUsage(MAILBOX, limits, new Date(t0)), { messagesLastMinute: 0, recipientsLastDay: 0, sending: 0 });
        const two = { from: 'app@contoso.example', to: ['a@example.net', 'b@example.net'] };
        for (let i = 0; i < 3; i++) await store.enqueue(message({ envelope: two }));
        const first = await store.claim(claim({ max: 1, leaseMs: 60_000 }));
        await store.claim(claim({ max: 2, at: t0 + 30_000, leaseMs: 10_000 }));
        await store.complete({ id: first.messages[0]!.id, owner: 'node-a', state: 'sent', attempt: attempt({ at: new Date(t0 + 30_001) }) });
        assert.deepEqual(await store.quotaUsage(MAILBOX, limits, new Date(t0 + 30_001)), { messagesLastMinute: 3, recipientsLastDay: 6, sending: 2 });
        // The first send counts from its completion (t0+30_001), when Exchange had received it, not from its claim.
        assert.deepEqual(
          await store.quotaUsage(MAILBOX, limits, new Date(t0 + 60_000)),
          { messagesLastMinute: 3, recipientsLastDay: 6, sending: 0 },
          'the leases expired at t0+40s',
        );
        assert.deepEqual(await store.quotaUsage(MAILBOX, limits, new Date(t0 + 90_000)), { messagesLastMinute: 1, recipientsLastDay: 6, sending: 0 });
        assert.deepEqual(await store.quotaUsage(MAILBOX, limits, new Date(t0 + 3_630_000)), { messagesLastMinute: 0, recipientsLastDay: 2, sending: 0 });
        assert.deepEqual(await store.quotaUsage(MAILBOX, limits, new Date(t0 + 3_630_001)), { messagesLastMinute: 0, recipientsLastDay: 0, sending: 0 });
        assert.deepEqual(await store.quotaUsage(OTHER, limits, new Date(t0 + 30_001)), { messagesLastMinute: 0, recipientsLastDay: 0, sending: 0 });
      }),
    );
  });

  describe(`${name} outbox store: paused mailboxes`, () => {
    const full: Explanation = {
      id: 'smtp-554-5.2.2-mailbox-full',
      class: 'blocked',
      cause: 'The mailbox is full.',
      fix: 'Empty Sent Items or add a retention policy.',
    };
    const throttled: Explanation = {
      id: 'smtp-550-5.2.251-throttled',
      class: 'blocked',
      cause: 'Exchange blocks the mailbox after continuous mailbox full errors.',
      fix: 'Free space, then wait for the block to end.',
    };

    it(
      'keeps a pause with its cause and since-when for every connection and across a reopen; a new cause keeps the first time',
      withStore(async (store, t, helpers) => {
        const t0 = later();
        assert.deepEqual(await store.mailboxPauses(), []);
        const first = await store.pauseMailbox({
          mailbox: MAILBOX,
          class: 'blocked',
          reply: '554 5.2.2 mailbox full',
          explanation: full,
          owner: 'node-a',
          at: new Date(t0),
        });
        assert.deepEqual(first, {
          mailbox: MAILBOX,
          class: 'blocked',
          reply: '554 5.2.2 mailbox full',
          explanation: full,
          since: new Date(t0),
          updatedAt: new Date(t0),
          owner: 'node-a',
          resumeRequestedAt: undefined,
        });
        await store.pauseMailbox({ mailbox: OTHER, class: 'auth', reply: undefined, explanation: undefined, owner: 'node-a', at: new Date(t0 + 10) });
        const again = await store.pauseMailbox({
          mailbox: MAILBOX,
          class: 'blocked',
          reply: '550 5.2.251 Sender throttled',
          explanation: throttled,
          owner: 'node-b',
          at: new Date(t0 + 5000),
        });
        assert.equal(again.since.getTime(), t0, 'still paused since the first cause');
        assert.equal(again.updatedAt.getTime(), t0 + 5000);
        assert.equal(again.reply, '550 5.2.251 Sender throttled');
        assert.deepEqual(again.explanation, throttled);
        assert.equal(again.owner, 'node-b');
        assert.deepEqual(
          (await store.mailboxPauses()).map((p) => [p.mailbox, p.class]),
          [
            [MAILBOX, 'blocked'],
            [OTHER, 'auth'],
          ],
          'longest paused first',
        );
        if (!helpers.twoConnections) return t.skip('the factory gives no second connection');
        const other = await helpers.second();
        assert.deepEqual(await other.mailboxPauses(), await store.mailboxPauses(), 'another node sees the same pauses');
        await helpers.closeFirst();
        const reopened = await helpers.second();
        assert.deepEqual((await reopened.mailboxPauses()).find((p) => p.mailbox === MAILBOX), again, 'a restart does not forget it');
      }),
    );

    it(
      "marks an operator's resume and makes only that mailbox's deferred messages due now; resuming ends the pause",
      withStore(async (store) => {
        const t0 = later();
        const claim = claimOf(t0);
        assert.equal(await store.requestMailboxResume(MAILBOX, new Date(t0)), undefined, 'not paused: nothing to resume');
        const mine = await store.enqueue(message());
        const theirs = await store.enqueue(message({ mailbox: OTHER }));
        await store.claim(claim());
        await store.claim(claim({ mailbox: OTHER }));
        const probeAt = new Date(t0 + 3_600_000);
        for (const [m, mailbox] of [
          [mine, MAILBOX],
          [theirs, OTHER],
        ] as const) {
          await store.complete({
            id: m.id,
            owner: 'node-a',
            state: 'deferred',
            nextAttemptAt: probeAt,
            attempt: attempt({ mailbox, class: 'blocked', reply: '554 5.2.2 mailbox full', explanation: full, at: new Date(t0) }),
          });
        }
        await store.pauseMailbox({ mailbox: MAILBOX, class: 'blocked', reply: '554 5.2.2 mailbox full', explanation: full, owner: 'node-a', at: new Date(t0) });
        await store.pauseMailbox({ mailbox: OTHER, class: 'blocked', reply: '554 5.2.2 mailbox full', explanation: full, owner: 'node-a', at: new Date(t0) });
        assert.equal((await store.claim(claim({ at: t0 + 1000 }))).messages.length, 0, 'deferred until the probe');

        const asked = await store.requestMailboxResume(MAILBOX, new Date(t0 + 1000));
        assert.equal(asked?.resumeRequestedAt?.getTime(), t0 + 1000);
        assert.equal((await store.get(mine.id))?.nextAttemptAt.getTime(), t0 + 1000, 'due at the request');
        assert.equal((await store.get(theirs.id))?.nextAttemptAt.getTime(), probeAt.getTime(), "another mailbox's queue is untouched");
        // A probe meeting the cause before a worker acted keeps the request.
        const again = await store.pauseMailbox({
          mailbox: MAILBOX,
          class: 'blocked',
          reply: '554 5.2.2 mailbox full',
          explanation: full,
          owner: 'node-b',
          at: new Date(t0 + 1500),
        });
        assert.equal(again.resumeRequestedAt?.getTime(), t0 + 1000);
        assert.deepEqual(ids((await store.claim(claim({ at: t0 + 2000 }))).messages), [mine.id]);

        assert.equal(await store.resumeMailbox(MAILBOX), true);
        assert.equal(await store.resumeMailbox(MAILBOX), false, 'already resumed');
        assert.deepEqual(
          (await store.mailboxPauses()).map((p) => p.mailbox),
          [OTHER],
        );
        const repaused = await store.pauseMailbox({
          mailbox: MAILBOX,
          class: 'auth',
          reply: '535 5.7.3 Authentication unsuccessful',
          explanation: undefined,
          owner: 'node-a',
          at: new Date(t0 + 9000),
        });
        assert.equal(repaused.since.getTime(), t0 + 9000, 'a new pause after a resume starts its own time');
        assert.equal(repaused.resumeRequestedAt, undefined);
      }),
    );
  });
}
