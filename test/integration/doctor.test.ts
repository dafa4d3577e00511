import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { runDoctor, type CheckResult } from '../../src/doctor/index.js';
import { openSqliteStore } from '../../src/outbox/index.js';
import { DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';
import { sandboxConfig } from '../helpers/config.js';
import { startTestSandbox, tempDir } from '../helpers/sandbox.js';

/** An unsigned JWT with these claims: enough for the claims check, which reads and never verifies. */
function fakeJwt(claims: Record<string, unknown>): string {
  const part = (o: object): string => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'none', typ: 'JWT' })}.${part(claims)}.c2lnbmF0dXJl`;
}

describe('runDoctor (in process, against the sandbox)', () => {
  let sandbox: Sandbox & { dir: string };
  let dir: { path: string; cleanup: () => Promise<void> };

  before(async () => {
    dir = await tempDir();
    sandbox = await startTestSandbox();
  });
  after(async () => {
    await sandbox.close();
    await dir.cleanup();
  });

  /** A token-command config whose command prints `token`. */
  function printing(token: string): ReturnType<typeof sandboxConfig> {
    return sandboxConfig(sandbox, dir.path, { auth: { flow: 'token-command', command: `echo ${token}` } });
  }

  const appOnlyClaims = (now: number): Record<string, unknown> => ({
    aud: 'https://outlook.office365.com',
    tid: DEFAULT_IDS.tenantId,
    appid: DEFAULT_IDS.appClientId,
    roles: ['SMTP.SendAsApp'],
    iat: now,
    nbf: now,
    exp: now + 3600,
  });

  it("names a paused mailbox's cause, fix, since-when and resume command, read from the outbox, and the other paused mailboxes", async () => {
    const store = await openSqliteStore(join(dir.path, 'paused-outbox.db'));
    try {
      const config = sandboxConfig(sandbox, dir.path);
      const read = () => store.mailboxPauses();
      const clear = await runDoctor(config, { pausedMailboxes: read });
      assert.deepEqual(
        [clear.results.find((r) => r.id === 'paused')?.status, clear.ok],
        ['pass', true],
      );
      const since = new Date(Date.now() - 5 * 60_000);
      await store.pauseMailbox({
        mailbox: DEFAULT_IDS.mailbox,
        class: 'blocked',
        reply: '554 5.2.2 mailbox full; STOREDRV.Submission.Exception:QuotaExceededException',
        explanation: { id: 'smtp-554-5.2.2-mailbox-full', class: 'blocked', cause: 'Sent Items filled the mailbox.', fix: 'Add a retention policy (New-RetentionPolicy).' },
        owner: 'node-a',
        at: since,
      });
      await store.pauseMailbox({
        mailbox: 'm2@contoso.example',
        class: 'auth',
        reply: '535 5.7.139 Authentication unsuccessful',
        explanation: { id: 'smtp-535-5.7.139', class: 'auth', cause: 'SMTP AUTH is disabled for the mailbox.', fix: 'Set-CASMailbox' },
        owner: 'node-a',
      });
      const report = await runDoctor(config, { pausedMailboxes: read });
      assert.equal(report.ok, false, 'a paused mailbox sends nothing: the doctor fails');
      const paused = report.results.find((r) => r.id === 'paused')!;
      assert.equal(paused.status, 'fail');
      assert.equal(paused.cause, 'Sent Items filled the mailbox.');
      assert.match(paused.fix ?? '', /^Add a retention policy \(New-RetentionPolicy\)\. Then resume it: relay365 queue resume relay@contoso\.example /);
      assert.match(paused.detail, new RegExp(`^paused since ${since.toISOString().replace(/\./g, '\\.')} \\(5 min ago\\) after 554 5\\.2\\.2 mailbox full`));
      assert.match(paused.detail, /also paused: m2@contoso\.example \(SMTP AUTH is disabled for the mailbox\.\)/);
      // Every other check ran as before: the pause is reported, not a reason to skip them.
      assert.equal(report.results.find((r) => r.id === 'auth')?.status, 'pass');
    } finally {
      await store.close();
    }
  });

  it('reports each check to onStart and onProgress in order, and names the token nowhere', async () => {
    const started: string[] = [];
    const finished: Array<[string, CheckResult['status']]> = [];
    const report = await runDoctor(sandboxConfig(sandbox, dir.path), {
      onStart: (check) => started.push(check.id),
      onProgress: (check, result) => finished.push([check.id, result.status]),
    });
    assert.equal(report.ok, true);
    // Without sendTest nothing is sent: the send checks are skipped, which does not fail the run.
    assert.deepEqual(
      report.results.filter((r) => r.status === 'skip').map((r) => r.id),
      ['send-test', 'send-as', 'paused', 'bounces', 'credential-expiry'],
      'no outbox to read, no bounces to read, no secret end date: those checks skip too',
    );
    assert.deepEqual(
      started,
      report.results.map((r) => r.id),
    );
    assert.deepEqual(
      finished,
      report.results.map((r) => [r.id, r.status]),
    );
    // The secret is inline in this config: the doctor says so, and the report does not repeat it.
    assert.equal(report.results[0]!.status, 'warn');
    const text = JSON.stringify(report);
    assert.ok(!text.includes(DEFAULT_IDS.appSecret));
    assert.doesNotMatch(text, /eyJ[\w-]{8,}\.[\w-]{8,}\./);
    assert.equal(report.results.find((r) => r.id === 'claims')!.data?.servicePrincipalId, DEFAULT_IDS.appServicePrincipalId);
  });

  it('fails the claims check when this clock is behind the token issuer by more than five minutes', async () => {
    const now = Math.floor(Date.now() / 1000);
    const report = await runDoctor(printing(fakeJwt(appOnlyClaims(now + 900))));
    const claims = report.results.find((r) => r.id === 'claims')!;
    assert.equal(claims.status, 'fail');
    assert.match(claims.cause ?? '', /issued (8\d\d|9\d\d) s in this machine's future/);
    assert.match(claims.fix ?? '', /NTP/);
    assert.equal(report.results.find((r) => r.id === 'auth')!.status, 'skip');
  });

  it('fails the claims check for an expired token, and warns for a small skew', async () => {
    const now = Math.floor(Date.now() / 1000);
    const expired = await runDoctor(printing(fakeJwt({ ...appOnlyClaims(now - 7200), exp: now - 3600 })));
    const claims = expired.results.find((r) => r.id === 'claims')!;
    assert.equal(claims.status, 'fail');
    assert.match(claims.cause ?? '', /The token expired at/);

    const skewed = await runDoctor(printing(fakeJwt(appOnlyClaims(now + 120))));
    assert.equal(skewed.results.find((r) => r.id === 'claims')!.status, 'warn');
  });

  it('fails the claims check when the token comes from another tenant than the config names', async () => {
    const now = Math.floor(Date.now() / 1000);
    const config = sandboxConfig(sandbox, dir.path, {
      auth: { flow: 'token-command', tenant: '0badc0de-1111-4222-8333-444455556600', command: `echo ${fakeJwt(appOnlyClaims(now))}` },
    });
    const claims = (await runDoctor(config)).results.find((r) => r.id === 'claims')!;
    assert.equal(claims.status, 'fail');
    assert.match(claims.cause ?? '', new RegExp(`issued by tenant ${DEFAULT_IDS.tenantId}, but the config names tenant 0badc0de`));
  });

  it('warns that an opaque token cannot be read, and lets AUTH decide', async () => {
    const report = await runDoctor(printing('not-a-jwt-at-all'));
    assert.equal(report.results.find((r) => r.id === 'claims')!.status, 'warn');
    const auth = report.results.find((r) => r.id === 'auth')!;
    assert.equal(auth.status, 'fail');
    assert.match(auth.detail, /535 5\.7\.3/);
  });

  it('tells a delegated mailbox that has not signed in to run relay365 login', async () => {
    const config = sandboxConfig(sandbox, dir.path, {
      auth: { flow: 'device-code', tenant: DEFAULT_IDS.tenantId, clientId: DEFAULT_IDS.publicClientId },
      mailboxes: [{ address: DEFAULT_IDS.user }],
    });
    const token = (await runDoctor(config)).results.find((r) => r.id === 'token')!;
    assert.equal(token.status, 'fail');
    assert.match(token.fix ?? '', /relay365 login --mailbox alice@contoso\.example/);
  });

  it('checks a Graph mailbox by its Graph token and a Graph send, skipping the SMTP steps', async () => {
    const config = sandboxConfig(sandbox, dir.path, { mailboxes: [{ address: DEFAULT_IDS.mailbox, transport: 'graph' }] });
    const report = await runDoctor(config, { sendTest: 'graph-doctor@example.net' });
    assert.equal(report.ok, true, JSON.stringify(report.results.filter((r) => r.status === 'fail')));
    const status = Object.fromEntries(report.results.map((r) => [r.id, r.status]));
    for (const id of ['dns-smtp', 'tcp', 'tls', 'ehlo', 'auth', 'mail-from']) assert.equal(status[id], 'skip', id);
    // Right audience and role; application Mail.Send still reaches every mailbox until RBAC for Applications scopes it.
    const claims = report.results.find((r) => r.id === 'claims')!;
    assert.equal(claims.status, 'warn');
    assert.match(claims.detail, /audience https:\/\/graph\.microsoft\.com, roles Mail\.Send/);
    assert.match(claims.cause ?? '', /ANY mailbox/);
    assert.match(claims.fix ?? '', /New-ManagementRoleAssignment/);
    assert.equal(status['send-test'], 'pass');
    assert.ok(sandbox.state.messages.some((m) => m.via === 'graph' && m.envelope.rcptTo.includes('graph-doctor@example.net')));
  });

  it('fails the config check for a mailbox that is not configured, or a secret reference that points at nothing', async () => {
    const missing = await runDoctor(sandboxConfig(sandbox, dir.path), { mailbox: 'other@contoso.example' });
    assert.equal(missing.results[0]!.status, 'fail');
    assert.match(missing.results[0]!.fix ?? '', /relay@contoso\.example/);
    assert.ok(missing.results.slice(1).every((r) => r.status === 'skip'));

    const unset = await runDoctor(
      sandboxConfig(sandbox, dir.path, {
        auth: { flow: 'client-secret', tenant: DEFAULT_IDS.tenantId, clientId: DEFAULT_IDS.appClientId, clientSecret: 'env:RELAY365_TEST_UNSET' },
      }),
      {
        env: {},
      },
    );
    assert.equal(unset.results[0]!.status, 'fail');
    assert.match(unset.results[0]!.cause ?? '', /RELAY365_TEST_UNSET is not set/);
  });
});
