/**
 * The integration store contract: what every `IntegrationStore` (SQLite, PostgreSQL) must do with API keys,
 * idempotency keys and webhook deliveries, tested only through the interface. A store's test file
 * calls {@link integrationStoreContract} with a factory that opens a fresh, empty, migrated store.
 *
 * Every time is explicit (`now`, `createdAt`, `at`), so no test sleeps and expiry is exact.
 */
import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { isRelay365Error } from '../../src/errors.js';
import { generateApiKey, type IntegrationStore, type IdempotencyRequest, type IdempotencyReservation } from '../../src/ingress/http/index.js';
import type { NewWebhookDelivery, WebhookDelivery } from '../../src/observe/index.js';

/** What the factory hands the suite. */
export interface OpenedIntegrationStore {
  /** A fresh, empty, migrated store. */
  store: IntegrationStore;
  /** Removes what the factory made (files, schemas); the suite closes every store before calling it. */
  cleanup: () => Promise<void>;
  /** Another, independent connection to the same database, as a second node would open it. Tests of two nodes at once are skipped without it. */
  connect?: () => Promise<IntegrationStore>;
}

const MINUTE = 60_000;
const DAY = 86_400_000;
const RECEIVER = 'https://hooks.example.net/relay365';
const OTHER_RECEIVER = 'https://audit.example.net/in';

/** A reservation request for `key` in scope `key_a`, with the front door's TTL and lock. */
function reservation(t0: number, change: Partial<IdempotencyRequest> = {}): IdempotencyRequest {
  return { scope: 'key_a', keyHash: 'h-order-1', fingerprint: 'f-1', now: new Date(t0), ttlMs: DAY, lockMs: MINUTE, ...change };
}

function delivery(eventId: string, createdAt: number, change: Partial<NewWebhookDelivery> = {}): NewWebhookDelivery {
  return {
    eventId,
    eventType: 'message.sent',
    receiver: RECEIVER,
    body: JSON.stringify({ id: eventId, type: 'message.sent' }),
    createdAt: new Date(createdAt),
    ...change,
  };
}

const claimAt = (store: IntegrationStore, now: number, owner = 'node-a', limit = 100, leaseMs = 30_000): Promise<WebhookDelivery[]> =>
  store.claimWebhookDeliveries({ owner, now: new Date(now), leaseMs, limit });

const eventIds = (deliveries: readonly WebhookDelivery[]): string[] => deliveries.map((d) => `${d.eventId}>${d.receiver}`);

/** What a test gets besides its store. */
interface Helpers {
  /** Opens another connection to the same database (the suite closes it); the test is skipped when the factory has none. */
  second: (t: TestContext) => Promise<IntegrationStore | undefined>;
}

/**
 * Registers the contract's `describe` blocks for one store implementation.
 *
 * @param name - shown in every test name, e.g. `'SQLite'`.
 * @param open - opens a fresh, empty, migrated store for one test.
 */
export function integrationStoreContract(name: string, open: () => Promise<OpenedIntegrationStore>): void {
  /** Runs one test against a fresh store, then closes it (and any second connection) and cleans up. */
  const withStore =
    (test: (store: IntegrationStore, helpers: Helpers, t: TestContext) => Promise<void>) =>
    async (t: TestContext): Promise<void> => {
      const opened = await open();
      const others: IntegrationStore[] = [];
      const helpers: Helpers = {
        second: async (context) => {
          if (opened.connect === undefined) {
            context.skip('the factory gives no second connection');
            return undefined;
          }
          const other = await opened.connect();
          others.push(other);
          return other;
        },
      };
      try {
        await test(opened.store, helpers, t);
      } finally {
        for (const other of others) await other.close();
        await opened.store.close();
        await opened.cleanup();
      }
    };

  describe(`${name} integration store: API keys`, () => {
    it(
      'creates keys, finds an active one by its hash only, and lists them oldest first without the key',
      withStore(async (store) => {
        const t0 = Date.now();
        const first = generateApiKey();
        const second = generateApiKey();
        const a = await store.createApiKey({ name: 'billing-app', hash: first.hash, prefix: first.prefix, now: new Date(t0) });
        const b = await store.createApiKey({
          name: 'crm',
          hash: second.hash,
          prefix: second.prefix,
          scopes: ['read', 'admin'],
          senders: ['@contoso.example'],
          now: new Date(t0 + 1),
        });
        assert.deepEqual(a, {
          id: a.id,
          name: 'billing-app',
          prefix: first.prefix,
          scopes: ['send', 'read'],
          senders: undefined,
          createdAt: new Date(t0),
          lastUsedAt: undefined,
          revokedAt: undefined,
        });
        assert.deepEqual([b.scopes, b.senders], [['read', 'admin'], ['@contoso.example']], 'scopes and senders as given');
        assert.match(a.id, /^key_[0-9a-f]{16}$/);
        assert.notEqual(a.id, b.id);
        assert.deepEqual(await store.findApiKey(first.hash), a);
        assert.deepEqual(await store.findApiKey(second.hash), b);
        assert.equal(await store.findApiKey(generateApiKey().hash), undefined, 'an unknown hash');
        assert.equal(await store.findApiKey(first.prefix), undefined, 'a prefix is not a key');
        assert.deepEqual(await store.listApiKeys(), [a, b]);
        assert.ok(!JSON.stringify(await store.listApiKeys()).includes(first.key), 'a list never holds a key');
      }),
    );

    it(
      "records a key's use at most once a minute",
      withStore(async (store) => {
        const t0 = Date.now();
        const key = generateApiKey();
        const record = await store.createApiKey({ name: 'app', hash: key.hash, prefix: key.prefix, now: new Date(t0) });
        await store.touchApiKey(record.id, new Date(t0 + 1000));
        assert.deepEqual((await store.findApiKey(key.hash))?.lastUsedAt, new Date(t0 + 1000));
        await store.touchApiKey(record.id, new Date(t0 + 30_000));
        assert.deepEqual((await store.findApiKey(key.hash))?.lastUsedAt, new Date(t0 + 1000), 'within the minute: not written again');
        await store.touchApiKey(record.id, new Date(t0 + 1000 + MINUTE + 1));
        assert.deepEqual((await store.findApiKey(key.hash))?.lastUsedAt, new Date(t0 + 1000 + MINUTE + 1));
      }),
    );

    it(
      'revokes a key by its id, name or prefix; a revoked key is no longer found, stays listed, and is not revoked twice',
      withStore(async (store) => {
        const t0 = Date.now();
        const keys = [generateApiKey(), generateApiKey(), generateApiKey()];
        const [a, b, c] = await Promise.all(
          keys.map((k, i) => store.createApiKey({ name: `app-${i}`, hash: k.hash, prefix: k.prefix, now: new Date(t0 + i) })),
        );
        const byId = await store.revokeApiKey(a!.id, new Date(t0 + 10));
        assert.deepEqual(byId, { ...a, revokedAt: new Date(t0 + 10) });
        assert.deepEqual((await store.revokeApiKey('app-1', new Date(t0 + 11)))?.id, b!.id, 'by name');
        assert.deepEqual((await store.revokeApiKey(keys[2]!.prefix, new Date(t0 + 12)))?.id, c!.id, 'by prefix');
        for (const k of keys) assert.equal(await store.findApiKey(k.hash), undefined);
        assert.equal(await store.revokeApiKey(a!.id), undefined, 'already revoked');
        assert.equal(await store.revokeApiKey('no-such-key'), undefined);
        assert.deepEqual(
          (await store.listApiKeys()).map((k) => [k.id, k.revokedAt?.getTime()]),
          [
            [a!.id, t0 + 10],
            [b!.id, t0 + 11],
            [c!.id, t0 + 12],
          ],
        );
      }),
    );

    it(
      'refuses to guess between two active keys of the same name, and revokes the one left by name',
      withStore(async (store) => {
        const [first, second] = [generateApiKey(), generateApiKey()];
        const a = await store.createApiKey({ name: 'shared', hash: first.hash, prefix: first.prefix });
        await store.createApiKey({ name: 'shared', hash: second.hash, prefix: second.prefix });
        await assert.rejects(store.revokeApiKey('shared'), (err) => isRelay365Error(err, 'R365_API_KEY_UNKNOWN') && /2 active API keys/.test(err.message));
        assert.ok(await store.findApiKey(first.hash), 'nothing was revoked');
        assert.ok(await store.findApiKey(second.hash));
        assert.equal((await store.revokeApiKey(a.id))?.id, a.id);
        assert.ok((await store.revokeApiKey('shared'))?.revokedAt);
        assert.equal(await store.findApiKey(second.hash), undefined);
      }),
    );
  });

  describe(`${name} integration store: idempotency keys`, () => {
    it(
      'reserves a new key once; the same request meanwhile is in progress, another request a mismatch',
      withStore(async (store) => {
        const t0 = Date.now();
        assert.deepEqual(await store.reserveIdempotencyKey(reservation(t0)), { outcome: 'reserved' });
        assert.deepEqual(await store.reserveIdempotencyKey(reservation(t0 + 1)), { outcome: 'in-progress' });
        assert.deepEqual(await store.reserveIdempotencyKey(reservation(t0 + 1, { fingerprint: 'f-2' })), { outcome: 'mismatch' });
        assert.deepEqual(await store.reserveIdempotencyKey(reservation(t0 + 1, { scope: 'key_b' })), { outcome: 'reserved' }, 'keys are per scope');
        assert.deepEqual(await store.reserveIdempotencyKey(reservation(t0 + 1, { keyHash: 'h-order-2' })), { outcome: 'reserved' });
      }),
    );

    it(
      'replays the saved response of the same request until the key expires, then forgets the key',
      withStore(async (store) => {
        const t0 = Date.now();
        await store.reserveIdempotencyKey(reservation(t0));
        await store.saveIdempotentResponse('key_a', 'h-order-1', 202, '{"id":"m1"}');
        const replay: IdempotencyReservation = { outcome: 'replay', status: 202, body: '{"id":"m1"}' };
        assert.deepEqual(await store.reserveIdempotencyKey(reservation(t0 + 1)), replay);
        assert.deepEqual(await store.reserveIdempotencyKey(reservation(t0 + DAY - 1)), replay, 'the last millisecond of its day');
        assert.deepEqual(await store.reserveIdempotencyKey(reservation(t0 + 2, { fingerprint: 'f-2' })), { outcome: 'mismatch' });
        assert.deepEqual(
          await store.reserveIdempotencyKey(reservation(t0 + DAY, { fingerprint: 'f-2' })),
          { outcome: 'reserved' },
          'after 24 hours the key is new, whatever the request',
        );
        assert.deepEqual(await store.reserveIdempotencyKey(reservation(t0 + DAY + 1, { fingerprint: 'f-2' })), { outcome: 'in-progress' });
      }),
    );

    it(
      'takes over a reservation whose request never answered once its lock ends, and not before',
      withStore(async (store) => {
        const t0 = Date.now();
        await store.reserveIdempotencyKey(reservation(t0));
        assert.deepEqual(await store.reserveIdempotencyKey(reservation(t0 + MINUTE - 1)), { outcome: 'in-progress' });
        assert.deepEqual(await store.reserveIdempotencyKey(reservation(t0 + MINUTE + 1)), { outcome: 'reserved' });
        assert.deepEqual(await store.reserveIdempotencyKey(reservation(t0 + MINUTE + 2)), { outcome: 'in-progress' }, 'the taker holds a new lock');
        assert.deepEqual(await store.reserveIdempotencyKey(reservation(t0 + MINUTE + 2, { fingerprint: 'f-2' })), { outcome: 'mismatch' });
      }),
    );

    it(
      'releases a reservation so the client may try again with the key, but never a saved response',
      withStore(async (store) => {
        const t0 = Date.now();
        await store.reserveIdempotencyKey(reservation(t0));
        await store.releaseIdempotencyKey('key_a', 'h-order-1');
        assert.deepEqual(await store.reserveIdempotencyKey(reservation(t0 + 1, { fingerprint: 'f-2' })), { outcome: 'reserved' }, 'free for any request');
        await store.saveIdempotentResponse('key_a', 'h-order-1', 202, '{"id":"m2"}');
        await store.releaseIdempotencyKey('key_a', 'h-order-1');
        assert.deepEqual(await store.reserveIdempotencyKey(reservation(t0 + 2, { fingerprint: 'f-2' })), {
          outcome: 'replay',
          status: 202,
          body: '{"id":"m2"}',
        });
      }),
    );
  });

  describe(`${name} integration store: webhook deliveries`, () => {
    it(
      'stores each event once per receiver and ignores a repeat; a claim returns them oldest first as stored',
      withStore(async (store) => {
        const t0 = Date.now();
        await store.addWebhookDeliveries([delivery('e1', t0), delivery('e1', t0, { receiver: OTHER_RECEIVER }), delivery('e2', t0 + 1)]);
        await store.addWebhookDeliveries([delivery('e1', t0 + 2, { body: '{"changed":true}' }), delivery('e3', t0 + 3, { eventType: 'mailbox.paused' })]);
        await store.addWebhookDeliveries([]);
        const claimed = await claimAt(store, t0 + 10);
        assert.deepEqual(eventIds(claimed), [`e1>${RECEIVER}`, `e1>${OTHER_RECEIVER}`, `e2>${RECEIVER}`, `e3>${RECEIVER}`]);
        const first = claimed[0]!;
        assert.deepEqual({ ...first, id: 0 }, { ...delivery('e1', t0), id: 0, attempts: 0, nextAttemptAt: new Date(t0) }, 'the first body is kept');
        assert.equal(typeof first.id, 'number');
        assert.equal(new Set(claimed.map((d) => d.id)).size, 4);
        assert.equal(claimed[3]!.eventType, 'mailbox.paused');
      }),
    );

    it(
      'claims only what is due, up to the limit, and never what another worker holds',
      withStore(async (store) => {
        const t0 = Date.now();
        await store.addWebhookDeliveries([delivery('e1', t0), delivery('e2', t0 + 1), delivery('e3', t0 + 2)]);
        assert.deepEqual(await claimAt(store, t0 - 1), [], 'nothing is due before it was made');
        assert.deepEqual(eventIds(await claimAt(store, t0 + 1, 'node-a', 1)), [`e1>${RECEIVER}`]);
        assert.deepEqual(eventIds(await claimAt(store, t0 + 5, 'node-b')), [`e2>${RECEIVER}`, `e3>${RECEIVER}`], 'e1 is leased to node-a');
        assert.deepEqual(await claimAt(store, t0 + 6, 'node-c'), []);
      }),
    );

    it(
      "gives a delivery whose lease ran out to another worker, and then refuses the first worker's answer",
      withStore(async (store) => {
        const t0 = Date.now();
        await store.addWebhookDeliveries([delivery('e1', t0)]);
        const [d] = await claimAt(store, t0, 'node-a', 10, 1000);
        assert.ok(d);
        assert.deepEqual(await claimAt(store, t0 + 1000, 'node-b', 10, 1000), [], 'the lease holds to its last millisecond');
        const [again] = await claimAt(store, t0 + 1001, 'node-b', 10, 1000);
        assert.equal(again?.id, d.id);
        assert.equal(await store.completeWebhookDelivery(d.id, 'node-a', { state: 'delivered', at: new Date(t0 + 1002) }), false, 'node-a lost the lease');
        assert.equal(await store.completeWebhookDelivery(d.id, 'node-b', { state: 'delivered', at: new Date(t0 + 1003) }), true);
        assert.equal(await store.completeWebhookDelivery(d.id, 'node-b', { state: 'delivered', at: new Date(t0 + 1004) }), false, 'once only');
        assert.deepEqual(await claimAt(store, t0 + DAY), [], 'a delivered one is never claimed again');
        assert.equal(await store.nextWebhookDue(), undefined);
      }),
    );

    it(
      'retries at the time asked, counting attempts, and never sends an abandoned delivery again',
      withStore(async (store) => {
        const t0 = Date.now();
        await store.addWebhookDeliveries([delivery('e1', t0)]);
        const [d] = await claimAt(store, t0);
        assert.ok(d);
        assert.equal(
          await store.completeWebhookDelivery(d.id, 'node-a', { state: 'retry', nextAttemptAt: new Date(t0 + 10_000), error: 'the receiver answered 503' }),
          true,
        );
        assert.deepEqual(await store.nextWebhookDue(), new Date(t0 + 10_000));
        assert.deepEqual(await claimAt(store, t0 + 9_999), []);
        const [retried] = await claimAt(store, t0 + 10_000, 'node-b');
        assert.deepEqual([retried?.id, retried?.attempts, retried?.nextAttemptAt], [d.id, 1, new Date(t0 + 10_000)]);
        assert.equal(await store.completeWebhookDelivery(d.id, 'node-b', { state: 'abandoned', error: 'the receiver answered 410' }), true);
        assert.equal(await store.nextWebhookDue(), undefined);
        assert.deepEqual(await claimAt(store, t0 + DAY), []);
      }),
    );

    it(
      'reports when the next pending delivery is due: its next attempt, or the millisecond after its lease ends',
      withStore(async (store) => {
        const t0 = Date.now();
        assert.equal(await store.nextWebhookDue(), undefined, 'nothing pending');
        await store.addWebhookDeliveries([delivery('e1', t0), delivery('e2', t0 + 5000)]);
        assert.deepEqual(await store.nextWebhookDue(), new Date(t0));
        await claimAt(store, t0, 'node-a', 1, 2000);
        assert.deepEqual(await store.nextWebhookDue(), new Date(t0 + 2001), 'e1 is leased until t0 + 2000; e2 is due at t0 + 5000');
        const [again] = await claimAt(store, t0 + 5000, 'node-b', 1, 30_000);
        assert.equal(again?.eventId, 'e1', 'its lease ran out: claimed again, before e2');
        assert.deepEqual(await store.nextWebhookDue(), new Date(t0 + 5000), 'e2 is still due');
      }),
    );

    it(
      'keeps a finished delivery seven days, so a repeated event is still ignored, then prunes it',
      withStore(async (store) => {
        const t0 = Date.now();
        await store.addWebhookDeliveries([delivery('e1', t0)]);
        const [d] = await claimAt(store, t0);
        await store.completeWebhookDelivery(d!.id, 'node-a', { state: 'delivered', at: new Date(t0) });
        await store.addWebhookDeliveries([delivery('e1', t0 + 1)]);
        assert.deepEqual(await claimAt(store, t0 + 7 * DAY - 1), [], 'within the seven days the event is known and not stored again');
        assert.deepEqual(await claimAt(store, t0 + 7 * DAY + 1), [], 'this claim prunes it');
        await store.addWebhookDeliveries([delivery('e1', t0 + 7 * DAY + 2)]);
        const [fresh] = await claimAt(store, t0 + 7 * DAY + 3);
        assert.deepEqual([fresh?.eventId, fresh?.attempts, fresh?.createdAt], ['e1', 0, new Date(t0 + 7 * DAY + 2)], 'once pruned, a repeat is a new delivery');
      }),
    );
  });

  describe(`${name} integration store: two nodes on one database`, () => {
    it(
      'sees an API key created on one node on the other, and its revocation at once',
      withStore(async (store, { second }, t) => {
        const other = await second(t);
        if (other === undefined) return;
        const key = generateApiKey();
        const record = await store.createApiKey({ name: 'shared', hash: key.hash, prefix: key.prefix });
        assert.deepEqual(await other.findApiKey(key.hash), record);
        await other.revokeApiKey('shared');
        assert.equal(await store.findApiKey(key.hash), undefined);
      }),
    );

    it(
      'reserves a key for exactly one of two nodes that ask at the same moment, also when they take over an abandoned one',
      withStore(async (store, { second }, t) => {
        const other = await second(t);
        if (other === undefined) return;
        const t0 = Date.now();
        const keys = Array.from({ length: 40 }, (_, i) => `h-race-${i}`);
        const race = (now: number) =>
          Promise.all(
            keys.map(async (keyHash) => {
              const outcomes = await Promise.all([store, other].map((s) => s.reserveIdempotencyKey(reservation(now, { keyHash }))));
              return outcomes.map((o) => o.outcome).sort();
            }),
          );
        for (const outcomes of await race(t0)) assert.deepEqual(outcomes, ['in-progress', 'reserved']);
        // Neither saved a response: after the lock, both try to take each key over at once.
        for (const outcomes of await race(t0 + MINUTE + 1)) assert.deepEqual(outcomes, ['in-progress', 'reserved']);
        // And after 24 hours, both renew each expired key at once.
        for (const outcomes of await race(t0 + DAY + 1)) assert.deepEqual(outcomes, ['in-progress', 'reserved']);
      }),
    );

    it(
      'never leases one webhook delivery to two nodes claiming at the same moment, and together they claim every one',
      withStore(async (store, { second }, t) => {
        const other = await second(t);
        if (other === undefined) return;
        const t0 = Date.now();
        const total = 150;
        await store.addWebhookDeliveries(Array.from({ length: total }, (_, i) => delivery(`e${i}`, t0 + (i % 7))));
        const byNode: [number[], number[]] = [[], []];
        for (let round = 0; round < total; round++) {
          const claims = await Promise.all([claimAt(store, t0 + 10, 'node-a', 7), claimAt(other, t0 + 10, 'node-b', 7)]);
          claims.forEach((claimed, n) => byNode[n as 0 | 1].push(...claimed.map((d) => d.id)));
          if (claims.every((c) => c.length === 0)) break;
        }
        const all = [...byNode[0], ...byNode[1]];
        assert.equal(new Set(all).size, all.length, 'no delivery was leased twice');
        assert.equal(all.length, total);
        // Each node completes what it holds; a completion by the node that does not hold it is refused.
        const [heldByA, heldByB] = byNode;
        if (heldByB.length > 0) assert.equal(await store.completeWebhookDelivery(heldByB[0]!, 'node-a', { state: 'delivered', at: new Date(t0 + 11) }), false);
        if (heldByA.length > 0) assert.equal(await other.completeWebhookDelivery(heldByA[0]!, 'node-a', { state: 'delivered', at: new Date(t0 + 11) }), true);
      }),
    );
  });
}
