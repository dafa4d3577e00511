/**
 * The CLI's --json and the HTTP API print one shape (issue 21): the built CLI and `relay365 serve`
 * (its HTTP door) read the same SQLite outbox, and for the same messages and suppressions the JSON
 * of `queue list`, `queue show` and `suppression list` equals what `GET /v1/messages`,
 * `GET /v1/messages/{id}` and `GET /v1/suppressions` answer, field for field.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';
import { freePort, runCli, startServe, stop } from '../helpers/cli.js';
import { sandboxSettings } from '../helpers/config.js';
import { scenario, startTestSandbox, tempDir } from '../helpers/sandbox.js';
import { until } from '../helpers/wait.js';

const MAILBOX = DEFAULT_IDS.mailbox;
/** Addresses of the tenant's own domain that do not exist: Exchange refuses them at RCPT TO (550 5.1.10). */
const NOBODY = `nobody@${DEFAULT_IDS.tenantDomain}`;
const NOBODY_ELSE = `nobody-else@${DEFAULT_IDS.tenantDomain}`;

interface Page {
  items: Array<{ id: string; state: string }>;
  nextCursor: string | null;
}

describe('the CLI --json and the HTTP API show messages and suppressions alike (built CLI, serve over one SQLite outbox)', () => {
  let sandbox: Sandbox & { dir: string };
  let dir: { path: string; cleanup: () => Promise<void> };
  let config: string;
  let serve: ChildProcess;
  let base: string;
  let key: string;
  const ids: Record<'sent' | 'partly' | 'failed' | 'cancelled', string> = { sent: '', partly: '', failed: '', cancelled: '' };

  /** The CLI's JSON output of `args` (with this test's config); fails the test on a non-zero exit. */
  async function cliJson(...args: string[]): Promise<unknown> {
    const out = await runCli([...args, '--config', config, '--json']);
    assert.equal(out.code, 0, `relay365 ${args.join(' ')}: ${out.stderr}`);
    return JSON.parse(out.stdout) as unknown;
  }

  async function api(method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown }> {
    const res = await fetch(`${base}/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    return { status: res.status, json: await res.json() };
  }

  async function send(to: string[], subject: string): Promise<string> {
    const res = await api('POST', '/messages', { from: MAILBOX, to, subject, text: `${subject}.` });
    assert.equal(res.status, 202, JSON.stringify(res.json));
    return (res.json as { id: string }).id;
  }

  /** Waits until the relay has finished with the message (sent or failed) and returns its state. */
  async function finished(id: string): Promise<string> {
    return until(
      async () => {
        const { json } = await api('GET', `/messages/${id}`);
        const state = (json as { state: string }).state;
        return state === 'sent' || state === 'failed' ? state : undefined;
      },
      30_000,
      `message ${id} sent or failed`,
      50,
    );
  }

  before(async () => {
    sandbox = await startTestSandbox({
      scenario: scenario((s) => {
        s.mailFlow.unknownRecipients = [NOBODY, NOBODY_ELSE];
      }),
    });
    dir = await tempDir();
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    config = join(dir.path, 'relay365.yaml');
    await writeFile(
      config,
      stringify({
        dataDir: dir.path,
        log: { level: 'warn' },
        ...sandboxSettings(sandbox),
        auth: { flow: 'client-secret', tenant: DEFAULT_IDS.tenantId, clientId: DEFAULT_IDS.appClientId, clientSecret: DEFAULT_IDS.appSecret },
        mailboxes: [{ address: MAILBOX }],
        smtp: { enabled: false },
        http: { host: '127.0.0.1', port },
      }),
      { mode: 0o600 },
    );
    key = ((await cliJson('apikey', 'create', '--name', 'parity', '--scope', 'send,read,admin')) as { key: string }).key;
    serve = (await startServe(config)).child;

    ids.sent = await send(['alice@example.net', 'bob@example.net'], 'Everyone got it');
    ids.partly = await send(['carol@example.net', NOBODY], 'One refused');
    ids.failed = await send([NOBODY], 'All refused');
    ids.cancelled = await send([NOBODY_ELSE], 'Failed, then cancelled');
    assert.deepEqual(
      await Promise.all([ids.sent, ids.partly, ids.failed, ids.cancelled].map(finished)),
      ['sent', 'sent', 'failed', 'failed'],
    );
    const cancelled = await api('DELETE', `/messages/${ids.cancelled}`);
    assert.equal(cancelled.status, 200, JSON.stringify(cancelled.json));

    assert.equal((await api('POST', '/suppressions', { address: 'gone@example.org', reason: 'left the company' })).status, 201);
    await cliJson('suppression', 'add', 'old@example.org', '--reason', 'asked to be removed');
  });

  after(async () => {
    if (serve) await stop(serve);
    await sandbox.close();
    await dir.cleanup();
  });

  it('queue show <id> --json is GET /v1/messages/{id}: sent, sent with a refused recipient, failed and cancelled', async () => {
    for (const [what, id] of Object.entries(ids)) {
      const fromApi = await api('GET', `/messages/${id}`);
      assert.equal(fromApi.status, 200);
      assert.deepEqual(await cliJson('queue', 'show', id), fromApi.json, what);
    }
    // The comparison holds something: the refused recipient with its reply and explanation, ISO dates, nulls.
    const partly = (await cliJson('queue', 'show', ids.partly)) as {
      recipientCounts: Record<string, number>;
      recipients: Array<{ address: string; state: string; reply: string | null; explanation: { cause: string } | null; updatedAt: string }>;
      createdAt: string;
      nextAttemptAt: null;
    };
    assert.deepEqual(partly.recipientCounts, { pending: 0, accepted: 1, refused: 1, bounced: 0, delayed: 0 });
    const refused = partly.recipients.find((r) => r.address === NOBODY);
    assert.equal(refused?.state, 'refused');
    assert.match(refused.reply ?? '', /^550 5\.1\.10 /);
    assert.ok(refused.explanation?.cause, 'the refusal is explained');
    assert.equal(new Date(partly.createdAt).toISOString(), partly.createdAt);
    assert.equal(partly.nextAttemptAt, null);
  });

  it('queue list --json is GET /v1/messages, unfiltered and with each search filter', async () => {
    const all = (await cliJson('queue', 'list')) as Page;
    assert.deepEqual(all, (await api('GET', '/messages')).json);
    assert.deepEqual(
      all.items.map((m) => m.id),
      [ids.cancelled, ids.failed, ids.partly, ids.sent],
      'newest first',
    );
    assert.deepEqual(
      all.items.map((m) => m.state),
      ['cancelled', 'failed', 'sent', 'sent'],
    );

    const createdAt = ((await api('GET', `/messages/${ids.partly}`)).json as { createdAt: string }).createdAt;
    const searches: Array<[string[], string]> = [
      [['--state', 'failed'], 'state=failed'],
      [['--mailbox', MAILBOX.toUpperCase()], `mailbox=${encodeURIComponent(MAILBOX.toUpperCase())}`],
      [['--recipient', NOBODY.toUpperCase()], `recipient=${encodeURIComponent(NOBODY.toUpperCase())}`],
      [['--since', createdAt], `since=${encodeURIComponent(createdAt)}`],
      [['--until', createdAt], `until=${encodeURIComponent(createdAt)}`],
      [['--tag', 'no-such-tag'], 'tag=no-such-tag'],
    ];
    for (const [flags, query] of searches) {
      const fromApi = await api('GET', `/messages?${query}`);
      assert.equal(fromApi.status, 200, `${query}: ${JSON.stringify(fromApi.json)}`);
      assert.deepEqual(await cliJson('queue', 'list', ...flags), fromApi.json, flags.join(' '));
    }
    assert.deepEqual(
      ((await cliJson('queue', 'list', '--recipient', NOBODY)) as Page).items.map((m) => m.id),
      [ids.failed, ids.partly],
    );
    assert.deepEqual(((await cliJson('queue', 'list', '--until', createdAt)) as Page).items.map((m) => m.id), [ids.sent], '--until is exclusive');
  });

  it('pages as the API does: --limit, then --cursor with the nextCursor printed', async () => {
    const first = (await cliJson('queue', 'list', '--limit', '3')) as Page;
    assert.deepEqual(first, (await api('GET', '/messages?limit=3')).json);
    assert.equal(first.items.length, 3);
    assert.ok(first.nextCursor, 'a next page is named');
    const second = (await cliJson('queue', 'list', '--limit', '3', '--cursor', first.nextCursor)) as Page;
    assert.deepEqual(second, (await api('GET', `/messages?limit=3&cursor=${encodeURIComponent(first.nextCursor)}`)).json);
    assert.deepEqual(
      second.items.map((m) => m.id),
      [ids.sent],
    );
    assert.equal(second.nextCursor, null);

    const words = await runCli(['queue', 'list', '--limit', '3', '--config', config]);
    assert.equal(words.code, 0, words.stderr);
    assert.match(words.stdout, new RegExp(`\\(more: the same command with --cursor ${first.nextCursor.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\)\\n$`));
  });

  it('suppression list --json is GET /v1/suppressions, page by page with --cursor', async () => {
    const listed = (await cliJson('suppression', 'list')) as { items: Array<{ address: string }> };
    assert.deepEqual(listed, (await api('GET', '/suppressions')).json);
    assert.deepEqual(
      listed.items.map((s) => s.address),
      ['old@example.org', 'gone@example.org'],
    );
    const first = (await cliJson('suppression', 'list', '--limit', '1')) as { items: Array<{ address: string }>; nextCursor: string | null };
    assert.deepEqual(first, (await api('GET', '/suppressions?limit=1')).json);
    assert.ok(first.nextCursor, 'a next page is named');
    const second = await cliJson('suppression', 'list', '--limit', '1', '--cursor', first.nextCursor);
    assert.deepEqual(second, (await api('GET', `/suppressions?limit=1&cursor=${encodeURIComponent(first.nextCursor)}`)).json);
    assert.deepEqual(
      (second as { items: Array<{ address: string }> }).items.map((s) => s.address),
      ['gone@example.org'],
    );
  });

  it('refuses a date --since and --until do not take, and a --since not before --until, naming the forms they take', async () => {
    for (const [flag, value] of [
      ['--since', 'yesterday'],
      ['--since', '2026-02-30'],
      ['--until', '2026-12-01T08:00:00'],
    ] as const) {
      const out = await runCli(['queue', 'list', flag, value, '--config', config]);
      assert.equal(out.code, 1, `${flag} ${value}`);
      assert.match(out.stderr, /R365_CLI_OPTION_INVALID/);
      assert.match(out.stderr, new RegExp(`${flag} takes an ISO date \\(2026-12-01, midnight UTC\\) or a time with its offset .*got "${value}"`));
    }
    const backwards = await runCli(['queue', 'list', '--since', '2026-12-02', '--until', '2026-12-01', '--config', config]);
    assert.equal(backwards.code, 1);
    assert.match(backwards.stderr, /--since \(2026-12-02T00:00:00\.000Z\) is not before --until \(2026-12-01T00:00:00\.000Z\), so no message can match/);
  });
});
