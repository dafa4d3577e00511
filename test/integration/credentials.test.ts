import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, timingSafeEqual, webcrypto } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { runDoctor } from '../../src/doctor/index.js';
import { CredentialExpiryMonitor, credentialExpiry, expiryStatus } from '../../src/identity/index.js';
import { startRelay, type Relay } from '../../src/runtime/index.js';
import { DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';
import { sandboxConfig } from '../helpers/config.js';
import { scenario, startTestSandbox, tempDir } from '../helpers/sandbox.js';

const DAY = 86_400_000;
const RSA = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 };

/** A self-signed app certificate whose notAfter is `days` from now (the sandbox's own helper makes 365-day ones). */
async function certificateEnding(days: number): Promise<{ certPem: string; keyPem: string; notAfter: Date }> {
  const keys = await webcrypto.subtle.generateKey(RSA, true, ['sign', 'verify']);
  const notAfter = new Date(Math.floor((Date.now() + days * DAY) / 1000) * 1000);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '0' + Date.now().toString(16),
    name: 'CN=relay365 expiring app',
    notBefore: new Date(Date.now() - 60_000),
    notAfter,
    keys,
    signingAlgorithm: RSA,
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)).toString('base64');
  const keyPem = `-----BEGIN PRIVATE KEY-----\n${pkcs8.match(/.{1,64}/g)!.join('\n')}\n-----END PRIVATE KEY-----\n`;
  return { certPem: cert.toString('pem') + '\n', keyPem, notAfter };
}

function isoDay(offsetDays: number): string {
  return new Date(Date.now() + offsetDays * DAY).toISOString().slice(0, 10);
}

async function until<T>(check: () => T | undefined | false, timeoutMs: number, what: string): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('credential end dates: doctor, metric, webhook, token --json (sandbox as Entra)', () => {
  let sandbox: Sandbox & { dir: string };
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let soon: Awaited<ReturnType<typeof certificateEnding>>;
  const EXPIRED_SECRET = 'expired-secret-value-0001';

  before(async () => {
    soon = await certificateEnding(10);
    sandbox = await startTestSandbox({
      scenario: scenario((s) => {
        const app = s.tenants[0]!.apps[0]!;
        app.certificates.push({ pem: soon.certPem });
        // Expired in Entra: the token endpoint answers AADSTS7000222 for it.
        app.secrets.push({ value: EXPIRED_SECRET, expiresAt: new Date(Date.now() - DAY).toISOString() });
      }),
    });
    dir = await tempDir();
  });

  after(async () => {
    await sandbox?.close();
    await dir?.cleanup();
  });

  it('a secret 20 days from its end date turns doctor yellow with the steps to make a new one', async () => {
    const config = sandboxConfig(sandbox, dir.path, {
      auth: { flow: 'client-secret', tenant: DEFAULT_IDS.tenantId, clientId: DEFAULT_IDS.appClientId, clientSecret: DEFAULT_IDS.appSecret, secretExpires: isoDay(20) },
    });
    const report = await runDoctor(config);
    const check = report.results.find((r) => r.id === 'credential-expiry')!;
    assert.equal(check.status, 'warn', JSON.stringify(check));
    assert.match(check.detail, /client secret expires on \d{4}-\d\d-\d\dT.*in (19|20) days/);
    assert.match(check.fix!, /Certificates & secrets > Client secrets > New client secret/);
    assert.match(check.fix!, new RegExp(`az ad app credential reset --id ${DEFAULT_IDS.appClientId} --append`));
    // The token still works: a warning does not fail the run.
    assert.equal(report.results.find((r) => r.id === 'token')!.status, 'pass');
    assert.equal(report.ok, true);
  });

  it('an expired secret fails doctor with the fix, and Entra (the sandbox) refuses it with AADSTS7000222', async () => {
    const secretFile = join(dir.path, 'expired-secret');
    await writeFile(secretFile, EXPIRED_SECRET + '\n', { mode: 0o600 });
    const config = sandboxConfig(sandbox, dir.path, {
      auth: { flow: 'client-secret', tenant: DEFAULT_IDS.tenantId, clientId: DEFAULT_IDS.appClientId, clientSecret: `file:${secretFile}`, secretExpires: isoDay(-1) },
    });
    const report = await runDoctor(config);
    assert.equal(report.ok, false);
    const check = report.results.find((r) => r.id === 'credential-expiry')!;
    assert.equal(check.status, 'fail');
    assert.match(check.cause!, /AADSTS7000222/);
    assert.match(check.fix!, new RegExp(`write the new value to ${secretFile.replaceAll('/', '\\/')}`));
    const token = report.results.find((r) => r.id === 'token')!;
    assert.equal(token.status, 'fail');
    assert.match(`${token.detail} ${token.cause ?? ''}`, /7000222/);
    assert.ok(!JSON.stringify(report).includes(EXPIRED_SECRET), 'the secret is in no result');
  });

  it("reads a certificate's notAfter from certFile: 10 days left warns, with the upload steps", async () => {
    const keyFile = join(dir.path, 'soon.key');
    const certFile = join(dir.path, 'soon.pem');
    await writeFile(keyFile, soon.keyPem, { mode: 0o600 });
    await writeFile(certFile, soon.certPem);
    const auth = { flow: 'client-certificate' as const, tenant: DEFAULT_IDS.tenantId, clientId: DEFAULT_IDS.appClientId, certificate: { keyFile, certFile } };
    const expiry = await credentialExpiry({ ...auth, commandTimeoutMs: 30_000, redirectPort: 0 });
    assert.equal(expiry?.expiresAt?.getTime(), soon.notAfter.getTime());
    assert.equal(expiryStatus(expiry?.expiresAt).status, 'expiring');
    const report = await runDoctor(sandboxConfig(sandbox, dir.path, { auth }));
    assert.equal(report.results.find((r) => r.id === 'token')!.status, 'pass', 'the sandbox takes an assertion signed by this certificate');
    const check = report.results.find((r) => r.id === 'credential-expiry')!;
    assert.equal(check.status, 'warn');
    assert.match(check.detail, /certificate [0-9A-F]{40} expires on .* in (9|10) days/);
    assert.match(check.fix!, /Certificates > Upload certificate/);
    assert.match(check.fix!, /az ad app credential reset --id .* --append --cert @/);
  });

  it('the monitor tells once a day, not once a check, while the credential is under the threshold', async () => {
    let now = new Date();
    const told: string[] = [];
    const set: Array<[string, string, number]> = [];
    const monitor = new CredentialExpiryMonitor({
      auth: new Map([
        ['a@contoso.example', { flow: 'client-secret', clientSecret: 'x', secretExpires: isoDay(5), commandTimeoutMs: 1, redirectPort: 0 }],
        ['b@contoso.example', { flow: 'client-secret', clientSecret: 'x', secretExpires: isoDay(90), commandTimeoutMs: 1, redirectPort: 0 }],
        ['c@contoso.example', { flow: 'device-code', commandTimeoutMs: 1, redirectPort: 0 }],
      ]),
      setExpiry: (m, k, at) => set.push([m, k, at]),
      onExpiring: (c) => told.push(`${c.mailbox} ${c.status}`),
      now: () => now,
    });
    await monitor.check();
    await monitor.check();
    assert.deepEqual(told, ['a@contoso.example expiring']);
    assert.deepEqual(
      set.map(([m, k]) => `${m} ${k}`),
      ['a@contoso.example client-secret', 'b@contoso.example client-secret', 'a@contoso.example client-secret', 'b@contoso.example client-secret'],
      'no gauge for a delegated mailbox',
    );
    now = new Date(now.getTime() + DAY);
    await monitor.check();
    assert.deepEqual(told, ['a@contoso.example expiring', 'a@contoso.example expiring']);
  });

  describe('a running relay', () => {
    let relay: Relay;
    let server: Server;
    const received: string[] = [];
    const hookSecret = 'whsec-credentials-test';
    const signatures: string[] = [];

    before(async () => {
      server = createServer((req, res) => {
        let body = '';
        req.on('data', (c: Buffer) => (body += c.toString()));
        req.on('end', () => {
          received.push(body);
          signatures.push(String(req.headers['x-relay365-signature']));
          res.writeHead(204).end();
        });
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`;
      const relayDir = join(dir.path, 'relay');
      relay = await startRelay(
        sandboxConfig(sandbox, relayDir, {
          auth: { flow: 'client-secret', tenant: DEFAULT_IDS.tenantId, clientId: DEFAULT_IDS.appClientId, clientSecret: DEFAULT_IDS.appSecret, secretExpires: isoDay(20) },
          http: { enabled: true, port: 0, webhooks: [{ url, secret: hookSecret, events: ['credential.expiring'] }] },
        }),
        { webhooks: { backoffBaseMs: 100, backoffMaxMs: 400, pollMs: 100 } },
      );
    });

    after(async () => {
      await relay?.close();
      await new Promise((r) => server?.close(r));
    });

    it('exposes relay365_credential_expiry_timestamp_seconds and posts one signed credential.expiring webhook', async () => {
      const want = Math.floor(new Date(`${isoDay(20)}T23:59:59Z`).getTime() / 1000);
      const body = await until(() => received[0], 10_000, 'the credential.expiring webhook');
      // Set by the same check that raised the event.
      const metrics = await relay.metrics.render({ messages: [], waiting: 0, oldestWaitingSeconds: 0, mailboxes: [] });
      assert.match(
        metrics,
        new RegExp(`relay365_credential_expiry_timestamp_seconds\\{mailbox="${DEFAULT_IDS.mailbox.replaceAll('.', '\\.')}",kind="client-secret"\\} ${want}\\b`),
      );
      const event = JSON.parse(body) as { type: string; data: Record<string, unknown> };
      assert.equal(event.type, 'credential.expiring');
      assert.equal(event.data.mailbox, DEFAULT_IDS.mailbox);
      assert.equal(event.data.kind, 'client-secret');
      assert.ok(event.data.daysLeft === 19 || event.data.daysLeft === 20, String(event.data.daysLeft));
      assert.equal(event.data.expired, false);
      assert.match(String(event.data.fix), /New client secret/);
      const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(signatures[0]!)!;
      assert.ok(timingSafeEqual(createHmac('sha256', hookSecret).update(`${m[1]}.${body}`).digest(), Buffer.from(m[2]!, 'hex')));
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(received.length, 1, 'once, not once per poll');
    });
  });
});
