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
