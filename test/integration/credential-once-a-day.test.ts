import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { startRelay, type Relay } from '../../src/runtime/index.js';
import { DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';
import { sandboxConfig } from '../helpers/config.js';
import { PG_URL, dropSchema, pgQuery, pgUnavailable, testSchema } from '../helpers/pg.js';
import { startTestSandbox, tempDir } from '../helpers/sandbox.js';
import { until } from '../helpers/wait.js';

const DAY = 86_400_000;
const ENDS = new Date(Date.now() + 20 * DAY).toISOString().slice(0, 10);
const MAILBOX = DEFAULT_IDS.mailbox;

/** A webhook receiver that keeps the bodies it was posted. */
async function receiver(): Promise<{ url: string; bodies: string[]; close: () => Promise<void> }> {
  const bodies: string[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      bodies.push(body);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`,
    bodies,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

/** True once the relay's credential check has run: it sets the gauge right before it raises the event. */
async function checked(relay: Relay): Promise<boolean> {
  const text = await relay.metrics.render({ messages: [], waiting: 0, oldestWaitingSeconds: 0, mailboxes: [] });
  return text.includes(`relay365_credential_expiry_timestamp_seconds{mailbox="${MAILBOX}",kind="client-secret"}`);
}

/**
 * Time for a second delivery to be stored and posted if it were (the webhook poll is 100 ms here): a
 * grace period before checking that nothing more came, not a measure of anything.
 */
const GRACE_MS = 1500;

function relayConfig(sandbox: Sandbox, dataDir: string, url: string, extra: object = {}): ReturnType<typeof sandboxConfig> {
  return sandboxConfig(sandbox, dataDir, {
    auth: { flow: 'client-secret', tenant: DEFAULT_IDS.tenantId, clientId: DEFAULT_IDS.appClientId, clientSecret: DEFAULT_IDS.appSecret, secretExpires: ENDS },
    http: { enabled: false, webhooks: [{ url, secret: 'whsec-once-a-day', events: ['credential.expiring'] }] },
    ...extra,
  });
}

const WEBHOOK_TIMING = { webhooks: { backoffBaseMs: 100, backoffMaxMs: 400, pollMs: 100 } };

describe('credential.expiring once a day, kept in the store (issue 19)', () => {
  let sandbox: Sandbox & { dir: string };
  before(async () => {
    sandbox = await startTestSandbox();
  });
  after(async () => {
    await sandbox.close();
  });

  it('SQLite: a restart the same day does not post it again', async () => {
    const dir = await tempDir();
    const hooks = await receiver();
    try {
      const first = await startRelay(relayConfig(sandbox, dir.path, hooks.url), WEBHOOK_TIMING);
      try {
        await until(() => hooks.bodies.length > 0, 10_000, 'the first credential.expiring webhook');
      } finally {
        await first.close();
      }
      const second = await startRelay(relayConfig(sandbox, dir.path, hooks.url), WEBHOOK_TIMING);
      try {
        await until(() => checked(second), 10_000, "the restarted relay's credential check");
        await new Promise((r) => setTimeout(r, GRACE_MS));
        assert.equal(hooks.bodies.length, 1, 'posted once, not again after the restart');
      } finally {
        await second.close();
      }
      const db = new Database(join(dir.path, 'relay365.db'), { readonly: true });
      try {
        const rows = db.prepare(`SELECT state FROM http_webhook_deliveries WHERE event_type = 'credential.expiring'`).all() as Array<{ state: string }>;
        assert.deepEqual(rows, [{ state: 'delivered' }]);
      } finally {
        db.close();
      }
      const event = JSON.parse(hooks.bodies[0]!) as { id: string; type: string; data: { mailbox: string; expiresAt: string } };
      assert.equal(event.type, 'credential.expiring');
      assert.match(event.id, /^evt_credential_[0-9a-f]{32}$/);
      assert.equal(event.data.mailbox, MAILBOX);
      assert.equal(event.data.expiresAt, `${ENDS}T23:59:59.000Z`);
      assert.equal('eventId' in event.data, false, "the id is the envelope's, not repeated in data");
    } finally {
      await hooks.close();
      await dir.cleanup();
    }
  });

  describe('PostgreSQL', async () => {
    const unavailable = await pgUnavailable();
    const schema = testSchema();
    after(async () => {
      if (!unavailable) await dropSchema(schema);
    });

    it('two relays on one schema post it once between them', { skip: unavailable ?? false }, async () => {
      const env = { ...process.env, RELAY365_SECRET_KEY: randomBytes(32).toString('base64') };
      const dirs = [await tempDir(), await tempDir()];
      const hooks = await receiver();
      const relays: Relay[] = [];
      try {
        for (const dir of dirs)
          relays.push(await startRelay(relayConfig(sandbox, dir.path, hooks.url, { queue: { url: PG_URL, schema } }), { env, ...WEBHOOK_TIMING }));
        for (const relay of relays) await until(() => checked(relay), 10_000, "each node's credential check");
        await until(() => hooks.bodies.length > 0, 10_000, 'the credential.expiring webhook');
        await new Promise((r) => setTimeout(r, GRACE_MS));
        assert.equal(hooks.bodies.length, 1, 'posted once, not once per node');
        const rows = await pgQuery<{ state: string }>(`SELECT state FROM ${schema}.http_webhook_deliveries WHERE event_type = 'credential.expiring'`);
        assert.deepEqual(rows, [{ state: 'delivered' }]);
      } finally {
        for (const relay of relays) await relay.close();
        await hooks.close();
        for (const dir of dirs) await dir.cleanup();
      }
    });
  });
});
