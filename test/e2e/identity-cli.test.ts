import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { stringify } from 'yaml';
import { DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';
import { CLI, runCli } from '../helpers/cli.js';
import { sandboxSettings } from '../helpers/config.js';
import { httpsRequest } from '../helpers/https.js';
import { scenario, startTestSandbox, tempDir } from '../helpers/sandbox.js';

const OVER = '9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a';

describe('relay365 login, token and permissions (built CLI against the sandbox)', () => {
  let sandbox: Sandbox & { dir: string };
  let dir: { path: string; cleanup: () => Promise<void> };

  async function writeConfig(name: string, auth: Record<string, unknown>, mailbox: string = DEFAULT_IDS.mailbox): Promise<string> {
    const path = join(dir.path, `${name}.yaml`);
    await writeFile(path, stringify({ dataDir: join(dir.path, `data-${name}`), ...sandboxSettings(sandbox), auth, mailboxes: [{ address: mailbox }] }));
    return path;
  }

  before(async () => {
    dir = await tempDir();
    sandbox = await startTestSandbox({
      scenario: scenario((s) => {
        const tenant = s.tenants[0]!;
        tenant.apps.push({
          ...structuredClone(tenant.apps[0]!),
          clientId: OVER,
          name: 'over-privileged',
          secrets: [{ value: 'over-privileged-secret' }],
          roles: { exchange: ['SMTP.SendAsApp', 'full_access_as_app'], graph: ['Mail.ReadWrite'] },
        });
        tenant.users[0]!.fullAccessApps.push(OVER);
        tenant.users[1]!.autoApprove = true;
      }),
    });
  });
  after(async () => {
    await sandbox.close();
    await dir.cleanup();
  });

  it('token logs only warnings at the default level, and its info lines once log.level is set in the file or RELAY365_LOG__LEVEL', async () => {
    const auth = { flow: 'client-secret', tenant: DEFAULT_IDS.tenantId, clientId: DEFAULT_IDS.appClientId, clientSecret: 'env:APP_SECRET' };
    const env = { APP_SECRET: DEFAULT_IDS.appSecret };
    const quiet = await runCli(['token', '--config', await writeConfig('quiet', auth)], { env });
    assert.equal(quiet.code, 0, quiet.stderr);
    assert.doesNotMatch(quiet.stderr, /token acquired/, 'a one-shot command prints its result, not its info log');
    const configured = await writeConfig('level-info', auth);
    await writeFile(configured, `${await readFile(configured, 'utf8')}log:\n  level: info\n`);
    const fromFile = await runCli(['token', '--config', configured], { env });
    assert.equal(fromFile.code, 0, fromFile.stderr);
    assert.match(fromFile.stderr, /"msg":"token acquired"/);
    const fromEnv = await runCli(['token', '--config', await writeConfig('env-info', auth)], { env: { ...env, RELAY365_LOG__LEVEL: 'info' } });
    assert.equal(fromEnv.code, 0, fromEnv.stderr);
    assert.match(fromEnv.stderr, /"msg":"token acquired"/);
    assert.ok(!(fromFile.stderr + fromEnv.stderr).includes(DEFAULT_IDS.appSecret), 'no client secret in the log');
  });

  it('token prints the decoded claims and never the token unless --raw', async () => {
    const config = await writeConfig('secret', {
      flow: 'client-secret',
      tenant: DEFAULT_IDS.tenantId,
      clientId: DEFAULT_IDS.appClientId,
      clientSecret: 'env:APP_SECRET',
    });
    const env = { APP_SECRET: DEFAULT_IDS.appSecret };
    const plain = await runCli(['token', '--config', config], { env });
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(plain.stdout, /audience\s+https:\/\/outlook\.office365\.com/);
    assert.match(plain.stdout, /roles\s+SMTP\.SendAsApp/);
    assert.ok(!/eyJ[\w-]+\.[\w-]+\./.test(plain.stdout + plain.stderr), 'no token without --raw');
    assert.ok(!(plain.stdout + plain.stderr).includes(DEFAULT_IDS.appSecret));
    const json = await runCli(['token', '--config', config, '--json'], { env });
    const parsed = JSON.parse(json.stdout) as { claims: { roles: string[]; tenantId: string }; accessToken?: string };
    assert.deepEqual(parsed.claims.roles, ['SMTP.SendAsApp']);
    assert.equal(parsed.accessToken, undefined);
    const raw = await runCli(['token', '--config', config, '--json', '--raw'], { env });
    assert.match((JSON.parse(raw.stdout) as { accessToken: string }).accessToken, /^eyJ/);
  });

  it('permissions passes a least-privileged app and flags an over-privileged one with the fix', async () => {
    const good = await writeConfig('good', {
      flow: 'client-secret',
      tenant: DEFAULT_IDS.tenantId,
      clientId: DEFAULT_IDS.appClientId,
      clientSecret: DEFAULT_IDS.appSecret,
    });
    // The default app also holds Graph Mail.Send, but an app-only SMTP token only carries Exchange roles.
    const ok = await runCli(['permissions', '--config', good]);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /Least privilege/);
    const bad = await writeConfig('bad', { flow: 'client-secret', tenant: DEFAULT_IDS.tenantId, clientId: OVER, clientSecret: 'over-privileged-secret' });
    const flagged = await runCli(['permissions', '--config', bad, '--json']);
    assert.equal(flagged.code, 1);
    const report = JSON.parse(flagged.stdout) as { result: string; findings: Array<{ level: string; permission: string; fix?: string }> };
    assert.equal(report.result, 'warn');
    const broad = report.findings.find((f) => f.permission === 'full_access_as_app');
    assert.equal(broad?.level, 'warn');
    assert.match(broad?.fix ?? '', /SMTP\.SendAsApp/);
  });

  it("permissions reviews a Graph mailbox's token against what Graph needs: right audience, Mail.Send to scope", async () => {
    const path = join(dir.path, 'graph.yaml');
    const auth = { flow: 'client-secret', tenant: DEFAULT_IDS.tenantId, clientId: DEFAULT_IDS.appClientId, clientSecret: DEFAULT_IDS.appSecret };
    await writeFile(path, stringify({ dataDir: join(dir.path, 'data-graph'), ...sandboxSettings(sandbox), auth, mailboxes: [{ address: DEFAULT_IDS.mailbox, transport: 'graph' }] }));
    const res = await runCli(['permissions', '--config', path, '--json']);
    const report = JSON.parse(res.stdout) as { result: string; findings: Array<{ level: string; permission: string; message: string; fix?: string }> };
    assert.equal(report.findings.find((f) => f.permission === 'audience')?.level, 'ok', res.stdout);
    assert.match(report.findings.find((f) => f.permission === 'audience')!.message, /Microsoft Graph/);
    const mailSend = report.findings.find((f) => f.permission === 'Mail.Send');
    assert.equal(mailSend?.level, 'warn');
    assert.match(mailSend?.fix ?? '', /New-ManagementRoleAssignment/);
    assert.equal(report.findings.filter((f) => f.level === 'fail').length, 0, res.stdout);
    assert.equal(report.result, 'warn');
    assert.equal(res.code, 1, 'a warning exits 1, as --help says');
  });

  it('login runs the device code flow (the test plays the user), then token works without a new login', async () => {
    const config = await writeConfig('device', { flow: 'device-code', tenant: DEFAULT_IDS.tenantId, clientId: DEFAULT_IDS.publicClientId }, DEFAULT_IDS.user);
    const child = spawn(process.execPath, [CLI, 'login', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const lines = createInterface({ input: child.stdout });
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    for await (const line of lines) {
      stdout += line + '\n';
      const m = /code: (\S+)/.exec(line);
      if (m) {
        const res = await httpsRequest(`${sandbox.baseUrl}/devicelogin`, {
          method: 'POST',
          ca: sandbox.caPem,
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ user_code: m[1]!, username: DEFAULT_IDS.user }).toString(),
        });
        assert.ok(res.status < 400, res.text);
      }
    }
    assert.equal(await exited, 0, stderr);
    assert.match(stdout, /Signed in as alice@contoso\.example/);
    const token = await runCli(['token', '--config', config]);
    assert.equal(token.code, 0, token.stderr);
    assert.match(token.stdout, /scopes\s+.*SMTP\.Send/);
    assert.match(token.stdout, /user\s+alice@contoso\.example/);
  });

  it('says to log in when a delegated mailbox has no sign-in yet', async () => {
    const config = await writeConfig('nologin', { flow: 'device-code', tenant: DEFAULT_IDS.tenantId, clientId: DEFAULT_IDS.publicClientId }, DEFAULT_IDS.user);
    const res = await runCli(['token', '--config', config]);
    assert.equal(res.code, 1);
    assert.match(res.stderr, /relay365 login --mailbox alice@contoso\.example/);
    assert.match(res.stderr, /R365_LOGIN_REQUIRED/);
  });
});
