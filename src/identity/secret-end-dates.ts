import { resolveSecret, type AuthSettings, type Config } from '../config/index.js';
import type { Logger } from '../observe/index.js';
import { createIdentity, type Identity } from './create.js';
import { readSecretEndDate } from './credential-expiry.js';

/** Reads a client secret's end date from its app registration; undefined when Graph lists no such secret. */
export interface SecretEndDates {
  read: (mailbox: string, auth: AuthSettings) => Promise<Date | undefined>;
  close: () => void;
}

/**
 * The end dates of client secrets as their app registrations list them, through Microsoft Graph
 * (`passwordCredentials`, Application.Read.All). Each app gets an identity of its own, made at its
 * first read, that asks for Graph tokens (a mailbox's SMTP token is for Exchange), as the NDR readers'
 * does (runtime/bounces.ts). `config` is read at each read: a mailbox a reload adds, or a secret it
 * changes, is read with the running settings. Nothing is requested before the first read.
 */
export function secretEndDates(config: () => Config, deps: { logger: Logger; env?: NodeJS.ProcessEnv }): SecretEndDates {
  const env = deps.env ?? process.env;
  const identities = new Map<string, Promise<Identity>>();
  let closed = false;
  const identityFor = (mailbox: string, auth: AuthSettings): Promise<Identity> => {
    const key = JSON.stringify([auth.tenant, auth.clientId, auth.clientSecret]);
    let identity = identities.get(key);
    if (!identity) {
      const running = config();
      identity = createIdentity(
        { ...running, auth: { ...auth }, mailboxes: [{ address: mailbox, aliases: [], hve: false, transport: 'graph' as const }] },
        { logger: deps.logger, env },
      );
      // A failed start is not kept: the next read tries again.
      identity.catch(() => identities.delete(key));
      identities.set(key, identity);
    }
    return identity;
  };
  return {
    read: async (mailbox, auth) => {
      if (closed) throw new Error('the secret end date reader is closed');
      if (auth.flow !== 'client-secret' || auth.clientId === undefined || auth.clientSecret === undefined) return undefined;
      const identity = await identityFor(mailbox, auth);
      const sender = identity.provider.mailboxes()[0]!;
      return readSecretEndDate({
        graphHost: identity.cloud.graphHost,
        clientId: auth.clientId,
        secret: await resolveSecret(auth.clientSecret, env),
        token: async () => (await identity.provider.getToken(sender)).accessToken,
        get: async (url, headers) => {
          const res = await identity.networkClient.send<unknown>('GET', url, { headers }, 30_000);
          return { status: res.status, body: res.body };
        },
      });
    },
    close: () => {
      closed = true;
      for (const identity of identities.values()) void identity.then((i) => i.close()).catch(() => undefined);
      identities.clear();
    },
  };
}
