import type { Config } from '../config/index.js';
import { BounceReader, GraphMailClient } from '../bounces/index.js';
import { createIdentity, type Identity, type TokenCacheStore } from '../identity/index.js';
import type { EventBus, Logger } from '../observe/index.js';
import type { OutboxStore } from '../outbox/index.js';

/** The NDR readers of the mailboxes with `bounces.read`, and how to stop them. */
export interface BounceReaders {
  readers: BounceReader[];
  stop(): Promise<void>;
}

/**
 * A Graph identity for the mailboxes that read their NDRs: their own auth settings with Graph's
 * scopes (an SMTP mailbox's token is for Exchange, not Graph), sharing the relay's token cache.
 */
export async function bounceIdentity(config: Config, deps: { logger: Logger; env?: NodeJS.ProcessEnv; cacheStore?: TokenCacheStore }): Promise<Identity | undefined> {
  const reading = config.mailboxes.filter((m) => m.bounces?.read === true);
  if (reading.length === 0) return undefined;
  return createIdentity(
    { ...config, mailboxes: reading.map((m) => ({ ...m, transport: 'graph' as const })) },
    { logger: deps.logger, ...(deps.env ? { env: deps.env } : {}), ...(deps.cacheStore ? { cacheStore: deps.cacheStore } : {}) },
  );
}

/** The Graph mail client over a bounce identity (the cloud's Graph host, the identity's trust and proxy). */
export function graphMailClient(identity: Identity, timeoutMs = 60_000): GraphMailClient {
  return new GraphMailClient({
    graphHost: identity.cloud.graphHost,
    http: identity.networkClient,
    token: async (mailbox) => (await identity.provider.getToken(mailbox)).accessToken,
    invalidate: (mailbox) => identity.provider.invalidate(mailbox),
    timeoutMs,
  });
}

/** Starts one reader per mailbox with `bounces.read` (none: nothing is started, no token is asked for). */
export async function startBounceReaders(
  config: Config,
  deps: { store: OutboxStore; events: EventBus; logger: Logger; env?: NodeJS.ProcessEnv; cacheStore?: TokenCacheStore; owner?: string },
): Promise<BounceReaders> {
  const identity = await bounceIdentity(config, { logger: deps.logger.child({ component: 'bounces' }), ...(deps.env ? { env: deps.env } : {}), ...(deps.cacheStore ? { cacheStore: deps.cacheStore } : {}) });
  if (!identity) return { readers: [], stop: () => Promise.resolve() };
  const graph = graphMailClient(identity);
  const readers = config.mailboxes
    .filter((m) => m.bounces?.read === true)
    .map(
      (m) =>
        new BounceReader({
          mailbox: m.address,
          settings: m.bounces!,
          store: deps.store,
          graph,
          events: deps.events,
          logger: deps.logger.child({ component: 'bounces' }),
          ...(deps.owner ? { owner: deps.owner } : {}),
        }),
    );
  for (const r of readers) r.start();
  return {
    readers,
    async stop() {
      await Promise.all(readers.map((r) => r.stop()));
      identity.close();
    },
  };
}
