import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { composeMessage } from '../../src/delivery/index.js';
import { startRelay } from '../../src/runtime/index.js';
import { DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';
import { sandboxConfig } from '../helpers/config.js';
import { PG_URL, dropSchema, pgQuery, pgUnavailable, testSchema } from '../helpers/pg.js';
import { startTestSandbox, tempDir } from '../helpers/sandbox.js';

const unavailable = await pgUnavailable();

async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('the delivery worker through a database outage', { skip: unavailable }, () => {
  const schema = testSchema();
  let sandbox: Sandbox & { dir: string };
  before(async () => {
    sandbox = await startTestSandbox();
  });
  after(async () => {
    await sandbox.close();
    await dropSchema(schema);
  });

  it("keeps the process alive and loses nothing while PostgreSQL cuts the relay's connections mid-send", async () => {
    // A name of this test's own, so the cuts reach this relay's connections and no other test's.
    const app = `relay365-outage-${randomBytes(4).toString('hex')}`;
    const url = `${PG_URL}?application_name=${app}`;
    const dir = await tempDir();
    const rejections: unknown[] = [];
    const onRejection = (reason: unknown): void => void rejections.push(reason);
    process.on('unhandledRejection', onRejection);
    const relay = await startRelay(sandboxConfig(sandbox, dir.path, { queue: { url, schema, leaseSeconds: 10 } }), {
      env: { ...process.env, RELAY365_SECRET_KEY: randomBytes(32).toString('base64') },
    });
    let cutting = true;
    let cuts = 0;
    try {
      const total = 20;
      for (let i = 0; i < total; i++) {
        const m = await composeMessage({ from: DEFAULT_IDS.mailbox, to: `r${i}@example.net`, subject: `outage ${i}`, text: 'x' });
        await relay.enqueue({ mailbox: DEFAULT_IDS.mailbox, envelope: m.envelope, raw: m.raw, source: { kind: 'library' } });
      }
      // What a failover or an admin's pg_terminate_backend does: every connection of the relay is cut,
      // again and again, while it claims, sends and records outcomes.
      const cutter = (async () => {
        const end = Date.now() + 4000;
        while (cutting && Date.now() < end) {
          const rows = await pgQuery<{ ok: boolean }>('SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = $1', [app]);
          cuts += rows.filter((r) => r.ok).length;
          await new Promise((r) => setTimeout(r, 120));
        }
      })();
      await cutter;
      assert.ok(cuts >= 3, `the relay's connections were cut (${cuts} times)`);
      await until(async () => (await relay.store.counts()).sent === total, 60_000, 'every message sent after the outage');
      const counts = await relay.store.counts();
      assert.equal(counts.failed ?? 0, 0, 'no message failed because of the outage');
      const subjects = new Set(sandbox.state.messages.map((m) => /^Subject: (outage \d+)$/m.exec(m.raw.toString('utf8'))?.[1]).filter(Boolean));
      assert.equal(subjects.size, total, 'Exchange received every message (at least once)');
      assert.deepEqual(rejections, [], 'no promise of the relay was left to reject unhandled');
    } finally {
      cutting = false;
      process.off('unhandledRejection', onRejection);
      await relay.close();
      await dir.cleanup();
    }
  });
});
