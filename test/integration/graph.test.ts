import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { composeMessage, createMailer, type Mailer, type SendResult } from '../../src/delivery/index.js';
import type { RelayEvent } from '../../src/observe/index.js';
import { startRelay } from '../../src/runtime/index.js';
import { DEFAULT_IDS, type Sandbox, type Scenario } from '../../src/sandbox/index.js';
import type { ConfigInput } from '../../src/config/index.js';
import { summarizeToken } from '../../src/identity/index.js';
import { sandboxConfig } from '../helpers/config.js';
import { httpsRequest } from '../helpers/https.js';
import { parseWithPython } from '../helpers/python-mime.js';
import { scenario, startTestSandbox, tempDir } from '../helpers/sandbox.js';

const MAILBOX = DEFAULT_IDS.mailbox;

async function withMailer(sandbox: Sandbox, overrides: Partial<ConfigInput>, fn: (mailer: Mailer) => Promise<void>): Promise<void> {
  const dir = await tempDir();
  const mailer = await createMailer(sandboxConfig(sandbox, dir.path, { mailboxes: [{ address: MAILBOX, transport: 'graph' }], ...overrides }));
  try {
    await fn(mailer);
  } finally {
    await mailer.close();
    await dir.cleanup();
  }
}

async function until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('Graph sendMail through the sandbox', () => {
  let sandbox: Sandbox & { dir: string };
  before(async () => {
    sandbox = await startTestSandbox();
  });
  after(async () => {
    await sandbox.close();
  });

  it('delivers the MIME byte for byte through sendMail, with a Graph token', async () => {
    sandbox.state.reset();
    await withMailer(sandbox, {}, async (mailer) => {
      const message = await composeMessage({
        from: MAILBOX,
        to: 'bob@example.net',
        cc: 'carol@example.net',
        subject: 'Über Graph',
        text: 'Hallo\r\nWelt',
        attachments: [{ filename: 'a.bin', content: randomBytes(50_000) }],
      });
      const result = await mailer.send({ raw: message.raw, envelope: message.envelope });
      assert.equal(result.ok, true, JSON.stringify(result));
      assert.equal(result.class, 'sent');
      assert.match(result.reply ?? '', /^202 Accepted/);
      const received = sandbox.state.messages.at(-1)!;
      assert.equal(received.via, 'graph');
      assert.equal(received.mailbox, MAILBOX);
      assert.deepEqual(received.envelope.rcptTo, ['bob@example.net', 'carol@example.net']);
      assert.ok(received.raw.equals(message.raw), 'the MIME that arrived differs from what was sent');
      assert.equal(sandbox.state.counters.graphRequests, 1);
    });
  });

  it('keeps Bcc recipients: a Bcc: header is added for envelope recipients the headers do not name', async () => {
    sandbox.state.reset();
    await withMailer(sandbox, {}, async (mailer) => {
      const result = await mailer.send({ from: MAILBOX, to: 'bob@example.net', bcc: 'hidden@example.net', subject: 'bcc', text: 'x' });
      assert.equal(result.ok, true, JSON.stringify(result));
      assert.deepEqual(sandbox.state.messages.at(-1)!.envelope.rcptTo, ['bob@example.net', 'hidden@example.net']);
    });
  });

  it('sends a 30 MB message through a draft and upload sessions, attachment intact', async () => {
    sandbox.state.reset();
    await withMailer(sandbox, {}, async (mailer) => {
      const big = randomBytes(22 * 1024 * 1024);
      const small = randomBytes(10_000);
      const message = await composeMessage({
        from: MAILBOX,
        to: 'bob@example.net',
        subject: 'big one',
        text: 'see attached',
        attachments: [
          { filename: 'big.bin', content: big, contentType: 'application/octet-stream' },
          { filename: 'small.txt', content: small, contentType: 'text/plain' },
        ],
      });
      assert.ok(message.raw.length > 29 * 1024 * 1024, `raw is only ${message.raw.length} bytes`);
      const result = await mailer.send({ raw: message.raw, envelope: message.envelope });
      assert.equal(result.ok, true, JSON.stringify(result));
      const received = sandbox.state.messages.at(-1)!;
      assert.equal(received.via, 'graph');
      const parsed = await parseWithPython(received.raw);
      assert.equal(parsed.subject, 'big one');
      assert.equal(parsed.text?.trim(), 'see attached');
      const bigPart = parsed.attachments.find((a) => a.filename === 'big.bin');
      assert.ok(bigPart, `no big.bin among ${JSON.stringify(parsed.attachments.map((a) => a.filename))}`);
      assert.equal(bigPart.size, big.length);
      assert.equal(bigPart.sha256, createHash('sha256').update(big).digest('hex'));
      const smallPart = parsed.attachments.find((a) => a.filename === 'small.txt');
      assert.equal(smallPart?.sha256, createHash('sha256').update(small).digest('hex'));
      // draft + one upload session + send; the upload PUTs go to the upload URL.
      assert.equal(sandbox.state.counters.graphRequests - Math.ceil(big.length / (12 * 320 * 1024)), 3);
    });
  });
});

describe('Graph errors are classified and explained from the catalogue', () => {
  async function sendWith(change: (s: Scenario) => void, overrides: Partial<ConfigInput>, input: Parameters<Mailer['send']>[0]): Promise<SendResult> {
    const sandbox = await startTestSandbox({ scenario: scenario(change) });
    try {
      let result: SendResult | undefined;
      await withMailer(sandbox, overrides, async (mailer) => {
        result = await mailer.send(input);
      });
      return result!;
    } finally {
      await sandbox.close();
    }
  }
  const plain = { from: MAILBOX, to: 'bob@example.net', subject: 's', text: 't' };

  it('ErrorSendAsDenied: permanent, with the Add-RecipientPermission fix', async () => {
    const r = await sendWith(() => undefined, {}, { ...plain, from: 'ceo@contoso.example', envelope: { from: MAILBOX, to: ['bob@example.net'] } });
    assert.equal(r.class, 'permanent');
    assert.equal(r.explanation?.id, 'graph-403-sendas-denied');
    assert.match(r.reply ?? '', /^403 ErrorSendAsDenied/);
    assert.match(r.explanation?.fix ?? '', /Add-RecipientPermission .* -Trustee relay@contoso\.example/);
  });

  it('MailboxNotEnabledForRESTAPI: permanent, with the licence fix', async () => {
    const r = await sendWith((s) => (s.tenants[0]!.users[0]!.mailbox = false), {}, plain);
    assert.equal(r.class, 'permanent');
    assert.equal(r.explanation?.id, 'graph-404-mailbox-not-enabled');
    assert.match(r.reply ?? '', /^404 MailboxNotEnabledForRESTAPI/);
  });

  it('ErrorAccessDenied without the Mail.Send application permission: auth, naming Mail.Send and RBAC for Applications', async () => {
    // The app lists another Graph permission: the token has roles, none of them Mail.Send.
    const r = await sendWith((s) => (s.tenants[0]!.apps[0]!.roles.graph = ['User.Read.All']), {}, plain);
    assert.equal(r.class, 'auth');
    assert.match(r.reply ?? '', /^403 ErrorAccessDenied/);
    assert.equal(r.explanation?.id, 'graph-403-access-denied');
    assert.match(r.explanation?.fix ?? '', /Application permissions > Mail\.Send|Mail\.Send \(Application\)/);
    assert.match(r.explanation?.fix ?? '', /New-ManagementRoleAssignment/);
  });

  it('RBAC for Applications: a mailbox outside the app\'s management scope gets 403 [RAOP], explained; one inside it is sent', async () => {
    const outside = await sendWith((s) => (s.tenants[0]!.apps[0]!.mailboxScope = [DEFAULT_IDS.user]), {}, plain);
    assert.equal(outside.ok, false);
    assert.equal(outside.class, 'auth');
    assert.match(outside.reply ?? '', /^403 ErrorAccessDenied/);
    assert.match(outside.reply ?? '', /Access to OData is disabled: \[RAOP\] : Blocked by tenant configured AppOnly AccessPolicy settings\./);
    // The transport passes Graph's message to the catalogue, which tells the RAOP scope from a missing permission by it.
    assert.equal(outside.explanation?.id, 'graph-403-access-denied-scoped');
    assert.match(outside.explanation?.fix ?? '', /CustomResourceScope/);
    const inside = await sendWith((s) => (s.tenants[0]!.apps[0]!.mailboxScope = [MAILBOX]), {}, plain);
    assert.equal(inside.ok, true, JSON.stringify(inside));
  });

  it('a token without roles (no admin consent) gets 401 NoPermissionsInAccessToken: auth', async () => {
    const r = await sendWith((s) => (s.tenants[0]!.apps[0]!.adminConsent = false), {}, plain);
    assert.equal(r.ok, false);
    assert.equal(r.class, 'auth');
    assert.match(r.reply ?? '', /^401 NoPermissionsInAccessToken/);
    assert.match(r.reply ?? '', /The token contains no permissions, or permissions can not be understood\./);
    assert.equal(r.explanation?.id, 'graph-401-no-permissions');
  });

  it('a full mailbox refuses sendMail with 403 ErrorQuotaExceeded, as its Sent Items copy would go over the quota', async () => {
    const r = await sendWith(
      (s) => {
        const mailbox = s.tenants[0]!.users[0]!;
        mailbox.mailboxQuotaBytes = 1_000_000;
        mailbox.mailboxUsedBytes = 999_900;
      },
      {},
      plain,
    );
    assert.equal(r.ok, false);
    assert.match(r.reply ?? '', /^403 ErrorQuotaExceeded/);
    assert.match(r.reply ?? '', /Mailbox has exceeded maximum mailbox size\./);
    assert.equal(r.explanation?.id, 'graph-error-quota-exceeded');
    assert.equal(r.class, 'blocked');
  });

  it('ErrorInvalidRecipients: permanent', async () => {
    const raw = `From: ${MAILBOX}\r\nTo: someone@localhost\r\nSubject: x\r\n\r\nbody\r\n`;
    const r = await sendWith(() => undefined, {}, { raw, envelope: { from: MAILBOX, to: ['someone@localhost'] } });
    assert.equal(r.class, 'permanent');
    assert.equal(r.explanation?.id, 'graph-400-invalid-recipients');
  });

  it('ErrorMessageSizeExceeded over the mailbox send limit: permanent, with the Set-Mailbox fix', async () => {
    const r = await sendWith(
      (s) => (s.limits.maxMessageBytes = 1024 * 1024),
      {},
      { ...plain, attachments: [{ filename: 'x.bin', content: randomBytes(2 * 1024 * 1024) }] },
    );
    assert.equal(r.class, 'permanent');
    assert.equal(r.explanation?.id, 'graph-message-size-exceeded');
    assert.match(r.explanation?.fix ?? '', /Set-Mailbox -Identity relay@contoso\.example -MaxSendSize/);
  });

  it('a message over 3 MB that cannot be split: permanent, explained as over the 4 MB request limit', async () => {
    const r = await sendWith(() => undefined, {}, { ...plain, text: 'x'.repeat(5 * 1024 * 1024) });
    assert.equal(r.class, 'permanent');
    assert.equal(r.explanation?.id, 'graph-413-request-too-large');
  });

  it('a token Graph refuses (401): invalidated, retried once with a fresh one, then auth', async () => {
    const r = await sendWith(() => undefined, { auth: { flow: 'token-command', command: 'echo not-a-token' } }, plain);
    assert.equal(r.class, 'auth');
    assert.equal(r.retriedWithFreshToken, true);
    assert.equal(r.explanation?.id, 'graph-401-invalid-token');
    assert.match(r.reply ?? '', /^401 InvalidAuthenticationToken/);
  });

  it('429 and 503 are throttled and carry Retry-After', async () => {
    const r429 = await sendWith((s) => s.faults.graph.push({ status: 429, retryAfterSeconds: 7, count: 1 }), {}, plain);
    assert.equal(r429.class, 'throttled');
    // The sandbox's fault answers as Graph does for too many concurrent requests (MailboxConcurrency): the row that lowers concurrency.
    assert.equal(r429.explanation?.id, 'graph-429-mailbox-concurrency');
    assert.equal(r429.retryAfterMs, 7000);
    const r503 = await sendWith((s) => s.faults.graph.push({ status: 503, count: 1 }), {}, plain);
    assert.equal(r503.class, 'throttled');
    assert.equal(r503.retryAfterMs, undefined);
  });
});

describe('the outbox worker with a Graph mailbox', () => {
  it('delivers every message via Graph and waits out a 429 Retry-After before retrying', async () => {
    const sandbox = await startTestSandbox({ scenario: scenario((s) => s.faults.graph.push({ status: 429, retryAfterSeconds: 2, count: 1 })) });
    const dir = await tempDir();
    const relay = await startRelay(
      sandboxConfig(sandbox, dir.path, {
        mailboxes: [{ address: MAILBOX, transport: 'graph' }],
        queue: { retryBaseSeconds: 0.1, retryMaxSeconds: 1 },
      }),
    );
    const events: RelayEvent[] = [];
    relay.events.subscribe((e) => events.push(e));
    try {
      const n = 5;
      const ids: string[] = [];
      for (let i = 0; i < n; i++) {
        const m = await composeMessage({ from: MAILBOX, to: `r${i}@example.net`, subject: `n${i}`, text: 'x' });
        const stored = await relay.enqueue({
          mailbox: MAILBOX,
          envelope: m.envelope,
          raw: m.raw,
          source: { kind: 'library' },
          ...(m.messageId ? { messageId: m.messageId } : {}),
        });
        ids.push(stored.id);
      }
      await until(() => events.filter((e) => e.type === 'message.sent').length === n, 20_000, 'every message sent');
      assert.equal(sandbox.state.messages.length, n);
      assert.ok(sandbox.state.messages.every((m) => m.via === 'graph'));
      const deferred = events.find((e) => e.type === 'message.deferred');
      assert.ok(deferred && deferred.type === 'message.deferred', 'the 429 did not defer a message');
      assert.equal(deferred.class, 'throttled');
      const waitedFor = deferred.nextAttemptAt.getTime() - deferred.at.getTime();
      assert.ok(waitedFor >= 1900, `next attempt only ${waitedFor} ms after the 429`);
      const retried = sandbox.state.messages.find((m) => m.envelope.rcptTo[0] === `r${ids.indexOf(deferred.id)}@example.net`)!;
      assert.ok(Date.parse(retried.receivedAt) >= deferred.nextAttemptAt.getTime() - 5, 'the retry came before Retry-After');
      assert.equal(sandbox.state.counters.throttled, 1);
    } finally {
      await relay.close();
      await dir.cleanup();
      await sandbox.close();
    }
  });

  it('records every recipient as Graph answers the whole message: all accepted when it takes it, all refused with its error when it refuses it', async () => {
    const sandbox = await startTestSandbox();
    const dir = await tempDir();
    const relay = await startRelay(sandboxConfig(sandbox, dir.path, { mailboxes: [{ address: MAILBOX, transport: 'graph' }] }));
    const events: RelayEvent[] = [];
    relay.events.subscribe((e) => events.push(e));
    try {
      const enqueue = async (to: string[]): Promise<string> => {
        const raw = Buffer.from(`From: ${MAILBOX}\r\nTo: ${to.join(', ')}\r\nSubject: x\r\n\r\nbody\r\n`);
        return (await relay.enqueue({ mailbox: MAILBOX, envelope: { from: MAILBOX, to }, raw, source: { kind: 'library' } })).id;
      };
      const taken = await enqueue(['bob@example.net', 'carol@example.net']);
      // Graph refuses a message with an address it cannot route (ErrorInvalidRecipients) as a whole.
      const refused = await enqueue(['dave@example.net', 'someone@localhost']);
      await until(() => events.some((e) => e.type === 'message.sent' && e.id === taken) && events.some((e) => e.type === 'message.failed' && e.id === refused), 15_000, 'both outcomes');
      assert.deepEqual(
        (await relay.store.recipients(taken)).map((r) => [r.address, r.state]),
        [
          ['bob@example.net', 'accepted'],
          ['carol@example.net', 'accepted'],
        ],
      );
      const failed = await relay.store.recipients(refused);
      assert.deepEqual(
        failed.map((r) => [r.address, r.state, r.explanation?.id]),
        [
          ['dave@example.net', 'refused', 'graph-400-invalid-recipients'],
          ['someone@localhost', 'refused', 'graph-400-invalid-recipients'],
        ],
      );
      assert.ok(failed.every((r) => r.reply === (failed[0]?.reply ?? '') && /ErrorInvalidRecipients/.test(r.reply ?? '')), 'the message\'s own reply for each');
      assert.deepEqual(
        events.filter((e) => e.type === 'message.recipient.refused').map((e) => e.type === 'message.recipient.refused' && [e.id, e.recipient]),
        [
          [refused, 'dave@example.net'],
          [refused, 'someone@localhost'],
        ],
      );
    } finally {
      await relay.close();
      await dir.cleanup();
      await sandbox.close();
    }
  });
});

describe('an app with SMTP and Graph mailboxes', () => {
  it('sends each mailbox through its own transport, with one token per resource', async () => {
    const sandbox = await startTestSandbox({
      scenario: scenario((s) => {
        const t = s.tenants[0]!;
        t.users.push({ ...structuredClone(t.users[0]!), upn: 'm2@contoso.example', id: 'bbbbbbbb-0000-4000-8000-000000000002', sendAs: [] });
      }),
    });
    const dir = await tempDir();
    const mailer = await createMailer(
      sandboxConfig(sandbox, dir.path, { mailboxes: [{ address: MAILBOX }, { address: 'm2@contoso.example', transport: 'graph' }] }),
    );
    try {
      const viaSmtp = await mailer.send({ from: MAILBOX, to: 'bob@example.net', subject: 'smtp', text: 'x' });
      const viaGraph = await mailer.send({ from: 'm2@contoso.example', to: 'bob@example.net', subject: 'graph', text: 'x' });
      assert.equal(viaSmtp.ok, true, JSON.stringify(viaSmtp));
      assert.equal(viaGraph.ok, true, JSON.stringify(viaGraph));
      assert.deepEqual(
        sandbox.state.messages.map((m) => [m.mailbox, m.via]),
        [
          [MAILBOX, 'smtp'],
          ['m2@contoso.example', 'graph'],
        ],
      );
      assert.equal(sandbox.state.counters.tokenRequests, 2, 'one app-only token for Exchange and one for Graph');
    } finally {
      await mailer.close();
      await dir.cleanup();
      await sandbox.close();
    }
  });
});

describe('a delegated Graph mailbox', () => {
  it('signs in with the Graph Mail.Send scope and sends as itself', async () => {
    const sandbox = await startTestSandbox({ scenario: scenario((s) => (s.token.deviceCodeIntervalSeconds = 1)) });
    const dir = await tempDir();
    const mailer = await createMailer(
      sandboxConfig(sandbox, dir.path, {
        auth: { flow: 'device-code', tenant: DEFAULT_IDS.tenantId, clientId: DEFAULT_IDS.publicClientId },
        mailboxes: [{ address: MAILBOX, transport: 'graph' }],
      }),
    );
    try {
      await mailer.identity.delegated(MAILBOX)!.loginWithDeviceCode(MAILBOX, (info) => {
        // Plays the person at the sandbox's device login page.
        void httpsRequest(`${sandbox.baseUrl}/devicelogin`, {
          method: 'POST',
          ca: sandbox.caPem,
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ user_code: info.userCode, username: MAILBOX }).toString(),
        });
      });
      const token = await mailer.identity.provider.getToken(MAILBOX);
      assert.deepEqual(summarizeToken(token.accessToken)?.scopes, ['Mail.Send']);
      const result = await mailer.send({ from: MAILBOX, to: 'bob@example.net', subject: 'delegated', text: 'x' });
      assert.equal(result.ok, true, JSON.stringify(result));
      assert.equal(sandbox.state.messages.at(-1)?.via, 'graph');
      assert.equal(sandbox.state.messages.at(-1)?.appId, DEFAULT_IDS.publicClientId);
    } finally {
      await mailer.close();
      await dir.cleanup();
      await sandbox.close();
    }
  });
});
