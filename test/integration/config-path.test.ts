import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { configPath } from '../../src/cli/context.js';
import { runningSandboxDemoConfig, sandboxDemoAdminPassword, writeSandboxDemoConfig } from '../../src/cli/sandbox-demo.js';
import { loadConfig } from '../../src/config/load.js';
import { isRelay365Error } from '../../src/errors.js';
import { tempDir } from '../helpers/sandbox.js';

/** The id of a process that has run and exited (so no process has it, barring reuse). */
async function endedPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
  await new Promise((r) => child.once('exit', r));
  return child.pid!;
}

describe('where a command finds its config, and the sandbox demo config', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  const cwd = process.cwd();
  const demoFile = (): string => join(dir.path, 'data', 'sandbox', 'relay365.yaml');
  before(async () => {
    dir = await tempDir();
    await mkdir(join(dir.path, 'data', 'sandbox'), { recursive: true });
    // configPath looks for ./relay365.yaml and ./data in the working folder, as the CLI does.
    process.chdir(dir.path);
  });
  after(async () => {
    process.chdir(cwd);
    await dir.cleanup();
  });

  it('takes the demo config written by this process while it runs, after --config, RELAY365_CONFIG and ./relay365.yaml', async () => {
    const config = await loadConfig({ env: {} });
    const file = await writeSandboxDemoConfig({ ...config, cloud: 'sandbox' });
    assert.equal(file.path, demoFile());
    assert.equal(((await stat(file.path)).mode & 0o777).toString(8), '600');
    assert.equal(configPath(undefined, {}), join('data', 'sandbox', 'relay365.yaml'));
    assert.equal(configPath('mine.yaml', { RELAY365_CONFIG: 'env.yaml' }), 'mine.yaml');
    assert.equal(configPath(undefined, { RELAY365_CONFIG: 'env.yaml' }), 'env.yaml');
    assert.equal(configPath(undefined, {}, { sandboxDemo: false }), undefined, 'serve never takes a demo config');
    // What the commands read is the config it was written from, dataDir made absolute.
    const read = await loadConfig({ path: file.path, env: {} });
    assert.equal(read.cloud, 'sandbox');
    assert.equal(read.dataDir, join(dir.path, 'data'));
    assert.deepEqual({ ...read, dataDir: config.dataDir }, { ...config, cloud: 'sandbox' });

    await writeFile('relay365.yaml', 'log: { level: silent }\n');
    try {
      assert.equal(configPath(undefined, {}), 'relay365.yaml', './relay365.yaml comes first');
    } finally {
      await import('node:fs/promises').then((fs) => fs.rm('relay365.yaml'));
    }

    file.markStopped();
    assert.match(await readFile(file.path, 'utf8'), /^# relay365 serve --sandbox, pid \d+, stopped at /);
    assert.throws(
      () => configPath(undefined, {}),
      (err: unknown) =>
        isRelay365Error(err, 'R365_CONFIG_NOT_FOUND') && /has stopped/.test(err.message) && /--config data\/sandbox\/relay365\.yaml/.test(err.message),
    );
  });

  it('reports a demo config whose process has gone (kill -9) as stopped, and takes one not written by a demo as it is', async () => {
    const pid = await endedPid();
    await writeFile(demoFile(), `# relay365 serve --sandbox, pid ${pid}, running since 2026-01-01T00:00:00.000Z.\ncloud: sandbox\n`);
    assert.throws(
      () => runningSandboxDemoConfig(demoFile()),
      (err: unknown) => isRelay365Error(err, 'R365_CONFIG_NOT_FOUND') && err.message.includes(`pid ${pid}) has stopped`),
    );
    await writeFile(demoFile(), 'cloud: sandbox\n');
    assert.equal(runningSandboxDemoConfig(demoFile()), demoFile());
    assert.equal(runningSandboxDemoConfig(join(dir.path, 'nothing-here.yaml')), undefined);
    // RELAY365_DATA_DIR moves where the commands look, as it moves where the demo writes.
    assert.equal(configPath(undefined, { RELAY365_DATA_DIR: join(dir.path, 'elsewhere') }), undefined);
  });

  it('generates the dashboard password once, 0600, and keeps it for the next start', async () => {
    const first = sandboxDemoAdminPassword(join(dir.path, 'data'));
    assert.match(first.password, /^[A-Za-z0-9_-]{24}$/);
    assert.equal(((await stat(first.path)).mode & 0o777).toString(8), '600');
    assert.equal(sandboxDemoAdminPassword(join(dir.path, 'data')).password, first.password);
  });
});

describe('paths in a config file are relative to its folder', () => {
  it('resolves dataDir, certificate and key files and file: secrets against the file, whatever the working folder', async () => {
    const dir = await tempDir();
    const cwd = process.cwd();
    try {
      await mkdir(join(dir.path, 'etc'), { recursive: true });
      const file = join(dir.path, 'etc', 'relay365.yaml');
      await writeFile(
        file,
        [
          'dataDir: ../var/relay365',
          'network: { caFile: proxy-ca.pem }',
          'auth: { flow: client-certificate, tenant: contoso.example, clientId: 00000000-0000-0000-0000-000000000001, certificate: { keyFile: app.key, certFile: ./app.crt } }',
          'mailboxes:',
          '  - address: relay@contoso.example',
          '  - address: other@contoso.example',
          '    auth: { flow: client-secret, clientSecret: file:secrets/other, certificate: { keyFile: /abs/other.key, thumbprint: "0000000000000000000000000000000000000000" } }',
          'smtp: { certFile: tls/relay.crt, keyFile: tls/relay.key }',
          'http: { adminPassword: "file:admin-password", webhooks: [ { url: "https://hooks.example/x", secret: "file:hook" }, { url: "https://hooks.example/y", secret: "env:HOOK" } ] }',
          '',
        ].join('\n'),
      );
      process.chdir('/');
      const config = await loadConfig({ path: file, env: {} });
      const etc = join(dir.path, 'etc');
      assert.equal(config.dataDir, join(dir.path, 'var', 'relay365'));
      assert.equal(config.network.caFile, join(etc, 'proxy-ca.pem'));
      assert.deepEqual(config.auth.certificate, { keyFile: join(etc, 'app.key'), certFile: join(etc, 'app.crt') });
      assert.equal(config.mailboxes[1]!.auth!.clientSecret, `file:${join(etc, 'secrets', 'other')}`);
      assert.equal(config.mailboxes[1]!.auth!.certificate!.keyFile, '/abs/other.key', 'an absolute path is kept');
      assert.equal(config.smtp.certFile, join(etc, 'tls', 'relay.crt'));
      assert.equal(config.smtp.keyFile, join(etc, 'tls', 'relay.key'));
      assert.equal(config.http.adminPassword, `file:${join(etc, 'admin-password')}`);
      assert.deepEqual(
        config.http.webhooks.map((w) => w.secret),
        [`file:${join(etc, 'hook')}`, 'env:HOOK'],
      );
      // queue.path stays relative to dataDir; an override from the environment stays relative to the working folder.
      assert.equal(config.queue.path, 'relay365.db');
      assert.equal((await loadConfig({ path: file, env: { RELAY365_DATA_DIR: 'here' } })).dataDir, 'here');
    } finally {
      process.chdir(cwd);
      await dir.cleanup();
    }
  });

  it('defaults dataDir to $STATE_DIRECTORY under systemd, else data beside the config file, else ./data', async () => {
    const dir = await tempDir();
    try {
      const file = join(dir.path, 'relay365.yaml');
      await writeFile(file, 'log: { level: warn }\n');
      assert.equal((await loadConfig({ path: file, env: {} })).dataDir, join(dir.path, 'data'));
      assert.equal((await loadConfig({ path: file, env: { STATE_DIRECTORY: '/var/lib/relay365' } })).dataDir, '/var/lib/relay365');
      // StateDirectory= with several names: systemd joins them with colons; relay365's is the first.
      assert.equal((await loadConfig({ path: file, env: { STATE_DIRECTORY: '/var/lib/relay365:/var/lib/other' } })).dataDir, '/var/lib/relay365');
      assert.equal((await loadConfig({ env: { STATE_DIRECTORY: '/var/lib/relay365' } })).dataDir, '/var/lib/relay365');
      assert.equal((await loadConfig({ env: {} })).dataDir, './data');
      await writeFile(file, 'dataDir: /srv/relay365\n');
      assert.equal((await loadConfig({ path: file, env: { STATE_DIRECTORY: '/var/lib/relay365' } })).dataDir, '/srv/relay365', 'the file says first');
    } finally {
      await dir.cleanup();
    }
  });
});
