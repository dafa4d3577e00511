import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { openSqliteStore } from '../../src/outbox/index.js';
import { createSandboxTls, DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';
import { runCli, runCliOnTerminal } from '../helpers/cli.js';
import { sandboxSettings } from '../helpers/config.js';
import { scenario, startTestSandbox, tempDir } from '../helpers/sandbox.js';

/** What `relay365 doctor --json` prints (docs/microsoft-365-setup.md). */
interface DoctorJson {
  ok: boolean;
  mailbox: string | null;
  checks: Array<{ id: string; title: string; status: 'pass' | 'warn' | 'fail' | 'skip'; detail: string; cause?: string; fix?: string; doc?: string }>;
}

const CHECK_IDS = [
  'config',
  'dns-authority',
  'dns-smtp',
  'tcp',
  'tls',
  'ehlo',
  'token',
  'claims',
  'auth',
  'mail-from',
  'send-test',
  'send-as',
  'paused',
  'bounces',
  'credential-expiry',
];

// The misconfigurations the sandbox stages, each by its own app, mailbox or tenant.
const NO_CONSENT_APP = 'c0c0c0c0-1111-4222-8333-444455556601';
const GRAPH_ONLY_APP = 'c0c0c0c0-1111-4222-8333-444455556602';
const FABRIKAM = {
  id: 'f0f0f0f0-1111-4222-8333-444455556603',
  domain: 'fabrikam.example',
  app: 'f0f0f0f0-1111-4222-8333-444455556604',
  mailbox: 'relay@fabrikam.example',
};
const MAILBOX_SMTP_OFF = 'nosmtp@contoso.example';
const MAILBOX_NO_PERMISSION = 'noperm@contoso.example';
const SECRETS = { noConsent: 'no-consent-secret-value', graphOnly: 'graph-only-secret-value', fabrikam: 'fabrikam-secret-value' };

/** A token in the output would look like this (a JWT). */
const JWT = /eyJ[\w-]{8,}\.[\w-]{8,}\./;

// The cases are independent (each its own config, data folder and, where it sends, its own recipient), so
// they run side by side: each CLI run spends most of its time starting Node.
describe('relay365 doctor and relay365 init (built CLI against the sandbox)', { concurrency: 4 }, () => {
  let sandbox: Sandbox & { dir: string };
  let dir: { path: string; cleanup: () => Promise<void> };
  const env = { APP_SECRET: DEFAULT_IDS.appSecret };

  before(async () => {
    dir = await tempDir();
    sandbox = await startTestSandbox({
      scenario: scenario((s) => {
        const t = s.tenants[0]!;
        const app = t.apps[0]!;
        const mailbox = t.users[0]!;
        t.apps.push(
          { ...structuredClone(app), clientId: NO_CONSENT_APP, name: 'no admin consent', secrets: [{ value: SECRETS.noConsent }], adminConsent: false },
          // The usual mistake: Graph Mail.Send added instead of Exchange's SMTP.SendAsApp.
          {
            ...structuredClone(app),
            clientId: GRAPH_ONLY_APP,
            name: 'graph only',
            secrets: [{ value: SECRETS.graphOnly }],
            roles: { exchange: [], graph: ['Mail.Send'] },
          },
        );
        t.users.push(
          { ...structuredClone(mailbox), upn: MAILBOX_SMTP_OFF, id: 'c0c0c0c0-1111-4222-8333-444455556605', smtpAuthEnabled: false, sendAs: [] },
          { ...structuredClone(mailbox), upn: MAILBOX_NO_PERMISSION, id: 'c0c0c0c0-1111-4222-8333-444455556606', fullAccessApps: [], sendAs: [] },
        );
        mailbox.fullAccessApps.push(NO_CONSENT_APP, GRAPH_ONLY_APP);
        s.tenants.push({
          id: FABRIKAM.id,
          domain: FABRIKAM.domain,
          smtpAuthEnabled: false,
          apps: [{ ...structuredClone(app), clientId: FABRIKAM.app, secrets: [{ value: SECRETS.fabrikam }] }],
          users: [
            { ...structuredClone(mailbox), upn: FABRIKAM.mailbox, id: 'f0f0f0f0-1111-4222-8333-444455556607', fullAccessApps: [FABRIKAM.app], sendAs: [] },
          ],
        });
      }),
    });
  });
  after(async () => {
    await sandbox.close();
    await dir.cleanup();
  });

  let configs = 0;
  /** Writes a config for the sandbox (the default app-only app and mailbox unless overridden). */
  async function writeConfig(
    overrides: { auth?: Record<string, unknown>; mailbox?: Record<string, unknown>; sandbox?: Record<string, unknown> } = {},
  ): Promise<string> {
    configs += 1;
    const path = join(dir.path, `doctor-${configs}.yaml`);
    const settings = sandboxSettings(sandbox);
    await writeFile(
      path,
      stringify({
        dataDir: join(dir.path, `data-${configs}`),
        cloud: settings.cloud,
        sandbox: { ...settings.sandbox, ...overrides.sandbox },
        auth: { flow: 'client-secret', tenant: DEFAULT_IDS.tenantId, clientId: DEFAULT_IDS.appClientId, clientSecret: 'env:APP_SECRET', ...overrides.auth },
        mailboxes: [{ address: DEFAULT_IDS.mailbox, ...overrides.mailbox }],
      }),
    );
    return path;
  }

  /** Runs `relay365 doctor --json` and checks what every run must hold: the shape, the exit status, no secret. */
  async function doctor(config: string, args: string[] = [], secrets: string[] = [], extraEnv: NodeJS.ProcessEnv = {}): Promise<DoctorJson> {
    const res = await runCli(['doctor', '--config', config, '--json', ...args], { env: { ...env, ...extraEnv } });
    const report = JSON.parse(res.stdout) as DoctorJson;
    assert.equal(res.code, report.ok ? 0 : 1, `exit status follows ok; stderr: ${res.stderr}`);
    assert.deepEqual(
      report.checks.map((c) => c.id),
      CHECK_IDS,
    );
    const output = res.stdout + res.stderr;
    assert.doesNotMatch(output, JWT, 'no token in the output');
    for (const secret of [DEFAULT_IDS.appSecret, ...secrets]) assert.ok(!output.includes(secret), 'no secret in the output');
    return report;
  }

  /** The first failing check must be `id`, explained by `cause` and fixed by `fix`; every later check that needs it is skipped. */
  function assertFirstFailure(report: DoctorJson, id: string, cause: RegExp, fix: RegExp): void {
    assert.equal(report.ok, false);
    const first = report.checks.find((c) => c.status === 'fail');
    assert.ok(first, `a check fails: ${JSON.stringify(report.checks)}`);
    assert.equal(first.id, id, `first failure: ${JSON.stringify(first)}`);
    assert.match(first.cause ?? '', cause);
    assert.match(first.fix ?? '', fix);
    const before = report.checks.slice(0, report.checks.indexOf(first));
    assert.ok(before.every((c) => c.status !== 'fail'));
  }

  it('passes every check of a correct setup, sending as the mailbox and as its alias', async () => {
    const config = await writeConfig({ mailbox: { aliases: ['noreply@contoso.example'] } });
    const report = await doctor(config, ['--send-test', 'correct-setup@example.net']);
    assert.equal(report.ok, true, JSON.stringify(report.checks.filter((c) => c.status !== 'pass')));
    assert.equal(report.mailbox, DEFAULT_IDS.mailbox);
    assert.deepEqual(
      report.checks.map((c) => c.status),
      // bounces: nothing to check without mailboxes[].bounces.read; credential-expiry: no auth.secretExpires.
      CHECK_IDS.map((id) => (id === 'bounces' || id === 'credential-expiry' ? 'skip' : 'pass')),
    );
    assert.match(report.checks.find((c) => c.id === 'tls')!.detail, /TLSv1\.[23]/);
    assert.match(report.checks.find((c) => c.id === 'claims')!.detail, /roles SMTP\.SendAsApp/);
    const sent = sandbox.state.messages.filter((m) => m.envelope.rcptTo.includes('correct-setup@example.net'));
    assert.deepEqual(sent.map((m) => m.envelope.mailFrom).sort(), ['noreply@contoso.example', DEFAULT_IDS.mailbox].sort());

    // The --json structure documented in docs/microsoft-365-setup.md, and nothing else.
    assert.deepEqual(Object.keys(report).sort(), ['checks', 'mailbox', 'ok']);
    for (const c of report.checks) {
      assert.deepEqual(
        Object.keys(c).filter((k) => !['id', 'title', 'status', 'detail', 'cause', 'fix', 'doc'].includes(k)),
        [],
      );
      assert.equal(typeof c.title, 'string');
      assert.equal(typeof c.detail, 'string');
    }
    const doc = await readFile(new URL('../../docs/microsoft-365-setup.md', import.meta.url), 'utf8');
    for (const id of CHECK_IDS) assert.match(doc, new RegExp(`\\| \`${id}\` \\|`), `the doc lists check ${id}`);
  });

  it('SMTP AUTH disabled for the mailbox: the AUTH check fails with Set-CASMailbox', async () => {
    const report = await doctor(await writeConfig({ mailbox: { address: MAILBOX_SMTP_OFF } }));
    assertFirstFailure(
      report,
      'auth',
      /disabled for this mailbox/,
      new RegExp(`Set-CASMailbox -Identity ${MAILBOX_SMTP_OFF} -SmtpClientAuthenticationDisabled \\$false`),
    );
    assert.match(report.checks.find((c) => c.id === 'auth')!.detail, /535 5\.7\.139/);
    assert.equal(report.checks.find((c) => c.id === 'mail-from')!.status, 'skip');
  });

  it('SMTP AUTH disabled for the tenant: the AUTH check fails with Set-TransportConfig', async () => {
    const report = await doctor(
      await writeConfig({ auth: { tenant: FABRIKAM.id, clientId: FABRIKAM.app, clientSecret: SECRETS.fabrikam }, mailbox: { address: FABRIKAM.mailbox } }),
      [],
      [SECRETS.fabrikam],
    );
    assertFirstFailure(report, 'auth', /disabled for the whole tenant/, /Set-TransportConfig -SmtpClientAuthenticationDisabled \$false/);
    // The secret written inline in the config is flagged too.
    assert.equal(report.checks[0]!.status, 'warn');
    assert.match(report.checks[0]!.fix ?? '', /env:RELAY365_CLIENT_SECRET/);
  });

  it('a wrong client secret: the token check fails with AADSTS7000215, and the secret is never printed', async () => {
    const wrong = 'wrong-secret-value-4711';
    const report = await doctor(await writeConfig({ auth: { clientSecret: wrong } }), [], [wrong]);
    assertFirstFailure(report, 'token', /client secret is wrong/, /Certificates & secrets.*Value/);
    assert.match(report.checks.find((c) => c.id === 'token')!.detail, /AADSTS7000215/);
  });

  it('an unknown app (client id not in the tenant): the token check fails with AADSTS700016', async () => {
    const report = await doctor(await writeConfig({ auth: { clientId: '0badc0de-1111-4222-8333-444455556699' } }));
    assertFirstFailure(report, 'token', /No application with this client id/, /Application \(client\) ID/);
    assert.match(report.checks.find((c) => c.id === 'token')!.detail, /AADSTS700016/);
  });

  it('a wrong tenant: the token check fails with AADSTS90002', async () => {
    const report = await doctor(await writeConfig({ auth: { tenant: '0badc0de-1111-4222-8333-444455556698' } }));
    assertFirstFailure(report, 'token', /tenant does not exist/, /Directory \(tenant\) ID/);
    assert.match(report.checks.find((c) => c.id === 'token')!.detail, /AADSTS90002/);
  });

  it('no admin consent (a token without roles): the claims check names both missing consent and SMTP.SendAsApp', async () => {
    const config = await writeConfig({ auth: { clientId: NO_CONSENT_APP, clientSecret: 'env:NO_CONSENT_SECRET' } });
    const report = await doctor(config, [], [SECRETS.noConsent], { NO_CONSENT_SECRET: SECRETS.noConsent });
    assertFirstFailure(report, 'claims', /admin consent was not granted.*or SMTP\.SendAsApp was never added/, /Grant admin consent/);
    assert.match(report.checks.find((c) => c.id === 'claims')!.detail, /roles \(none\)/);
  });

  it('an app without SMTP.SendAsApp (Graph Mail.Send instead): the claims check fails with the permission to add', async () => {
    const config = await writeConfig({ auth: { clientId: GRAPH_ONLY_APP, clientSecret: 'env:GRAPH_ONLY_SECRET' } });
    const report = await doctor(config, [], [SECRETS.graphOnly], { GRAPH_ONLY_SECRET: SECRETS.graphOnly });
    assertFirstFailure(report, 'claims', /SMTP\.SendAsApp was never added/, /Office 365 Exchange Online > Application permissions > SMTP\.SendAsApp/);
  });

  it('no mailbox permission for the app: the AUTH check fails with Add-MailboxPermission for the service principal', async () => {
    const report = await doctor(await writeConfig({ mailbox: { address: MAILBOX_NO_PERMISSION } }));
    assertFirstFailure(
      report,
      'auth',
      /no FullAccess permission on noperm@contoso\.example/,
      // The service principal's object id comes from the token's oid claim.
      new RegExp(`Add-MailboxPermission -Identity ${MAILBOX_NO_PERMISSION} -User ${DEFAULT_IDS.appServicePrincipalId} -AccessRights FullAccess`),
    );
    assert.match(
      report.checks.find((c) => c.id === 'auth')!.fix ?? '',
      new RegExp(`New-ServicePrincipal -AppId ${DEFAULT_IDS.appClientId} -ObjectId ${DEFAULT_IDS.appServicePrincipalId}`),
    );
  });

  it('a token for the wrong audience (a Graph token from a token command): the claims check fails', async () => {
    const command =
      `curl -s --cacert ${sandbox.caPath} ${sandbox.baseUrl}/${DEFAULT_IDS.tenantId}/oauth2/v2.0/token ` +
      `-d grant_type=client_credentials -d client_id=${DEFAULT_IDS.appClientId} -d client_secret=$APP_SECRET ` +
      `--data-urlencode scope=https://graph.microsoft.com/.default | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'`;
    const report = await doctor(
      await writeConfig({ auth: { flow: 'token-command', command, tenant: undefined, clientId: undefined, clientSecret: undefined } }),
    );
    assertFirstFailure(report, 'claims', /https:\/\/graph\.microsoft\.com, not for Exchange Online/, /https:\/\/outlook\.office365\.com\/\.default/);
    assert.equal(report.checks.find((c) => c.id === 'dns-authority')!.status, 'skip');
  });

  it('SendAs denied for an alias: the send-as check fails after DATA with Add-RecipientPermission', async () => {
    const config = await writeConfig({ mailbox: { aliases: ['billing@contoso.example'] } });
    const report = await doctor(config, ['--send-test', 'sendas@example.net']);
    assertFirstFailure(
      report,
      'send-as',
      /no SendAs right/,
      new RegExp(`Add-RecipientPermission -Identity billing@contoso\\.example -Trustee ${DEFAULT_IDS.mailbox} -AccessRights SendAs`),
    );
    assert.match(report.checks.find((c) => c.id === 'send-as')!.detail, /SendAsDenied/);
    assert.equal(report.checks.find((c) => c.id === 'send-test')!.status, 'pass');
  });

  it('a mailbox relay365 has paused: the paused check names the cause, the fix, since when and relay365 queue resume, from the outbox', async () => {
    const config = await writeConfig();
    const dataDir = (parse(await readFile(config, 'utf8')) as { dataDir: string }).dataDir;
    const store = await openSqliteStore(join(dataDir, 'relay365.db'));
    await store.pauseMailbox({
      mailbox: DEFAULT_IDS.mailbox,
      class: 'blocked',
      reply: '554 5.2.2 mailbox full; STOREDRV.Submission.Exception:QuotaExceededException',
      explanation: { id: 'smtp-554-5.2.2-mailbox-full', class: 'blocked', cause: 'Sent Items filled the mailbox.', fix: 'Add a retention policy.' },
      owner: 'node-a',
    });
    await store.close();
    const report = await doctor(config);
    assertFirstFailure(report, 'paused', /^Sent Items filled the mailbox\.$/, /relay365 queue resume relay@contoso\.example/);
    assert.match(report.checks.find((c) => c.id === 'paused')!.detail, /^paused since \d{4}-\d\d-\d\dT[\d:.]+Z \(\d+ s ago\) after 554 5\.2\.2 mailbox full/);
    const others = report.checks.filter((c) => !['paused', 'send-test', 'send-as', 'bounces', 'credential-expiry'].includes(c.id));
    assert.ok(
      others.every((c) => c.status === 'pass'),
      JSON.stringify(others.filter((c) => c.status !== 'pass')),
    );
  });

  it('the SMTP port closed: the TCP check fails with ECONNREFUSED, and the token is still checked', async () => {
    const port = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, '127.0.0.1', () => {
        const { port: p } = server.address() as { port: number };
        server.close(() => resolve(p));
      });
    });
    const report = await doctor(await writeConfig({ sandbox: { smtpPort: port } }));
    assertFirstFailure(report, 'tcp', /refused the TCP connection/, /firewall/);
    assert.equal(report.checks.find((c) => c.id === 'tls')!.status, 'skip');
    assert.equal(report.checks.find((c) => c.id === 'token')!.status, 'pass');
    assert.equal(report.checks.find((c) => c.id === 'auth')!.status, 'skip');
  });

  it('a certificate from a CA this machine does not trust: the TLS check fails before any token is sent', async () => {
    const other = await createSandboxTls();
    const caFile = join(dir.path, 'other-ca.pem');
    await writeFile(caFile, other.ca.certPem);
    const report = await doctor(await writeConfig({ sandbox: { caFile } }));
    assertFirstFailure(report, 'tls', /certificate|CA/, /sandbox\.caFile/);
    assert.match(report.checks.find((c) => c.id === 'tls')!.detail, /issued by relay365 sandbox CA/);
    // The connection was closed before AUTH: the token never went over it.
    assert.equal(report.checks.find((c) => c.id === 'auth')!.status, 'skip');
  });

  it('prints plain [pass]/[FAIL] lines with cause and fix when not on a terminal, and exits 1', async () => {
    const res = await runCli(['doctor', '--config', await writeConfig({ mailbox: { address: MAILBOX_SMTP_OFF } })], { env });
    assert.equal(res.code, 1);
    const lines = res.stdout.split('\n');
    assert.match(lines[0]!, /^\[pass\] Config: /);
    const fail = lines.findIndex((l) => l.startsWith('[FAIL] AUTH XOAUTH2'));
    assert.ok(fail > 0, res.stdout);
    assert.match(lines[fail + 1]!, /^ {2}cause: SMTP AUTH is disabled for this mailbox/);
    assert.match(lines[fail + 2]!, /^ {2}fix: .*Set-CASMailbox/);
    assert.ok(lines.some((l) => l.startsWith('[skip] MAIL FROM')));
    assert.ok(!res.stdout.includes('\u001b['), 'no terminal escapes in plain output');
  });

  it('reports a config that cannot be read as the failing config check, in the same JSON shape', async () => {
    const res = await runCli(['doctor', '--json', '--config', join(dir.path, 'missing.yaml')]);
    assert.equal(res.code, 1);
    const report = JSON.parse(res.stdout) as DoctorJson;
    assert.deepEqual(
      report.checks.map((c) => c.id),
      CHECK_IDS,
    );
    assertFirstFailure(report, 'config', /Cannot read config file/, /relay365 init/);
    assert.ok(report.checks.slice(1).every((c) => c.status === 'skip'));
  });

  it('init --non-interactive writes a config without the secret that doctor then passes; it refuses to overwrite without --force', async () => {
    const out = join(dir.path, 'init.yaml');
    const data = join(dir.path, 'init-data');
    const args = [
      'init',
      '--non-interactive',
      '--output',
      out,
      '--data-dir',
      data,
      '--tenant',
      DEFAULT_IDS.tenantId,
      '--client-id',
      DEFAULT_IDS.appClientId,
      '--setup',
      'app-secret',
      '--mailbox',
      DEFAULT_IDS.mailbox,
      '--cloud',
      'sandbox',
      '--sandbox-url',
      sandbox.baseUrl,
      '--sandbox-smtp-port',
      String(sandbox.smtpPort),
      '--sandbox-ca',
      sandbox.caPath,
    ];
    const first = await runCli(args);
    assert.equal(first.code, 0, first.stderr);
    const written = await readFile(out, 'utf8');
    assert.match(written, /clientSecret: env:RELAY365_CLIENT_SECRET/);
    // The admin steps, with the values filled in, ending with the doctor.
    assert.match(first.stdout, new RegExp(`New-ServicePrincipal -AppId ${DEFAULT_IDS.appClientId} -ObjectId <enterprise-app-object-id>`));
    assert.match(first.stdout, new RegExp(`Add-MailboxPermission -Identity ${DEFAULT_IDS.mailbox} -User <enterprise-app-object-id> -AccessRights FullAccess`));
    assert.match(first.stdout, new RegExp(`Set-CASMailbox -Identity ${DEFAULT_IDS.mailbox} -SmtpClientAuthenticationDisabled \\$false`));
    assert.match(first.stdout, new RegExp(`Get-CASMailbox -Identity ${DEFAULT_IDS.mailbox} \\| fl SmtpClientAuthenticationDisabled`));
    assert.match(first.stdout, /Office 365 Exchange Online > Application permissions > SMTP\.SendAsApp/);
    assert.match(first.stdout.trimEnd(), new RegExp(`relay365 doctor --config ${out} --send-test <your address>$`));
    const passes = await runCli(['doctor', '--config', out, '--json'], { env: { RELAY365_CLIENT_SECRET: DEFAULT_IDS.appSecret } });
    assert.equal(passes.code, 0, `${passes.stdout}\n${passes.stderr}`);

    const again = await runCli(args);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /exists already.*--force.*R365_INIT_OUTPUT_EXISTS/);
    assert.equal(await readFile(out, 'utf8'), written, 'the config is left alone');

    // --store-secret: the secret (from stdin, never argv) goes to a 0600 file that the config refers to.
    const stored = await runCli([...args, '--force', '--store-secret', '--relay-user', 'printer'], { input: `${DEFAULT_IDS.appSecret}\nprinter-password\n` });
    assert.equal(stored.code, 0, stored.stderr);
    const config = parse(await readFile(out, 'utf8')) as { auth: { clientSecret: string }; smtp: { users: Array<{ name: string; passwordHash: string }> } };
    assert.equal(config.auth.clientSecret, `file:${data}/client-secret`);
    assert.equal((await stat(join(data, 'client-secret'))).mode & 0o777, 0o600);
    assert.equal((await stat(out)).mode & 0o777, 0o600);
    assert.match(config.smtp.users[0]!.passwordHash, /^scrypt\$/);
    const text = await readFile(out, 'utf8');
    assert.ok(!text.includes(DEFAULT_IDS.appSecret) && !text.includes('printer-password'), 'no secret in the config');
    assert.ok(!stored.stdout.includes(DEFAULT_IDS.appSecret));
    // (doctor passing a --store-secret config is shown by the interactive test below)
  });

  it('init --non-interactive lists every missing or invalid answer at once', async () => {
    const res = await runCli([
      'init',
      '--non-interactive',
      '--output',
      join(dir.path, 'never.yaml'),
      '--tenant',
      'common',
      '--client-id',
      'my-app',
      '--mailbox',
      'not-an-address',
    ]);
    assert.equal(res.code, 1);
    for (const problem of [
      /--tenant: common is not a tenant/,
      /--client-id: my-app is not an application \(client\) id/,
      /--setup is required/,
      /--mailbox: not an e-mail address/,
    ]) {
      assert.match(res.stderr, problem);
    }
    assert.match(res.stderr, /R365_INIT_INPUT_INVALID/);
    await assert.rejects(stat(join(dir.path, 'never.yaml')));
  });

  it('init asks on a terminal (driven through a pseudo-terminal), never echoes the secret or passwords, and doctor passes the result', async () => {
    const out = join(dir.path, 'interactive.yaml');
    const data = join(dir.path, 'interactive-data');
    const answers: Array<[RegExp, string]> = [
      [/Microsoft cloud .*\[global\]: /, 'sandbox'],
      [/Sandbox URL .*: /, sandbox.baseUrl],
      [/Sandbox SMTP port .*: /, String(sandbox.smtpPort)],
      [/Sandbox CA file .*: /, sandbox.caPath],
      [/Setup: .*\[app-secret\]: /, ''],
      [/Tenant: .*: /, 'not a tenant'],
      // A wrong answer is explained and asked again.
      [/is neither a tenant id[^]*Tenant: .*: /, DEFAULT_IDS.tenantDomain],
      [/Application \(client\) ID.*: /, DEFAULT_IDS.appClientId],
      [/Client secret value \(not shown.*: /, DEFAULT_IDS.appSecret],
      [/Mailbox\(es\) to send as.*: /, DEFAULT_IDS.mailbox],
      [/Local SMTP user for devices.*: /, 'scanner'],
      [/Password for scanner \(not shown\): /, 'scanner-password-1'],
      [/Again: /, 'scanner-password-1'],
      [/Another local SMTP user.*: /, ''],
    ];
    const { code, output, answered } = await runCliOnTerminal(['init', '--output', out, '--data-dir', data, '--store-secret'], answers);
    assert.equal(answered, answers.length, `answered ${answered} of ${answers.length} prompts; output:\n${output}`);
    assert.equal(code, 0, output);
    assert.match(output, /Wrote .*interactive\.yaml/);
    assert.ok(!output.includes(DEFAULT_IDS.appSecret), 'the secret is not echoed');
    assert.ok(!output.includes('scanner-password-1'), 'the password is not echoed');
    assert.match(output, new RegExp(`New-ServicePrincipal -AppId ${DEFAULT_IDS.appClientId}`));
    const config = parse(await readFile(out, 'utf8')) as { auth: { tenant: string; clientSecret: string }; smtp: { users: Array<{ name: string }> } };
    assert.equal(config.auth.tenant, DEFAULT_IDS.tenantDomain);
    assert.equal(config.auth.clientSecret, `file:${data}/client-secret`);
    assert.deepEqual(
      config.smtp.users.map((u) => u.name),
      ['scanner'],
    );
    const report = await doctor(out);
    assert.equal(report.ok, true, JSON.stringify(report.checks.filter((c) => c.status !== 'pass' && c.status !== 'skip')));
  });
});
