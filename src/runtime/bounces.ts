import { isDeepStrictEqual } from 'node:util';
import type { Config } from '../config/index.js';
import { BounceReader, GraphMailClient } from '../bounces/index.js';
import { createIdentity, graphBounceScopes, type Identity, type TokenCacheStore } from '../identity/index.js';
import type { EventBus, Logger } from '../observe/index.js';
import type { OutboxStore } from '../outbox/index.js';

/** The NDR readers of the mailboxes with `bounces.read`, how a reload changes them, and how to stop them. */
export interface BounceReaders {
  /** The running readers; a reload changes this array in place. */
  readers: BounceReader[];
  /**
   * Builds the Graph identity of a reloaded config's reading mailboxes (throwing, and changing nothing,
   * when it cannot) and returns what switches to it: the readers of mailboxes removed, or whose
   * `bounces` changed, stop (each after the report it is applying: see BounceReader.stop), then
   * readers start for those added or changed. A reader of an unchanged mailbox goes on reading.
   */
  prepareReload(next: Config): Promise<() => Promise<void>>;
  stop(): Promise<void>;
}

type Mailbox = Config['mailboxes'][number];

/** The mailboxes that read their NDRs, by lower-case address. */
const readingMailboxes = (config: Config): Map<string, Mailbox> =>
  new Map(config.mailboxes.filter((m) => m.bounces?.read === true).map((m) => [m.address.toLowerCase(), m]));

/**
 * A Graph identity for the mailboxes that read their NDRs: their own auth settings with Graph's
 * scopes (an SMTP mailbox's token is for Exchange, not Graph), sharing the relay's token cache.
 */
export async function bounceIdentity(config: Config, deps: { logger: Logger; env?: NodeJS.ProcessEnv; cacheStore?: TokenCacheStore }): Promise<Identity | undefined> {
  const reading = [...readingMailboxes(config).values()];
  if (reading.length === 0) return undefined;
  return createIdentity(graphConfig(config, reading), {
    logger: deps.logger,
    // A delegated mailbox reads with its user's sign-in (relay365 login), asking Graph for Mail.ReadWrite.
    delegatedScopes: graphBounceScopes,
    ...(deps.env ? { env: deps.env } : {}),
    ...(deps.cacheStore ? { cacheStore: deps.cacheStore } : {}),
  });
}

/** The config a bounce identity is built from: only the reading mailboxes, each on Graph. */
function graphConfig(config: Config, reading: readonly Mailbox[]): Config {
  return { ...config, mailboxes: reading.map((m) => ({ ...m, transport: 'graph' as const })) };
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
  const logger = deps.logger.child({ component: 'bounces' });
  const identityDeps = { logger, ...(deps.env ? { env: deps.env } : {}), ...(deps.cacheStore ? { cacheStore: deps.cacheStore } : {}) };
  let identity = await bounceIdentity(config, identityDeps);
  let graph = identity === undefined ? undefined : graphMailClient(identity);
  const readers: BounceReader[] = [];
  // The settings each running reader was started with, by lower-case address.
  const running = new Map<string, { reader: BounceReader; mailbox: Mailbox }>();
  let closed = false;

  const startReader = (m: Mailbox, owner: string | undefined): void => {
    if (closed || graph === undefined) return;
    const reader = new BounceReader({
      mailbox: m.address,
      settings: m.bounces!,
      store: deps.store,
      graph,
      events: deps.events,
      logger,
      ...(owner ? { owner } : {}),
    });
    running.set(m.address.toLowerCase(), { reader, mailbox: m });
    readers.push(reader);
    reader.start();
    logger.info({ event: 'bounces.reader_started', mailbox: m.address, everySeconds: m.bounces!.everySeconds }, `reading the NDRs of ${m.address}`);
  };
  for (const m of readingMailboxes(config).values()) startReader(m, deps.owner);

  return {
    readers,
    async prepareReload(next) {
      const wanted = readingMailboxes(next);
      let switchIdentity = (): void => {};
      if (wanted.size > 0 && identity !== undefined) {
        // The same provider then serves the new mailboxes and auth: the running readers' client keeps working.
        switchIdentity = await identity.prepareReload(graphConfig(next, [...wanted.values()]));
      } else if (wanted.size > 0) {
        const built = (await bounceIdentity(next, identityDeps))!;
        switchIdentity = () => {
          identity = built;
          graph = graphMailClient(built);
        };
      }
      return async () => {
        switchIdentity();
        const leaving = [...running].filter(([address, r]) => {
          const w = wanted.get(address);
          return w === undefined || w.address !== r.mailbox.address || !isDeepStrictEqual(w.bounces, r.mailbox.bounces);
        });
        for (const [address, { reader }] of leaving) {
          running.delete(address);
          readers.splice(readers.indexOf(reader), 1);
        }
        // A read in progress finishes the report it is applying; its mailbox's new reader starts after
        // it, with the same lease owner, so the lease passes on at once and no two reads overlap.
        await Promise.all(
          leaving.map(async ([, { reader, mailbox }]) => {
            await reader.stop();
            logger.info({ event: 'bounces.reader_stopped', mailbox: mailbox.address }, `stopped reading the NDRs of ${mailbox.address} (config reloaded)`);
          }),
        );
        const owners = new Map(leaving.map(([address, { reader }]) => [address, reader.owner]));
        for (const [address, m] of wanted) if (!running.has(address)) startReader(m, owners.get(address) ?? deps.owner);
      };
    },
    async stop() {
      closed = true;
      await Promise.all(readers.map((r) => r.stop()));
      identity?.close();
    },
  };
}
