import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/sandbox.js';

/** Runs the built CLI and returns its stdout, failing the test when it does not exit 0. */
async function stdout(args: string[]): Promise<string> {
  const run = await runCli(args);
  assert.equal(run.code, 0, `${args.join(' ')}: ${run.stdout}${run.stderr}`);
  return run.stdout;
}

describe('the built CLI lists keys, suppressions and pauses for a person, and as JSON', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let config: string;

  before(async () => {
    dir = await tempDir();
    config = join(dir.path, 'relay365.yaml');
    await writeFile(
      config,
      stringify({ dataDir: join(dir.path, 'data'), auth: { flow: 'token-command', command: 'true' }, mailboxes: [{ address: 'relay@contoso.com' }] }),
    );
  });

  after(async () => {
    await dir.cleanup();
  });

  it('says there is nothing to list, in words, and as an empty JSON list', async () => {
    assert.equal(await stdout(['apikey', 'list', '--config', config]), 'No API key yet: relay365 apikey create --name <app>\n');
    assert.deepEqual(JSON.parse(await stdout(['apikey', 'list', '--config', config, '--json'])), []);
    assert.equal(await stdout(['suppression', 'list', '--config', config]), 'No suppressed address.\n');
    assert.deepEqual(JSON.parse(await stdout(['suppression', 'list', '--config', config, '--json'])), { items: [], nextCursor: null });
    assert.equal(await stdout(['queue', 'paused', '--config', config]), 'No mailbox is paused.\n');
    assert.deepEqual(JSON.parse(await stdout(['queue', 'paused', '--config', config, '--json'])), { items: [] });
  });

  it('prints one line per API key and per suppressed address, newest first, and the same entries as JSON', async () => {
    const created = JSON.parse(await stdout(['apikey', 'create', '--name', 'erp', '--scope', 'send', '--config', config, '--json'])) as {
      id: string;
      prefix: string;
    };
    await stdout(['apikey', 'create', '--name', 'monitoring', '--scope', 'read', '--sender', '@contoso.com', '--config', config]);
    const keys = (await stdout(['apikey', 'list', '--config', config])).trimEnd().split('\n');
    assert.equal(keys.length, 2, keys.join('\n'));
    const erp = keys.find((l) => l.includes(' erp '));
    assert.ok(erp?.startsWith(`${created.id}  ${created.prefix}…  erp`), erp);
    assert.match(erp ?? '', /send {13}created \S+Z {2}last used never$/);
    assert.ok(
      keys.some((l) => / monitoring +read as @contoso\.com +created /.test(l)),
      keys.join('\n'),
    );
    const listed = JSON.parse(await stdout(['apikey', 'list', '--config', config, '--json'])) as Array<{ name: string; senders: string[] | null }>;
    assert.deepEqual(listed.map((k) => [k.name, k.senders]).sort(), [
      ['erp', null],
      ['monitoring', ['@contoso.com']],
    ]);

    await stdout(['suppression', 'add', 'gone@fabrikam.example', '--reason', 'mailbox closed', '--config', config]);
    const lines = (await stdout(['suppression', 'list', '--config', config])).trimEnd().split('\n');
    assert.equal(lines.length, 1, lines.join('\n'));
    assert.match(lines[0]!, /^gone@fabrikam\.example {2}since \S+Z {2}manual {2}mailbox closed$/);
    const page = JSON.parse(await stdout(['suppression', 'list', '--config', config, '--json'])) as { items: Array<{ address: string }>; nextCursor: unknown };
    assert.deepEqual([page.items.map((s) => s.address), page.nextCursor], [['gone@fabrikam.example'], null]);
  });
});
