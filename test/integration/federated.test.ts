import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { exportSPKI, generateKeyPair, SignJWT } from 'jose';
import { configSchema } from '../../src/config/index.js';
import { createIdentity, summarizeToken } from '../../src/identity/index.js';
import { DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';
import { sandboxConfig } from '../helpers/config.js';
import { scenario, startTestSandbox, tempDir } from '../helpers/sandbox.js';
import { sendWithToken, smtpAuthWorks } from '../helpers/smtp.js';

const MAILBOX = DEFAULT_IDS.mailbox;
const ISSUER = 'https://oidc.cluster.test.example/3f1b2c';
const SUBJECT = 'system:serviceaccount:mail:relay365';
const AUDIENCE = 'api://AzureADTokenExchange';

describe('workload identity federation (auth.flow: federated) against the sandbox', () => {
  let sandbox: Sandbox & { dir: string };
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let issuerKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];

  /** An OIDC token as the cluster's issuer (the test's own key) signs it for the service account. */
  async function externalToken(claims: { iss?: string; sub?: string; aud?: string; expiresIn?: number } = {}): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({})
      .setProtectedHeader({ alg: 'RS256', kid: 'cluster-key-1' })
      .setIssuer(claims.iss ?? ISSUER)
      .setSubject(claims.sub ?? SUBJECT)
      .setAudience(claims.aud ?? AUDIENCE)
      .setIssuedAt(now - 60)
      .setExpirationTime(now + (claims.expiresIn ?? 3600))
      .sign(issuerKey);
  }

  function federatedConfig(name: string, auth: Record<string, unknown>) {
    return sandboxConfig(sandbox, join(dir.path, `data-${name}`), {
      auth: { flow: 'federated', tenant: DEFAULT_IDS.tenantId, clientId: DEFAULT_IDS.appClientId, ...auth },
    });
  }

  before(async () => {
    const pair = await generateKeyPair('RS256');
    issuerKey = pair.privateKey;
    const publicKeyPem = await exportSPKI(pair.publicKey);
    sandbox = await startTestSandbox({
      scenario: scenario((s) => {
        // The federated identity credential an admin adds on the app (az ad app federated-credential create).
        s.tenants[0]!.apps[0]!.federatedCredentials = [{ issuer: ISSUER, subject: SUBJECT, audiences: [AUDIENCE], publicKeyPem }];
      }),
    });
    dir = await tempDir();
  });

  after(async () => {
    await sandbox?.close();
    await dir?.cleanup();
  });

  it('an assertion file (AZURE_FEDERATED_TOKEN_FILE) gets an app-only token Exchange (the sandbox) accepts', async () => {
    const file = join(dir.path, 'azure-identity-token');
    await writeFile(file, await externalToken());
    // No assertionFile in the config: the AKS workload identity variable names it.
    const identity = await createIdentity(federatedConfig('env-file', {}), { env: { AZURE_FEDERATED_TOKEN_FILE: file } });
    try {
      const token = await identity.provider.getToken(MAILBOX);
      const summary = summarizeToken(token.accessToken)!;
      assert.equal(summary.kind, 'app-only');
      assert.deepEqual(summary.roles, ['SMTP.SendAsApp']);
      assert.equal(await smtpAuthWorks(sandbox, MAILBOX, token.accessToken), true);
      const sent = await sendWithToken(sandbox, MAILBOX, token.accessToken, 'federated@example.net');
      assert.match(sent.response, /^250 /);
    } finally {
      identity.close();
    }
  });

  it('re-reads the file before each token request: an expired assertion is refused (AADSTS700024), the rotated one works', async () => {
    const file = join(dir.path, 'rotating-token');
    await writeFile(file, await externalToken({ expiresIn: -600 }));
    const identity = await createIdentity(federatedConfig('rotating', { assertionFile: file }), {
      providerOptions: { backoffBaseMs: 10, backoffMaxMs: 20 },
    });
    try {
      await assert.rejects(identity.provider.getToken(MAILBOX), /AADSTS700024/);
      // The kubelet writes a fresh token to the same path.
      await writeFile(file, await externalToken());
      await new Promise((r) => setTimeout(r, 30));
      const token = await identity.provider.getToken(MAILBOX);
      assert.equal(await smtpAuthWorks(sandbox, MAILBOX, token.accessToken), true);
    } finally {
      identity.close();
    }
  });

  it('assertionCommand: the command prints the external token (as a GitHub Actions OIDC request would)', async () => {
    const file = join(dir.path, 'command-token');
    await writeFile(file, await externalToken());
    const identity = await createIdentity(federatedConfig('command', { assertionCommand: `cat ${file}` }));
    try {
      const token = await identity.provider.getToken(MAILBOX);
      assert.equal(await smtpAuthWorks(sandbox, MAILBOX, token.accessToken), true);
    } finally {
      identity.close();
    }
  });

  for (const [what, claims, code] of [
    ['an issuer no credential trusts', { iss: 'https://token.actions.githubusercontent.com' }, 'AADSTS700211'],
    ['another subject', { sub: 'system:serviceaccount:default:default' }, 'AADSTS700213'],
    ['another audience', { aud: 'api://AzureADMyOrg' }, 'AADSTS700212'],
  ] as const) {
    it(`refuses ${what} with ${code}, Entra's reply, and names no token in the error`, async () => {
      const file = join(dir.path, `bad-${code}`);
      const assertion = await externalToken(claims);
      await writeFile(file, assertion);
      const identity = await createIdentity(federatedConfig(`bad-${code}`, { assertionFile: file }));
      try {
        await assert.rejects(identity.provider.getToken(MAILBOX), (err: Error) => {
          assert.match(err.message, new RegExp(`${code}: No matching federated identity record found for presented assertion`));
          assert.ok(!err.message.includes(assertion));
          // relay365's own cause and fix from the catalogue row.
          assert.match(err.message, /Federated credentials\): its issuer, subject and audience must match/);
          return true;
        });
      } finally {
        identity.close();
      }
    });
  }

  it('a signature by another key is refused (AADSTS700027)', async () => {
    const other = await generateKeyPair('RS256');
    const now = Math.floor(Date.now() / 1000);
    const forged = await new SignJWT({})
      .setProtectedHeader({ alg: 'RS256' })
      .setIssuer(ISSUER)
      .setSubject(SUBJECT)
      .setAudience(AUDIENCE)
      .setIssuedAt(now)
      .setExpirationTime(now + 600)
      .sign(other.privateKey);
    const file = join(dir.path, 'forged');
    await writeFile(file, forged);
    const identity = await createIdentity(federatedConfig('forged', { assertionFile: file }));
    try {
      await assert.rejects(identity.provider.getToken(MAILBOX), /AADSTS700027/);
    } finally {
      identity.close();
    }
  });

  it('the config refuses assertionFile and assertionCommand together', () => {
    const r = configSchema.safeParse({
      auth: { flow: 'federated', tenant: 't', clientId: 'c', assertionFile: '/a', assertionCommand: 'b' },
      mailboxes: [{ address: MAILBOX }],
    });
    assert.equal(r.success, false);
    assert.match(JSON.stringify(r.error?.issues), /give assertionFile or assertionCommand, not both/);
  });
});
