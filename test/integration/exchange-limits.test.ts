import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { composeMessage } from '../../src/delivery/index.js';
import type { RelayEvent } from '../../src/observe/index.js';
import { startRelay, type Relay } from '../../src/runtime/index.js';
import { DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';
import { sandboxConfig } from '../helpers/config.js';
import { scenario, startTestSandbox, tempDir } from '../helpers/sandbox.js';
import { SmtpWire, xoauth2 } from '../helpers/smtp-wire.js';

/**
 * The worker against Exchange Online's limits as they behave today (shared/M365.md "Limits", issue
 * 23): one test per behaviour, each against the sandbox over real sockets, in scaled time.
 */

const MAILBOX = DEFAULT_IDS.mailbox;

async function enqueueMany(relay: Relay, n: number, prefix = 'n'): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const m = await composeMessage({ from: MAILBOX, to: `r${i}@example.net`, subject: `${prefix}${i}`, text: 'x' });
    const stored = await relay.enqueue({
      mailbox: MAILBOX,
      envelope: m.envelope,
      raw: m.raw,
      source: { kind: 'library' },
      ...(m.messageId ? { messageId: m.messageId } : {}),
    });
    ids.push(stored.id);
  }
  return ids;
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

/** The largest number of arrivals within any `windowMs` (a sliding window, as Exchange counts). */
function busiestWindow(times: number[], windowMs: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  let best = 0;
  for (let i = 0, j = 0; i < sorted.length; i++) {
    while (sorted[i]! - sorted[j]! >= windowMs) j++;
    best = Math.max(best, i - j + 1);
  }
  return best;
}

const arrivals = (sandbox: Sandbox): number[] => sandbox.state.messages.map((m) => Date.parse(m.receivedAt));

/**
 * Another client of the same mailbox (a scanner still sending straight to Exchange): an SMTP session
 * logged in with the app's token, as the sandbox issues it to the client credentials grant.
 */
async function otherClient(sandbox: Sandbox): Promise<SmtpWire> {
  const tenant = sandbox.state.scenario.tenants[0]!;
  const app = tenant.apps.find((a) => a.clientId === DEFAULT_IDS.appClientId)!;
  const { token } = await sandbox.issuer.accessToken({
    tenant,
    app,
    audience: 'https://outlook.office365.com',
    roles: ['SMTP.SendAsApp'],
    lifetimeSeconds: 3600,
    clientAuth: '1',
  });
  const { wire } = await SmtpWire.connect(sandbox.smtpPort);
  await wire.secure(sandbox.caPem);
  const auth = await wire.command(`AUTH XOAUTH2 ${xoauth2(MAILBOX, token)}`);
  assert.equal(auth.code, 235, auth.last);
  return wire;
}

describe('the worker against Exchange Online limits', () => {
  it("lowers the mailbox's concurrency when its 4th connection draws 432 4.3.2 Concurrent connections limit exceeded, and carries on with 0 failed", async () => {
    // Exchange's 3 connections per mailbox; another client holds one, so relay365's 3rd is the mailbox's 4th.
    const sandbox = await startTestSandbox();
    const scanner = await otherClient(sandbox);
    try {
      await withRelay(sandbox, { delivery: { maxConnections: 3 }, queue: { retryBaseSeconds: 0.1, retryMaxSeconds: 0.5 } }, async (relay, events) => {
        assert.equal(sandbox.state.connectionCount(MAILBOX), 1, "the other client's session");
        await enqueueMany(relay, 12);
        await until(async () => (await relay.store.counts()).sent === 12, 30_000, 'all 12 sent');
        const deferred = events.filter((e) => e.type === 'message.deferred');
        assert.ok(deferred.length >= 1, 'the 4th connection drew a 432');
        for (const e of deferred) assert.equal(e.type === 'message.deferred' && e.explanation?.id, 'smtp-432-4.3.2-concurrent');
        assert.match(deferred[0]!.type === 'message.deferred' ? (deferred[0]!.reply ?? '') : '', /^432 4\.3\.2 Concurrent connections limit exceeded/);
        assert.ok(events.some((e) => e.type === 'mailbox.throttled'));
        const status = relay.worker.status().find((s) => s.mailbox === MAILBOX);
        assert.ok(status && status.connectionCap < 3, `concurrency lowered (cap ${status?.connectionCap})`);
        assert.ok((sandbox.state.counters.maxConcurrentByMailbox[MAILBOX] ?? 0) >= 4, 'Exchange saw a 4th connection');
        assert.equal((await relay.store.counts()).failed, 0);
        assert.equal(sandbox.state.messages.length, 12);
      });
    } finally {
      await scanner.quit().catch(() => undefined);
      await sandbox.close();
    }
  });

  it('delivers all of 31 messages submitted to Exchange in one minute (it delays the 31st), while relay365 still paces its own to 30 a minute', async () => {
    // A minute lasts 2 s. Another client sends one message; relay365, at Exchange's 30 a minute, sends
    // 30 in that same minute: the mailbox's 31st, which Exchange delays into the next minute.
    const sandbox = await startTestSandbox({ scenario: scenario((s) => Object.assign(s.limits, { messagesPerMinute: 30, timeScale: 30 })) });
    try {
      await withRelay(sandbox, { limits: { messagesPerMinute: 30, minuteMs: 2000, windowMarginMs: 50 }, delivery: { maxConnections: 3 } }, async (relay, events) => {
        const scanner = await otherClient(sandbox);
        assert.equal((await scanner.command(`MAIL FROM:<${MAILBOX}>`)).code, 250);
        assert.equal((await scanner.command('RCPT TO:<scan@example.net>')).code, 250);
        assert.equal((await scanner.command('DATA')).code, 354);
        const sent = await scanner.command(`From: ${MAILBOX}\r\nTo: scan@example.net\r\nSubject: scan\r\n\r\nscanned\r\n.`);
        assert.equal(sent.code, 250, sent.last);
        await scanner.quit();
        const scannedAt = Date.parse(sandbox.state.messages[0]!.receivedAt);
        const ids = await enqueueMany(relay, 35);
        await until(async () => (await relay.store.counts()).sent === 35, 30_000, 'all 35 sent');
        assert.equal(events.filter((e) => e.type === 'message.deferred' || e.type === 'message.failed').length, 0, 'nothing refused');
        assert.equal(sandbox.state.messages.length, 36);
        // relay365's own submissions, from when each began: never more than 30 in a minute.
        const starts: number[] = [];
        for (const id of ids) for (const a of await relay.store.attempts(id)) starts.push(a.at.getTime() - a.durationMs);
        assert.ok(busiestWindow(starts, 2000) <= 30, `relay365 began ${busiestWindow(starts, 2000)} in one minute`);
        // Exchange got 31 within the scanner's minute and let in at most 30 of them: it delayed the 31st.
        assert.ok(starts.filter((t) => t < scannedAt + 2000).length >= 30, 'relay365 used the rest of the minute');
        assert.ok(busiestWindow(arrivals(sandbox), 2000) <= 30, `Exchange let ${busiestWindow(arrivals(sandbox), 2000)} in through one minute`);
      });
    } finally {
      await sandbox.close();
    }
  });

  it('delivers 45 messages submitted in one minute (Exchange delays the excess over 30), with 0 refused', async () => {
    // A minute lasts 2 s; relay365 is told it may send 45 a minute, more than Exchange's 30.
    const sandbox = await startTestSandbox({ scenario: scenario((s) => Object.assign(s.limits, { messagesPerMinute: 30, timeScale: 30 })) });
    try {
      await withRelay(
        sandbox,
        { limits: { messagesPerMinute: 45, minuteMs: 2000, windowMarginMs: 0 }, delivery: { maxConnections: 3 } },
        async (relay, events) => {
          const started = Date.now();
          await enqueueMany(relay, 45);
          await until(async () => (await relay.store.counts()).sent === 45, 30_000, 'all 45 sent');
          assert.equal(events.filter((e) => e.type === 'message.deferred' || e.type === 'message.failed').length, 0, 'nothing refused');
          assert.equal(sandbox.state.counters.smtpReplies['554 5.2.0'], undefined);
          assert.ok(busiestWindow(arrivals(sandbox), 2000) <= 30, 'Exchange let at most 30 in through any minute');
          assert.ok(Date.now() - started >= 1900, 'the excess was carried over to the next minute');
        },
      );
    } finally {
      await sandbox.close();
    }
  });

  it('paces itself to 30 messages a minute when Exchange would take more', async () => {
    const sandbox = await startTestSandbox({ scenario: scenario((s) => Object.assign(s.limits, { messagesPerMinute: 1000, timeScale: 30 })) });
    try {
      await withRelay(sandbox, { limits: { messagesPerMinute: 30, minuteMs: 2000, windowMarginMs: 50 } }, async (relay) => {
        await enqueueMany(relay, 40);
        await until(async () => (await relay.store.counts()).sent === 40, 30_000, 'all 40 sent');
        assert.ok(busiestWindow(arrivals(sandbox), 2000) <= 30, `at most 30 in any minute (${busiestWindow(arrivals(sandbox), 2000)})`);
      });
    } finally {
      await sandbox.close();
    }
  });

  it('holds a mailbox whose daily recipients are used up (554 5.2.0) until the rolling window frees, with 0 failed and no retry in between', async () => {
    // A day lasts 6 s (timeScale 14,400) and holds 5 recipients; relay365 believes in 10,000, so it
    // learns of the limit from Exchange's 554 and must then wait for its ledger's oldest sends to age out.
    const sandbox = await startTestSandbox({ scenario: scenario((s) => Object.assign(s.limits, { recipientsPerDay: 5, timeScale: 14_400 })) });
    try {
      await withRelay(
        sandbox,
        {
          limits: { dayMs: 6000, windowMarginMs: 400 },
          delivery: { maxConnections: 1 },
          queue: { retryBaseSeconds: 0.1, retryMaxSeconds: 0.2 },
        },
        async (relay, events) => {
          const ids = await enqueueMany(relay, 8);
          await until(() => events.some((e) => e.type === 'message.deferred'), 10_000, 'the 554');
          const refusedAt = Date.now();
          const deferred = events.find((e) => e.type === 'message.deferred');
          assert.ok(deferred?.type === 'message.deferred' && deferred.explanation?.id === 'smtp-554-5.2.0-quota');
          assert.match(deferred.explanation?.cause ?? '', /10,000 recipients per rolling 24 hours/);
          await until(async () => (await relay.store.counts()).sent === 8, 20_000, 'all 8 sent');
          assert.equal((await relay.store.counts()).failed, 0);
          assert.equal(sandbox.state.counters.smtpReplies['554 5.2.0'], 1, 'one 554, then no attempt until the window had room');
          const held = await relay.store.get(deferred.id);
          assert.equal(held?.attempts, 2, 'the refused message was tried once more, when the window freed');
          const sentAgain = (await relay.store.attempts(deferred.id)).at(-1)!.at.getTime();
          assert.ok(sentAgain - refusedAt >= 5000, `held ${sentAgain - refusedAt} ms of a 6 s day`);
          assert.ok(events.some((e) => e.type === 'mailbox.throttled'));
          assert.equal(ids.length, 8);
        },
      );
    } finally {
      await sandbox.close();
    }
  });

  it('pauses a mailbox whose Sent Items filled it (554 5.2.2) with 0 failed, keeps its queue, and resumes when space is freed', async () => {
    // Room for about three messages' Sent Items copies.
    const sandbox = await startTestSandbox({
      scenario: scenario((s) => {
        s.tenants[0]!.users[0]!.mailboxQuotaBytes = 2000;
        s.limits.continuousErrorThreshold = 1000;
      }),
    });
    try {
      await withRelay(sandbox, { queue: { authPauseSeconds: 0.3, retryBaseSeconds: 0.1, retryMaxSeconds: 0.3 } }, async (relay, events) => {
        await enqueueMany(relay, 8);
        await until(() => events.some((e) => e.type === 'mailbox.paused'), 15_000, 'the mailbox to pause');
        const paused = events.find((e) => e.type === 'mailbox.paused');
        assert.ok(paused?.type === 'mailbox.paused');
        assert.match(paused.reason, /^554 5\.2\.2 mailbox full/);
        assert.equal(paused.explanation?.id, 'smtp-554-5.2.2-mailbox-full');
        assert.match(paused.explanation?.fix ?? '', /RetentionPolicy/);
        await new Promise((r) => setTimeout(r, 1500));
        const during = await relay.store.counts();
        assert.equal(during.failed, 0, 'nothing failed while the mailbox was full');
        assert.ok(during.sent >= 1 && during.sent < 8, `some sent before it filled (${during.sent})`);
        assert.equal(relay.worker.status().find((s) => s.mailbox === MAILBOX)?.paused, true);
        // An admin frees space: the Sent Items emptied and a bigger quota.
        sandbox.state.emptySentItems(MAILBOX);
        const roomy = structuredClone(sandbox.state.scenario);
        roomy.tenants[0]!.users[0]!.mailboxQuotaBytes = null;
        sandbox.state.setScenario(roomy);
        await until(async () => (await relay.store.counts()).sent === 8, 15_000, 'all 8 sent after freeing space');
        assert.ok(events.some((e) => e.type === 'mailbox.resumed'));
        assert.equal((await relay.store.counts()).failed, 0);
        assert.equal(sandbox.state.messages.length, 8);
      });
    } finally {
      await sandbox.close();
    }
  });

  it('pauses with the underlying cause when Exchange throttles the mailbox for continuous errors (550 5.2.251), and resumes after the block', async () => {
    const sandbox = await startTestSandbox({
      scenario: scenario((s) => {
        s.tenants[0]!.users[0]!.mailboxQuotaBytes = 1500;
        Object.assign(s.limits, { continuousErrorThreshold: 2, continuousErrorBlockSeconds: 2 });
      }),
    });
    try {
      await withRelay(sandbox, { queue: { authPauseSeconds: 0.3, retryBaseSeconds: 0.1, retryMaxSeconds: 0.3 } }, async (relay, events) => {
        await enqueueMany(relay, 6);
        await until(
          () => events.some((e) => e.type === 'mailbox.paused' && e.explanation?.id === 'smtp-550-5.2.251-throttled'),
          15_000,
          'the pause for continuous errors',
        );
        const paused = events.find((e) => e.type === 'mailbox.paused' && e.explanation?.id === 'smtp-550-5.2.251-throttled');
        assert.ok(paused?.type === 'mailbox.paused');
        assert.match(paused.reason, /^550 5\.2\.251 Sender throttled due to continuous mailbox full errors\. \[/);
        assert.match(paused.explanation?.cause ?? '', /mailbox full/);
        assert.equal((await relay.store.counts()).failed, 0);
        sandbox.state.emptySentItems(MAILBOX);
        const roomy = structuredClone(sandbox.state.scenario);
        roomy.tenants[0]!.users[0]!.mailboxQuotaBytes = null;
        sandbox.state.setScenario(roomy);
        // The block outlasts the space freed: Exchange lifts it after its 2 s, and the probe resumes.
        await until(async () => (await relay.store.counts()).sent === 6, 15_000, 'all 6 sent after the block');
        assert.ok((sandbox.state.counters.smtpReplies['550 5.2.251'] ?? 0) >= 1);
        assert.ok(events.some((e) => e.type === 'mailbox.resumed'));
        assert.equal((await relay.store.counts()).failed, 0);
      });
    } finally {
      await sandbox.close();
    }
  });

  it('counts a reply the catalogue lacks in relay365_unknown_replies_total{code,enhanced}', async () => {
    const sandbox = await startTestSandbox({
      scenario: scenario((s) => {
        s.limits.unlimited = true;
        s.faults.smtp.push({
          stage: 'data',
          reply: '451 4.4.317 Something nobody has catalogued [SANDBOX01.namprd00.prod.outlook.com]',
          drop: false,
          count: 1,
        });
      }),
    });
    try {
      await withRelay(sandbox, { queue: { retryBaseSeconds: 0.1, retryMaxSeconds: 0.2 } }, async (relay, events) => {
        await enqueueMany(relay, 1);
        await until(async () => (await relay.store.counts()).sent === 1, 10_000, 'the message sent after the unknown reply');
        const deferred = events.find((e) => e.type === 'message.deferred');
        assert.ok(deferred?.type === 'message.deferred' && deferred.explanation?.id === 'smtp-451-4.4.317-unknown');
        const text = await relay.metrics.registry.getSingleMetricAsString('relay365_unknown_replies_total');
        assert.match(text, /relay365_unknown_replies_total\{code="451",enhanced="4\.4\.317"\} 1/);
      });
    } finally {
      await sandbox.close();
    }
  });
});
