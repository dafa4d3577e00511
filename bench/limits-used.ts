/**
 * Limits used: Exchange Online's per-mailbox limits scaled down (20 messages per 2-second "minute",
 * 2 connections per mailbox) over 3 mailboxes, with `relay365 serve` configured to match. Reports
 * the fraction of the allowed rate relay365 achieves and how many throttling replies it drew.
 * The same measurement as the outbox worker's integration test, here against the separate process.
 */
import { join } from 'node:path';
import { openSqliteStore } from '../src/outbox/index.js';
import { benchSandbox, envInt, rawMessage, relayConfig, round, sleep, startServe, tempDir, until, type ScenarioResult } from './lib.js';

const MAILBOXES: string[] = ['relay@contoso.example', 'm2@contoso.example', 'm3@contoso.example'];
const PER_MINUTE = 20;
const MINUTE_MS = 2000;
const CONNECTIONS = 2;

export async function run(): Promise<ScenarioResult> {
  const windows = envInt('BENCH_LIMIT_WINDOWS', 5);
  const sandbox = await benchSandbox((s) => {
    const t = s.tenants[0]!;
    t.users.push(
      { ...structuredClone(t.users[0]!), upn: MAILBOXES[1]!, id: 'bbbbbbbb-0000-4000-8000-000000000002', sendAs: [] },
      { ...structuredClone(t.users[0]!), upn: MAILBOXES[2]!, id: 'bbbbbbbb-0000-4000-8000-000000000003', sendAs: [] },
    );
    // timeScale 30: a 60-second Exchange minute lasts 2 s.
    Object.assign(s.limits, { messagesPerMinute: PER_MINUTE, connectionsPerMailbox: CONNECTIONS, timeScale: 60_000 / MINUTE_MS });
  });
  const dir = await tempDir('relay365-bench-limits-');
  const dataDir = join(dir.path, 'data');
  try {
    // A full queue before the relay starts: more than the windows allow, for every mailbox.
    const store = await openSqliteStore(join(dataDir, 'relay365.db'));
    for (const mailbox of MAILBOXES) {
      for (let i = 0; i < PER_MINUTE * windows + 10; i++) {
        await store.enqueue({
          mailbox,
          envelope: { from: mailbox, to: [`r${i}@example.net`] },
          raw: rawMessage(2048, `limits-${mailbox}-${i}`, `r${i}@example.net`, mailbox),
          source: { kind: 'library' },
        });
      }
    }
    await store.close();
    const relay = await startServe(
      dir.path,
      relayConfig(sandbox, dataDir, {
        mailboxes: MAILBOXES.map((address) => ({ address })),
        limits: { messagesPerMinute: PER_MINUTE, minuteMs: MINUTE_MS, windowMarginMs: 60 },
        delivery: { maxConnections: CONNECTIONS, maxMessagesPerConnection: 1000 },
        smtp: { enabled: false },
      }),
    );
    let sent: number;
    let rss: number;
    try {
      if (!(await until(() => sandbox.state.messages.length > 0, 30_000))) throw new Error(`nothing arrived at the sandbox within 30 s: ${relay.stderr()}`);
      // Count what Exchange (the sandbox) received within `windows` windows of its first arrival.
      const first = Date.parse(sandbox.state.messages[0]!.receivedAt);
      const end = first + windows * MINUTE_MS - 100;
      await sleep(end - Date.now() + 50);
      sent = sandbox.state.messages.filter((m) => Date.parse(m.receivedAt) < end).length;
      rss = relay.peakRssMb();
    } finally {
      await relay.stop();
    }
    const allowed = windows * PER_MINUTE * MAILBOXES.length;
    const fraction = sent / allowed;
    const { throttled, maxConcurrentByMailbox } = sandbox.state.counters;
    const maxConcurrent = Math.max(...MAILBOXES.map((m) => maxConcurrentByMailbox[m] ?? 0));
    return {
      name: 'limits-used',
      title: `Limits used: ${MAILBOXES.length} mailboxes, ${PER_MINUTE} messages per ${MINUTE_MS / 1000}-second minute, ${CONNECTIONS} connections each, ${windows} windows`,
      columns: ['mailboxes', 'windows', 'allowed', 'sent', 'fraction used', 'throttling replies', 'max concurrent connections', 'relay peak RSS MB'],
      rows: [
        {
          mailboxes: MAILBOXES.length,
          windows,
          allowed,
          sent,
          'fraction used': round(fraction, 3),
          'throttling replies': throttled,
          'max concurrent connections': maxConcurrent,
          'relay peak RSS MB': rss,
        },
      ],
      targets: [
        { what: 'fraction of the allowed rate used ≥ 0.95', value: `${round(fraction, 3)}`, met: fraction >= 0.95 },
        { what: 'never more than allowed', value: `${sent}/${allowed}`, met: sent <= allowed },
        { what: '0 throttling replies', value: `${throttled}`, met: throttled === 0 },
        { what: `at most ${CONNECTIONS} connections per mailbox`, value: `${maxConcurrent}`, met: maxConcurrent <= CONNECTIONS },
      ],
      notes: [
        'Sandbox limits scaled with timeScale 30; relay365 serve with limits.minuteMs 2000 and windowMarginMs 60. The queue is filled before the relay starts.',
      ],
    };
  } finally {
    await sandbox.close();
    await dir.cleanup();
  }
}
