import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'yaml';
import { runCli, runCliOnTerminal } from '../helpers/cli.js';
import { tempDir } from '../helpers/sandbox.js';

const TENANT = '11111111-2222-4333-8444-555555555555';
const APP = '66666666-7777-4888-8999-aaaaaaaaaaaa';
const IDENTITY = '99999999-8888-4777-8666-555555555555';
const MAILBOX = 'printer@contoso.com';
const ISSUER = 'https://oidc.prod-aks.azure.com/00000000-0000-0000-0000-000000000000/';
const SUBJECT = 'system:serviceaccount:mail:relay365';

interface WrittenAuth {
  flow: string;
  tenant?: string;
  clientId?: string;
  assertionFile?: string;
  assertionCommand?: string;
  managedIdentityClientId?: string;
  clientSecret?: string;
}

// The secretless setups of `relay365 init` (issue 19), through the built CLI: each writes a config
// that `relay365 config check` accepts and prints the admin steps for its values.
describe('relay365 init for federated and managed-identity (built CLI)', { concurrency: 4 }, () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  before(async () => {
    dir = await tempDir();
  });
  after(async () => {
    await dir.cleanup();
  });

  /** Runs init with the flags; returns its output and the auth it wrote, after `config check` accepted the file. */
  async function init(name: string, flags: string[]): Promise<{ stdout: string; auth: WrittenAuth; text: string }> {
    const out = join(dir.path, `${name}.yaml`);
    const res = await runCli(['init', '--non-interactive', '--output', out, '--data-dir', join(dir.path, `${name}-data`), '--mailbox', MAILBOX, ...flags]);
    assert.equal(res.code, 0, res.stderr);
    const checked = await runCli(['config', 'check', '--config', out]);
    assert.equal(checked.code, 0, `config check refused what init wrote:\n${checked.stdout}${checked.stderr}`);
    const text = await readFile(out, 'utf8');
    return { stdout: res.stdout, auth: (parse(text) as { auth: WrittenAuth }).auth, text };
  }

  it('federated with a token file: writes flow federated and assertionFile, and prints the federated credential with issuer, subject and audience', async () => {
    const { stdout, auth } = await init('federated-file', [
      '--setup',
      'federated',
      '--tenant',
      TENANT,
      '--client-id',
      APP,
      '--assertion-file',
      '/var/run/secrets/tokens/azure-identity-token',
      '--issuer',
      ISSUER,
      '--subject',
      SUBJECT,
    ]);
    assert.deepEqual(auth, { flow: 'federated', tenant: TENANT, clientId: APP, assertionFile: '/var/run/secrets/tokens/azure-identity-token' });
    for (const expected of [
      'Add a federated credential (instead of a secret)',
      `APP_OBJECT_ID=$(az ad app show --id ${APP} --query id -o tsv)`,
      `az ad app federated-credential create --id "$APP_OBJECT_ID" --parameters '{"name":"relay365","issuer":"${ISSUER}","subject":"${SUBJECT}","audiences":["api://AzureADTokenExchange"]}'`,
      'https://learn.microsoft.com/entra/workload-id/workload-identity-federation-create-trust',
      'reads the token from `/var/run/secrets/tokens/azure-identity-token` before each token request',
      'Office 365 Exchange Online > Application permissions > SMTP.SendAsApp',
      `New-ServicePrincipal -AppId ${APP} -ObjectId <enterprise-app-object-id>`,
      `Add-MailboxPermission -Identity ${MAILBOX} -User <enterprise-app-object-id> -AccessRights FullAccess`,
      'AADSTS700213',
    ]) {
      assert.ok(stdout.includes(expected), `missing: ${expected}\n${stdout}`);
    }
    assert.doesNotMatch(stdout, /Create a client secret|RELAY365_CLIENT_SECRET/);
  });

  it("federated without a file or command: relies on AKS's AZURE_FEDERATED_TOKEN_FILE and says so in the config and the steps", async () => {
    const { stdout, auth, text } = await init('federated-env', ['--setup', 'federated', '--tenant', TENANT, '--client-id', APP]);
    assert.deepEqual(auth, { flow: 'federated', tenant: TENANT, clientId: APP });
    assert.match(text, /flow: federated # the token is read from the file \$AZURE_FEDERATED_TOKEN_FILE names/);
    assert.match(stdout, /the file `\$AZURE_FEDERATED_TOKEN_FILE` names \(AKS workload identity sets it/);
    // Issuer and subject not given: placeholders to fill in.
    assert.ok(stdout.includes(`"issuer":"<issuer>","subject":"<subject>","audiences":["api://AzureADTokenExchange"]`), stdout);
  });

  it('federated with a command: writes assertionCommand', async () => {
    const { auth, stdout } = await init('federated-command', [
      '--setup',
      'federated',
      '--tenant',
      TENANT,
      '--client-id',
      APP,
      '--assertion-command',
      '/usr/local/bin/oidc-token',
    ]);
    assert.equal(auth.assertionCommand, '/usr/local/bin/oidc-token');
    assert.match(stdout, /relay365 runs `\/usr\/local\/bin\/oidc-token` before each token request/);
  });

  it('managed-identity, user-assigned: writes its client id and no app registration, and prints the app role assignment and the Exchange steps for the identity', async () => {
    const { stdout, auth } = await init('mi-user', ['--setup', 'managed-identity', '--managed-identity-client-id', IDENTITY]);
    assert.deepEqual(auth, { flow: 'managed-identity', managedIdentityClientId: IDENTITY });
    for (const expected of [
      `Admin steps for the user-assigned managed identity ${IDENTITY}`,
      'az identity create -g <resource-group> -n relay365',
      'EXO=$(az ad sp show --id 00000002-0000-0ff1-ce00-000000000000 --query id -o tsv)',
      `ROLE=$(az ad sp show --id 00000002-0000-0ff1-ce00-000000000000 --query "appRoles[?value=='SMTP.SendAsApp'].id" -o tsv)`,
      'az rest --method POST --uri https://graph.microsoft.com/v1.0/servicePrincipals/<managed-identity-object-id>/appRoleAssignments',
      'https://learn.microsoft.com/azure/active-directory/managed-identities-azure-resources/how-to-assign-app-role-managed-identity-powershell',
      `New-ServicePrincipal -AppId ${IDENTITY} -ObjectId <managed-identity-object-id>`,
      `Add-MailboxPermission -Identity ${MAILBOX} -User <managed-identity-object-id> -AccessRights FullAccess`,
      `Set-CASMailbox -Identity ${MAILBOX} -SmtpClientAuthenticationDisabled $false`,
    ]) {
      assert.ok(stdout.includes(expected), `missing: ${expected}\n${stdout}`);
    }
    assert.ok(stdout.indexOf('appRoleAssignments') < stdout.indexOf('New-ServicePrincipal'), 'the role comes before Exchange');
    // No app registration, no consent page, no enterprise application to look up.
    assert.doesNotMatch(stdout, /Register the app|Grant admin consent|enterprise-app-object-id|App registrations/);
  });

  it("managed-identity, system-assigned: the host's identity, with placeholders for its ids", async () => {
    const { stdout, auth, text } = await init('mi-system', ['--setup', 'managed-identity']);
    assert.deepEqual(auth, { flow: 'managed-identity' });
    assert.match(text, /flow: managed-identity # the host's system-assigned identity/);
    assert.match(stdout, /Admin steps for the host's system-assigned managed identity/);
    assert.ok(stdout.includes('az vm identity assign -g <resource-group> -n <vm>\n'), stdout);
    assert.ok(stdout.includes('New-ServicePrincipal -AppId <managed-identity-client-id> -ObjectId <managed-identity-object-id>'), stdout);
  });

  it('asks on a terminal for the new setups: the token source of federated, system or user of managed-identity (driven through a pseudo-terminal)', async () => {
    /** Answers each prompt as it appears; resolves with the output once init wrote a config that passes config check. */
    const drive = async (out: string, answers: Array<[RegExp, string]>): Promise<string> => {
      const { code, output, answered } = await runCliOnTerminal(
        ['init', '--output', out, '--data-dir', join(dir.path, 'tty-data'), '--cloud', 'global'],
        answers,
      );
      assert.equal(answered, answers.length, `answered ${answered} of ${answers.length} prompts; output:\n${output}`);
      assert.equal(code, 0, output);
      const checked = await runCli(['config', 'check', '--config', out]);
      assert.equal(checked.code, 0, checked.stdout + checked.stderr);
      return output;
    };
    const noUsers: [RegExp, string] = [/Local SMTP user for devices.*: /, ''];

    const mi = join(dir.path, 'tty-mi.yaml');
    const miOutput = await drive(mi, [
      [/Setup: .*\[app-secret\]: /, 'managed-identity'],
      [/Managed identity: system .* or user .*\[system\]: /, 'user'],
      [/Client ID of the user-assigned managed identity: /, IDENTITY],
      [/Mailbox\(es\) to send as.*: /, MAILBOX],
      noUsers,
    ]);
    assert.doesNotMatch(miOutput, /Tenant: |Application \(client\) ID of the app registration/, 'a managed identity has no app registration to ask for');
    assert.deepEqual((parse(await readFile(mi, 'utf8')) as { auth: WrittenAuth }).auth, { flow: 'managed-identity', managedIdentityClientId: IDENTITY });
    assert.ok(miOutput.includes(`New-ServicePrincipal -AppId ${IDENTITY} -ObjectId <managed-identity-object-id>`));

    const fed = join(dir.path, 'tty-federated.yaml');
    const fedOutput = await drive(fed, [
      [/Setup: .*\[app-secret\]: /, 'federated'],
      [/Tenant: .*: /, TENANT],
      [/Application \(client\) ID.*: /, APP],
      [/Where relay365 reads the federated token: .*\[env\]: /, 'command'],
      [/Command that prints the token: /, '/usr/local/bin/oidc-token'],
      [/Issuer URL .*: /, ISSUER],
      [/Subject of its tokens.*: /, SUBJECT],
      [/Mailbox\(es\) to send as.*: /, MAILBOX],
      noUsers,
    ]);
    assert.deepEqual((parse(await readFile(fed, 'utf8')) as { auth: WrittenAuth }).auth, {
      flow: 'federated',
      tenant: TENANT,
      clientId: APP,
      assertionCommand: '/usr/local/bin/oidc-token',
    });
    assert.ok(fedOutput.includes(`"issuer":"${ISSUER}","subject":"${SUBJECT}"`), fedOutput);
  });

  it('refuses flags that do not go with the setup, listing them all, and writes nothing', async () => {
    const out = join(dir.path, 'never.yaml');
    const res = await runCli([
      'init',
      '--non-interactive',
      '--output',
      out,
      '--mailbox',
      MAILBOX,
      '--setup',
      'managed-identity',
      '--client-id',
      APP,
      '--managed-identity-client-id',
      'not-a-guid',
      '--issuer',
      ISSUER,
    ]);
    assert.equal(res.code, 1);
    for (const problem of [
      /--client-id names an app registration/,
      /--managed-identity-client-id: not-a-guid is not/,
      /--issuer only goes with --setup federated/,
    ])
      assert.match(res.stderr, problem);
    assert.match(res.stderr, /R365_INIT_INPUT_INVALID/);
    await assert.rejects(stat(out));
  });
});
