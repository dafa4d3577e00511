import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import nodemailer from 'nodemailer';
import { stringify } from 'yaml';
import { DEFAULT_IDS } from '../../src/sandbox/index.js';
import { freePort, startServe } from '../helpers/cli.js';
import { sandboxSettings } from '../helpers/config.js';
import { scenario, startTestSandbox, tempDir } from '../helpers/sandbox.js';

const FULL = process.env.RELAY365_FULL_TESTS === '1';
const TOTAL = FULL ? 5000 : 1000;

describe('crash safety (built CLI, SIGKILL, an outside sqlite3 reader)', () => {
  it(`delivers every acknowledged message of ${TOTAL} though the relay is killed with SIGKILL three times while sqlite3 reads its database every second`, { timeout: 600_000 }, async () => {
    const sandbox = await startTestSandbox({ scenario: scenario((s) => void (s.limits.unlimited = true)) });
    const dir = await tempDir();
    const port = await freePort();
    const httpPort = await freePort();
    const config = join(dir.path, 'relay365.yaml');
    const dataDir = join(dir.path, 'data');
    await writeFile(
      config,
      stringify({
        dataDir,
        log: { level: 'warn' },
        ...sandboxSettings(sandbox),
        auth: { flow: 'client-secret', tenant: DEFAULT_IDS.tenantId, clientId: DEFAULT_IDS.appClientId, clientSecret: DEFAULT_IDS.appSecret },
        mailboxes: [{ address: DEFAULT_IDS.mailbox }],
        limits: { messagesPerMinute: 1_000_000, recipientsPerDay: 100_000_000 },
        queue: { leaseSeconds: 3, retryBaseSeconds: 0.2, retryMaxSeconds: 1 },
        smtp: { listeners: [{ host: '127.0.0.1', port }], allowlist: [{ cidr: '127.0.0.1/32' }] },
        // The HTTP front door opens its tables in the same SQLite file, as in production.
        http: { host: '127.0.0.1', port: httpPort },
      }),
    );
    let relay = (await startServe(config)).child;
    const acked = new Set<number>();
    const retried = new Set<number>();
    let inFlightAtKills = 0;
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port,
      secure: false,
      tls: { rejectUnauthorized: false },
      pool: true,
      maxConnections: 8,
      maxMessages: 50,
    });
    const submit = async (i: number): Promise<void> => {
      for (;;) {
        try {
          await transport.sendMail({
            from: DEFAULT_IDS.mailbox,
            to: `r${i}@example.net`,
            subject: `crash ${i}`,
            text: `message ${i}`,
            messageId: `<crash-${i}@test.example>`,
          });
          acked.add(i);
          return;
        } catch {
          // No 250: the relay is down (or died mid-transaction). A real client retries later; so do we.
          retried.add(i);
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    };
    const killer = (async () => {
      for (let k = 0; k < 3; k++) {
        // A random moment while messages are being accepted and delivered.
        const target = Math.floor(((k + 1) / 4) * TOTAL * (0.8 + Math.random() * 0.3));
        while (acked.size < Math.min(target, TOTAL - 1)) await new Promise((r) => setTimeout(r, 20));
        relay.kill('SIGKILL');
        await new Promise((r) => relay.once('exit', r));
        // Messages the dead relay had leased to Exchange may be sent twice: count them.
        const db = new Database(join(dataDir, 'relay365.db'), { readonly: true });
        inFlightAtKills += (db.prepare("SELECT count(*) AS n FROM messages WHERE state = 'sending'").get() as { n: number }).n;
        db.close();
        relay = (await startServe(config)).child;
      }
    })();
    // What an admin's monitoring does beside the relay: an outside sqlite3 process reading the live file,
    // every second. Each time, the relay must still hold its real log (not a deleted one) open.
    const db = join(dataDir, 'relay365.db');
    let reading = true;
    let reads = 0;
    const deletedSeen: string[] = [];
    const reader = (async () => {
      while (reading) {
        await new Promise((r) => setTimeout(r, 1000));
        const read = await new Promise<number | null>((resolve) => execFile('sqlite3', [db, 'select count(*) from messages'], (err) => resolve(err ? null : 0)));
        if (read === 0) reads += 1;
        const pid = relay.pid;
        if (pid === undefined) continue;
        for (const fd of await readdir(`/proc/${pid}/fd`).catch(() => [])) {
          const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
          if (target.startsWith(dataDir) && target.endsWith(' (deleted)')) deletedSeen.push(target);
        }
      }
    })();
    const queue = Array.from({ length: TOTAL }, (_, i) => i);
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        for (let i = queue.shift(); i !== undefined; i = queue.shift()) await submit(i);
      }),
    );
    await killer;
    transport.close();
    const deadline = Date.now() + 120_000;
    const arrivedIds = () =>
      sandbox.state.messages
        .map((m) => /^Message-ID: <crash-(\d+)@/im.exec(m.raw.toString('latin1'))?.[1])
        .filter((x): x is string => x !== undefined)
        .map(Number);
    while (new Set(arrivedIds()).size < acked.size && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    reading = false;
    await reader;
    relay.kill('SIGTERM');
    await new Promise((r) => relay.once('exit', r));
    const integrity = await new Promise<string>((resolve) => execFile('sqlite3', [db, 'pragma integrity_check'], (err, stdout) => resolve(err ? err.message : stdout.trim())));
    const ids = arrivedIds();
    const unique = new Set(ids);
    const missing = [...acked].filter((i) => !unique.has(i));
    const duplicates = ids.length - unique.size;
    console.log(
      `# crash safety: ${acked.size} acknowledged, ${unique.size} arrived, ${duplicates} duplicates, ${inFlightAtKills} in flight at the kills, ${retried.size} messages retried by the client`,
    );
    console.log(`# crash safety: ${reads} outside reads of the live database, integrity_check: ${integrity}`);
    assert.ok(reads >= 3, `the outside reader ran (${reads} reads)`);
    assert.deepEqual(deletedSeen, [], 'the relay never held a deleted -wal or -shm');
    assert.equal(integrity, 'ok');
    assert.deepEqual(missing, [], 'acknowledged messages were lost');
    assert.equal(acked.size, TOTAL);
    // A duplicate is a message that was being sent when the relay died, or one the client sent again
    // because the kill took its 250 with it.
    assert.ok(duplicates <= inFlightAtKills + retried.size, `${duplicates} duplicates > ${inFlightAtKills} in flight + ${retried.size} retried by the client`);
    await sandbox.close();
    await dir.cleanup();
  });
});
