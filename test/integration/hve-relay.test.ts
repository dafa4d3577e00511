import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { configSchema } from '../../src/config/index.js';
import { createMailer } from '../../src/delivery/index.js';
import { hveEndpoint } from '../../src/delivery/smtp-transport.js';
import { runDoctor } from '../../src/doctor/index.js';
import { DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';
import { sandboxConfig, sandboxSettings } from '../helpers/config.js';
import { scenario, startTestSandbox, tempDir } from '../helpers/sandbox.js';

const HVE = `hve@${DEFAULT_IDS.tenantDomain}`;

describe('High Volume Email: a mailbox marked hve goes through the HVE endpoint', () => {
  let sb: Sandbox & { dir: string };
  let dir: { path: string; cleanup: () => Promise<void> };
  before(async () => {
    sb = await startTestSandbox({
      scenario: scenario((s) => {
        const t = s.tenants[0]!;
        // MS Learn "OAuth authentication for high volume emails": Mail.Send of Office 365 Exchange Online, Add-HVEAppAccess.
        t.apps.find((a) => a.clientId === DEFAULT_IDS.appClientId)!.roles.exchange.push('Mail.Send');
        const relay = t.users.find((u) => u.upn === DEFAULT_IDS.mailbox)!;
        t.users.push({ ...structuredClone(relay), upn: HVE, id: 'e0e0e0e0-1111-4222-8333-444455556610', hve: true, hveApps: [DEFAULT_IDS.appClientId] });
      }),
    });
    dir = await tempDir();
  });
  after(async () => {
    await sb.close();
    await dir.cleanup();
  });

  const config = (hve: boolean) =>
    sandboxConfig(sb, dir.path, {
      sandbox: { ...sandboxSettings(sb).sandbox, hveSmtpPort: sb.hveSmtpPort },
      mailboxes: [{ address: DEFAULT_IDS.mailbox }, { address: HVE, hve }],
    });

  it("sends an HVE account's message through the HVE port, and the other mailbox's through submission", async () => {
    const mailer = await createMailer(config(true));
    try {
      const before = sb.state.messages.length;
      const hve = await mailer.send({ from: HVE, to: `colleague@${DEFAULT_IDS.tenantDomain}`, subject: 'hve', text: 'via HVE' });
      assert.equal(hve.class, 'sent', JSON.stringify(hve.ok ? hve.reply : hve.explanation));
      const regular = await mailer.send({ from: DEFAULT_IDS.mailbox, to: 'someone@example.net', subject: 'regular', text: 'via submission' });
      assert.equal(regular.class, 'sent');
      assert.deepEqual(
        sb.state.messages.slice(before).map((m) => m.mailbox),
        [HVE, DEFAULT_IDS.mailbox],
      );
    } finally {
      await mailer.close();
    }
  });

  it('fails the HVE account on the submission endpoint when it is not marked hve (Exchange refuses it there)', async () => {
    const mailer = await createMailer(config(false));
    try {
      const result = await mailer.send({ from: HVE, to: `colleague@${DEFAULT_IDS.tenantDomain}`, subject: 'hve', text: 'wrong door' });
      assert.equal(result.class, 'auth');
      assert.match(result.reply ?? '', /^535 5\.7\.3 Authentication unsuccessful/);
    } finally {
      await mailer.close();
    }
  });

  it("doctor probes an HVE account's own endpoint, the HVE port, and its AUTH passes there", async () => {
    const report = await runDoctor(config(true), { mailbox: HVE });
    const byId = Object.fromEntries(report.results.map((r) => [r.id, r]));
    assert.deepEqual(byId.tcp?.data, { host: sb.smtpHost, port: sb.hveSmtpPort }, JSON.stringify(byId.tcp));
    assert.equal(byId.auth?.status, 'pass', JSON.stringify(byId.auth));
    const regular = await runDoctor(config(true), { mailbox: DEFAULT_IDS.mailbox });
    assert.deepEqual(regular.results.find((r) => r.id === 'tcp')?.data, { host: sb.smtpHost, port: sb.smtpPort });
  });

  it('points HVE accounts at smtp-hve.office365.com:587 in the global cloud, and refuses hve where HVE does not exist', () => {
    const global = configSchema.parse({
      auth: { flow: 'client-secret', tenant: DEFAULT_IDS.tenantId, clientId: DEFAULT_IDS.appClientId, clientSecret: 'x' },
      mailboxes: [{ address: HVE, hve: true }, { address: DEFAULT_IDS.mailbox }],
    });
    const endpoint = hveEndpoint(global)!;
    assert.equal(endpoint.host, 'smtp-hve.office365.com');
    assert.equal(endpoint.port, 587);
    assert.deepEqual([...endpoint.mailboxes], [HVE]);
    const china = configSchema.safeParse({ ...global, cloud: 'china' });
    assert.equal(china.success, false);
    assert.match(JSON.stringify(china.error?.issues), /global cloud only/);
    const graph = configSchema.safeParse({ ...global, mailboxes: [{ address: HVE, hve: true, transport: 'graph' }] });
    assert.match(JSON.stringify(graph.error?.issues), /SMTP only/);
  });
});
