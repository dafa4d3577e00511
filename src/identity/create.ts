import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { AuthSettings, Config, MailboxTransport } from '../config/index.js';
import { Relay365Error } from '../errors.js';
import { silentLogger, type Logger } from '../observe/index.js';
import { EncryptedFileCacheStore, type TokenCacheStore } from './cache-store.js';
import { cloudEndpoints, type CloudEndpoints } from './clouds.js';
import { CommandSource } from './command-source.js';
import { ClientCredentialsSource, DelegatedSource, cacheKey, type MsalSourceDeps } from './msal-source.js';
import { ManagedIdentitySource } from './managed-identity-source.js';
import { HttpsNetworkClient } from './network-client.js';
import { loadSecretKey } from './secret-key.js';
import { TokenProvider, type MailboxSource, type TokenProviderOptions } from './token-provider.js';

export interface IdentityDeps {
  logger?: Logger;
  env?: NodeJS.ProcessEnv;
  /** Where MSAL caches live; default: encrypted files under `<dataDir>/tokens`. */
  cacheStore?: TokenCacheStore;
  providerOptions?: TokenProviderOptions;
  /**
   * The scopes of delegated tokens, instead of the transport's sending scopes: the NDR reader asks for
   * Graph's Mail.ReadWrite with the same sign-in (a refresh token is not tied to one resource).
   */
  delegatedScopes?: (cloud: CloudEndpoints) => string[];
}

/** Everything identity built from a config: the token provider and the sources behind it (for `login`). */
export interface Identity {
  cloud: CloudEndpoints;
  provider: TokenProvider;
  /** The merged auth settings of each mailbox (lower-case address). */
  auth: ReadonlyMap<string, AuthSettings>;
  /** The delegated source of a mailbox, for `relay365 login`; undefined for app-only and token-command mailboxes. */
  delegated(mailbox: string): DelegatedSource | undefined;
  /** The network client (extra CA, proxy) for other HTTPS callers such as Graph. */
  networkClient: HttpsNetworkClient;
  /**
   * Builds the sources of a reloaded config's mailboxes and auth (throwing, and changing nothing, when
   * it cannot), and returns what makes them this identity's: the same provider then serves them.
   */
  prepareReload(next: Config): Promise<() => void>;
  /**
   * Reads every app's secret, key and certificate again (`file:` and `env:` references, key and
   * certificate files) before its next token request, for SIGHUP. Held tokens stay in use, so sends
   * in flight are not affected; returns how many app credentials will be read again.
   */
  reloadCredentials(): number;
  close(): void;
}

/** Extra CAs to trust: the sandbox's (only for `cloud: sandbox`) and `network.caFile`. */
export async function extraCas(config: Pick<Config, 'cloud' | 'sandbox' | 'network'>): Promise<string[]> {
  const files = [cloudEndpoints(config).caFile, config.network.caFile].filter((f): f is string => f !== undefined);
  return Promise.all(
    files.map((f) =>
      readFile(f, 'utf8').catch((cause: unknown) => {
        throw new Relay365Error(
          'R365_CONFIG_INVALID',
          `Cannot read the CA file ${f}${config.cloud === 'sandbox' ? ' (is `relay365 sandbox` running with the same --data-dir?)' : ''}.`,
          { cause },
        );
      }),
    ),
  );
}

/**
 * What sets a transport's tokens apart in the source keys: nothing for SMTP (the keys tokens were
 * cached under before other transports existed), `|<name>` for every other transport's resource.
 */
function resourceKey(transport: MailboxTransport): string {
  return transport === 'smtp' ? '' : `|${transport}`;
}

/** Builds the token provider for every configured mailbox; no request is made until a token is asked for. */
export async function createIdentity(config: Config, deps: IdentityDeps = {}): Promise<Identity> {
  const logger = deps.logger ?? silentLogger();
  const env = deps.env ?? process.env;
  const cloud = cloudEndpoints(config);
  const networkClient = new HttpsNetworkClient({
    ca: await extraCas(config),
    ...((config.network.httpsProxy ?? env.HTTPS_PROXY ?? env.https_proxy)
      ? { httpsProxy: config.network.httpsProxy ?? env.HTTPS_PROXY ?? env.https_proxy }
      : {}),
    noProxy: (env.NO_PROXY ?? env.no_proxy ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
    timeoutMs: config.network.timeoutMs,
  });
  const cacheStore =
    deps.cacheStore ??
    new EncryptedFileCacheStore(join(resolve(config.dataDir), 'tokens'), await loadSecretKey(join(resolve(config.dataDir), 'secret.key'), env));
  const msalDeps: MsalSourceDeps = { cloud, networkClient, cacheStore, logger: logger.child({ component: 'identity' }), env };

  // One source per app (and flow), shared by the mailboxes that use it, so one token request serves them all.
  const appSources = new Map<string, ClientCredentialsSource | DelegatedSource>();
  const sources = new Map<string, MailboxSource>();
  const auth = new Map<string, AuthSettings>();
  const delegated = new Map<string, DelegatedSource>();
  for (const mailbox of config.mailboxes) {
    const address = mailbox.address.toLowerCase();
    const settings = { ...config.auth, ...mailbox.auth };
    auth.set(address, settings);
    if (settings.flow === 'managed-identity') {
      // One identity per host (and user-assigned client id) and resource: every mailbox of it shares the token.
      const key = `mi:${settings.managedIdentityClientId ?? 'system'}${resourceKey(mailbox.transport)}`;
      const existing = [...sources.values()].find((s) => s.key === key);
      sources.set(address, existing ?? { source: new ManagedIdentitySource(settings, msalDeps, mailbox.transport), key });
      continue;
    }
    if (settings.flow === 'token-command') {
      sources.set(address, { source: new CommandSource(settings.command!, settings.commandTimeoutMs), key: `cmd:${address}` });
      continue;
    }
    // Hashed: the key must not carry an inline secret around. A token is for one resource (Exchange or
    // Graph), so an app with SMTP and Graph mailboxes has one source, and one token slot, per resource.
    const transport = mailbox.transport;
    const appKey = createHash('sha256')
      .update(
        `${cacheKey(cloud, settings)}|${settings.flow}|${settings.clientSecret ?? ''}|${JSON.stringify(settings.certificate ?? null)}${resourceKey(transport)}`,
      )
      .digest('hex')
      .slice(0, 32);
    let source = appSources.get(appKey);
    if (!source) {
      source =
        settings.flow === 'client-secret' || settings.flow === 'client-certificate' || settings.flow === 'federated'
          ? new ClientCredentialsSource(settings, msalDeps, transport)
          : new DelegatedSource(settings, msalDeps, transport, deps.delegatedScopes?.(cloud));
      appSources.set(appKey, source);
    }
    if (source instanceof DelegatedSource) {
      delegated.set(address, source);
      if (mailbox.signInAs !== undefined) source.signInAs(address, mailbox.signInAs);
    }
    // App-only tokens are the app's, not the mailbox's: every mailbox of the app shares one slot.
    sources.set(address, { source, key: source.appOnly ? appKey : `${appKey}:${address}` });
  }
  const provider = new TokenProvider(sources, { logger: logger.child({ component: 'tokens' }), ...deps.providerOptions });
  const identity: Identity = {
    cloud,
    provider,
    auth,
    delegated: (mailbox) => delegated.get(mailbox.toLowerCase()),
    networkClient,
    async prepareReload(next) {
      // The same cache: a token or sign-in held for an app stays usable after the reload.
      const built = await createIdentity(next, { ...deps, cacheStore });
      return () => {
        provider.adoptSources(built.provider);
        built.provider.close();
        auth.clear();
        for (const [address, settings] of built.auth) auth.set(address, settings);
        identity.delegated = (mailbox) => built.delegated(mailbox);
      };
    },
    reloadCredentials() {
      let n = 0;
      for (const source of provider.tokenSources()) {
        if (source instanceof ClientCredentialsSource) {
          source.reloadCredentials();
          n++;
        }
      }
      return n;
    },
    close: () => provider.close(),
  };
  return identity;
}
