/**
 * Upgrading a SQLite outbox of relay365 0.1.0 (schema 8) with the built CLI, as an admin would: the
 * steps that rebuild tables (9, 10) wait for the file to be theirs alone, so a relay of the previous
 * release still running on it is refused with the cause and the fix, and nothing changes; once it has
 * stopped, `serve` upgrades the file itself and its queued message is still there.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { MIGRATIONS } from '../../src/outbox/sqlite-sql.js';
import { runCli, startServe, stop } from '../helpers/cli.js';
import { outboxAtSchema } from '../helpers/outbox-schema.js';
import { tempDir } from '../helpers/sandbox.js';

const CONFIG =
  'dataDir: ./data\nlog: { level: warn }\n' +
  'auth: { flow: client-secret, tenant: contoso.example, clientId: 00000000-0000-0000-0000-000000000001, clientSecret: unused }\n' +
  'mailboxes: [ { address: relay@contoso.example } ]\nsmtp: { listeners: [ { host: 127.0.0.1, port: 0, tls: none } ], allowlist: [ { cidr: 127.0.0.1/32 } ] }\n' +
  'http: { enabled: false }\n';

/** The outbox as 0.1.0 leaves it: schema 8, one message queued for later (so serve does not send it). */
function schema8(path: string): void {
  const db = outboxAtSchema(path, 8);
  const later = Date.now() + 3_600_000;
  db.prepare(
    `INSERT INTO messages (id, mailbox, pool, envelope_from, envelope_to, recipients, size, message_id, source, state, attempts,
       created_at, updated_at, next_attempt_at, send_at)
     VALUES ('0190f1c0-0000-7000-8000-000000000001', 'relay@contoso.example', NULL, 'app@contoso.example', '["someone@example.net"]', 1, 20, NULL,
       '{"kind":"smtp"}', 'queued', 0, ?, ?, ?, ?)`,
  ).run(Date.now(), Date.now(), later, later);
  db.prepare("INSERT INTO message_bodies (id, raw) VALUES ('0190f1c0-0000-7000-8000-000000000001', ?)").run(Buffer.from('Subject: before\r\n\r\nx\r\n'));
  db.prepare(
    "INSERT INTO message_recipients (message_id, position, address, state, updated_at) VALUES ('0190f1c0-0000-7000-8000-000000000001', 0, 'someone@example.net', 'pending', 0)",
  ).run();
  db.close();
}

describe('relay365 on a SQLite outbox of 0.1.0', () => {
  it('refuses to upgrade it while another process has it open, then serve upgrades it, its queue kept', async () => {
    const dir = await tempDir();
    try {
      const file = join(dir.path, 'relay365.yaml');
      await writeFile(file, CONFIG);
      await mkdir(join(dir.path, 'data'), { recursive: true });
      const path = join(dir.path, 'data', 'relay365.db');
      schema8(path);

      // The previous release's relay, idle between sends: its connection keeps the file open.
      const running = new Database(path);
      try {
        running.prepare('SELECT count(*) FROM messages').get();
        const refused = await runCli(['db', 'migrate', '--config', file]);
        assert.notEqual(refused.code, 0, refused.stdout);
        assert.match(refused.stderr, /R365_OUTBOX_UNAVAILABLE/);
        assert.match(refused.stderr, /Cannot upgrade the outbox database .*relay365\.db to schema 10: another process has it open/);
        assert.match(refused.stderr, /Stop every relay365 process that uses the file/);
        assert.equal(running.prepare('SELECT max(version) FROM schema_migrations').pluck().get(), 8, 'nothing applied');
        // It goes on working on its tables as they were.
        running.prepare("INSERT INTO sends (mailbox, at, recipients, message_id) VALUES ('relay@contoso.example', 1, 1, 'x')").run();
      } finally {
        running.close();
      }

      const serve = await startServe(file);
      try {
        const listed = await runCli(['queue', 'list', '--config', file, '--json']);
        assert.equal(listed.code, 0, listed.stderr);
        const items = (JSON.parse(listed.stdout) as { items: Array<{ id: string; state: string }> }).items;
        assert.deepEqual(
          items.map((m) => [m.id, m.state]),
          [['0190f1c0-0000-7000-8000-000000000001', 'queued']],
        );
      } finally {
        assert.equal(await stop(serve.child), 0);
      }
      // serve applied every step itself (nothing of its own held the file open before the outbox did).
      const migrated = await runCli(['db', 'migrate', '--config', file, '--json']);
      assert.equal(migrated.code, 0, migrated.stderr);
      assert.deepEqual((JSON.parse(migrated.stdout) as { outbox: { applied: number[]; version: number } }).outbox, {
        applied: [],
        version: Math.max(...MIGRATIONS.map((m) => m.version)),
      });
    } finally {
      await dir.cleanup();
    }
  });
});
