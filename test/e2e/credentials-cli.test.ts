import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';
import { runCli } from '../helpers/cli.js';
import { sandboxSettings } from '../helpers/config.js';
import { secretEndDateScenario, startTestSandbox, tempDir, UNREADABLE_APP as UNREADABLE } from '../helpers/sandbox.js';

const DAY = 86_400_000;
/** The end date Entra (the sandbox) lists for the app's secret; the config says otherwise. */
const LISTED = new Date(Math.floor((Date.now() + 10 * DAY) / 1000) * 1000).toISOString();
const UNREADABLE_APP = UNREADABLE.clientId;
const UNREADABLE_SECRET = UNREADABLE.secret;

describe("relay365 token --json tells the app credential's end date (built CLI against the sandbox)", () => {
  let sandbox: Sandbox & { dir: string };
  let dir: Awaited<ReturnType<typeof tempDir>>;

  before(async () => {
    sandbox = await startTestSandbox({
      scenario: secretEndDateScenario([{ value: DEFAULT_IDS.appSecret, expiresAt: LISTED }]),
    });
    dir = await tempDir();
  });
  after(async () => {
    await sandbox?.close();
    await dir?.cleanup();
  });

  it('gives kind, expiresAt, daysLeft and status from auth.secretExpires, and no secret', async () => {
    const expires = new Date(Date.now() + 20 * 86_400_000).toISOString().slice(0, 10);
    const config = join(dir.path, 'relay365.yaml');
    await writeFile(
      config,
      stringify({
        dataDir: join(dir.path, 'data'),
        ...sandboxSettings(sandbox),
        auth: {
          flow: 'client-secret',
          tenant: DEFAULT_IDS.tenantId,
          clientId: DEFAULT_IDS.appClientId,
          clientSecret: 'env:APP_SECRET',
          secretExpires: expires,
        },
        mailboxes: [{ address: DEFAULT_IDS.mailbox }],
      }),
    );
    const env = { APP_SECRET: DEFAULT_IDS.appSecret };
    const json = await runCli(['token', '--config', config, '--json'], { env });
    assert.equal(json.code, 0, json.stderr);
    const parsed = JSON.parse(json.stdout) as { credential: { kind: string; expiresAt: string; daysLeft: number; status: string; source: string } };
    assert.equal(parsed.credential.kind, 'client-secret');
    assert.equal(parsed.credential.expiresAt, `${expires}T23:59:59.000Z`);
    assert.ok(parsed.credential.daysLeft === 19 || parsed.credential.daysLeft === 20, String(parsed.credential.daysLeft));
    assert.equal(parsed.credential.status, 'expiring');
    assert.equal(parsed.credential.source, 'config');
    const plain = await runCli(['token', '--config', config], { env });
    assert.match(plain.stdout, new RegExp(`credential  client-secret expires ${expires}T23:59:59\\.000Z \\(expiring, (19|20) days\\)`));
    assert.ok(!(json.stdout + json.stderr + plain.stdout + plain.stderr).includes(DEFAULT_IDS.appSecret));
  });

  /** A config of one mailbox whose secret's end date is read from the app registration (auth.secretExpiresFromGraph). */
  async function fromGraphConfig(name: string, clientId: string): Promise<string> {
    const config = join(dir.path, `${name}.yaml`);
    await writeFile(
      config,
      stringify({
        dataDir: join(dir.path, name),
        ...sandboxSettings(sandbox),
        auth: {
          flow: 'client-secret',
          tenant: DEFAULT_IDS.tenantId,
          clientId,
          clientSecret: 'env:APP_SECRET',
          secretExpires: '2030-01-31',
          secretExpiresFromGraph: true,
        },
        mailboxes: [{ address: DEFAULT_IDS.mailbox }],
      }),
    );
    return config;
  }

  interface DoctorJson {
    checks: Array<{ id: string; status: string; detail: string; cause?: string; fix?: string }>;
  }

  it('with auth.secretExpiresFromGraph, token --json and doctor give the date the app registration lists, as serve does', async () => {
    const config = await fromGraphConfig('graph', DEFAULT_IDS.appClientId);
    const env = { APP_SECRET: DEFAULT_IDS.appSecret };
    const json = await runCli(['token', '--config', config, '--json'], { env });
    assert.equal(json.code, 0, json.stderr);
    const { credential } = JSON.parse(json.stdout) as {
      credential: { expiresAt: string; status: string; source: string; daysLeft: number; graphError?: string };
    };
    assert.deepEqual(
      { expiresAt: credential.expiresAt, status: credential.status, source: credential.source, graphError: credential.graphError },
      {
        expiresAt: LISTED,
        status: 'expiring',
        source: 'graph',
        graphError: undefined,
      },
    );
    const doctor = await runCli(['doctor', '--config', config, '--json'], { env });
    const check = (JSON.parse(doctor.stdout) as DoctorJson).checks.find((c) => c.id === 'credential-expiry')!;
    assert.equal(check.status, 'warn', JSON.stringify(check));
    assert.ok(
      check.detail.startsWith(`the client secret expires on ${LISTED}, in 9 days`) ||
        check.detail.startsWith(`the client secret expires on ${LISTED}, in 10 days`),
      check.detail,
    );
    assert.ok(!(json.stdout + json.stderr + doctor.stdout + doctor.stderr).includes(DEFAULT_IDS.appSecret));
  });

  it('with auth.secretExpiresFromGraph and no Application.Read.All, doctor warns with the fix and token --json says why, auth.secretExpires standing', async () => {
    const config = await fromGraphConfig('unreadable', UNREADABLE_APP);
    const env = { APP_SECRET: UNREADABLE_SECRET };
    const json = await runCli(['token', '--config', config, '--json'], { env });
    assert.equal(json.code, 0, json.stderr);
    const { credential } = JSON.parse(json.stdout) as { credential: { expiresAt: string; source: string; graphError?: string } };
    assert.equal(credential.expiresAt, '2030-01-31T23:59:59.000Z');
    assert.equal(credential.source, 'config');
    assert.match(credential.graphError ?? '', /403 Authorization_RequestDenied/);
    const doctor = await runCli(['doctor', '--config', config, '--json'], { env });
    const check = (JSON.parse(doctor.stdout) as DoctorJson).checks.find((c) => c.id === 'credential-expiry')!;
    assert.equal(check.status, 'warn', JSON.stringify(check));
    assert.match(check.detail, /2030-01-31T23:59:59\.000Z.*Graph did not give the end date: .*403/);
    assert.match(check.fix ?? '', /Application\.Read\.All/);
    assert.ok(!(json.stdout + json.stderr + doctor.stdout + doctor.stderr).includes(UNREADABLE_SECRET));
  });
});
