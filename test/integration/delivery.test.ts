import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { createMailer, composeMessage, type Mailer } from '../../src/delivery/index.js';
import { SmtpTransport } from '../../src/delivery/smtp-transport.js';
import { TokenProvider, type TokenSource } from '../../src/identity/index.js';
import { cloudEndpoints } from '../../src/identity/clouds.js';
import { configSchema } from '../../src/config/index.js';
import { createClientCertificate, createSandboxTls, DEFAULT_IDS, type Sandbox, type Scenario } from '../../src/sandbox/index.js';
import { sandboxConfig } from '../helpers/config.js';
import { startFakeStarttlsServer } from '../helpers/fake-smtp.js';
import { parseWithPython } from '../helpers/python-mime.js';
import { scenario, startTestSandbox, tempDir } from '../helpers/sandbox.js';

const NO_ROLE_APP = '4b3a2918-0f7e-4d6c-9b5a-483726150f9e';

describe('delivery through the sandbox (real SMTP over sockets)', () => {
  let sandbox: Sandbox & { dir: string };
  let dir: { path: string; cleanup: () => Promise<void> };
  let mailer: Mailer;

  before(async () => {
    dir = await tempDir();
    sandbox = await startTestSandbox({
      scenario: scenario((s) => {
        s.limits.unlimited = true;
        const t = s.tenants[0]!;
        t.apps.push({
          ...structuredClone(t.apps[0]!),
          clientId: NO_ROLE_APP,
          name: 'no role',
          secrets: [{ value: 'no-role-secret' }],
          roles: { exchange: [], graph: ['Mail.Send'] },
        });
        t.users.push(
          { ...structuredClone(t.users[0]!), upn: 'mbx-off@contoso.example', id: 'aaaaaaaa-0000-4000-8000-000000000001', smtpAuthEnabled: false, sendAs: [] },
          {
            ...structuredClone(t.users[0]!),
            upn: 'norole@contoso.example',
            id: 'aaaaaaaa-0000-4000-8000-000000000002',
            fullAccessApps: [NO_ROLE_APP],
            sendAs: [],
          },
        );
        t.users[1]!.autoApprove = true;
      }),
    });
    mailer = await createMailer(
      sandboxConfig(sandbox, dir.path, {
        mailboxes: [
          { address: DEFAULT_IDS.mailbox },
          { address: 'mbx-off@contoso.example' },
          { address: 'norole@contoso.example', auth: { clientId: NO_ROLE_APP, clientSecret: 'no-role-secret' } },
        ],
      }),
    );
  });
  after(async () => {
    await mailer.close();
    await sandbox.close();
    await dir.cleanup();
  });

  it('delivers the exact MIME the caller built: UTF-8 subject and body, attachments, Bcc kept out of the headers', async () => {
    const attachment = Buffer.from(Array.from({ length: 3000 }, (_, i) => i % 256));
    const composed = await composeMessage({
      from: 'Relay <relay@contoso.example>',
      to: 'Zoë <zoe@example.net>',
      cc: 'cc@example.net',
      bcc: 'hidden@example.net',
      subject: 'Grüße — 東京 ✓',
      text: 'Ünïcödé body ✓\nline two',
      html: '<p>Ünïcödé <b>html</b> ✓</p>',
      attachments: [{ filename: 'data.bin', content: attachment, contentType: 'application/octet-stream' }],
    });
    const before = sandbox.state.messages.length;
    const result = await mailer.send({ raw: composed.raw, envelope: composed.envelope });
    assert.equal(result.ok, true, JSON.stringify(result));
    assert.match(result.reply!, /^250 2\.0\.0 OK <.+> \[Hostname=/);
    const arrived = sandbox.state.messages[before]!;
    assert.ok(arrived.raw.equals(composed.raw), 'the bytes that arrived are the bytes that were built');
    assert.deepEqual(arrived.envelope.rcptTo.sort(), ['cc@example.net', 'hidden@example.net', 'zoe@example.net']);
    const parsed = await parseWithPython(arrived.raw);
    assert.equal(parsed.subject, 'Grüße — 東京 ✓');
    assert.equal(parsed.text?.trim(), 'Ünïcödé body ✓\nline two');
    assert.match(parsed.html ?? '', /Ünïcödé <b>html<\/b> ✓/);
    assert.equal(parsed.bcc, null);
    assert.equal(parsed.attachments.length, 1);
    assert.equal(parsed.attachments[0]!.size, attachment.length);
  });

  it('sends nodemailer-shaped messages as the mailbox the sender names', async () => {
    const result = await mailer.send({ from: DEFAULT_IDS.mailbox, to: 'x@example.net', subject: 'fields', text: 'hi' });
    assert.equal(result.ok, true);
    assert.equal(result.mailbox, DEFAULT_IDS.mailbox);
    const arrived = sandbox.state.messages.at(-1)!;
    assert.equal(arrived.mailbox, DEFAULT_IDS.mailbox);
    assert.equal(arrived.appId, DEFAULT_IDS.appClientId);
  });

  it('explains SMTP AUTH disabled for the mailbox (535 5.7.139) with the Set-CASMailbox fix', async () => {
    const result = await mailer.send({ from: 'mbx-off@contoso.example', to: 'x@example.net', subject: 's', text: 't' });
    assert.equal(result.ok, false);
    assert.equal(result.class, 'auth');
    assert.match(result.reply!, /^535 5\.7\.139 .*did not meet the criteria/);
    assert.equal(result.explanation?.id, 'smtp-535-5.7.139-criteria');
    assert.match(result.explanation.fix, /Set-CASMailbox -Identity mbx-off@contoso\.example -SmtpClientAuthenticationDisabled \$false/);
    assert.equal(result.retriedWithFreshToken, true, 'an auth refusal is retried once with a fresh token');
  });

  it('explains SMTP AUTH disabled for the tenant with the Set-TransportConfig fix', async () => {
    const original = sandbox.state.scenario;
    const changed = structuredClone(original);
    changed.tenants[0]!.smtpAuthEnabled = false;
    sandbox.state.setScenario(changed);
    try {
      const result = await mailer.send({ from: DEFAULT_IDS.mailbox, to: 'x@example.net', subject: 's', text: 't' }, { mailbox: DEFAULT_IDS.mailbox });
      // The pool may still hold an authenticated connection from earlier tests; Exchange does not re-check those.
      if (result.ok) {
        await mailer.close();
        mailer = await createMailer(sandboxConfig(sandbox, dir.path, { mailboxes: [{ address: DEFAULT_IDS.mailbox }] }));
        const again = await mailer.send({ from: DEFAULT_IDS.mailbox, to: 'x@example.net', subject: 's', text: 't' });
        assert.equal(again.class, 'auth');
        assert.equal(again.explanation?.id, 'smtp-535-5.7.139-tenant');
        assert.match(again.explanation.fix, /Set-TransportConfig -SmtpClientAuthenticationDisabled \$false/);
      } else {
        assert.equal(result.explanation?.id, 'smtp-535-5.7.139-tenant');
      }
    } finally {
      sandbox.state.setScenario(original);
    }
  });

  it('explains a token without SMTP.SendAsApp (535 5.7.3) and points at the Exchange setup', async () => {
    const m = await createMailer(
      sandboxConfig(sandbox, dir.path, {
        auth: { flow: 'client-secret', tenant: DEFAULT_IDS.tenantId, clientId: NO_ROLE_APP, clientSecret: 'no-role-secret' },
        mailboxes: [{ address: 'norole@contoso.example' }],
      }),
    );
    try {
      const result = await m.send({ from: 'norole@contoso.example', to: 'x@example.net', subject: 's', text: 't' });
      assert.equal(result.class, 'auth');
      assert.match(result.reply ?? '', /^535 5\.7\.3 Authentication unsuccessful \[\S+ \S+Z [0-9A-F]{16}\]$/);
      assert.match(result.explanation.cause, /SMTP\.SendAsApp/);
      assert.match(result.explanation.fix, /Add-MailboxPermission -Identity norole@contoso\.example/);
    } finally {
      await m.close();
    }
  });

  it('explains SendAs denied (554 5.2.0 after DATA) with the Add-RecipientPermission fix', async () => {
    const result = await mailer.send({ from: 'ceo@contoso.example', to: 'x@example.net', subject: 's', text: 't' }, { mailbox: DEFAULT_IDS.mailbox });
    assert.equal(result.class, 'permanent');
    assert.equal(result.stage, 'DATA');
    assert.match(result.explanation.fix, /Add-RecipientPermission -Identity <From address> -Trustee relay@contoso\.example -AccessRights SendAs/);
  });

  it('uses no more connections than configured for 200 messages to one mailbox, reusing them', async () => {
    await mailer.close(); // its pooled connections for the same mailbox would count too
    const m = await createMailer(sandboxConfig(sandbox, dir.path, { delivery: { maxConnections: 2 } }));
    mailer = m;
    const connectionsBefore = sandbox.state.counters.smtpConnections;
    sandbox.state.counters.maxConcurrentByMailbox = {};
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => m.send({ from: DEFAULT_IDS.mailbox, to: `r${i}@example.net`, subject: `n${i}`, text: 'x' })),
    );
    assert.equal(results.filter((r) => r.ok).length, 200);
    assert.ok((sandbox.state.counters.maxConcurrentByMailbox[DEFAULT_IDS.mailbox] ?? 0) <= 2, 'at most 2 at once');
    const opened = sandbox.state.counters.smtpConnections - connectionsBefore;
    // 100 messages per connection before it is replaced: 200 messages need at most 2 + 2 connections.
    assert.ok(opened <= 4, `opened ${opened} connections`);
  });

  it('keeps a connection through a refused message, retires it after maxMessagesPerConnection, and resends a message a dropped idle connection never sent', async () => {
    const sandbox = await startTestSandbox({ scenario: scenario((s) => void (s.limits.unlimited = true)) });
    const dir = await tempDir();
    const m = await createMailer(sandboxConfig(sandbox, dir.path, { delivery: { maxConnections: 1, maxMessagesPerConnection: 3 } }));
    const fault = (f: Scenario['faults']['smtp'][number]): void => {
      const s = structuredClone(sandbox.state.scenario);
      s.faults.smtp = [f];
      sandbox.state.setScenario(s);
    };
    try {
      const send = () => m.send({ from: DEFAULT_IDS.mailbox, to: 'a@example.net', subject: 's', text: 't' });
      const opened = (): number => sandbox.state.counters.smtpConnections;
      assert.equal((await send()).ok, true);
      assert.equal(opened(), 1);

      fault({ stage: 'rcpt', reply: '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup', drop: false, count: 1 });
      const refused = await send();
      assert.equal(refused.ok, false);
      assert.match(refused.reply ?? '', /^550 5\.1\.10/);
      assert.equal((await send()).ok, true, 'the session was reset (RSET) and kept');
      assert.equal(opened(), 1, 'three messages, one connection');

      assert.equal((await send()).ok, true);
      assert.equal(opened(), 2, 'the connection was replaced after its 3 messages');

      // The server drops the pooled connection as MAIL FROM arrives: nothing of the message went out,
      // so it goes again on a new connection and the caller sees a plain success.
      fault({ stage: 'mail', drop: true, count: 1 });
      const resent = await send();
      assert.equal(resent.ok, true, resent.reply);
      assert.equal(opened(), 3);
      assert.equal(sandbox.state.messages.length, 4);
    } finally {
      await m.close();
      await sandbox.close();
      await dir.cleanup();
    }
  });

  it('resolves with each recipient of the session: accepted, refused at RCPT with its reply, or pending when nothing was decided', async () => {
    const unknown = `nobody@${DEFAULT_IDS.tenantDomain}`;
    const sandbox = await startTestSandbox({ scenario: scenario((s) => void s.mailFlow.unknownRecipients.push(unknown)) });
    const dir = await tempDir();
    const m = await createMailer(sandboxConfig(sandbox, dir.path));
    try {
      const r = await m.send({ from: DEFAULT_IDS.mailbox, to: ['a@example.net', unknown], subject: 's', text: 't' });
      assert.equal(r.ok, true, JSON.stringify(r));
      assert.deepEqual(
        r.recipients.map((x) => [x.address, x.state]),
        [
          ['a@example.net', 'accepted'],
          [unknown, 'refused'],
        ],
      );
      assert.match(r.recipients[1]!.reply ?? '', /^550 5\.1\.10 /);
      assert.ok(r.recipients[1]!.explanation?.id, 'the refusal is explained');
      // A busy server refuses the DATA: nothing was decided about either recipient.
      const busyScenario = structuredClone(sandbox.state.scenario);
      busyScenario.faults.smtp = [{ stage: 'data', reply: '451 4.7.500 Server busy. Please try again later.', drop: false, count: 1 }];
      sandbox.state.setScenario(busyScenario);
      const busy = await m.send({ from: DEFAULT_IDS.mailbox, to: ['a@example.net', 'b@example.net'], subject: 's', text: 't' });
      assert.equal(busy.ok, false);
      assert.deepEqual(
        busy.recipients.map((x) => x.state),
        ['pending', 'pending'],
      );
    } finally {
      await m.close();
      await sandbox.close();
      await dir.cleanup();
    }
  });

  it("refuses a config asking for more than Microsoft's 3 connections per mailbox", () => {
    const r = configSchema.safeParse({ delivery: { maxConnections: 4 } });
    assert.equal(r.success, false);
    assert.match(JSON.stringify(r.error?.issues), /at most 3 concurrent connections/);
  });
});

describe('delivery under throttling and limits', () => {
  it('classifies 432 4.3.2 and the submission quota, sends a message over MaxSendSize (Exchange bounces it later), and classifies too many recipients', async () => {
    const sandbox = await startTestSandbox({
      scenario: scenario((s) => {
        // The 554 5.2.0 quota is the daily recipient limit (a 2nd message a minute is only delayed).
        s.limits.recipientsPerDay = 1;
        s.limits.maxMessageBytes = 5000;
        s.limits.recipientsPerMessage = 2;
        s.faults.smtp.push({
          stage: 'data',
          reply:
            '432 4.3.2 Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_sending for more information. [Hostname=SANDBOX01.namprd00.prod.outlook.com]',
          drop: false,
          count: 1,
        });
      }),
    });
    const dir = await tempDir();
    const m = await createMailer(sandboxConfig(sandbox, dir.path));
    try {
      const send = (over: Record<string, unknown> = {}) => m.send({ from: DEFAULT_IDS.mailbox, to: 'a@example.net', subject: 's', text: 't', ...over });
      const thread = await send();
      assert.equal(thread.class, 'throttled');
      assert.equal(thread.explanation?.id, 'smtp-432-4.3.2-concurrent');
      assert.deepEqual(thread.explanation?.handling, { lowerConcurrency: true });
      // Over the mailbox's MaxSendSize Exchange answers 250 and bounces it later by an NDR (5.2.3).
      const big = await send({ text: 'x'.repeat(6000) });
      assert.equal(big.class, 'sent');
      const quota = await send();
      assert.equal(quota.class, 'throttled');
      assert.equal(quota.explanation?.id, 'smtp-554-5.2.0-quota');
      assert.deepEqual(quota.explanation?.handling, { holdUntilRecipientWindowFrees: true });
      const many = await send({ to: ['a@example.net', 'b@example.net', 'c@example.net'] });
      // Exchange takes the first two and refuses the third at RCPT; the quota then refuses the message.
      const refused = many.ok ? many.rejected : undefined;
      if (many.ok) {
        assert.equal(refused?.[0]?.explanation?.id, 'smtp-452-4.5.3');
      } else {
        assert.ok(['throttled', 'permanent'].includes(many.class));
      }
      assert.ok(sandbox.state.counters.throttled >= 2);
    } finally {
      await m.close();
      await sandbox.close();
      await dir.cleanup();
    }
  });

  it('refreshes a token Exchange refuses mid-pool and still delivers', async () => {
    const sandbox = await startTestSandbox({ scenario: scenario((s) => void (s.limits.unlimited = true)) });
    const tenant = sandbox.state.scenario.tenants[0]!;
    const app = tenant.apps[0]!;
    let calls = 0;
    // First a token Exchange refuses although it is unexpired (minted for Graph, not Exchange), then a good one.
    const source: TokenSource = {
      appOnly: true,
      async acquire() {
        calls += 1;
        const { token } = await sandbox.issuer.accessToken({
          tenant,
          app,
          audience: calls === 1 ? 'https://graph.microsoft.com' : 'https://outlook.office365.com',
          roles: ['SMTP.SendAsApp'],
          lifetimeSeconds: 3600,
          clientAuth: '1',
        });
        return { accessToken: token, expiresOn: new Date(Date.now() + 3_600_000) };
      },
    };
    const tokens = new TokenProvider(new Map([[DEFAULT_IDS.mailbox, { source, key: 'app' }]]));
    const config = sandboxConfig(sandbox, '/tmp');
    const transport = new SmtpTransport({ cloud: cloudEndpoints(config), tokens, delivery: config.delivery, ca: [sandbox.caPem] });
    try {
      const msg = await composeMessage({ from: DEFAULT_IDS.mailbox, to: 'a@example.net', subject: 's', text: 't' });
      const result = await transport.send(DEFAULT_IDS.mailbox, msg);
      assert.equal(result.ok, true, JSON.stringify(result));
      assert.equal(result.retriedWithFreshToken, true);
      assert.equal(calls, 2);
      assert.equal(sandbox.state.counters.smtpReplies['535 5.7.3'], 1);
    } finally {
      await transport.close();
      tokens.close();
      await sandbox.close();
    }
  });
});

describe('delivery connection failures are named', () => {
  const token: TokenSource = { appOnly: true, acquire: () => Promise.resolve({ accessToken: 'not-used', expiresOn: new Date(Date.now() + 3_600_000) }) };
  const transportFor = (host: string, port: number, ca: string[]) => {
    const config = configSchema.parse({
      cloud: 'sandbox',
      sandbox: { smtpHost: host, smtpPort: port },
      delivery: { connectionTimeoutMs: 3000, greetingTimeoutMs: 3000 },
    });
    return new SmtpTransport({
      cloud: cloudEndpoints(config),
      tokens: new TokenProvider(new Map([['a@contoso.example', { source: token, key: 'k' }]])),
      delivery: config.delivery,
      ca,
    });
  };
  const msg = () => composeMessage({ from: 'a@contoso.example', to: 'b@example.net', subject: 's', text: 't' });

  it('a refused port', async () => {
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const t = transportFor('127.0.0.1', port, []);
    const result = await t.send('a@contoso.example', await msg());
    await t.close();
    assert.equal(result.ok, false);
    assert.equal(result.explanation?.id, 'net-econnrefused');
    assert.match(result.explanation.cause, /refused the TCP connection/);
  });

  it('an untrusted certificate', async () => {
    const sandbox = await startTestSandbox();
    const other = await createSandboxTls();
    const t = transportFor('127.0.0.1', sandbox.smtpPort, [other.ca.certPem]);
    try {
      const result = await t.send('a@contoso.example', await msg());
      assert.equal(result.ok, false);
      // The path's fault, not the message's: the worker pauses the mailbox and keeps its queue.
      assert.equal(result.class, 'blocked');
      assert.match(result.explanation.id, /net-(self_signed_cert_in_chain|unable_to_verify_leaf_signature|unable_to_get_issuer_cert_locally)/);
      assert.match(result.explanation.fix, /caFile/);
    } finally {
      await t.close();
      await sandbox.close();
    }
  });

  it('a certificate for another host (wrong host name)', async () => {
    const cert = await createClientCertificate('CN=mail.other.example');
    const server = await startFakeStarttlsServer({ key: cert.keyPem, cert: cert.certPem });
    const t = transportFor('127.0.0.1', server.port, [cert.certPem]);
    try {
      const result = await t.send('a@contoso.example', await msg());
      assert.ok(!result.ok, 'the send fails');
      assert.equal(result.explanation.id, 'net-err_tls_cert_altname_invalid');
      assert.match(result.explanation.cause, /wrong host name/);
    } finally {
      await t.close();
      await server.close();
    }
  });

  it('a server that offers only TLS 1.1', async () => {
    const tls = await createSandboxTls();
    const server = await startFakeStarttlsServer({
      key: tls.server.keyPem,
      cert: tls.server.certPem,
      minVersion: 'TLSv1',
      maxVersion: 'TLSv1.1',
      ciphers: 'DEFAULT@SECLEVEL=0',
    });
    const t = transportFor('127.0.0.1', server.port, [tls.ca.certPem]);
    try {
      const result = await t.send('a@contoso.example', await msg());
      assert.equal(result.ok, false);
      assert.match(result.explanation.id, /net-err_ssl_(unsupported_protocol|tlsv1_alert_protocol_version)/);
      assert.match(result.explanation.cause, /TLS/);
    } finally {
      await t.close();
      await server.close();
    }
  });
});
