import type { Config } from '../config/index.js';
import type { Identity, TokenCacheStore } from '../identity/index.js';
import type { Logger } from '../observe/index.js';
import { cliContext, cliTokenCache, pickMailbox } from './context.js';

/** What a command that acts on one mailbox's sign-in works with. */
export interface MailboxIdentity {
  config: Readonly<Config>;
  logger: Logger;
  /** `--mailbox`, or the only configured one. */
  mailbox: string;
  identity: Identity;
  /** The token cache the relay uses (the cluster's with `queue.url`), for a second identity beside this one. */
  cacheStore: TokenCacheStore | undefined;
}

/**
 * Builds the identity of the mailbox a command names, on the token cache the relay itself uses (so a
 * `relay365 login` is found, and a new one kept where the relay looks), runs `use` with it, and closes the
 * identity and the cache whatever happens: how `relay365 login`, `token` and `permissions` start.
 */
export async function withMailboxIdentity<T>(flags: { config?: string; mailbox?: string }, use: (session: MailboxIdentity) => Promise<T>): Promise<T> {
  const { config, logger } = await cliContext(flags);
  const { createIdentity } = await import('../identity/index.js');
  const mailbox = pickMailbox(config, flags.mailbox);
  const cache = await cliTokenCache(config);
  const identity = await createIdentity(config, { logger, ...(cache.cacheStore ? { cacheStore: cache.cacheStore } : {}) });
  try {
    return await use({ config, logger, mailbox, identity, cacheStore: cache.cacheStore });
  } finally {
    identity.close();
    await cache.close();
  }
}
