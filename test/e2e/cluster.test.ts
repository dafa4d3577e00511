import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import pg from 'pg';
import { stringify } from 'yaml';
import { DEFAULT_IDS } from '../../src/sandbox/index.js';
import { freePort, startServe } from '../helpers/cli.js';
import { sandboxSettings } from '../helpers/config.js';
import { scenario, startTestSandbox, tempDir } from '../helpers/sandbox.js';

const FULL = process.env.RELAY365_FULL_TESTS === '1';
const TOTAL = FULL ? 3000 : 900;
const PG_URL = 'postgres://postgres@127.0.0.1:5432/test';
const MAILBOXES = [DEFAULT_IDS.mailbox, 'm2@contoso.example', 'm3@contoso.example'];

describe('three relay365 nodes on one PostgreSQL (built CLI)', () => {
  it(`share one queue, cluster-wide limits and one token: ${TOTAL} messages, one node SIGKILLed mid-run`, { timeout: 600_000 }, async () => {
    // Tight limits, cluster-wide: 60 messages per 2-second "minute" and 2 connections per mailbox.
    const sandbox = await startTestSandbox({
      scenario: scenario((s) => {
        Object.assign(s.limits, { messagesPerMinute: 60, connectionsPerMailbox: 2, timeScale: 30 });
        s.token.lifetimeSeconds = 3600;
        const t = s.tenants[0]!;
        for (const [i, upn] of MAILBOXES.slice(1).entries())
          t.users.push({ ...structuredClone(t.users[0]!), upn, id: `cccccccc-0000-4000-8000-00000000000${i}`, sendAs: [] });
      }),
    });
    const dir = await tempDir();
    const schema = `relay365_cluster_${randomBytes(4).toString('hex')}`;
    const env = { RELAY365_SECRET_KEY: randomBytes(32).toString('base64') };
    const ports = await Promise.all([freePort(), freePort(), freePort()]);
    const configs = await Promise.all(
      ports.map(async (port, i) => {
        const path = join(dir.path, `node${i}.yaml`);
        await writeFile(
          path,
          stringify({
            dataDir: join(dir.path, `data${i}`),
            log: { level: 'warn' },
            ...sandboxSettings(sandbox),
            auth: { flow: 'client-secret', tenant: DEFAULT_IDS.tenantId, clientId: DEFAULT_IDS.appClientId, clientSecret: DEFAULT_IDS.appSecret },
            mailboxes: MAILBOXES.map((address) => ({ address })),
            limits: { messagesPerMinute: 60, minuteMs: 2000, windowMarginMs: 100 },
            delivery: { maxConnections: 2, maxMessagesPerConnection: 1000 },
            queue: { url: PG_URL, schema, leaseSeconds: 10, retryBaseSeconds: 0.2, retryMaxSeconds: 1 },
            smtp: { listeners: [{ host: '127.0.0.1', port }], allowlist: [{ cidr: '127.0.0.1/32' }] },
            http: { enabled: false },
          }),
        );
        return path;
      }),
    );
    const db = new pg.Client({ connectionString: PG_URL });
    await db.connect();
    // The first node migrates; the others start at once and must cope (migrations run under an advisory lock).
    const nodes = await Promise.all(configs.map((c) => startServe(c, env)));
    const acked = new Set<number>();
    const retried = new Set<number>();
    const alive = [true, true, true];
    const transports = ports.map((port) =>
      nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, tls: { rejectUnauthorized: false }, pool: true, maxConnections: 3 }),
    );
    let victimInFlight = 0;
    try {
      const submit = async (i: number): Promise<void> => {
        for (let attempt = 0; ; attempt++) {
          const n = (i + attempt) % 3;
          if (!alive[n]) continue;
          try {
            await transports[n]!.sendMail({
              from: MAILBOXES[i % 3],
              to: `r${i}@example.net`,
              subject: `cluster ${i}`,
              text: `message ${i}`,
              messageId: `<cluster-${i}@test.example>`,
            });
            acked.add(i);
            return;
          } catch {
            retried.add(i);
            await new Promise((r) => setTimeout(r, 50));
          }
        }
      };
      const killer = (async () => {
        while (acked.size < TOTAL / 2) await new Promise((r) => setTimeout(r, 20));
        alive[1] = false;
        nodes[1]!.child.kill('SIGKILL');
        await new Promise((r) => nodes[1]!.child.once('exit', r));
        const res = await db.query<{ n: string }>(`SELECT count(*) AS n FROM ${schema}.messages WHERE state = 'sending' AND lease_owner = $1`, [
          nodes[1]!.owner,
        ]);
        victimInFlight = Number(res.rows[0]!.n);
      })();
      const queue = Array.from({ length: TOTAL }, (_, i) => i);
      await Promise.all(
        Array.from({ length: 9 }, async () => {
          for (let i = queue.shift(); i !== undefined; i = queue.shift()) await submit(i);
        }),
      );
      await killer;
      const arrived = () =>
        sandbox.state.messages
          .map((m) => /^Message-ID: <cluster-(\d+)@/im.exec(m.raw.toString('latin1'))?.[1])
          .filter((x): x is string => x !== undefined)
          .map(Number);
      const deadline = Date.now() + 180_000;
      while (new Set(arrived()).size < acked.size && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
      const ids = arrived();
      const unique = new Set(ids);
      const duplicates = ids.length - unique.size;
      const missing = [...acked].filter((i) => !unique.has(i));
      console.log(
        `# cluster: ${acked.size} acknowledged, ${unique.size} arrived, ${duplicates} duplicates (dead node had ${victimInFlight} in flight, ${retried.size} retried by clients), ` +
          `throttling replies ${sandbox.state.counters.throttled}, token requests ${sandbox.state.counters.tokenRequests}, max connections per mailbox ${JSON.stringify(sandbox.state.counters.maxConcurrentByMailbox)}`,
      );
      assert.equal(acked.size, TOTAL);
      assert.deepEqual(missing, [], 'acknowledged messages were lost');
      assert.ok(duplicates <= victimInFlight + retried.size, "duplicates beyond the dead node's in-flight messages");
      assert.equal(sandbox.state.counters.throttled, 0, 'cluster-wide limits held: no throttling reply');
      // One app-only token serves all three mailboxes; the cluster shares it through PostgreSQL.
      assert.equal(sandbox.state.counters.tokenRequests, 1, 'one token request for the whole cluster within a token lifetime');
    } finally {
      for (const t of transports) t.close();
      for (const [i, n] of nodes.entries()) if (alive[i]) n.child.kill('SIGTERM');
      await Promise.all(nodes.map((n, i) => (alive[i] && n.child.exitCode === null ? new Promise((r) => n.child.once('exit', r)) : Promise.resolve())));
      await db.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await db.end();
      await sandbox.close();
      await dir.cleanup();
    }
  });
});
