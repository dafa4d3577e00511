import { resolveSecret, type AuthSettings, type Config } from '../config/index.js';
import { createIdentity, readSecretEndDate, type Identity } from '../identity/index.js';
import type { Logger } from '../observe/index.js';

/**
 * The end dates of the client secrets of the mailboxes with `auth.secretExpiresFromGraph`, read from
 * their app registrations through Microsoft Graph (`passwordCredentials`, Application.Read.All). Their
 * own identity asks for Graph tokens (an SMTP mailbox's token is for Exchange), as the NDR readers'
 * does (runtime/bounces.ts). Undefined when no mailbox asks for it: no Graph token is ever requested.
 */
export async function secretEndDateReader(
  config: Config,
  deps: { logger: Logger; env?: NodeJS.ProcessEnv },
): Promise<{ read: (mailbox: string, auth: AuthSettings) => Promise<Date | undefined>; close: () => void } | undefined> {
  const asking = config.mailboxes.filter((m) => {
    const auth = { ...config.auth, ...m.auth };
    return auth.flow === 'client-secret' && auth.secretExpiresFromGraph === true;
  });
  if (asking.length === 0) return undefined;
  const env = deps.env ?? process.env;
  const identity: Identity = await createIdentity(
    { ...config, mailboxes: asking.map((m) => ({ ...m, transport: 'graph' as const })) },
    { logger: deps.logger, env },
  );
  return {
    read: async (mailbox, auth) => {
      if (auth.clientId === undefined || auth.clientSecret === undefined) return undefined;
      return readSecretEndDate({
        graphHost: identity.cloud.graphHost,
        clientId: auth.clientId,
        secret: await resolveSecret(auth.clientSecret, env),
        token: async () => (await identity.provider.getToken(mailbox)).accessToken,
        get: async (url, headers) => {
          const res = await identity.networkClient.send<unknown>('GET', url, { headers }, 30_000);
          return { status: res.status, body: res.body };
        },
      });
    },
    close: () => identity.close(),
  };
}
