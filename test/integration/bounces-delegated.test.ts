import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { runDoctor } from '../../src/doctor/index.js';
import { composeMessage } from '../../src/delivery/index.js';
import { createIdentity, summarizeToken } from '../../src/identity/index.js';
import type { RelayEvent } from '../../src/observe/index.js';
import { startRelay } from '../../src/runtime/index.js';
import { DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';
import type { Config } from '../../src/config/index.js';
import { sandboxConfig } from '../helpers/config.js';
import { httpsRequest } from '../helpers/https.js';
import { scenario, startTestSandbox, tempDir } from '../helpers/sandbox.js';
import { until } from '../helpers/wait.js';

/**
 * Reading NDRs back for a delegated mailbox (device code sign-in): the reader asks Graph for a token
 * with the delegated Mail.ReadWrite on the same sign-in relay365 sends with (a refresh token is not
 * tied to one resource), reads the Inbox and moves the processed report, against the sandbox over
 * real HTTPS (Graph, the token endpoint) and SMTP.
 */

const MAILBOX = DEFAULT_IDS.mailbox;
const GOOD = 'good@fabrikam.example';
const UNKNOWN = 'nobody@fabrikam.example';

async function withDelegatedSandbox(graphScopes: string[], fn: (sandbox: Sandbox, config: Config) => Promise<void>): Promise<void> {
  const sandbox = await startTestSandbox({
    scenario: scenario((s) => {
      s.token.deviceCodeIntervalSeconds = 1;
      s.tenants[0]!.apps[1]!.delegatedScopes = { exchange: ['SMTP.Send'], graph: graphScopes };
      s.mailFlow.unknownRecipients = [UNKNOWN];
      s.mailFlow.ndrDelayMs = 100;
    }),
  });
  const dir = await tempDir();
  try {
    const config = sandboxConfig(sandbox, dir.path, {
      auth: { flow: 'device-code', tenant: DEFAULT_IDS.tenantId, clientId: DEFAULT_IDS.publicClientId },
      mailboxes: [{ address: MAILBOX, bounces: { read: true, everySeconds: 0.3 } }],
      smtp: { enabled: false },
      queue: { retryBaseSeconds: 0.1, retryMaxSeconds: 0.5 },
    });
    // What relay365 login does: the person signs in once, at the sandbox's device login page.
    const login = await createIdentity(config);
    try {
      await login.delegated(MAILBOX)!.loginWithDeviceCode(MAILBOX, (info) => {
        void httpsRequest(`${sandbox.baseUrl}/devicelogin`, {
          method: 'POST',
          ca: sandbox.caPem,
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ user_code: info.userCode, username: MAILBOX }).toString(),
        });
      });
      // The sign-in is for sending: SMTP.Send at Exchange.
      assert.deepEqual(summarizeToken((await login.provider.getToken(MAILBOX)).accessToken)?.scopes, ['SMTP.Send']);
    } finally {
      login.close();
    }
    await fn(sandbox, config);
  } finally {
    await sandbox.close();
    await dir.cleanup();
  }
}

describe('reading NDRs back for a delegated mailbox (device code sign-in, delegated Mail.ReadWrite)', () => {
  it('bounces the unknown recipient from the NDR the reader found with the sign-in, suppresses it, and moves the report; doctor passes', async () => {
    await withDelegatedSandbox(['Mail.Send', 'Mail.ReadWrite'], async (sandbox, config) => {
      const relay = await startRelay(config);
      const events: RelayEvent[] = [];
      relay.events.subscribe((e) => events.push(e));
      try {
        const m = await composeMessage({ from: MAILBOX, to: [GOOD, UNKNOWN], subject: 'hello', text: 'hi' });
        // With its Message-ID, as every front door stores it: the NDR is matched by it.
        const stored = await relay.enqueue({ mailbox: MAILBOX, envelope: m.envelope, raw: m.raw, messageId: m.messageId!, source: { kind: 'library' } });
        const recipients = await until(
          async () => {
            const r = await relay.store.recipients(stored.id);
            return r.find((x) => x.state === 'bounced') && r.find((x) => x.state === 'accepted') ? r : undefined;
          },
          20_000,
          'the NDR to bounce the unknown recipient',
        );
        const bounced = recipients.find((r) => r.address === UNKNOWN)!;
        assert.equal(bounced.state, 'bounced');
        assert.equal(bounced.dsnStatus, '5.1.1');
        assert.equal(recipients.find((r) => r.address === GOOD)!.state, 'accepted');
        // The event follows the ledger's commit (the reader publishes it before it moves the report).
        await until(() => events.some((e) => e.type === 'message.bounced'), 10_000, 'message.bounced');
        assert.equal((await relay.store.suppressed([UNKNOWN])).length, 1, 'a hard bounce suppresses');
        // The report was read and moved with the user's delegated token, to the reports folder.
        await until(
          () => {
            const f = sandbox.state.mail.folders(MAILBOX).find((x) => x.displayName === 'relay365 reports');
            return f && sandbox.state.mail.items(MAILBOX, f.id).length === 1;
          },
          10_000,
          'the report moved to relay365 reports',
        );
        const inbox = sandbox.state.mail.folder(MAILBOX, 'inbox')!;
        assert.equal(sandbox.state.mail.items(MAILBOX, inbox.id).filter((i) => /Undeliverable/.test(i.raw.toString('latin1'))).length, 0);
      } finally {
        await relay.close();
      }
      const report = await runDoctor(config, { mailbox: MAILBOX });
      const check = report.results.find((r) => r.id === 'bounces')!;
      assert.equal(check.status, 'pass', JSON.stringify(check));
    });
  });

  it('without the delegated Mail.ReadWrite on the app registration, doctor fails the bounces check with the permission to add and the login to run again', async () => {
    await withDelegatedSandbox(['Mail.Send'], async (_sandbox, config) => {
      const report = await runDoctor(config, { mailbox: MAILBOX });
      const check = report.results.find((r) => r.id === 'bounces')!;
      assert.equal(check.status, 'fail', JSON.stringify(check));
      // Entra's AADSTS65001 (the sandbox's): the app requests no delegated Mail.ReadWrite.
      assert.match(check.detail, /^no Graph token for reading relay@contoso\.example's NDRs with the sign-in: .*Consent was not granted/);
      assert.match(check.fix ?? '', /Delegated permissions > Mail\.ReadWrite/);
      assert.match(check.fix ?? '', new RegExp(`relay365 login --mailbox ${MAILBOX.replace(/\./g, '\\.')}`));
    });
  });
});
