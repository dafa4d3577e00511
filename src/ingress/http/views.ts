/**
 * What the dashboard and /metrics show of mailboxes, built from the relay's parts. Messages are shown
 * by outbox/views.ts, which the CLI's `--json` prints too.
 */
import type { Explanation } from '../../catalogue/index.js';
import type { Config } from '../../config/index.js';
import type { TokenStatus } from '../../identity/index.js';
import type { QueueSnapshot } from '../../observe/index.js';
import { MESSAGE_STATES, explanationView, type DeliveryWorker, type MessageState, type OutboxStore, type Router } from '../../outbox/index.js';

/** The relay parts the views read. */
export interface ViewSources {
  /** The relay's current config, read at each request: a reload (SIGHUP) adds and removes mailboxes. */
  config: () => Pick<Config, 'mailboxes'>;
  store: OutboxStore;
  router: Pick<Router, 'poolsOf'>;
  worker: Pick<DeliveryWorker, 'status'>;
  /** The token provider's read-only view; absent when tokens are not this process's business. */
  tokens?: { status(mailbox: string): TokenStatus } | undefined;
}

/** One mailbox's health: token, quota used and left, pause, last error. */
export interface MailboxStatusView {
  address: string;
  aliases: string[];
  pools: string[];
  paused: boolean;
  /** When the pause began (it lasts across restarts, and every node shows the same). */
  pausedSince: string | null;
  pausedUntil: string | null;
  pauseReason: Explanation | null;
  token: { cached: boolean; expiresAt: string | null; refreshing: boolean; failures: number; lastError: { code: string; message: string } | null };
  quota: {
    messagesPerMinute: { limit: number; used: number; left: number };
    recipientsPerDay: { limit: number; used: number; left: number };
    connections: { limit: number; inUse: number };
  };
  counts: Record<MessageState, number>;
  /** The most pressing problem: a token failure, the reason of a pause, or the last failed message. */
  lastError: { source: 'token' | 'pause' | 'message'; at: string | null; reply: string | null; code: string | null; cause: string; fix: string } | null;
}

/** The status of every configured mailbox. */
export async function mailboxStatuses(sources: ViewSources, now: Date = new Date()): Promise<MailboxStatusView[]> {
  const workerStatus = new Map(sources.worker.status().map((s) => [s.mailbox, s]));
  return Promise.all(
    sources.config().mailboxes.map(async (m): Promise<MailboxStatusView> => {
      const address = m.address.toLowerCase();
      const status = workerStatus.get(address);
      const limits = status?.limits;
      const usage = limits ? await sources.store.quotaUsage(address, limits, now) : { messagesLastMinute: 0, recipientsLastDay: 0, sending: 0 };
      const token = sources.tokens?.status(address);
      const [counts, lastFailed] = await Promise.all([sources.store.counts(address), sources.store.list({ mailbox: address, state: 'failed', limit: 1 })]);
      const failed = lastFailed.items[0];
      let lastError: MailboxStatusView['lastError'] = null;
      if (token?.lastError) {
        lastError = {
          source: 'token',
          at: null,
          reply: null,
          code: token.lastError.code,
          cause: token.lastError.message,
          fix: 'See the message; relay365 doctor walks every setup step.',
        };
      } else if (status?.paused && status.reason) {
        lastError = { source: 'pause', at: null, reply: null, code: status.reason.id, cause: status.reason.cause, fix: status.reason.fix };
      } else if (failed?.lastExplanation) {
        lastError = {
          source: 'message',
          at: failed.updatedAt.toISOString(),
          reply: failed.lastReply ?? null,
          code: failed.lastExplanation.id,
          cause: failed.lastExplanation.cause,
          fix: failed.lastExplanation.fix,
        };
      }
      const messagesLimit = limits?.messagesPerMinute ?? 0;
      const recipientsLimit = limits?.recipientsPerDay ?? 0;
      return {
        address,
        aliases: m.aliases.map((a) => a.toLowerCase()),
        pools: sources.router.poolsOf(address),
        paused: status?.paused ?? false,
        pausedSince: status?.paused && status.pausedSince ? status.pausedSince.toISOString() : null,
        pausedUntil: status?.paused && status.holdUntil ? status.holdUntil.toISOString() : null,
        pauseReason: status?.paused ? explanationView(status.reason) : null,
        token: {
          cached: token?.cached ?? false,
          expiresAt: token?.expiresOn?.toISOString() ?? null,
          refreshing: token?.refreshing ?? false,
          failures: token?.failures ?? 0,
          lastError: token?.lastError ?? null,
        },
        quota: {
          messagesPerMinute: { limit: messagesLimit, used: usage.messagesLastMinute, left: Math.max(0, messagesLimit - usage.messagesLastMinute) },
          recipientsPerDay: { limit: recipientsLimit, used: usage.recipientsLastDay, left: Math.max(0, recipientsLimit - usage.recipientsLastDay) },
          connections: { limit: status?.connectionCap ?? 0, inUse: usage.sending },
        },
        counts,
        lastError,
      };
    }),
  );
}

/** Label of messages in the outbox that no mailbox holds yet (a pool's, waiting for a member). */
export const POOL_LABEL = '(pool)';

/** The gauges' values at this moment, for {@link RelayMetrics.render}. */
export async function queueSnapshot(sources: ViewSources, now: Date = new Date()): Promise<QueueSnapshot> {
  const [total, oldest, mailboxes] = await Promise.all([sources.store.counts(), sources.store.oldestWaiting(), mailboxStatuses(sources, now)]);
  const messages: Array<{ mailbox: string; state: string; count: number }> = [];
  const assigned = Object.fromEntries(MESSAGE_STATES.map((s) => [s, 0])) as Record<MessageState, number>;
  for (const m of mailboxes) {
    for (const state of MESSAGE_STATES) {
      messages.push({ mailbox: m.address, state, count: m.counts[state] });
      assigned[state] += m.counts[state];
    }
  }
  for (const state of MESSAGE_STATES) {
    const rest = total[state] - assigned[state];
    if (rest > 0) messages.push({ mailbox: POOL_LABEL, state, count: rest });
  }
  return {
    messages,
    waiting: total.queued + total.deferred,
    oldestWaitingSeconds: oldest === undefined ? 0 : Math.max(0, (now.getTime() - oldest.getTime()) / 1000),
    mailboxes: mailboxes.map((m) => ({
      mailbox: m.address,
      messagesLeftThisMinute: m.quota.messagesPerMinute.left,
      recipientsLeftToday: m.quota.recipientsPerDay.left,
      paused: m.paused,
      tokenExpiresInSeconds: m.token.cached && m.token.expiresAt !== null ? Math.max(0, (Date.parse(m.token.expiresAt) - now.getTime()) / 1000) : undefined,
    })),
  };
}
