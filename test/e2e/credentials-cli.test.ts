import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';
import { runCli } from '../helpers/cli.js';
import { sandboxSettings } from '../helpers/config.js';
import { startTestSandbox, tempDir } from '../helpers/sandbox.js';

describe('relay365 token --json tells the app credential\'s end date (built CLI against the sandbox)', () => {
  let sandbox: Sandbox & { dir: string };
  let dir: Awaited<ReturnType<typeof tempDir>>;

  before(async () => {
    sandbox = await startTestSandbox();
    dir = await tempDir();
  });
  after(async () => {
    await sandbox?.close();
    await dir?.cleanup();
  });

  it('gives kind, expiresAt, daysLeft and status from auth.secretExpires, and no secret', async () => {
    const expires = new Date(Date.now() + 20 * 86_400_000).toISOString().slice(0, 10);
    const config = join(dir.path, 'relay365.yaml');
    await writeFile(
      config,
      stringify({
        dataDir: join(dir.path, 'data'),
        ...sandboxSettings(sandbox),
        auth: { flow: 'client-secret', tenant: DEFAULT_IDS.tenantId, clientId: DEFAULT_IDS.appClientId, clientSecret: 'env:APP_SECRET', secretExpires: expires },
        mailboxes: [{ address: DEFAULT_IDS.mailbox }],
      }),
    );
    const env = { APP_SECRET: DEFAULT_IDS.appSecret };
    const json = await runCli(['token', '--config', config, '--json'], { env });
    assert.equal(json.code, 0, json.stderr);
    const parsed = JSON.parse(json.stdout) as { credential: { kind: string; expiresAt: string; daysLeft: number; status: string; source: string } };
    assert.equal(parsed.credential.kind, 'client-secret');
    assert.equal(parsed.credential.expiresAt, `${expires}T23:59:59.000Z`);
    assert.ok(parsed.credential.daysLeft === 19 || parsed.credential.daysLeft === 20, String(parsed.credential.daysLeft));
    assert.equal(parsed.credential.status, 'expiring');
    assert.equal(parsed.credential.source, 'config');
    const plain = await runCli(['token', '--config', config], { env });
    assert.match(plain.stdout, new RegExp(`credential  client-secret expires ${expires}T23:59:59\\.000Z \\(expiring, (19|20) days\\)`));
    assert.ok(!(json.stdout + json.stderr + plain.stdout + plain.stderr).includes(DEFAULT_IDS.appSecret));
  });
});
