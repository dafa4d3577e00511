import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AADSTS_ERRORS, AadstsError, aadstsErrorBody } from '../../src/sandbox/aadsts-errors.js';
import { grantablePermissions, grantedScopeString, parseAppOnlyScope, parseDelegatedScope } from '../../src/sandbox/identity-scopes.js';
import { defaultScenario } from '../../src/sandbox/scenario.js';

function aadstsCode(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof AadstsError) return err.code;
    throw err;
  }
  return 'no error';
}

describe('sandbox AADSTS error table', () => {
  it('renders every code in Microsoft error shape, with invalid_client answered by HTTP 401 and nothing else', () => {
    for (const [code, entry] of Object.entries(AADSTS_ERRORS)) {
      const { status, body } = aadstsErrorBody(code, { tenant: 't', clientId: 'c', parameter: 'p' });
      assert.equal(status, entry.error === 'invalid_client' ? 401 : 400, code);
      assert.ok(body.error_description.startsWith(`${code}: `), code);
      assert.ok(!body.error_description.includes('undefined'), `${code} leaves a placeholder empty: ${body.error_description}`);
      assert.deepEqual(body.error_codes, [Number(code.slice('AADSTS'.length))]);
      assert.equal(body.error_uri, `https://login.microsoftonline.com/error?code=${code.slice('AADSTS'.length)}`);
    }
  });

  it('renders a fault code missing from the table as a generic invalid_request', () => {
    const { status, body } = aadstsErrorBody('AADSTS123456');
    assert.equal(status, 400);
    assert.equal(body.error, 'invalid_request');
    assert.deepEqual(body.error_codes, [123456]);
  });
});

describe('sandbox scope parsing', () => {
  it('reads one {resource}/.default for client credentials and keeps the resource URI as requested for aud', () => {
    assert.deepEqual(parseAppOnlyScope('https://outlook.office365.com/.default', 't'), { name: 'exchange', audience: 'https://outlook.office365.com' });
    assert.deepEqual(parseAppOnlyScope('https://outlook.office.com//.default', 't'), { name: 'exchange', audience: 'https://outlook.office.com' });
    assert.deepEqual(parseAppOnlyScope('00000003-0000-0000-c000-000000000000/.default', 't'), {
      name: 'graph',
      audience: '00000003-0000-0000-c000-000000000000',
    });
    // A delegated permission, with its resource or bare, is AADSTS1002012 (Entra's answer, as users pasted it).
    assert.equal(
      aadstsCode(() => parseAppOnlyScope('https://outlook.office.com/SMTP.Send', 't')),
      'AADSTS1002012',
    );
    assert.equal(
      aadstsCode(() => parseAppOnlyScope('User.Read', 't')),
      'AADSTS1002012',
    );
    assert.equal(
      aadstsCode(() => parseAppOnlyScope('https://graph.microsoft.com/.default https://outlook.office365.com/.default', 't')),
      'AADSTS70011',
    );
    assert.equal(
      aadstsCode(() => parseAppOnlyScope('https://api.contoso.example/.default', 't')),
      'AADSTS500011',
    );
  });

  it('gives a bare delegated permission to Graph, keeps OIDC scopes apart and refuses two resources in one request', () => {
    const bare = parseDelegatedScope('Mail.Send offline_access', 't');
    assert.equal(bare.resource.name, 'graph');
    assert.deepEqual(bare.permissions, ['Mail.Send']);
    assert.deepEqual([...bare.oidc], ['offline_access']);
    const smtp = parseDelegatedScope('openid https://outlook.office.com/SMTP.Send profile', 't');
    assert.equal(smtp.resource.audience, 'https://outlook.office.com');
    assert.equal(
      aadstsCode(() => parseDelegatedScope('https://outlook.office.com/SMTP.Send Mail.Send', 't')),
      'AADSTS700022',
    );
    assert.equal(
      aadstsCode(() => parseDelegatedScope('', 't')),
      'AADSTS70011',
    );
    assert.equal(
      aadstsCode(() => parseDelegatedScope('https://outlook.office.com/', 't')),
      'AADSTS70011',
    );
  });

  it('grants only permissions in the app registration, expanding .default to its list and writing full URIs back', () => {
    const app = defaultScenario().tenants[0]!.apps[1]!;
    const request = parseDelegatedScope('https://outlook.office.com/smtp.send offline_access', 't');
    const granted = grantablePermissions(app, request);
    assert.deepEqual(granted, ['SMTP.Send']);
    assert.equal(grantedScopeString(request, granted), 'https://outlook.office.com/SMTP.Send offline_access');
    assert.deepEqual(grantablePermissions(app, parseDelegatedScope('https://outlook.office.com/.default', 't')), ['SMTP.Send']);
    assert.equal(grantablePermissions(app, parseDelegatedScope('https://outlook.office.com/EWS.AccessAsUser.All', 't')), undefined);
  });
});
