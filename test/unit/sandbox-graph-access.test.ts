import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { checkMailboxAccess, delegatedSmtpLoginRefusal, type MailboxNeed } from '../../src/sandbox/graph-access.js';
import { DEFAULT_IDS as ids, defaultScenario, type Scenario } from '../../src/sandbox/scenario.js';
import type { AccessTokenClaims } from '../../src/sandbox/tokens.js';

const SHARED = 'shared@contoso.example';

function world(change: (s: Scenario) => void = () => undefined): Scenario {
  const s = defaultScenario();
  const alice = s.tenants[0]!.users.find((u) => u.upn === ids.user)!;
  s.tenants[0]!.users.push({ ...structuredClone(alice), upn: SHARED, id: '5a5a5a5a-1111-4222-8333-444455556666', password: undefined });
  change(s);
  return s;
}

function shared(s: Scenario): Scenario['tenants'][number]['users'][number] {
  return s.tenants[0]!.users.find((u) => u.upn === SHARED)!;
}

function appToken(roles: string[] | undefined): AccessTokenClaims {
  return { aud: 'https://graph.microsoft.com', iss: '', tid: ids.tenantId, appid: ids.appClientId, oid: ids.appServicePrincipalId, ver: '1.0', idtyp: 'app', ...(roles ? { roles } : {}) };
}

function aliceToken(scp: string): AccessTokenClaims {
  return { aud: 'https://graph.microsoft.com', iss: '', tid: ids.tenantId, appid: ids.publicClientId, oid: ids.userId, ver: '1.0', idtyp: 'user', scp, upn: ids.user };
}

function answer(s: Scenario, claims: AccessTokenClaims, mailbox: string, need: MailboxNeed): string {
  const r = checkMailboxAccess(s, claims, mailbox, need);
  return r ? `${r.status} ${r.body.error.code}${r.body.error.message.includes('[RAOP]') ? ' RAOP' : ''}` : 'ok';
}

describe('checkMailboxAccess (Graph permission decisions)', () => {
  it('app-only: roles decide, ReadWrite covers Read, no roles at all is 401 NoPermissionsInAccessToken', () => {
    const s = world();
    assert.equal(answer(s, appToken(['Mail.Send']), ids.mailbox, 'Mail.Send'), 'ok');
    assert.equal(answer(s, appToken(['Mail.Send']), ids.mailbox, 'Mail.Read'), '403 ErrorAccessDenied');
    assert.equal(answer(s, appToken(['Mail.ReadWrite']), ids.mailbox, 'Mail.Read'), 'ok');
    assert.equal(answer(s, appToken(['Mail.Read']), ids.mailbox, 'Mail.ReadWrite'), '403 ErrorAccessDenied');
    assert.equal(answer(s, appToken(undefined), ids.mailbox, 'Mail.Send'), '401 NoPermissionsInAccessToken');
  });

  it('RBAC for Applications: inside the management scope ok (by alias too), outside 403 [RAOP]', () => {
    const s = world((x) => {
      x.tenants[0]!.apps[0]!.mailboxScope = ['relay-alias@contoso.example'];
      x.tenants[0]!.users.find((u) => u.upn === ids.mailbox)!.aliases = ['relay-alias@contoso.example'];
    });
    assert.equal(answer(s, appToken(['Mail.Send']), ids.mailbox, 'Mail.Send'), 'ok');
    assert.equal(answer(s, appToken(['Mail.Send']), ids.user, 'Mail.Send'), '403 ErrorAccessDenied RAOP');
    // Without the role the plain 403 comes first: the scope only narrows a permission the app has.
    assert.equal(answer(s, appToken(['Mail.Read']), ids.user, 'Mail.Send'), '403 ErrorAccessDenied');
  });

  it('delegated: own mailbox with the plain scope; a shared mailbox needs the .Shared scope and FullAccess (read) or SendAs/SendOnBehalf (send)', () => {
    const none = world();
    assert.equal(answer(none, aliceToken('Mail.Send'), ids.user, 'Mail.Send'), 'ok');
    assert.equal(answer(none, aliceToken('Mail.Read'), ids.user, 'Mail.Send'), '403 ErrorAccessDenied');
    assert.equal(answer(none, aliceToken('Mail.Send Mail.Send.Shared'), SHARED, 'Mail.Send'), '403 ErrorAccessDenied');
    const granted = world((x) => {
      shared(x).fullAccessUsers = [ids.user];
      shared(x).sendOnBehalfUsers = [ids.user];
    });
    assert.equal(answer(granted, aliceToken('Mail.Send'), SHARED, 'Mail.Send'), '403 ErrorAccessDenied');
    assert.equal(answer(granted, aliceToken('Mail.Send.Shared'), SHARED, 'Mail.Send'), 'ok');
    assert.equal(answer(granted, aliceToken('Mail.Read.Shared'), SHARED, 'Mail.Read'), 'ok');
    assert.equal(answer(granted, aliceToken('Mail.Read.Shared'), SHARED, 'Mail.ReadWrite'), '403 ErrorAccessDenied');
    const sendOnly = world((x) => (shared(x).sendAsUsers = [ids.user]));
    assert.equal(answer(sendOnly, aliceToken('Mail.Send.Shared'), SHARED, 'Mail.Send'), 'ok');
    assert.equal(answer(sendOnly, aliceToken('Mail.Read.Shared'), SHARED, 'Mail.Read'), '403 ErrorAccessDenied');
  });

  it('an unknown mailbox or one of another tenant is 404 ErrorInvalidUser; a user without a mailbox 404 MailboxNotEnabledForRESTAPI', () => {
    const s = world((x) => (shared(x).mailbox = false));
    assert.equal(answer(s, appToken(['Mail.Send']), 'nobody@contoso.example', 'Mail.Send'), '404 ErrorInvalidUser');
    assert.equal(answer(s, { ...appToken(['Mail.Send']), tid: '00000000-0000-4000-8000-000000000000' }, ids.mailbox, 'Mail.Send'), '404 ErrorInvalidUser');
    assert.equal(answer(s, appToken(['Mail.Send']), SHARED, 'Mail.Send'), '404 MailboxNotEnabledForRESTAPI');
  });
});

describe('delegatedSmtpLoginRefusal (XOAUTH2 with a delegated token)', () => {
  it("allows the user's own mailbox and a shared one with FullAccess, and says why it refuses the rest", () => {
    const s = world((x) => (shared(x).fullAccessUsers = [ids.user]));
    const tenant = s.tenants[0]!;
    const alice = aliceToken('SMTP.Send');
    assert.equal(delegatedSmtpLoginRefusal(tenant, alice, tenant.users.find((u) => u.upn === ids.user)!), undefined);
    assert.equal(delegatedSmtpLoginRefusal(tenant, alice, shared(s)), undefined);
    assert.match(delegatedSmtpLoginRefusal(tenant, alice, tenant.users.find((u) => u.upn === ids.mailbox)!) ?? '', /token of alice@contoso\.example used for relay@contoso\.example, and alice@contoso\.example has no FullAccess on it/);
  });
});
