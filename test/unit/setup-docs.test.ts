import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { SETUPS, SP_OBJECT_ID, adminSteps, docBlock, renderAdminStepsText, type AdminStepsInput } from '../../src/doctor/index.js';
import { SETUP_DOC, regenerate } from '../helpers/setup-doc.js';

const TENANT = '11111111-2222-4333-8444-555555555555';
const CLIENT = '66666666-7777-4888-8999-aaaaaaaaaaaa';

function text(input: Partial<AdminStepsInput> & Pick<AdminStepsInput, 'setup'>): string {
  return renderAdminStepsText(
    adminSteps({ tenant: TENANT, clientId: CLIENT, mailboxes: ['printer@contoso.com'], cloud: 'global', configPath: 'relay365.yaml', ...input }),
  );
}

describe('docs/microsoft-365-setup.md and the admin steps', () => {
  it('holds the steps adminSteps() generates with placeholder values, for every setup', async () => {
    const doc = await readFile(SETUP_DOC, 'utf8');
    for (const setup of SETUPS) assert.ok(doc.includes(docBlock(setup)), `the ${setup} steps drifted: run node --import tsx test/helpers/setup-doc.ts`);
    assert.equal(regenerate(doc), doc);
  });

  it('gives an app-only setup the exact Exchange commands with the values filled in, ending with relay365 doctor', () => {
    const steps = text({ setup: 'app-secret', mailboxes: ['printer@contoso.com', 'scanner@contoso.com'] });
    for (const expected of [
      'Office 365 Exchange Online > Application permissions > SMTP.SendAsApp',
      'Do not add full_access_as_app',
      'Grant admin consent',
      `New-ServicePrincipal -AppId ${CLIENT} -ObjectId ${SP_OBJECT_ID}`,
      `Get-ServicePrincipal -Identity ${CLIENT}`,
      `Add-MailboxPermission -Identity printer@contoso.com -User ${SP_OBJECT_ID} -AccessRights FullAccess`,
      `Add-MailboxPermission -Identity scanner@contoso.com -User ${SP_OBJECT_ID} -AccessRights FullAccess`,
      'Get-MailboxPermission -Identity scanner@contoso.com',
      'Set-CASMailbox -Identity printer@contoso.com -SmtpClientAuthenticationDisabled $false',
      'Get-CASMailbox -Identity printer@contoso.com | fl SmtpClientAuthenticationDisabled',
      'Set-TransportConfig -SmtpClientAuthenticationDisabled $false',
      `Test-ServicePrincipalAuthorization -Identity ${SP_OBJECT_ID} -Resource scanner@contoso.com`,
      "PrimarySmtpAddress -eq 'printer@contoso.com' -or PrimarySmtpAddress -eq 'scanner@contoso.com'",
      'export RELAY365_CLIENT_SECRET=',
    ]) {
      assert.ok(steps.includes(expected), `missing: ${expected}`);
    }
    assert.match(steps.trimEnd(), /Then run relay365 doctor[^]*relay365 doctor --config relay365\.yaml --mailbox scanner@contoso\.com$/);
    assert.ok(steps.indexOf('New-ServicePrincipal') < steps.indexOf('Add-MailboxPermission'), 'the service principal comes first');
  });

  it('gives a delegated setup SMTP.Send and a sign-in instead of the service principal', () => {
    const steps = text({ setup: 'device-code' });
    assert.match(steps, /Delegated permissions > SMTP\.Send/);
    assert.match(steps, /Allow public client flows: Yes/);
    assert.match(steps, /relay365 login --config relay365\.yaml --mailbox printer@contoso\.com/);
    assert.match(steps, /Set-CASMailbox -Identity printer@contoso\.com/);
    assert.doesNotMatch(steps, /New-ServicePrincipal|Add-MailboxPermission|SMTP\.SendAsApp/);
  });

  it('names the certificate files and the national cloud where they matter', () => {
    const steps = text({ setup: 'app-certificate', cloud: 'usgov', keyFile: '/etc/relay365/app.key', certFile: '/etc/relay365/app.crt' });
    assert.match(steps, /Upload certificate: upload `\/etc\/relay365\/app\.crt`/);
    assert.match(steps, /openssl req -x509 .* -keyout \/etc\/relay365\/app\.key -out \/etc\/relay365\/app\.crt/);
    assert.match(steps, /Connect-ExchangeOnline -ExchangeEnvironmentName O365USGovGCCHigh/);
    assert.doesNotMatch(steps, /client secret/i);
    const stored = text({ setup: 'app-secret', secretRef: 'file:/var/lib/relay365/client-secret' });
    assert.match(stored, /reads it from the file `\/var\/lib\/relay365\/client-secret`/);
    assert.doesNotMatch(stored, /export RELAY365_CLIENT_SECRET/);
  });
});
