import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { PACKAGED_UNIT, systemdUnit } from '../../src/cli/commands/service.js';
import { CLI, freePort, runCli, stop } from '../helpers/cli.js';
import { tempDir } from '../helpers/sandbox.js';

const FULL = process.env.RELAY365_FULL_TESTS === '1';

function run(file: string, args: string[], cwd?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], ...(cwd ? { cwd } : {}) });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** systemd-analyze, from Debian's systemd package; under RELAY365_FULL_TESTS=1 its absence fails the test. */
async function needSystemdAnalyze(t: { skip(message: string): void }): Promise<boolean> {
  const found = await run('systemd-analyze', ['--version']).then(
    (r) => r.code === 0,
    () => false,
  );
  if (found) return true;
  if (FULL) assert.fail('systemd-analyze is not installed (Debian package systemd; .ci/run installs it)');
  t.skip('systemd-analyze is not installed');
  return false;
}

/** Starts `relay365 serve` from `cwd` and resolves with its start-up line. */
function serveFrom(cwd: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ child: ChildProcess; line: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'serve', ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-10_000)));
    const timer = setTimeout(() => reject(new Error(`serve did not start: ${stderr}`)), 30_000);
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (!line.startsWith('relay365 serving')) return;
      clearTimeout(timer);
      resolve({ child, line });
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`serve exited ${code}: ${stderr}`));
    });
  });
}

describe('relay365 as a systemd service', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    dir = await tempDir('relay365-service-');
  });
  after(async () => {
    await dir?.cleanup();
  });

  it('prints a unit that systemd-analyze verify accepts, with CAP_NET_BIND_SERVICE only for a listener below 1024', async (t) => {
    if (!(await needSystemdAnalyze(t))) return;
    const low = join(dir.path, 'low.yaml');
    await writeFile(low, 'smtp:\n  listeners:\n    - { host: 0.0.0.0, port: 587, tls: starttls }\nhttp: { host: 0.0.0.0, port: 8025 }\n');
    const high = join(dir.path, 'high.yaml');
    await writeFile(high, 'dataDir: /srv/relay365\nsmtp:\n  listeners:\n    - { host: 0.0.0.0, port: 2525 }\n');
    for (const [config, lowPorts] of [
      [low, true],
      [high, false],
    ] as const) {
      const printed = await runCli(['service', 'print', 'systemd', '--config', config]);
      assert.equal(printed.code, 0, printed.stderr);
      const unit = printed.stdout;
      const file = join(dir.path, lowPorts ? 'low.service' : 'high.service');
      await writeFile(file, unit);
      const verify = await run('systemd-analyze', ['verify', file]);
      assert.equal(verify.code, 0, verify.stderr);
      assert.equal(verify.stderr.trim(), '', 'no warning either');
      const settings = (key: string): string[] => unit.split('\n').filter((l) => l.startsWith(`${key}=`)).map((l) => l.slice(key.length + 1));
      assert.deepEqual(settings('ExecStart'), [`${process.execPath} ${CLI} serve --config ${config}`]);
      assert.deepEqual(settings('ExecStartPost'), [`${process.execPath} ${CLI} service ready --config ${config} --timeout 60`]);
      assert.deepEqual(settings('ExecReload'), ['/bin/kill -HUP $MAINPID']);
      assert.deepEqual(settings('Type'), ['exec']);
      assert.deepEqual(settings('User'), ['relay365']);
      assert.deepEqual(settings('StateDirectory'), ['relay365']);
      for (const [key, value] of [
        ['ProtectSystem', 'strict'],
        ['ProtectHome', 'yes'],
        ['NoNewPrivileges', 'yes'],
        ['PrivateTmp', 'yes'],
        ['PrivateDevices', 'yes'],
        ['RestrictAddressFamilies', 'AF_INET AF_INET6 AF_UNIX'],
        ['SystemCallFilter', '@system-service'],
      ])
        assert.deepEqual(settings(key!), [value], key);
      assert.deepEqual(settings('CapabilityBoundingSet'), [lowPorts ? 'CAP_NET_BIND_SERVICE' : '']);
      assert.deepEqual(settings('AmbientCapabilities'), [lowPorts ? 'CAP_NET_BIND_SERVICE' : '']);
      // A dataDir outside the state directory stays writable under ProtectSystem=strict.
      assert.deepEqual(settings('ReadWritePaths'), lowPorts ? [] : ['/srv/relay365']);
      // systemd's own rating of the sandboxing: "OK" is below 4.0 on its 0-10 scale.
      const security = await run('systemd-analyze', ['security', '--offline=yes', file]);
      const level = /Overall exposure level for \S+: ([\d.]+)/.exec(security.stdout);
      assert.ok(level, security.stdout + security.stderr);
      assert.ok(Number(level[1]) <= 2.5, `exposure ${level[1]}`);
    }
    const dynamic = await runCli(['service', 'print', 'systemd', '--config', high, '--dynamic-user']);
    assert.match(dynamic.stdout, /^DynamicUser=yes$/m);
    assert.doesNotMatch(dynamic.stdout, /^User=/m);
    await writeFile(join(dir.path, 'dynamic.service'), dynamic.stdout);
    assert.equal((await run('systemd-analyze', ['verify', join(dir.path, 'dynamic.service')])).code, 0);
    // A unit systemd cannot run is refused: the check can fail.
    await writeFile(join(dir.path, 'broken.service'), dynamic.stdout.replace(process.execPath, '/nonexistent/node'));
    assert.notEqual((await run('systemd-analyze', ['verify', join(dir.path, 'broken.service')])).code, 0);
  });

  it('ships packaging/systemd/relay365.service as the unit for a global npm install', async () => {
    const shipped = await readFile(new URL('../../packaging/systemd/relay365.service', import.meta.url), 'utf8');
    assert.equal(shipped, systemdUnit(PACKAGED_UNIT));
    assert.match(shipped, /^ExecStart=\/usr\/local\/bin\/relay365 serve --config \/etc\/relay365\/relay365\.yaml$/m);
    const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { files: string[] };
    assert.ok(pkg.files.includes('packaging'), 'package.json files lists packaging');
  });

  it('started from / as systemd does, finds its files beside the config, and `service ready` waits for /healthz', async () => {
    const etc = join(dir.path, 'etc');
    await mkdir(etc, { recursive: true });
    const http = await freePort();
    const smtp = await freePort();
    const config = join(etc, 'relay365.yaml');
    await writeFile(config, `log: { level: warn }\nsmtp:\n  listeners: [ { host: 127.0.0.1, port: ${smtp} } ]\nhttp: { port: ${http} }\n`);
    // Nothing listens yet: not ready, said so, exit status 1.
    const early = await runCli(['service', 'ready', '--config', config, '--timeout', '0.5'], { cwd: '/' });
    assert.equal(early.code, 1);
    assert.match(early.stderr, new RegExp(`not ready after 0.5 s: http://127.0.0.1:${http}/healthz did not answer`));

    // Under systemd: STATE_DIRECTORY is the data folder.
    const state = join(dir.path, 'state');
    await mkdir(state);
    const underSystemd = await serveFrom('/', ['--config', config], { STATE_DIRECTORY: state });
    try {
      assert.match(underSystemd.line, new RegExp(`store ${join(state, 'relay365.db')};`));
      const ready = await runCli(['service', 'ready', '--config', config, '--json'], { cwd: '/' });
      assert.equal(ready.code, 0, ready.stderr);
      const report = JSON.parse(ready.stdout) as { ok: boolean; probe: { kind: string; url: string } };
      assert.deepEqual([report.ok, report.probe], [true, { kind: 'http', url: `http://127.0.0.1:${http}/healthz` }]);
    } finally {
      assert.equal(await stop(underSystemd.child), 0);
    }
    assert.ok(existsSync(join(state, 'secret.key')) || existsSync(join(state, 'relay365.db')));

    // Without systemd, from another folder: data beside the config, not in the working folder.
    const elsewhere = await serveFrom(dir.path, ['--config', config], { STATE_DIRECTORY: '' });
    try {
      assert.match(elsewhere.line, new RegExp(`store ${join(etc, 'data', 'relay365.db')};`));
    } finally {
      assert.equal(await stop(elsewhere.child), 0);
    }
    assert.ok(existsSync(join(etc, 'data', 'relay365.db')));
    assert.ok(!existsSync(join(dir.path, 'data')), 'nothing in the working folder');

    // HTTP off: the SMTP listener accepting is the sign.
    await writeFile(config, `log: { level: warn }\nsmtp:\n  listeners: [ { host: 127.0.0.1, port: ${smtp} } ]\nhttp: { enabled: false }\n`);
    const smtpOnly = await serveFrom('/', ['--config', config]);
    try {
      const ready = await runCli(['service', 'ready', '--config', config], { cwd: '/' });
      assert.equal(ready.code, 0, ready.stderr);
      assert.match(ready.stdout, new RegExp(`^relay365 ready: SMTP 127.0.0.1:${smtp} \\(\\d+ ms\\)`));
    } finally {
      await stop(smtpOnly.child);
    }
  });
});
