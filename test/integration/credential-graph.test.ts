import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '../../src/observe/index.js';
import { startRelay, type Relay } from '../../src/runtime/index.js';
import { DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';
import { sandboxConfig } from '../helpers/config.js';
import { secretEndDateScenario, startTestSandbox, tempDir, UNREADABLE_APP as UNREADABLE } from '../helpers/sandbox.js';
import { until } from '../helpers/wait.js';

const DAY = 86_400_000;
/** The end date Entra (the sandbox) lists for the app's secret: what Graph knows and the config does not. */
const LISTED = new Date(Math.floor((Date.now() + 20 * DAY) / 1000) * 1000).toISOString();
const UNREADABLE_APP = UNREADABLE.clientId;
const UNREADABLE_SECRET = UNREADABLE.secret;

/** The relay's expiry gauge of the mailbox's client secret, in seconds, once its first check has set it. */
function gauge(relay: Relay): Promise<number> {
  return until(
    async () => {
      const text = await relay.metrics.render({ messages: [], waiting: 0, oldestWaitingSeconds: 0, mailboxes: [] });
      const m = /relay365_credential_expiry_timestamp_seconds\{mailbox="[^"]+",kind="client-secret"\} (\d+)/.exec(text);
      return m ? Number(m[1]) : undefined;
    },
    10_000,
    'the credential expiry gauge',
  );
}

describe("the client secret's end date read from the app registration through Graph (auth.secretExpiresFromGraph)", () => {
  let sandbox: Sandbox & { dir: string };
  before(async () => {
    sandbox = await startTestSandbox({
      scenario: secretEndDateScenario([
        { value: DEFAULT_IDS.appSecret, expiresAt: LISTED },
        { value: 'zzz-another-secret-of-the-app', expiresAt: new Date(Date.now() + 2 * DAY).toISOString() },
      ]),
    });
  });
  after(async () => {
    await sandbox.close();
  });

  it('takes the end date Graph lists for this secret (by its hint), not another secret of the app, with no secretExpires in the config', async () => {
    const dir = await tempDir();
    const relay = await startRelay(
      sandboxConfig(sandbox, dir.path, {
        auth: {
          flow: 'client-secret',
          tenant: DEFAULT_IDS.tenantId,
          clientId: DEFAULT_IDS.appClientId,
          clientSecret: DEFAULT_IDS.appSecret,
          secretExpiresFromGraph: true,
        },
      }),
    );
    try {
      assert.equal(await gauge(relay), Date.parse(LISTED) / 1000);
    } finally {
      await relay.close();
      await dir.cleanup();
    }
  });

  it('a reload that turns secretExpiresFromGraph on applies at once: the gauge moves from auth.secretExpires to the date Graph lists', async () => {
    const dir = await tempDir();
    const auth = {
      flow: 'client-secret' as const,
      tenant: DEFAULT_IDS.tenantId,
      clientId: DEFAULT_IDS.appClientId,
      clientSecret: DEFAULT_IDS.appSecret,
      secretExpires: '2030-01-31',
    };
    const relay = await startRelay(sandboxConfig(sandbox, dir.path, { auth }));
    try {
      assert.equal(await gauge(relay), Date.parse('2030-01-31T23:59:59Z') / 1000);
      const report = await relay.reload(sandboxConfig(sandbox, dir.path, { auth: { ...auth, secretExpiresFromGraph: true } }));
      assert.deepEqual(report.restartRequired, []);
      assert.ok(report.changed.includes('auth'), report.changed.join());
      // Well before the hourly check.
      await until(async () => (await gauge(relay)) === Date.parse(LISTED) / 1000, 10_000, 'the gauge to show the listed date');
    } finally {
      await relay.close();
      await dir.cleanup();
    }
  });

  it('falls back to auth.secretExpires when Graph refuses (no Application.Read.All), and says why in the log', async () => {
    const dir = await tempDir();
    const lines: string[] = [];
    const logger = createLogger({ level: 'warn', destination: { write: (line: string) => void lines.push(line) } });
    const relay = await startRelay(
      sandboxConfig(sandbox, dir.path, {
        auth: {
          flow: 'client-secret',
          tenant: DEFAULT_IDS.tenantId,
          clientId: UNREADABLE_APP,
          clientSecret: UNREADABLE_SECRET,
          secretExpires: '2030-01-31',
          secretExpiresFromGraph: true,
        },
      }),
      { logger },
    );
    try {
      assert.equal(await gauge(relay), Date.parse('2030-01-31T23:59:59Z') / 1000);
      const warned = await until(
        () => Promise.resolve(lines.find((l) => l.includes("could not read the client secret's end date through Graph"))),
        10_000,
        'the warning',
      );
      assert.match(warned, /403 Authorization_RequestDenied/);
      assert.ok(!lines.join('').includes(UNREADABLE_SECRET), 'the secret is never logged');
    } finally {
      await relay.close();
      await dir.cleanup();
    }
  });
});
