import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey } from 'node:crypto';
import { rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { composeMessage } from '../../src/delivery/index.js';
import { createIdentity } from '../../src/identity/index.js';
import { createLogger, type RelayEvent } from '../../src/observe/index.js';
import { startRelay } from '../../src/runtime/index.js';
import { createClientCertificate, DEFAULT_IDS, type Sandbox, type Scenario } from '../../src/sandbox/index.js';
import { sandboxConfig } from '../helpers/config.js';
import { scenario, startTestSandbox, tempDir } from '../helpers/sandbox.js';

const MAILBOX = DEFAULT_IDS.mailbox;
const OLD = 'rotation-secret-old-0001';
const NEW = 'rotation-secret-new-0002';

/** Collects everything a logger writes (to find the retry line, and no secret). */
function logSink(): { logger: ReturnType<typeof createLogger>; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(c: Buffer, _e, cb) {
      chunks.push(c.toString());
      cb();
    },
  });
  return { logger: createLogger({ level: 'trace', destination: stream }), text: () => chunks.join('') };
}

async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('credential rotation without a restart (sandbox as Entra)', () => {
  let sandbox: Sandbox & { dir: string };
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let certA: Awaited<ReturnType<typeof createClientCertificate>>;
  let certB: Awaited<ReturnType<typeof createClientCertificate>>;

  /** The app's credentials in Entra, as an admin changes them on Certificates & secrets. */
  function setAppCredentials(secrets: string[], certificates: string[] = [certA.certPem]): void {
    sandbox.state.setScenario(
      scenario((s: Scenario) => {
        // Tokens of 4 s: MSAL renews any token within 5 minutes of its end, so every refresh asks Entra.
        s.token.lifetimeSeconds = 4;
        const app = s.tenants[0]!.apps[0]!;
        app.secrets = secrets.map((value) => ({ value }));
        app.certificates = certificates.map((pem) => ({ pem }));
      }),
    );
  }

  before(async () => {
    certA = await createClientCertificate('CN=relay365 rotation A');
    certB = await createClientCertificate('CN=relay365 rotation B');
    sandbox = await startTestSandbox({ scenario: scenario() });
    dir = await tempDir();
  });

  after(async () => {
    await sandbox?.close();
    await dir?.cleanup();
  });

  it('rotating the app secret and the file: secret while messages flow fails and loses nothing', async () => {
    setAppCredentials([OLD]);
    const secretFile = join(dir.path, 'client-secret');
    await writeFile(secretFile, `${OLD}\n`, { mode: 0o600 });
    const relay = await startRelay(
      sandboxConfig(sandbox, join(dir.path, 'relay'), {
        auth: { flow: 'client-secret', tenant: DEFAULT_IDS.tenantId, clientId: DEFAULT_IDS.appClientId, clientSecret: `file:${secretFile}` },
      }),
    );
    const events: RelayEvent[] = [];
    relay.events.subscribe((e) => events.push(e));
    const refreshes: boolean[] = [];
    relay.identity.provider.onRefresh((o) => refreshes.push(o.ok));
    try {
      const ids: string[] = [];
      const send = async (i: number): Promise<void> => {
        const m = await composeMessage({ from: MAILBOX, to: `rot${i}@example.net`, subject: `rotation ${i}`, text: 'x' });
        ids.push((await relay.enqueue({ mailbox: MAILBOX, envelope: m.envelope, raw: m.raw, source: { kind: 'library' } })).id);
      };
      for (let i = 0; i < 6; i++) {
        await send(i);
        await new Promise((r) => setTimeout(r, 150));
      }
      // The rotation Microsoft Learn describes: add the new secret, switch the app to it, delete the old one.
      setAppCredentials([OLD, NEW]);
      await writeFile(`${secretFile}.tmp`, `${NEW}\n`, { mode: 0o600 });
      await rename(`${secretFile}.tmp`, secretFile);
      const before = refreshes.length;
      for (let i = 6; i < 12; i++) {
        await send(i);
        await new Promise((r) => setTimeout(r, 150));
      }
      // A token was fetched since the file changed (tokens last 4 s): with the new secret, or the next step fails it.
      await until(() => refreshes.slice(before).includes(true), 10_000, 'a token request after the file changed');
      setAppCredentials([NEW]);
      const afterDelete = refreshes.length;
      for (let i = 12; i < 20; i++) {
        await send(i);
        await new Promise((r) => setTimeout(r, 150));
      }
      await until(() => refreshes.length > afterDelete, 10_000, 'a token request after the old secret was deleted');
      await until(() => events.filter((e) => e.type === 'message.sent').length === ids.length, 30_000, 'every message sent');
      assert.deepEqual(
        events.filter((e) => e.type === 'message.failed' || e.type === 'message.deferred' || e.type === 'mailbox.paused').map((e) => e.type),
        [],
      );
      assert.ok(!refreshes.includes(false), 'no token request failed');
      const sent = sandbox.state.messages.filter((m) => m.envelope.rcptTo.some((r) => r.startsWith('rot')));
      assert.equal(sent.length, 20);
    } finally {
      await relay.close();
    }
  });

  it('an env: secret replaced under a running identity: AADSTS7000215 reads it again and the request is retried once', async () => {
    setAppCredentials([OLD]);
    const env: NodeJS.ProcessEnv = { ROTATING_SECRET: OLD };
    const sink = logSink();
    const config = sandboxConfig(sandbox, join(dir.path, 'env'), {
      auth: { flow: 'client-secret', tenant: DEFAULT_IDS.tenantId, clientId: DEFAULT_IDS.appClientId, clientSecret: 'env:ROTATING_SECRET' },
    });
    const identity = await createIdentity(config, { env, logger: sink.logger });
    try {
      const first = await identity.provider.getToken(MAILBOX);
      // The old secret is deleted in Entra and the new value is put where the config points.
      setAppCredentials([NEW]);
      env.ROTATING_SECRET = NEW;
      identity.provider.invalidate(MAILBOX);
      const second = await identity.provider.getToken(MAILBOX);
      assert.notEqual(second.accessToken, first.accessToken);
      assert.match(sink.text(), /"aadsts":"AADSTS7000215".*reading it again and retrying once/);
      assert.ok(!sink.text().includes(OLD) && !sink.text().includes(NEW), 'no secret in the log');
      // Without a new value the retry cannot help: the refusal is told, with Entra's code.
      setAppCredentials(['a-third-secret-nobody-has']);
      identity.provider.invalidate(MAILBOX);
      await assert.rejects(identity.provider.getToken(MAILBOX), (err: Error) => /AADSTS7000215/.test(err.message));
    } finally {
      identity.close();
    }
  });

  it('SIGHUP: reloadCredentials() reads a changed env: secret before the next request, and the held token stays in use', async () => {
    setAppCredentials([OLD, NEW]);
    const env: NodeJS.ProcessEnv = { HUP_SECRET: OLD };
    const sink = logSink();
    const config = sandboxConfig(sandbox, join(dir.path, 'hup'), {
      auth: { flow: 'client-secret', tenant: DEFAULT_IDS.tenantId, clientId: DEFAULT_IDS.appClientId, clientSecret: 'env:HUP_SECRET' },
    });
    const identity = await createIdentity(config, { env, logger: sink.logger });
    try {
      const held = await identity.provider.getToken(MAILBOX);
      env.HUP_SECRET = NEW;
      assert.equal(identity.reloadCredentials(), 1);
      assert.equal((await identity.provider.getToken(MAILBOX)).accessToken, held.accessToken, 'the held token is still handed out');
      setAppCredentials([NEW]);
      identity.provider.invalidate(MAILBOX);
      const fresh = await identity.provider.getToken(MAILBOX);
      assert.notEqual(fresh.accessToken, held.accessToken);
      // Read before the request: Entra never saw the old secret again, so there was nothing to retry.
      assert.doesNotMatch(sink.text(), /reading it again/);
    } finally {
      identity.close();
    }
  });

  it('a new certificate and passphrase-protected key replacing the old files is picked up at the next token request', async () => {
    setAppCredentials([], [certA.certPem]);
    const keyFile = join(dir.path, 'app.key');
    const certFile = join(dir.path, 'app.pem');
    const passFile = join(dir.path, 'key-passphrase');
    const encrypt = (pem: string, passphrase: string): string =>
      createPrivateKey(pem).export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase }).toString();
    await writeFile(passFile, 'first passphrase\n', { mode: 0o600 });
    await writeFile(keyFile, encrypt(certA.keyPem, 'first passphrase'), { mode: 0o600 });
    await writeFile(certFile, certA.certPem);
    const config = sandboxConfig(sandbox, join(dir.path, 'cert'), {
      auth: {
        flow: 'client-certificate',
        tenant: DEFAULT_IDS.tenantId,
        clientId: DEFAULT_IDS.appClientId,
        certificate: { keyFile, certFile, passphrase: `file:${passFile}` },
      },
    });
    const identity = await createIdentity(config);
    try {
      const first = await identity.provider.getToken(MAILBOX);
      // The admin uploads certificate B, deletes A, and replaces the files (with a new passphrase).
      setAppCredentials([], [certB.certPem]);
      await writeFile(passFile, 'second passphrase\n', { mode: 0o600 });
      await writeFile(keyFile, encrypt(certB.keyPem, 'second passphrase'), { mode: 0o600 });
      await writeFile(certFile, certB.certPem);
      identity.provider.invalidate(MAILBOX);
      const second = await identity.provider.getToken(MAILBOX);
      assert.notEqual(second.accessToken, first.accessToken);
      // A wrong passphrase is told as such, and names the key file, not the passphrase.
      await writeFile(passFile, 'not the passphrase\n');
      identity.provider.invalidate(MAILBOX);
      await assert.rejects(identity.provider.getToken(MAILBOX), (err: Error) => {
        assert.match(err.message, /Cannot decrypt the certificate key .*app\.key with auth\.certificate\.passphrase/);
        assert.ok(!err.message.includes('not the passphrase'));
        return true;
      });
    } finally {
      identity.close();
    }
  });
});
