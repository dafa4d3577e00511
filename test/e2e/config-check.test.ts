import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { hashPassword } from '../../src/ingress/smtp/password.js';
import { DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';
import { freePort, runCli, serveWithLogs, stop } from '../helpers/cli.js';
import { sandboxSettings } from '../helpers/config.js';
import { startTestSandbox, tempDir } from '../helpers/sandbox.js';
import { SmtpWire } from '../helpers/smtp-wire.js';

/** The three problems of the broken config, as `path: message` starts; every command must name all three. */
const PROBLEMS = [
  'smtp.allowlist[0].cidr: 10.0.0.0/99 is not a CIDR range',
  'smtp.users[0].passwordHash: must be scrypt$N$r$p$salt$hash',
  'auth.clientId: my-app is not an application (client) id',
];

function assertNamesEveryProblem(text: string, what: string): void {
  for (const p of PROBLEMS) assert.ok(text.includes(p), `${what} names "${p}":\n${text}`);
}

describe('one verdict on a config: relay365 config check, serve, doctor and a SIGHUP reload (built CLI)', () => {
  let sandbox: Sandbox & { dir: string };
  let dir: { path: string; cleanup: () => Promise<void> };
  let port: number;
  let good: string;
  let bad: string;
  let hash: string;

  before(async () => {
    sandbox = await startTestSandbox();
    dir = await tempDir();
    port = await freePort();
    hash = await hashPassword('printer-password');
    const config = (change: { clientId: string; passwordHash: string; cidr: string }) =>
      stringify({
        dataDir: dir.path,
        log: { level: 'info' },
        ...sandboxSettings(sandbox),
        auth: { flow: 'client-secret', tenant: DEFAULT_IDS.tenantId, clientId: change.clientId, clientSecret: DEFAULT_IDS.appSecret },
        mailboxes: [{ address: DEFAULT_IDS.mailbox }],
        http: { enabled: false },
        smtp: {
          listeners: [{ host: '127.0.0.1', port, tls: 'none', allowPlainAuth: true }],
          users: [{ name: 'printer', passwordHash: change.passwordHash }],
          allowlist: [{ cidr: change.cidr }],
        },
      });
    good = join(dir.path, 'good.yaml');
    bad = join(dir.path, 'bad.yaml');
    await writeFile(good, config({ clientId: DEFAULT_IDS.appClientId, passwordHash: hash, cidr: '10.0.0.0/8' }));
    await writeFile(bad, config({ clientId: 'my-app', passwordHash: 'scrypt$not-a-hash', cidr: '10.0.0.0/99' }));
  });
  after(async () => {
    await dir.cleanup();
    await sandbox.close();
  });

  it('config check passes the good config (exit 0) and refuses the bad one with all three problems (exit 78), in text and JSON', async () => {
    const ok = await runCli(['config', 'check', '--config', good]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /passes every check serve runs/);
    const okJson = await runCli(['config', 'check', '--config', good, '--json']);
    assert.deepEqual(JSON.parse(okJson.stdout), { ok: true, config: good, problems: [] });

    const refused = await runCli(['config', 'check', '--config', bad]);
    assert.equal(refused.code, 78, refused.stderr);
    assertNamesEveryProblem(refused.stdout, 'config check');
    assert.match(refused.stdout, /3 problem\(s\); serve would refuse to start/);
    const json = await runCli(['config', 'check', '--config', bad, '--json']);
    assert.equal(json.code, 78);
    const parsed = JSON.parse(json.stdout) as { ok: boolean; problems: Array<{ path: string; message: string }> };
    assert.equal(parsed.ok, false);
    assert.deepEqual(parsed.problems.map((p) => p.path).sort(), ['auth.clientId', 'smtp.allowlist[0].cidr', 'smtp.users[0].passwordHash']);
  });

  it('serve refuses to start on the bad config with the same three problems (exit 78), and listens on nothing', async () => {
    const res = await runCli(['serve', '--config', bad], { timeoutMs: 30_000 });
    assert.equal(res.code, 78, res.stdout);
    assertNamesEveryProblem(res.stderr, 'serve');
    assert.doesNotMatch(res.stdout, /relay365 serving/);
  });

  it('doctor fails its config check with the same three problems and runs nothing after it', async () => {
    const res = await runCli(['doctor', '--config', bad, '--json']);
    assert.equal(res.code, 1, res.stderr);
    const report = JSON.parse(res.stdout) as { ok: boolean; checks: Array<{ id: string; status: string; cause?: string }> };
    assert.equal(report.ok, false);
    assert.equal(report.checks[0]!.id, 'config');
    assert.equal(report.checks[0]!.status, 'fail');
    assertNamesEveryProblem(report.checks[0]!.cause ?? '', 'doctor');
    assert.ok(
      report.checks.slice(1).every((c) => c.status === 'skip'),
      JSON.stringify(report.checks.map((c) => [c.id, c.status])),
    );
  });

  it('a SIGHUP with the bad config in place is refused with the same three problems, and the relay keeps its running config', async () => {
    const file = join(dir.path, 'relay365.yaml');
    await writeFile(file, await readFile(good, 'utf8'));
    const { child, waitFor } = await serveWithLogs(file);
    try {
      await writeFile(file, await readFile(bad, 'utf8'));
      child.kill('SIGHUP');
      const refused = await waitFor((l) => l.event === 'config.reload_refused', 'config.reload_refused');
      const problems = refused.problems as string[];
      assert.equal(problems.length, 3, JSON.stringify(problems));
      assertNamesEveryProblem(problems.join('\n'), 'the reload');
      assert.equal(refused.code, 'R365_CONFIG_INVALID');
      // The running config is kept: the user whose hash the bad file breaks still logs in.
      const { wire, greeting } = await SmtpWire.connect(port);
      try {
        assert.equal(greeting.code, 220);
        assert.equal((await wire.command('EHLO check.test')).code, 250);
        const auth = await wire.command(`AUTH PLAIN ${Buffer.from('\0printer\0printer-password').toString('base64')}`);
        assert.equal(auth.code, 235, auth.last);
      } finally {
        wire.destroy();
      }
      assert.equal(child.exitCode, null, 'still running');
    } finally {
      await stop(child);
    }
  });
});
