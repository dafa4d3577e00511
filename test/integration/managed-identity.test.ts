import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { configSchema } from '../../src/config/index.js';
import { createIdentity, summarizeToken } from '../../src/identity/index.js';
import { DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';
import { sandboxSettings } from '../helpers/config.js';
import { scenario, startTestSandbox, tempDir } from '../helpers/sandbox.js';
import { smtpAuthWorks } from '../helpers/smtp.js';

const MAILBOX = DEFAULT_IDS.mailbox;
const SYSTEM_MI = '5e29463d-71da-4fe0-8e69-999b57db23b0';
const USER_MI = '7c1a2b3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d';
const HEADER = 'identity-header-of-this-host-0001';

/**
 * MSAL Node's ManagedIdentityApplication against the sandbox's App Service endpoint, which MSAL finds
 * through the documented IDENTITY_ENDPOINT / IDENTITY_HEADER variables (set for this process only:
 * MSAL reads process.env), so nothing leaves loopback and 169.254.169.254 is never asked.
 */
describe('managed identity (auth.flow: managed-identity) through the App Service endpoint', () => {
  let sandbox: Sandbox & { dir: string };
  let dir: Awaited<ReturnType<typeof tempDir>>;
  const saved = { endpoint: process.env.IDENTITY_ENDPOINT, header: process.env.IDENTITY_HEADER };

  before(async () => {
    sandbox = await startTestSandbox({
      scenario: scenario((s) => {
        const tenant = s.tenants[0]!;
        // Each managed identity is a service principal with SMTP.SendAsApp and FullAccess on the mailbox.
        for (const [clientId, name] of [
          [SYSTEM_MI, 'relay365-vm'],
          [USER_MI, 'relay365-uami'],
        ] as const) {
          tenant.apps.push({ ...structuredClone(tenant.apps[0]!), clientId, name, secrets: [], certificates: [], servicePrincipalId: undefined });
          tenant.users[0]!.fullAccessApps.push(clientId);
        }
        s.managedIdentity = { header: HEADER, systemAssigned: SYSTEM_MI, userAssigned: [USER_MI] };
      }),
    });
    process.env.IDENTITY_ENDPOINT = `${sandbox.baseUrl}/msi/token`;
    process.env.IDENTITY_HEADER = HEADER;
    dir = await tempDir();
  });

  after(async () => {
    if (saved.endpoint === undefined) delete process.env.IDENTITY_ENDPOINT;
    else process.env.IDENTITY_ENDPOINT = saved.endpoint;
    if (saved.header === undefined) delete process.env.IDENTITY_HEADER;
    else process.env.IDENTITY_HEADER = saved.header;
    await sandbox?.close();
    await dir?.cleanup();
  });

  function miConfig(name: string, auth: Record<string, unknown>) {
    return configSchema.parse({
      dataDir: join(dir.path, name),
      log: { level: 'silent' },
      ...sandboxSettings(sandbox),
      auth: { flow: 'managed-identity', ...auth },
      mailboxes: [{ address: MAILBOX }],
      smtp: { enabled: false },
      http: { enabled: false },
    });
  }

  for (const [kind, auth, appId] of [
    ['system-assigned', {}, SYSTEM_MI],
    ['user-assigned', { managedIdentityClientId: USER_MI }, USER_MI],
  ] as const) {
    it(`a ${kind} identity gets an app-only Exchange token that SMTP AUTH (the sandbox) accepts`, async () => {
      const identity = await createIdentity(miConfig(kind, auth));
      try {
        const token = await identity.provider.getToken(MAILBOX);
        const summary = summarizeToken(token.accessToken)!;
        assert.equal(summary.kind, 'app-only');
        assert.equal(summary.appId, appId);
        assert.equal(summary.audience, 'https://outlook.office365.com');
        assert.deepEqual(summary.roles, ['SMTP.SendAsApp']);
        assert.equal(await smtpAuthWorks(sandbox, MAILBOX, token.accessToken), true);
      } finally {
        identity.close();
      }
    });
  }

  it('needs neither tenant nor clientId in the config', () => {
    assert.equal(configSchema.safeParse({ auth: { flow: 'managed-identity' }, mailboxes: [{ address: MAILBOX }] }).success, true);
  });
});
