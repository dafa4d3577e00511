import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runCli, startCli, stop } from '../helpers/cli.js';
import { httpsRequest } from '../helpers/https.js';
import { tempDir } from '../helpers/sandbox.js';

describe('relay365 sandbox (built CLI)', () => {
  it('explains itself in --help: scenario, endpoints and how to see what arrived', async () => {
    const { code, stdout } = await runCli(['sandbox', '--help']);
    assert.equal(code, 0);
    for (const text of ['--scenario', '--smtp-port', '--eml-dir', '/sandbox/messages', 'relay@contoso.example'])
      assert.ok(stdout.includes(text), `help mentions ${text}`);
  });

  it('starts, prints its endpoints as JSON, serves /sandbox/messages and stops cleanly on SIGTERM', async () => {
    const dir = await tempDir();
    try {
      const { child, firstLine } = await startCli(['sandbox', '--json', '--port', '0', '--smtp-port', '0', '--data-dir', dir.path]);
      const info = JSON.parse(firstLine) as {
        baseUrl: string;
        caPath: string;
        smtp: { port: number };
        messagesUrl: string;
        tenants: Array<{ authority: string }>;
      };
      assert.equal(info.caPath, join(dir.path, 'ca.pem'));
      assert.ok(info.smtp.port > 0);
      const ca = await readFile(info.caPath, 'utf8');
      const res = await httpsRequest(info.messagesUrl, { ca });
      assert.equal(res.status, 200);
      assert.deepEqual(res.json(), { count: 0, messages: [] });
      assert.equal(await stop(child), 0);
    } finally {
      await dir.cleanup();
    }
  });

  it('refuses an invalid scenario file, naming every bad field', async () => {
    const dir = await tempDir();
    try {
      const path = join(dir.path, 'bad.yaml');
      await import('node:fs/promises').then((fs) => fs.writeFile(path, 'tenants:\n  - id: not-a-guid\n    domain: x\nlimits:\n  messagesPerMinute: -1\n'));
      const { code, stderr } = await runCli(['sandbox', '--scenario', path, '--port', '0', '--smtp-port', '0', '--data-dir', dir.path]);
      assert.equal(code, 1);
      assert.match(stderr, /tenants\[0\]\.id: must be a GUID/);
      assert.match(stderr, /limits\.messagesPerMinute/);
      assert.match(stderr, /R365_SCENARIO_INVALID/);
    } finally {
      await dir.cleanup();
    }
  });
});
