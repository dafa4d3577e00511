import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { composeMessage } from '../../src/delivery/index.js';
import { isRelay365Error } from '../../src/errors.js';
import type { RelayEvent } from '../../src/observe/index.js';
import { startRelay, type Relay } from '../../src/runtime/index.js';
import { DEFAULT_IDS, createClientCertificate, type Sandbox } from '../../src/sandbox/index.js';
import { sandboxConfig, sandboxSettings } from '../helpers/config.js';
import { startFakeStarttlsServer } from '../helpers/fake-smtp.js';
import { scenario, startTestSandbox, tempDir } from '../helpers/sandbox.js';

const MAILBOXES = ['relay@contoso.example', 'm2@contoso.example', 'm3@contoso.example'];

/** A sandbox whose tenant has three sending mailboxes for the default app. */
function threeMailboxes(change?: (s: ReturnType<typeof scenario>) => void) {
  return scenario((s) => {
    const t = s.tenants[0]!;
    t.users.push(
      { ...structuredClone(t.users[0]!), upn: 'm2@contoso.example', id: 'bbbbbbbb-0000-4000-8000-000000000002', sendAs: [] },
      { ...structuredClone(t.users[0]!), upn: 'm3@contoso.example', id: 'bbbbbbbb-0000-4000-8000-000000000003', sendAs: [] },
    );
    change?.(s);
  });
}

async function enqueueMany(relay: Relay, mailbox: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const m = await composeMessage({ from: mailbox, to: `r${i}@example.net`, subject: `n${i}`, text: 'x' });
    await relay.enqueue({ mailbox, envelope: m.envelope, raw: m.raw, source: { kind: 'library' }, ...(m.messageId ? { messageId: m.messageId } : {}) });
  }
}

async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function withRelay(
  sandbox: Sandbox,
  overrides: Parameters<typeof sandboxConfig>[2],
  fn: (relay: Relay, events: RelayEvent[]) => Promise<void>,
): Promise<void> {
  const dir = await tempDir();
  const relay = await startRelay(sandboxConfig(sandbox, dir.path, { smtp: { enabled: false }, ...overrides }));
  const events: RelayEvent[] = [];
  relay.events.subscribe((e) => events.push(e));
  try {
    await fn(relay, events);
  } finally {
    await relay.close();
    await dir.cleanup();
  }
}

describe('outbox worker when the SMTP host presents a certificate nobody trusts', () => {
  it('pauses the mailbox with the explanation and keeps the message queued, rather than failing and bouncing it', async () => {
    const sandbox = await startTestSandbox();
    // Tokens from the sandbox; SMTP to a server whose certificate is self-signed (a TLS-inspecting proxy, say).
    const cert = await createClientCertificate('CN=localhost');
    const server = await startFakeStarttlsServer({ key: cert.keyPem, cert: cert.certPem });
    const dir = await tempDir();
    const config = sandboxConfig(sandbox, dir.path, { sandbox: { ...sandboxSettings(sandbox).sandbox!, smtpHost: '127.0.0.1', smtpPort: server.port } });
    const relay = await startRelay(config);
    const events: RelayEvent[] = [];
    relay.events.subscribe((e) => events.push(e));
    try {
      const m = await composeMessage({ from: DEFAULT_IDS.mailbox, to: 'r@example.net', subject: 'untrusted', text: 'x' });
      const stored = await relay.enqueue({ mailbox: DEFAULT_IDS.mailbox, envelope: m.envelope, raw: m.raw, source: { kind: 'library' } });
      await until(() => events.some((e) => e.type === 'mailbox.paused'), 20_000, 'the mailbox paused');
      const paused = events.find((e) => e.type === 'mailbox.paused') as Extract<RelayEvent, { type: 'mailbox.paused' }>;
      assert.match(paused.explanation?.id ?? '', /^net-(depth_zero_self_signed_cert|self_signed_cert_in_chain)$/);
      assert.match(paused.explanation?.fix ?? '', /caFile/);
      await until(async () => (await relay.store.get(stored.id))?.state === 'deferred', 5000, 'the message deferred');
      assert.equal(events.filter((e) => e.type === 'message.failed').length, 0, 'nothing failed or bounced');
    } finally {
      await relay.close();
      await server.close();
      await sandbox.close();
      await dir.cleanup();
    }
  });
});

describe('outbox worker against the sandbox', () => {
  it('uses at least 95% of the allowed rate over several mailboxes and never draws a throttling reply', async () => {
    // Microsoft's limits scaled: 30 messages per 12-second "minute", 2 connections per mailbox. Each
    // window the worker loses what its timers fire late (under 20 ms on a quiet machine, up to half a
    // second seen on a busy virtual one); at 12 s that stays under 5% of the window.
    const sandbox = await startTestSandbox({
      scenario: threeMailboxes((s) => Object.assign(s.limits, { messagesPerMinute: 30, connectionsPerMailbox: 2, timeScale: 5 })),
    });
    try {
      await withRelay(
        sandbox,
        {
          mailboxes: MAILBOXES.map((address) => ({ address })),
          limits: { messagesPerMinute: 30, minuteMs: 12_000, windowMarginMs: 60 },
          delivery: { maxConnections: 2, maxMessagesPerConnection: 1000 },
        },
        async (relay) => {
          const windows = 3;
          for (const m of MAILBOXES) await enqueueMany(relay, m, 30 * windows + 10);
          // Count what Exchange (the sandbox) received within 3 windows of its first arrival: at most
          // 3 x 30 per mailbox may arrive in that time, and relay365 should get close to it.
          await until(() => sandbox.state.messages.length > 0, 10_000, 'the first arrival');
          const first = Date.parse(sandbox.state.messages[0]!.receivedAt);
          await new Promise((r) => setTimeout(r, first + windows * 12_000 - 100 - Date.now()));
          const sent = sandbox.state.messages.filter((m) => Date.parse(m.receivedAt) < first + windows * 12_000 - 100).length;
          const allowed = windows * 30 * MAILBOXES.length;
          const fraction = sent / allowed;
          console.log(`# limits used: ${sent}/${allowed} = ${fraction.toFixed(3)}; throttling replies ${sandbox.state.counters.throttled}`);
          assert.ok(fraction >= 0.95, `only ${(fraction * 100).toFixed(1)}% of the allowed rate used`);
          assert.ok(sent <= allowed, 'more sent than the limits allow');
          assert.equal(sandbox.state.counters.throttled, 0, 'the sandbox gave throttling replies');
          for (const m of MAILBOXES) assert.ok((sandbox.state.counters.maxConcurrentByMailbox[m] ?? 0) <= 2);
        },
      );
    } finally {
      await sandbox.close();
    }
  });

  // The daily quota's 554 5.2.0 holds the mailbox for the rolling day: test/integration/exchange-limits.test.ts.
  it('backs off on forced 432 4.3.2 replies (both wordings), and still delivers everything', async () => {
    const sandbox = await startTestSandbox({
      scenario: scenario((s) => {
        s.limits.unlimited = true;
        s.faults.smtp.push(
          { stage: 'data', reply: '432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded', drop: false, count: 4 },
          {
            stage: 'data',
            reply:
              '432 4.3.2 Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_sending for more information. [Hostname=SANDBOX01.namprd00.prod.outlook.com]',
            drop: false,
            count: 3,
          },
        );
      }),
    });
    try {
      await withRelay(
        sandbox,
        { limits: { minuteMs: 500, windowMarginMs: 0 }, queue: { retryBaseSeconds: 0.1, retryMaxSeconds: 0.5 } },
        async (relay, events) => {
          await enqueueMany(relay, DEFAULT_IDS.mailbox, 30);
          await until(async () => (await relay.store.counts()).sent === 30, 30_000, 'all 30 sent');
          assert.equal(sandbox.state.messages.length, 30);
          assert.ok(events.filter((e) => e.type === 'message.deferred' && e.class === 'throttled').length >= 7, 'each throttling reply deferred a message');
          assert.ok(events.some((e) => e.type === 'mailbox.throttled'));
          assert.equal((await relay.store.counts()).failed, 0);
        },
      );
    } finally {
      await sandbox.close();
    }
  });

  it('pauses a mailbox whose SMTP AUTH is disabled mid-run, loses nothing, and resumes when it is enabled again', async () => {
    const sandbox = await startTestSandbox({ scenario: scenario((s) => void (s.limits.unlimited = true)) });
    try {
      await withRelay(sandbox, { queue: { authPauseSeconds: 0.5, retryBaseSeconds: 0.1, retryMaxSeconds: 0.5 } }, async (relay, events) => {
        await enqueueMany(relay, DEFAULT_IDS.mailbox, 5);
        await until(() => sandbox.state.messages.length === 5, 15_000, 'first 5 sent');
        // SMTP AUTH off for the mailbox; Exchange applies it to new sessions, so the pooled ones are dropped.
        const off = structuredClone(sandbox.state.scenario);
        off.tenants[0]!.users[0]!.smtpAuthEnabled = false;
        off.faults.smtp = [{ stage: 'mail', drop: true, count: 3 }];
        sandbox.state.setScenario(off);
        await enqueueMany(relay, DEFAULT_IDS.mailbox, 10);
        await until(() => events.some((e) => e.type === 'mailbox.paused'), 15_000, 'the mailbox to pause');
        const paused = events.find((e) => e.type === 'mailbox.paused');
        assert.ok(paused?.type === 'mailbox.paused' && /5\.7\.139/.test(paused.reason));
        await new Promise((r) => setTimeout(r, 1500));
        const counts = await relay.store.counts();
        assert.equal(counts.failed, 0, 'nothing failed while paused');
        assert.equal(counts.sent, 5);
        const on = structuredClone(off);
        on.tenants[0]!.users[0]!.smtpAuthEnabled = null;
        on.faults.smtp = [];
        sandbox.state.setScenario(on);
        await until(async () => (await relay.store.counts()).sent === 15, 20_000, 'all 15 sent after re-enabling');
        assert.ok(events.some((e) => e.type === 'mailbox.resumed'));
        assert.equal(sandbox.state.messages.length, 15);
      });
    } finally {
      await sandbox.close();
    }
  });

  it('fails a message Exchange refuses for good (SendAs denied) with its explanation, without retrying', async () => {
    const sandbox = await startTestSandbox({ scenario: scenario((s) => void (s.limits.unlimited = true)) });
    try {
      await withRelay(sandbox, {}, async (relay, events) => {
        const m = await composeMessage({ from: 'ceo@contoso.example', to: 'x@example.net', subject: 's', text: 't' });
        const stored = await relay.enqueue({
          mailbox: DEFAULT_IDS.mailbox,
          envelope: { from: DEFAULT_IDS.mailbox, to: m.envelope.to },
          raw: m.raw,
          source: { kind: 'library' },
        });
        await until(() => events.some((e) => e.type === 'message.failed'), 10_000, 'the failure');
        const got = await relay.store.get(stored.id);
        assert.equal(got?.state, 'failed');
        assert.equal(got?.attempts, 1);
        assert.match(got?.lastExplanation?.fix ?? '', /Add-RecipientPermission/);
        const attempts = await relay.store.attempts(stored.id);
        assert.equal(attempts.length, 1);
        assert.match(attempts[0]!.reply ?? '', /^554 5\.2\.252 SendAsDenied; relay@contoso\.example not allowed to send as ceo@contoso\.example;/);
      });
    } finally {
      await sandbox.close();
    }
  });

  it('records a recipient Exchange refused at RCPT as refused, with its reply and a message.recipient.refused event, and the others accepted', async () => {
    // An address that does not exist at the tenant's own domain: Exchange refuses it at RCPT with
    // 550 5.1.10 (Directory Based Edge Blocking) and takes the message for the others.
    const sandbox = await startTestSandbox({
      scenario: scenario((s) => {
        s.limits.unlimited = true;
        s.mailFlow.unknownRecipients = ['nobody@contoso.example'];
      }),
    });
    try {
      await withRelay(sandbox, {}, async (relay, events) => {
        const send = async (to: string[]): Promise<string> => {
          const m = await composeMessage({ from: DEFAULT_IDS.mailbox, to: to.join(', '), subject: 's', text: 't' });
          const stored = await relay.enqueue({
            mailbox: DEFAULT_IDS.mailbox,
            envelope: m.envelope,
            raw: m.raw,
            source: { kind: 'library' },
            ...(m.messageId ? { messageId: m.messageId } : {}),
          });
          return stored.id;
        };
        const mixed = await send(['good@example.net', 'nobody@contoso.example']);
        await until(() => events.some((e) => e.type === 'message.sent' && e.id === mixed), 10_000, 'the send');
        assert.equal((await relay.store.get(mixed))?.state, 'sent', 'Exchange took it for one recipient');
        const [good, nobody] = await relay.store.recipients(mixed);
        assert.deepEqual([good?.address, good?.state, good?.reply], ['good@example.net', 'accepted', undefined]);
        assert.equal(nobody?.address, 'nobody@contoso.example');
        assert.equal(nobody?.state, 'refused');
        assert.match(nobody?.reply ?? '', /^550 5\.1\.10 RESOLVER\.ADR\.RecipientNotFound; Recipient nobody@contoso\.example not found by SMTP address lookup/);
        assert.equal(nobody?.explanation?.class, 'permanent');
        const refused = events.filter((e) => e.type === 'message.recipient.refused' && e.id === mixed);
        assert.equal(refused.length, 1);
        assert.deepEqual(
          refused.map((e) => e.type === 'message.recipient.refused' && [e.recipient, e.messageState, e.reply === nobody?.reply]),
          [['nobody@contoso.example', 'sent', true]],
        );
        // Exchange delivered to the good recipient only.
        assert.deepEqual(
          sandbox.state.messages.map((s) => s.envelope.rcptTo),
          [['good@example.net']],
        );

        // Every recipient refused: the message failed, each recipient with its own reply.
        const alone = await send(['nobody@contoso.example']);
        await until(() => events.some((e) => e.type === 'message.failed' && e.id === alone), 10_000, 'the failure');
        assert.equal((await relay.store.get(alone))?.state, 'failed');
        const [only] = await relay.store.recipients(alone);
        assert.equal(only?.state, 'refused');
        assert.match(only?.reply ?? '', /^550 5\.1\.10 /);
        assert.equal(events.filter((e) => e.type === 'message.recipient.refused' && e.id === alone).length, 1);
        assert.ok(!events.some((e) => e.type === 'message.sent' && e.id === alone), 'nothing reports it sent');
      });
    } finally {
      await sandbox.close();
    }
  });

  it('sends a delivery status notification (RFC 3464) to the envelope sender when bounces are on, and never bounces a bounce', async () => {
    const sandbox = await startTestSandbox({ scenario: scenario((s) => void (s.limits.unlimited = true)) });
    try {
      await withRelay(sandbox, { queue: { bounces: true } }, async (relay) => {
        const m = await composeMessage({ from: 'ceo@contoso.example', to: 'x@example.net', subject: 'quarterly', text: 't' });
        const stored = await relay.enqueue({
          mailbox: DEFAULT_IDS.mailbox,
          envelope: { from: 'app@example.org', to: m.envelope.to },
          raw: m.raw,
          source: { kind: 'library' },
          ...(m.messageId ? { messageId: m.messageId } : {}),
        });
        await until(() => sandbox.state.messages.some((x) => x.envelope.rcptTo.includes('app@example.org')), 10_000, 'the bounce to arrive');
        const dsn = sandbox.state.messages.find((x) => x.envelope.rcptTo.includes('app@example.org'))!;
        const text = dsn.raw.toString('utf8');
        assert.match(text, /Content-Type: multipart\/report; report-type=delivery-status/i);
        assert.match(text, /Content-Type: message\/delivery-status/i);
        assert.match(text, /Action: failed/);
        assert.match(text, /Status: 5\.2\.252/);
        assert.match(text, /Final-Recipient: rfc822;x@example\.net/);
        assert.match(text, new RegExp(`X-Relay365-Message-Id: ${stored.id}`));
        assert.match(text, /Auto-Submitted: auto-replied/);
        assert.equal(dsn.envelope.mailFrom, DEFAULT_IDS.mailbox);
        assert.equal((await relay.store.get(stored.id))?.state, 'failed');
        assert.equal(sandbox.state.messages.length, 1, 'only the bounce arrived');
      });
    } finally {
      await sandbox.close();
    }
  });
});

/** A sandbox whose default mailbox fills after about three messages' Sent Items copies. */
function smallMailbox() {
  return scenario((s) => {
    s.tenants[0]!.users[0]!.mailboxQuotaBytes = 2000;
    // Only the mailbox-full refusal: continuous-error throttling is exchange-limits.test.ts's.
    s.limits.continuousErrorThreshold = 1000;
  });
}

/** An admin frees space: Sent Items emptied, and no quota any more. */
function freeSpace(sandbox: Sandbox): void {
  sandbox.state.emptySentItems(DEFAULT_IDS.mailbox);
  const roomy = structuredClone(sandbox.state.scenario);
  roomy.tenants[0]!.users[0]!.mailboxQuotaBytes = null;
  sandbox.state.setScenario(roomy);
}

/** Starts a relay on `dataDir` (kept by the caller) and collects its events. */
async function startOn(sandbox: Sandbox, dataDir: string, authPauseSeconds: number): Promise<{ relay: Relay; events: RelayEvent[] }> {
  const relay = await startRelay(
    sandboxConfig(sandbox, dataDir, { smtp: { enabled: false }, queue: { authPauseSeconds, retryBaseSeconds: 0.1, retryMaxSeconds: 0.3 } }),
  );
  const events: RelayEvent[] = [];
  relay.events.subscribe((e) => events.push(e));
  return { relay, events };
}

const statusOf = (relay: Relay) => relay.worker.status().find((s) => s.mailbox === DEFAULT_IDS.mailbox)!;

describe('paused mailboxes in the outbox', () => {
  it('keeps a mailbox paused across a restart with its cause and since-when; queue resume sends its queue once the cause has cleared, and pauses it again while it has not', async () => {
    const sandbox = await startTestSandbox({ scenario: smallMailbox() });
    const dir = await tempDir();
    try {
      const first = await startOn(sandbox, dir.path, 0.5);
      await enqueueMany(first.relay, DEFAULT_IDS.mailbox, 8);
      await until(() => first.events.some((e) => e.type === 'mailbox.paused'), 15_000, 'the mailbox to pause');
      await first.relay.close();
      const closedAt = Date.now();
      const sentBefore = sandbox.state.messages.length;
      assert.ok(sentBefore >= 1 && sentBefore < 8, `some sent before the mailbox filled (${sentBefore})`);

      // After the restart only the outbox knows: a probe is an hour away, so nothing may go out.
      const { relay, events } = await startOn(sandbox, dir.path, 3600);
      try {
        await until(() => statusOf(relay).paused, 5_000, 'the pause read back from the outbox');
        const status = statusOf(relay);
        assert.equal(status.reason?.id, 'smtp-554-5.2.2-mailbox-full');
        assert.match(status.reason?.fix ?? '', /RetentionPolicy/);
        assert.ok(status.pausedSince !== undefined && status.pausedSince.getTime() <= closedAt, 'paused since before the restart');
        const [pause] = await relay.store.mailboxPauses();
        assert.equal(pause?.mailbox, DEFAULT_IDS.mailbox);
        assert.equal(pause?.class, 'blocked');
        assert.match(pause?.reply ?? '', /^554 5\.2\.2 mailbox full/);
        assert.equal(pause?.since.getTime(), status.pausedSince.getTime());
        await new Promise((r) => setTimeout(r, 1500));
        assert.equal(sandbox.state.messages.length, sentBefore, 'nothing sent while paused after the restart');

        // Resumed while the mailbox is still full: the next send pauses it again, with the cause.
        await relay.store.requestMailboxResume(DEFAULT_IDS.mailbox);
        await until(() => events.some((e) => e.type === 'mailbox.resumed'), 5_000, 'the resume, within the worker\'s look at the pauses');
        await until(() => events.some((e) => e.type === 'mailbox.paused'), 10_000, 'the pause again');
        const again = events.find((e) => e.type === 'mailbox.paused');
        assert.ok(again?.type === 'mailbox.paused' && again.explanation?.id === 'smtp-554-5.2.2-mailbox-full');
        assert.equal(sandbox.state.messages.length, sentBefore, 'the full mailbox took nothing');
        assert.equal((await relay.store.counts()).failed, 0);

        // Space freed, then resumed: the queue goes at once (a probe would only come in an hour).
        freeSpace(sandbox);
        const asked = Date.now();
        const request = await relay.store.requestMailboxResume(DEFAULT_IDS.mailbox);
        assert.ok(request?.resumeRequestedAt !== undefined);
        await until(async () => (await relay.store.counts()).sent === 8, 10_000, 'all 8 sent after the resume');
        assert.ok(Date.now() - asked < 8_000, `sent ${Date.now() - asked} ms after the resume`);
        assert.equal(statusOf(relay).paused, false);
        assert.deepEqual(await relay.store.mailboxPauses(), [], 'the pause is over for every node');
        assert.equal((await relay.store.counts()).failed, 0);
        assert.equal(sandbox.state.messages.length, 8);
      } finally {
        await relay.close();
      }
    } finally {
      await dir.cleanup();
      await sandbox.close();
    }
  });

  it("holds a mailbox another node paused, and resumes it when that node's probe finds the cause cleared", async () => {
    const sandbox = await startTestSandbox({ scenario: smallMailbox() });
    const dir = await tempDir();
    try {
      // Two nodes on one outbox: A probes every half second, B only every hour.
      const a = await startOn(sandbox, dir.path, 0.5);
      try {
        await enqueueMany(a.relay, DEFAULT_IDS.mailbox, 8);
        await until(() => a.events.some((e) => e.type === 'mailbox.paused'), 15_000, 'A to pause the mailbox');
        const b = await startOn(sandbox, dir.path, 3600);
        try {
          await until(() => statusOf(b.relay).paused, 5_000, 'B to see the pause');
          assert.equal(statusOf(b.relay).reason?.id, 'smtp-554-5.2.2-mailbox-full');
          assert.equal(b.events.filter((e) => e.type === 'message.deferred' || e.type === 'message.sent').length, 0, 'B sent nothing into the full mailbox');
          freeSpace(sandbox);
          await until(async () => (await a.relay.store.counts()).sent === 8, 15_000, 'all 8 sent after the space was freed');
          assert.ok(a.events.some((e) => e.type === 'mailbox.resumed'), "A's probe resumed it");
          await until(() => !statusOf(b.relay).paused, 5_000, 'B to see the resume');
          assert.deepEqual(await b.relay.store.mailboxPauses(), []);
          assert.equal((await b.relay.store.counts()).failed, 0);
        } finally {
          await b.relay.close();
        }
      } finally {
        await a.relay.close();
      }
    } finally {
      await dir.cleanup();
      await sandbox.close();
    }
  });
});

describe('startRelay', () => {
  /** A port something else is listening on, and a way to let it go. */
  async function occupiedPort(): Promise<{ port: number; release: () => Promise<void> }> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    // Releasing twice is harmless, so a test that fails half-way still lets both go in its finally.
    const release = (): Promise<void> => new Promise((resolve) => (server.listening ? server.close(() => resolve()) : resolve()));
    return { port: (server.address() as AddressInfo).port, release };
  }

  /**
   * Handles and timers of this process, by kind (`process.getActiveResourcesInfo()`), once the event loop
   * has gone round: an `Immediate` lives for one turn and keeps nothing open, so it is not counted.
   */
  async function resources(): Promise<Map<string, number>> {
    await new Promise((resolve) => setTimeout(resolve, 20));
    const count = new Map<string, number>();
    for (const r of process.getActiveResourcesInfo()) if (r !== 'Immediate') count.set(r, (count.get(r) ?? 0) + 1);
    return count;
  }

  it('closes whatever it had opened when a front door cannot listen: store, listeners, timers', async () => {
    const sandbox = await startTestSandbox();
    const dir = await tempDir();
    const smtpPort = await occupiedPort();
    const httpPort = await occupiedPort();
    try {
      // A start and a stop first, so that what stays for the process (modules, the sandbox's own timers) is there before counting.
      await (await startRelay(sandboxConfig(sandbox, dir.path, { http: { enabled: true, host: '127.0.0.1', port: 0 } }))).close();
      const before = await resources();
      // The SMTP front door cannot listen: everything before it has started (store, worker, HTTP side).
      await assert.rejects(
        startRelay(
          sandboxConfig(sandbox, dir.path, {
            smtp: { listeners: [{ host: '127.0.0.1', port: smtpPort.port, tls: 'starttls' }] },
            http: { enabled: true, host: '127.0.0.1', port: 0 },
          }),
        ),
        (err) => isRelay365Error(err, 'R365_SMTP_LISTEN_FAILED'),
      );
      assert.equal(existsSync(join(dir.path, 'relay365.db-wal')), false, 'every SQLite connection is closed');
      assert.deepEqual(await resources(), before, 'no handle or timer left behind');
      await smtpPort.release();
      const beforeHttp = await resources();
      // The SMTP front door listens, then the HTTP one cannot.
      await assert.rejects(
        startRelay(
          sandboxConfig(sandbox, dir.path, {
            smtp: { listeners: [{ host: '127.0.0.1', port: smtpPort.port, tls: 'starttls' }] },
            http: { enabled: true, host: '127.0.0.1', port: httpPort.port },
          }),
        ),
        (err: Error & { code?: string }) => err.code === 'R365_HTTP_LISTEN_FAILED' && /EADDRINUSE/.test(err.message),
      );
      // Closed connections leave no log behind: the last one to close checkpoints it and removes it.
      assert.equal(existsSync(join(dir.path, 'relay365.db-wal')), false, 'every SQLite connection is closed');
      // The SMTP front door that did listen has let its port go.
      const smtpAgain = createServer();
      await new Promise<void>((resolve, reject) => smtpAgain.once('error', reject).listen(smtpPort.port, '127.0.0.1', resolve));
      await new Promise((resolve) => smtpAgain.close(resolve));
      assert.deepEqual(await resources(), beforeHttp, 'no handle or timer left behind');
    } finally {
      await smtpPort.release();
      await httpPort.release();
      await dir.cleanup();
      await sandbox.close();
    }
  });
});
