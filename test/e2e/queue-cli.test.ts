import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { openSqliteStore } from '../../src/outbox/index.js';
import { runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/sandbox.js';

describe('relay365 queue (built CLI on a real SQLite outbox)', () => {
  it('lists, shows with explanations, retries and cancels messages', async () => {
    const dir = await tempDir();
    try {
      const dataDir = join(dir.path, 'data');
      const config = join(dir.path, 'relay365.yaml');
      await writeFile(config, stringify({ dataDir, auth: { flow: 'token-command', command: 'true' }, mailboxes: [{ address: 'relay@contoso.com' }] }));
      const store = await openSqliteStore(join(dataDir, 'relay365.db'));
      const raw = Buffer.from('From: relay@contoso.com\r\nTo: a@example.net\r\nSubject: q\r\n\r\nbody\r\n');
      const failing = await store.enqueue({
        mailbox: 'relay@contoso.com',
        envelope: { from: 'relay@contoso.com', to: ['a@example.net'] },
        raw,
        source: { kind: 'smtp', client: '192.0.2.7', user: 'printer' },
      });
      const waiting = await store.enqueue({
        mailbox: 'relay@contoso.com',
        envelope: { from: 'relay@contoso.com', to: ['b@example.net'] },
        raw,
        source: { kind: 'http' },
      });
      const limits = { messagesPerMinute: 100, recipientsPerDay: 1000, maxConnections: 3, minuteMs: 60_000, dayMs: 86_400_000 };
      const claimed = await store.claim({ mailbox: 'relay@contoso.com', pools: [], owner: 'test', leaseMs: 60_000, limits, max: 1 });
      assert.equal(claimed.messages[0]?.id, failing.id);
      const reply =
        '554 5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to process message due to a permanent exception with message Cannot submit message.';
      await store.complete({
        id: failing.id,
        owner: 'test',
        state: 'failed',
        attempt: {
          at: new Date(),
          mailbox: 'relay@contoso.com',
          reply,
          class: 'permanent',
          explanation: { id: 'smtp-554-5.2.0-sendas', class: 'permanent', cause: 'no SendAs', fix: 'Add-RecipientPermission' },
          durationMs: 12,
          owner: 'test',
        },
      });
      await store.close();

      const list = await runCli(['queue', 'list', '--config', config]);
      assert.equal(list.code, 0, list.stderr);
      assert.match(list.stdout, /queued 1 .*failed 1/);
      assert.match(list.stdout, new RegExp(`${failing.id}\\s+failed`));
      const json = JSON.parse((await runCli(['queue', 'list', '--config', config, '--state', 'failed', '--json'])).stdout) as { items: Array<{ id: string }> };
      assert.deepEqual(
        json.items.map((i) => i.id),
        [failing.id],
      );

      const show = await runCli(['queue', 'show', failing.id, '--config', config]);
      assert.equal(show.code, 0);
      assert.match(show.stdout, /from smtp 192\.0\.2\.7 \(printer\)/);
      assert.match(show.stdout, /554 5\.2\.0/);
      assert.match(show.stdout, /fix:\s+Add-RecipientPermission/);

      assert.equal((await runCli(['queue', 'retry', failing.id, '--config', config])).code, 0);
      assert.equal((await runCli(['queue', 'cancel', waiting.id, '--config', config])).code, 0);
      const again = await runCli(['queue', 'cancel', waiting.id, '--config', config]);
      assert.equal(again.code, 1);
      assert.match(again.stderr, /cannot be cancelled/);
      const after = await runCli(['queue', 'list', '--config', config]);
      assert.match(after.stdout, /queued 1 .*failed 0 +cancelled 1/);
    } finally {
      await dir.cleanup();
    }
  });

  it('shows each recipient of a message with its state and reply, and their counts, in text and --json', async () => {
    const dir = await tempDir();
    try {
      const dataDir = join(dir.path, 'data');
      const config = join(dir.path, 'relay365.yaml');
      await writeFile(config, stringify({ dataDir, auth: { flow: 'token-command', command: 'true' }, mailboxes: [{ address: 'relay@contoso.com' }] }));
      const store = await openSqliteStore(join(dataDir, 'relay365.db'));
      const m = await store.enqueue({
        mailbox: 'relay@contoso.com',
        envelope: { from: 'relay@contoso.com', to: ['good@example.net', 'nobody@contoso.com', 'gone@example.org'] },
        raw: Buffer.from('From: relay@contoso.com\r\nSubject: q\r\nMessage-ID: <q1@contoso.com>\r\n\r\nbody\r\n'),
        messageId: '<q1@contoso.com>',
        source: { kind: 'http' },
      });
      const limits = { messagesPerMinute: 100, recipientsPerDay: 1000, maxConnections: 3, minuteMs: 60_000, dayMs: 86_400_000 };
      await store.claim({ mailbox: 'relay@contoso.com', pools: [], owner: 'test', leaseMs: 60_000, limits, max: 1 });
      // Exchange's RCPT refusal of an unknown address at the tenant's own domain (MS Learn, NDR 5.1.10).
      const notFound = '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient nobody@contoso.com not found by SMTP address lookup';
      await store.complete({
        id: m.id,
        owner: 'test',
        state: 'sent',
        attempt: { at: new Date(), mailbox: 'relay@contoso.com', reply: '250 2.0.0 OK', class: 'sent', explanation: undefined, durationMs: 12, owner: 'test' },
        recipients: [
          { address: 'good@example.net', state: 'accepted' },
          { address: 'nobody@contoso.com', state: 'refused', reply: notFound, explanation: { id: 'smtp-550-5.1.10', class: 'permanent', cause: 'No such address.', fix: 'Correct it.' } },
          { address: 'gone@example.org', state: 'accepted' },
        ],
      });
      // The remote server's reply, as the sandbox's NDR for an unknown external user quotes it (src/sandbox/ndr.ts).
      const diagnostic = '550 5.1.1 <gone@example.org>: Recipient address rejected: User unknown in local recipient table';
      const bounce = { mailbox: 'relay@contoso.com', reportId: 'ndr-1', originalMessageId: '<q1@contoso.com>', recipient: 'gone@example.org', action: 'failed' as const, status: '5.1.1', diagnostic, receivedAt: new Date() };
      assert.equal((await store.recordBounce(bounce)).matched, m.id);
      await store.close();

      const show = await runCli(['queue', 'show', m.id, '--config', config]);
      assert.equal(show.code, 0, show.stderr);
      assert.match(show.stdout, /recipients: 1 accepted, 1 refused, 1 bounced\n/);
      assert.match(show.stdout, /\n {4}accepted good@example\.net\n/);
      assert.match(show.stdout, /\n {4}refused +nobody@contoso\.com {2}550 5\.1\.10 RESOLVER\.ADR\.RecipientNotFound;.*\n {6}cause: No such address\.\n {6}fix: {3}Correct it\.\n/);
      assert.match(show.stdout, /\n {4}bounced +gone@example\.org {2}5\.1\.1 550 5\.1\.1 <gone@example\.org>: Recipient address rejected/);

      const json = JSON.parse((await runCli(['queue', 'show', m.id, '--config', config, '--json'])).stdout) as {
        recipientCounts: Record<string, number>;
        recipients: Array<{ address: string; state: string; reply?: string; dsnStatus?: string }>;
      };
      assert.deepEqual(json.recipientCounts, { pending: 0, accepted: 1, refused: 1, bounced: 1, delayed: 0 });
      assert.deepEqual(
        json.recipients.map((r) => [r.address, r.state, r.dsnStatus ?? null, r.reply ?? null]),
        [
          ['good@example.net', 'accepted', null, null],
          ['nobody@contoso.com', 'refused', null, notFound],
          ['gone@example.org', 'bounced', '5.1.1', diagnostic],
        ],
      );
    } finally {
      await dir.cleanup();
    }
  });

  it('lists paused mailboxes with since-when, cause and fix, and marks a resume that makes their queue due now', async () => {
    const dir = await tempDir();
    try {
      const dataDir = join(dir.path, 'data');
      const config = join(dir.path, 'relay365.yaml');
      const mailbox = 'relay@contoso.com';
      await writeFile(config, stringify({ dataDir, auth: { flow: 'token-command', command: 'true' }, mailboxes: [{ address: mailbox }, { address: 'other@contoso.com' }] }));
      let store = await openSqliteStore(join(dataDir, 'relay365.db'));
      const raw = Buffer.from('From: relay@contoso.com\r\nTo: a@example.net\r\nSubject: q\r\n\r\nbody\r\n');
      const held = await store.enqueue({ mailbox, envelope: { from: mailbox, to: ['a@example.net'] }, raw, source: { kind: 'smtp' } });
      const limits = { messagesPerMinute: 100, recipientsPerDay: 1000, maxConnections: 3, minuteMs: 60_000, dayMs: 86_400_000 };
      await store.claim({ mailbox, pools: [], owner: 'test', leaseMs: 60_000, limits, max: 1 });
      const reply = '554 5.2.2 mailbox full; STOREDRV.Submission.Exception:QuotaExceededException.MapiExceptionQuotaExceeded';
      const explanation = { id: 'smtp-554-5.2.2-mailbox-full', class: 'blocked' as const, cause: 'Sent Items filled the mailbox.', fix: 'Add a retention policy.' };
      const probeAt = new Date(Date.now() + 3_600_000);
      await store.complete({
        id: held.id,
        owner: 'test',
        state: 'deferred',
        nextAttemptAt: probeAt,
        attempt: { at: new Date(), mailbox, reply, class: 'blocked', explanation, durationMs: 5, owner: 'test' },
      });
      const since = new Date(Date.now() - 60_000);
      await store.pauseMailbox({ mailbox, class: 'blocked', reply, explanation, owner: 'worker-1', at: since });
      await store.close();

      const paused = await runCli(['queue', 'paused', '--config', config]);
      assert.equal(paused.code, 0, paused.stderr);
      assert.match(paused.stdout, new RegExp(`^relay@contoso\\.com  paused since ${since.toISOString().replace(/\./g, '\\.')} \\(blocked by Exchange\\)$`, 'm'));
      assert.match(paused.stdout, /^ {2}reply: 554 5\.2\.2 mailbox full/m);
      assert.match(paused.stdout, /^ {2}cause: Sent Items filled the mailbox\.$/m);
      assert.match(paused.stdout, /^ {2}fix: +Add a retention policy\.$/m);
      assert.match(paused.stdout, /^ {2}once fixed: relay365 queue resume relay@contoso\.com$/m);
      const listed = JSON.parse((await runCli(['queue', 'paused', '--config', config, '--json'])).stdout) as { items: Array<{ mailbox: string; since: string; reply: string }> };
      assert.deepEqual(
        listed.items.map((i) => [i.mailbox, i.since, i.reply]),
        [[mailbox, since.toISOString(), reply]],
      );

      const notPaused = await runCli(['queue', 'resume', 'other@contoso.com', '--config', config]);
      assert.equal(notPaused.code, 0, notPaused.stderr);
      assert.match(notPaused.stdout, /other@contoso\.com is not paused: nothing to resume\./);
      const unknown = await runCli(['queue', 'resume', 'nobody@contoso.com', '--config', config]);
      assert.equal(unknown.code, 1);
      assert.match(unknown.stderr, /nobody@contoso\.com is not a configured mailbox; paused now: relay@contoso\.com/);
      const usage = await runCli(['queue', 'resume', '--config', config]);
      assert.equal(usage.code, 1);
      assert.match(usage.stderr, /needs a mailbox .*or --all/);

      const resumed = await runCli(['queue', 'resume', 'Relay@Contoso.com', '--config', config]);
      assert.equal(resumed.code, 0, resumed.stderr);
      assert.match(resumed.stdout, /^relay@contoso\.com: resume asked \(paused since .*: Sent Items filled the mailbox\.\)\. A running relay365 resumes it within seconds/m);
      store = await openSqliteStore(join(dataDir, 'relay365.db'));
      try {
        const [pause] = await store.mailboxPauses();
        assert.ok(pause?.resumeRequestedAt !== undefined, 'the request is in the outbox for the workers');
        const message = await store.get(held.id);
        assert.ok(message !== undefined && message.nextAttemptAt.getTime() <= Date.now(), 'its deferred message is due now, not at the next probe');
      } finally {
        await store.close();
      }
      const again = await runCli(['queue', 'paused', '--config', config]);
      assert.match(again.stdout, /^ {2}resume asked at .*: a running relay365 resumes it within seconds$/m);
      const all = JSON.parse((await runCli(['queue', 'resume', '--all', '--config', config, '--json'])).stdout) as { resumeRequested: Array<{ mailbox: string }> };
      assert.deepEqual(
        all.resumeRequested.map((p) => p.mailbox),
        [mailbox],
      );
    } finally {
      await dir.cleanup();
    }
  });
});
