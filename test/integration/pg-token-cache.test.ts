import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { isRelay365Error } from '../../src/errors.js';
import { createIdentity, summarizeToken, type Identity } from '../../src/identity/index.js';
import { PgTokenCacheStore } from '../../src/identity/pg-cache-store.js';
import { DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';
import { sandboxConfig } from '../helpers/config.js';
import { httpsRequest } from '../helpers/https.js';
import { PG_URL, dropSchema, pgQuery, pgUnavailable, testSchema } from '../helpers/pg.js';
import { startTestSandbox, tempDir } from '../helpers/sandbox.js';
import { smtpAuthWorks } from '../helpers/smtp.js';

const unavailable = await pgUnavailable();
const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

/** Plays the person at the sandbox's device login page. */
async function approveDeviceCode(sandbox: Sandbox, userCode: string, username: string): Promise<void> {
  const res = await httpsRequest(`${sandbox.baseUrl}/devicelogin`, {
    method: 'POST',
    ca: sandbox.caPem,
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ user_code: userCode, username, password: DEFAULT_IDS.userPassword }).toString(),
  });
  assert.ok(res.status < 400, `device login answered ${res.status}: ${res.text}`);
}

/** Resolves when `until` is true, checking every 10 ms for up to 5 s. */
async function waitFor(until: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (await until()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

if (unavailable !== undefined) {
  describe('shared token cache in PostgreSQL', () => {
    it('needs a PostgreSQL server', (t) => t.skip(unavailable));
  });
} else {
  describe('shared token cache in PostgreSQL, two nodes against the sandbox', () => {
    const schema = testSchema();
    const key = randomBytes(32);
    let sandbox: Sandbox & { dir: string };
    const cleanups: Array<() => Promise<void>> = [];

    before(async () => {
      sandbox = await startTestSandbox();
    });
    after(async () => {
      for (const c of cleanups.reverse()) await c();
      await sandbox.close();
      await dropSchema(schema);
    });

    /** A "node": its own data folder and identity, over the given cache store. */
    async function node(cacheStore: PgTokenCacheStore, overrides: Parameters<typeof sandboxConfig>[2] = {}): Promise<Identity> {
      const dir = await tempDir();
      const identity = await createIdentity(sandboxConfig(sandbox, dir.path, overrides), { cacheStore });
      cleanups.push(async () => {
        identity.close();
        await dir.cleanup();
      });
      return identity;
    }

    async function store(): Promise<PgTokenCacheStore> {
      const opened = await PgTokenCacheStore.open(PG_URL, { schema, key });
      cleanups.push(() => opened.close());
      return opened;
    }

    it('makes one token request between two nodes sharing one store when both ask at once on a cold cache', async () => {
      const shared = await store();
      const [a, b] = [await node(shared), await node(shared)];
      const before = sandbox.state.counters.tokenRequests;
      const tokens = await Promise.all([a, b, a, b].map((n) => n.provider.getToken(DEFAULT_IDS.mailbox)));
      assert.equal(sandbox.state.counters.tokenRequests - before, 1, 'one request to the identity platform');
      assert.equal(new Set(tokens.map((t) => t.accessToken)).size, 1, 'both nodes use the same token');
      assert.ok(await smtpAuthWorks(sandbox, DEFAULT_IDS.mailbox, tokens[0]!.accessToken));
    });

    it('makes one request between two nodes with a store (and pool) each, and one again when both must replace the token', async () => {
      // Another app-only cache than the test above: this one starts cold too.
      await pgQuery(`DELETE FROM ${schema}.token_cache WHERE key <> 'relay365-key-check'`);
      const [a, b] = [await node(await store()), await node(await store())];
      const before = sandbox.state.counters.tokenRequests;
      const first = await Promise.all([a, b].map((n) => n.provider.getToken(DEFAULT_IDS.mailbox)));
      assert.equal(sandbox.state.counters.tokenRequests - before, 1);
      assert.equal(first[0]!.accessToken, first[1]!.accessToken);

      // Exchange refused the token on both nodes (535): each must get a new one, and the second to
      // get the lock takes the first's instead of asking again.
      a.provider.invalidate(DEFAULT_IDS.mailbox);
      b.provider.invalidate(DEFAULT_IDS.mailbox);
      const second = await Promise.all([a, b].map((n) => n.provider.getToken(DEFAULT_IDS.mailbox)));
      assert.equal(sandbox.state.counters.tokenRequests - before, 2, 'one more request, not two');
      assert.equal(second[0]!.accessToken, second[1]!.accessToken);
      assert.notEqual(second[0]!.accessToken, first[0]!.accessToken, 'a new token replaced the refused one');
    });

    it('shares a delegated sign-in: one refresh-token request between two nodes, and no token in clear in the table', async () => {
      const delegated = {
        auth: { flow: 'device-code' as const, tenant: DEFAULT_IDS.tenantId, clientId: DEFAULT_IDS.publicClientId },
        mailboxes: [{ address: DEFAULT_IDS.user }],
      };
      const a = await node(await store(), delegated);
      const b = await node(await store(), delegated);
      await a.delegated(DEFAULT_IDS.user)!.loginWithDeviceCode(DEFAULT_IDS.user, (info) => void approveDeviceCode(sandbox, info.userCode, DEFAULT_IDS.user));

      const counters = sandbox.state.counters.tokenRequestsByGrant;
      const deviceCodes = counters[DEVICE_CODE_GRANT] ?? 0;
      const refreshes = counters.refresh_token ?? 0;
      const fromA = await a.provider.getToken(DEFAULT_IDS.user);
      const fromB = await b.provider.getToken(DEFAULT_IDS.user);
      assert.equal(fromB.accessToken, fromA.accessToken, "node b found node a's sign-in and token in the shared cache");
      assert.equal(counters[DEVICE_CODE_GRANT] ?? 0, deviceCodes, 'node b needed no sign-in of its own');

      a.provider.invalidate(DEFAULT_IDS.user);
      b.provider.invalidate(DEFAULT_IDS.user);
      const [renewedA, renewedB] = await Promise.all([a, b].map((n) => n.provider.getToken(DEFAULT_IDS.user)));
      assert.equal((counters.refresh_token ?? 0) - refreshes, 1, 'one refresh-token request for both nodes');
      assert.equal(renewedA!.accessToken, renewedB!.accessToken);
      assert.notEqual(renewedA!.accessToken, fromA.accessToken);
      assert.ok(summarizeToken(renewedB!.accessToken)!.scopes.includes('SMTP.Send'));
      assert.ok(await smtpAuthWorks(sandbox, DEFAULT_IDS.user, renewedB!.accessToken));

      const rows = await pgQuery<{ key: string; value: Buffer }>(`SELECT key, value FROM ${schema}.token_cache`);
      assert.ok(rows.length >= 2, 'the delegated cache and the key check');
      for (const row of rows) {
        for (const secret of [
          fromA.accessToken,
          renewedA!.accessToken,
          renewedA!.accessToken.split('.')[1]!,
          'refresh_token',
          'RefreshToken',
          'AccessToken',
          DEFAULT_IDS.user,
          'secret',
        ]) {
          assert.ok(!row.value.includes(secret), `entry ${row.key} holds ${secret.slice(0, 12)}... in clear`);
        }
      }
    });

    it("refuses to start a node whose RELAY365_SECRET_KEY is not the other nodes' key", async () => {
      await assert.rejects(PgTokenCacheStore.open(PG_URL, { schema, key: randomBytes(32) }), (err) => {
        assert.ok(isRelay365Error(err, 'R365_TOKEN_CACHE_UNREADABLE'), String(err));
        assert.match(err.message, /RELAY365_SECRET_KEY/);
        assert.match(err.message, /same/);
        return true;
      });
    });
  });

  describe('shared token cache in PostgreSQL: the refresh lock', () => {
    const schema = testSchema();
    const key = randomBytes(32);
    after(() => dropSchema(schema));

    it('lets one node at a time hold a key, and nodes with different keys side by side', async () => {
      const [a, b] = [await PgTokenCacheStore.open(PG_URL, { schema, key }), await PgTokenCacheStore.open(PG_URL, { schema, key })];
      try {
        const log: string[] = [];
        const hold = (store: PgTokenCacheStore, name: string, cacheKey: string, ms: number): Promise<void> =>
          store.withLock(cacheKey, async () => {
            log.push(`${name}+`);
            await new Promise((resolve) => setTimeout(resolve, ms));
            // Reads and writes inside the lock use the lock's connection.
            await store.write(cacheKey, `${name} was here`);
            assert.equal(await store.read(cacheKey), `${name} was here`);
            log.push(`${name}-`);
          });
        await Promise.all([hold(a, 'a1', 'msal-x', 100), hold(b, 'b1', 'msal-x', 10), hold(a, 'a2', 'msal-x', 10)]);
        for (let i = 0; i < log.length; i += 2)
          assert.equal(log[i]!.slice(0, -1), log[i + 1]!.slice(0, -1), `no two holders of one key at once: ${log.join(' ')}`);

        log.length = 0;
        await Promise.all([hold(a, 'a', 'msal-y', 100), hold(b, 'b', 'msal-z', 100)]);
        assert.deepEqual(log.slice(0, 2).sort(), ['a+', 'b+'], `different keys do not wait for each other: ${log.join(' ')}`);

        // Re-entrant: a holder may take its own key again (MSAL calls back into the store inside).
        assert.equal(await a.withLock('msal-x', () => a.withLock('msal-x', () => Promise.resolve('inner'))), 'inner');
      } finally {
        await a.close();
        await b.close();
      }
    });

    it('frees the lock of a node whose database session dies, so the other nodes go on', async () => {
      const [a, b] = [await PgTokenCacheStore.open(PG_URL, { schema, key }), await PgTokenCacheStore.open(PG_URL, { schema, key })];
      try {
        let release!: () => void;
        const stuck = new Promise<void>((resolve) => (release = resolve));
        const held = a.withLock('msal-dead', () => stuck);
        const holder = async (): Promise<number | undefined> =>
          (
            await pgQuery<{ pid: number }>(
              `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = hashtext($1 || ' token cache')::oid AND objid = hashtext($2)::oid`,
              [schema, 'msal-dead'],
            )
          )[0]?.pid;
        await waitFor(async () => (await holder()) !== undefined, 'node a to hold the lock');
        let bGotIt = false;
        const waiting = b.withLock('msal-dead', () => {
          bGotIt = true;
          return Promise.resolve();
        });
        await new Promise((resolve) => setTimeout(resolve, 100));
        assert.equal(bGotIt, false, 'node b waits while node a holds the lock');
        // Node a "dies": its session ends, as when its process is killed or its network cut.
        await pgQuery('SELECT pg_terminate_backend($1)', [await holder()]);
        await waiting;
        assert.equal(bGotIt, true);
        release();
        await held;
      } finally {
        await a.close();
        await b.close();
      }
    });

    it('gives up waiting after the lock timeout with a retryable R365_TOKEN_CACHE_UNAVAILABLE', async () => {
      const a = await PgTokenCacheStore.open(PG_URL, { schema, key });
      const b = await PgTokenCacheStore.open(PG_URL, { schema, key, lockTimeoutMs: 200 });
      try {
        let release!: () => void;
        const stuck = new Promise<void>((resolve) => (release = resolve));
        let taken!: () => void;
        const isTaken = new Promise<void>((resolve) => (taken = resolve));
        const held = a.withLock('msal-slow', () => {
          taken();
          return stuck;
        });
        await isTaken;
        await assert.rejects(
          b.withLock('msal-slow', () => Promise.resolve()),
          (err) => isRelay365Error(err, 'R365_TOKEN_CACHE_UNAVAILABLE') && err.retryable && /lock/.test(err.message),
        );
        release();
        await held;
        // The failed wait left nothing behind: the lock can be had again at once.
        assert.equal(await b.withLock('msal-slow', () => Promise.resolve('free')), 'free');
      } finally {
        await a.close();
        await b.close();
      }
    });
  });
}
