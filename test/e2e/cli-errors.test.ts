import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { openSqliteStore } from '../../src/outbox/index.js';
import { runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/sandbox.js';

/**
 * Runs the built CLI and checks that it failed with `code` in its text (stderr) and, for a command
 * with `--json`, in its JSON output (stdout).
 */
async function failsWith(args: string[], code: string, message: RegExp, json = true): Promise<void> {
  const text = await runCli(args);
  assert.equal(text.code, 1, `${args.join(' ')}: ${text.stdout}${text.stderr}`);
  assert.ok(text.stderr.includes(`[${code}]`), `${args.join(' ')} printed ${text.stderr}`);
  assert.match(text.stderr, message);
  assert.doesNotMatch(text.stderr, /R365_UNEXPECTED|datatype mismatch|at .*\.js:\d+/);
  if (!json) return;
  const asJson = await runCli([...args, '--json']);
  assert.equal(asJson.code, 1);
  const body = JSON.parse(asJson.stdout) as { ok: boolean; error: { code: string; message: string } };
  assert.deepEqual([body.ok, body.error.code], [false, code], `${args.join(' ')} --json printed ${asJson.stdout}`);
  assert.match(body.error.message, message);
}

describe('the built CLI names each user mistake with a code of its own', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let config: string;
  let noMailbox: string;
  let twoMailboxes: string;
  let cancelledId: string;

  before(async () => {
    dir = await tempDir();
    const dataDir = join(dir.path, 'data');
    config = join(dir.path, 'relay365.yaml');
    await writeFile(config, stringify({ dataDir, auth: { flow: 'token-command', command: 'true' }, mailboxes: [{ address: 'relay@contoso.com' }] }));
    noMailbox = join(dir.path, 'none.yaml');
    await writeFile(noMailbox, stringify({ dataDir, auth: { flow: 'token-command', command: 'true' } }));
    twoMailboxes = join(dir.path, 'two.yaml');
    await writeFile(
      twoMailboxes,
      stringify({ dataDir, auth: { flow: 'token-command', command: 'true' }, mailboxes: [{ address: 'relay@contoso.com' }, { address: 'ops@contoso.com' }] }),
    );
    const store = await openSqliteStore(join(dataDir, 'relay365.db'));
    await store.migrate();
    const m = await store.enqueue({
      mailbox: 'relay@contoso.com',
      envelope: { from: 'relay@contoso.com', to: ['a@example.net'] },
      raw: Buffer.from('From: relay@contoso.com\r\nTo: a@example.net\r\nSubject: q\r\n\r\nbody\r\n'),
      source: { kind: 'http' },
    });
    assert.ok(await store.cancel(m.id));
    cancelledId = m.id;
    await store.close();
  });

  after(() => dir.cleanup());

  it('refuses a --limit that is not a whole number from 1 to 500 before opening the outbox (was: SQLite "datatype mismatch")', async () => {
    for (const bad of ['abc', '0', '501', '2.5', '-3']) {
      await failsWith(
        ['queue', 'list', '--config', config, '--limit', bad],
        'R365_CLI_OPTION_INVALID',
        new RegExp(`--limit must be a whole number from 1 to 500; got "${bad.replace('.', '\\.')}"`),
      );
    }
    const ok = await runCli(['queue', 'list', '--config', config, '--limit', '500', '--json']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal((JSON.parse(ok.stdout) as { items: unknown[] }).items.length, 1);
  });

  it('refuses a sandbox port that is not a port number', async () => {
    await failsWith(['sandbox', '--port', 'abc'], 'R365_CLI_OPTION_INVALID', /--port must be a port number from 0 \(any free port\) to 65535; got "abc"/);
    await failsWith(['sandbox', '--smtp-port', '70000'], 'R365_CLI_OPTION_INVALID', /--smtp-port must be a port number/);
  });

  it('names an unknown option, a value outside --state choices and a missing argument R365_CLI_USAGE', async () => {
    await failsWith(['queue', 'list', '--config', config, '--state', 'bogus'], 'R365_CLI_USAGE', /argument 'bogus' is invalid\. Allowed choices are queued/);
    await failsWith(['queue', 'list', '--config', config, '--bogus'], 'R365_CLI_USAGE', /unknown option '--bogus'/);
    await failsWith(['queue', 'lst', '--config', config], 'R365_CLI_USAGE', /unknown command 'lst'/);
    await failsWith(['queue', 'retry', '--config', config], 'R365_CLI_USAGE', /needs a message id \(from relay365 queue list\), or --all-failed/);
    const help = await runCli(['queue', 'list', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--limit <n>/);
    assert.equal((await runCli(['--version'])).code, 0);
  });

  it('names an id no message has R365_MESSAGE_NOT_FOUND in queue show, retry and cancel', async () => {
    const id = '01a20c87-0f07-76b5-ac88-12cf1b45e2fc';
    for (const command of ['show', 'retry', 'cancel']) {
      await failsWith(
        ['queue', command, id, '--config', config],
        'R365_MESSAGE_NOT_FOUND',
        new RegExp(`No message ${id} in the outbox\\. Copy the id from relay365 queue list`),
      );
    }
  });

  it('says why a cancelled message cannot be retried or cancelled again', async () => {
    await failsWith(
      ['queue', 'retry', cancelledId, '--config', config],
      'R365_MESSAGE_NOT_RETRYABLE',
      /is cancelled, so it cannot be retried.*Send it again as a new message/,
    );
    await failsWith(['queue', 'cancel', cancelledId, '--config', config], 'R365_MESSAGE_NOT_CANCELLABLE', /is cancelled, so it cannot be cancelled/);
  });

  it('names a config without a mailbox, one with several, and an unknown --mailbox', async () => {
    await failsWith(['token', '--config', noMailbox], 'R365_NO_MAILBOX_CONFIGURED', /No mailbox is configured: add one under mailboxes:/);
    await failsWith(['test', '--to', 'a@example.net', '--config', noMailbox], 'R365_NO_MAILBOX_CONFIGURED', /No mailbox is configured/);
    await failsWith(
      ['send', '--from', 'a@contoso.com', '--to', 'x@example.net', '--config', noMailbox],
      'R365_NO_MAILBOX_CONFIGURED',
      /No mailbox is configured/,
    );
    await failsWith(['token', '--config', twoMailboxes], 'R365_MAILBOX_NOT_CHOSEN', /choose one with --mailbox \(relay@contoso\.com, ops@contoso\.com\)/);
    await failsWith(
      ['login', '--mailbox', 'nobody@contoso.com', '--config', config],
      'R365_UNKNOWN_MAILBOX',
      /nobody@contoso\.com is not a configured mailbox/,
      false,
    );
  });

  it('names an HTTP port another program holds R365_HTTP_LISTEN_FAILED, and starts nothing (was: R365_UNEXPECTED)', async () => {
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const port = (holder.address() as AddressInfo).port;
    try {
      const busy = join(dir.path, 'busy');
      await mkdir(busy);
      const file = join(busy, 'relay365.yaml');
      await writeFile(file, stringify({ dataDir: join(busy, 'data'), http: { port }, smtp: { listeners: [{ host: '127.0.0.1', port: 0, tls: 'starttls' }] } }));
      await failsWith(
        ['serve', '--sandbox', '--config', file],
        'R365_HTTP_LISTEN_FAILED',
        new RegExp(`The HTTP API cannot listen on 127\\.0\\.0\\.1:${port} \\(EADDRINUSE\\)\\. Another program .* choose another http\\.port`),
        false,
      );
    } finally {
      await new Promise((resolve) => holder.close(resolve));
    }
  });

  it("prints doctor's fix for an unset secret whole: the <secret value> placeholder is not taken for a secret", async () => {
    const file = join(dir.path, 'unset-secret.yaml');
    await writeFile(
      file,
      stringify({
        dataDir: join(dir.path, 'data'),
        auth: { flow: 'client-secret', tenant: 'contoso.com', clientId: '3c1b9a52-2f44-4d6e-8f0a-7b5e9d2c4a11', clientSecret: 'env:RELAY365_DOC_TEST_SECRET' },
        mailboxes: [{ address: 'relay@contoso.com' }],
      }),
    );
    const res = await runCli(['doctor', '--config', file, '--json']);
    assert.equal(res.code, 1, res.stderr);
    const report = JSON.parse(res.stdout) as { checks: Array<{ status: string; fix?: string }> };
    const fixes = report.checks.filter((c) => c.status === 'fail').map((c) => c.fix ?? '');
    assert.ok(
      fixes.some((f) => f.includes('export RELAY365_CLIENT_SECRET=<secret value> before starting relay365')),
      fixes.join('\n'),
    );
    assert.ok(!res.stdout.includes('<redacted> value>'));
  });

  it('names the value of --to or --from that holds no address (was: "set to, cc or bcc" after --to was given)', async () => {
    await failsWith(['test', '--to', 'alice', '--config', config], 'R365_MESSAGE_INVALID', /no recipient: to is "alice", which holds no e-mail address/);
    await failsWith(
      ['send', '--from', 'relay', '--to', 'x@example.net', '--mailbox', 'relay@contoso.com', '--config', config],
      'R365_MESSAGE_INVALID',
      /no sender: from is "relay", which holds no e-mail address/,
    );
  });

  it('names a config path that is a folder or does not exist R365_CONFIG_NOT_FOUND', async () => {
    const folder = join(dir.path, 'a-folder');
    await mkdir(folder);
    await failsWith(['queue', 'list', '--config', folder], 'R365_CONFIG_NOT_FOUND', /Cannot read config file .*a-folder: EISDIR/);
    await failsWith(['queue', 'list', '--config', join(dir.path, 'missing.yaml')], 'R365_CONFIG_NOT_FOUND', /ENOENT\. Check the path, or run `relay365 init`/);
  });
});
