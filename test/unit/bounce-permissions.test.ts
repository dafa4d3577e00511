import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { reviewBounceReading, type TokenSummary } from '../../src/identity/index.js';

const base: TokenSummary = {
  kind: 'app-only',
  audience: 'https://graph.microsoft.com',
  tenantId: 't',
  appId: '3c1b9a52-2f44-4d6e-8f0a-7b5e9d2c4a11',
  appName: 'relay365',
  user: undefined,
  roles: ['Mail.Send'],
  scopes: [],
  issuedAt: undefined,
  expiresAt: undefined,
};

describe('reviewBounceReading (relay365 permissions with bounces.read)', () => {
  it('warns that a Mail.Read consented in Entra ID reaches every mailbox, and gives the RBAC for Applications commands for this one', () => {
    const findings = reviewBounceReading({ ...base, roles: ['Mail.Send', 'Mail.Read'] }, 'relay@contoso.com');
    assert.deepEqual(
      findings.map((f) => [f.level, f.permission]),
      [['warn', 'Mail.Read']],
    );
    assert.match(findings[0]!.fix!, /New-ManagementScope -Name "relay365 mailboxes" -RecipientRestrictionFilter "PrimarySmtpAddress -eq 'relay@contoso\.com'"/);
    assert.match(findings[0]!.fix!, /New-ManagementRoleAssignment -App 3c1b9a52-2f44-4d6e-8f0a-7b5e9d2c4a11 -Role "Application Mail\.Read" -CustomResourceScope "relay365 mailboxes"/);
  });

  it('is ok without a tenant-wide grant (RBAC for Applications grants are not in the token) and says doctor checks the Inbox', () => {
    const [finding, ...rest] = reviewBounceReading(base, 'relay@contoso.com');
    assert.equal(rest.length, 0);
    assert.equal(finding?.level, 'ok');
    assert.match(finding.message, /relay365 doctor reads relay@contoso\.com's Inbox/);
  });

  it('fails for a token of another resource, and for a delegated token without Mail.ReadWrite (saying what to add and to sign in again)', () => {
    assert.ok(reviewBounceReading({ ...base, audience: 'https://outlook.office365.com' }, 'm@x').some((f) => f.level === 'fail' && f.permission === 'audience'));
    const [missing, ...more] = reviewBounceReading({ ...base, kind: 'delegated', roles: [], scopes: ['Mail.Send'], user: 'alice@x' }, 'alice@x');
    assert.deepEqual(more, []);
    assert.deepEqual([missing!.level, missing!.permission], ['fail', 'Mail.ReadWrite']);
    assert.match(missing!.message, /the token's scopes are Mail\.Send\.$/);
    assert.match(missing!.fix!, /Microsoft Graph > Delegated > Mail\.ReadWrite.*relay365 login --mailbox alice@x/);
  });

  it('is ok for a delegated token with Mail.ReadWrite: the reader acts as the signed-in user, not on the whole tenant', () => {
    const findings = reviewBounceReading({ ...base, kind: 'delegated', roles: [], scopes: ['Mail.ReadWrite'], user: 'alice@x' }, 'alice@x');
    assert.deepEqual(
      findings.map((f) => [f.level, f.permission]),
      [['ok', 'Mail.ReadWrite']],
    );
    assert.match(findings[0]!.message, /acts as alice@x/);
  });
});
