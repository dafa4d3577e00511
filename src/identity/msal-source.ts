import { readFile, stat } from 'node:fs/promises';
import { X509Certificate, createHash, createPrivateKey } from 'node:crypto';
import {
  ConfidentialClientApplication,
  LogLevel,
  PublicClientApplication,
  type AccountInfo,
  type AuthenticationResult,
  type Configuration,
  type DeviceCodeRequest,
  type INetworkModule,
} from '@azure/msal-node';
import { resolveSecret, type AuthSettings } from '../config/index.js';
import { Relay365Error } from '../errors.js';
import type { Logger } from '../observe/index.js';
import type { MailboxTransport } from '../config/index.js';
import type { CloudEndpoints } from './clouds.js';
import { scopesFor } from './clouds.js';
import { createCachePlugin } from './cache-plugin.js';
import type { TokenCacheStore } from './cache-store.js';
import { toIdentityError } from './msal-errors.js';
import { CommandSource } from './command-source.js';
import type { AcquiredToken, TokenSource } from './token-source.js';
import { HttpsNetworkClient } from './network-client.js';

/** What the identity platform says to show the person during device code sign-in (URL, code, message). */
export type DeviceCodeInfo = Parameters<DeviceCodeRequest['deviceCodeCallback']>[0];

export interface MsalSourceDeps {
  cloud: CloudEndpoints;
  networkClient: INetworkModule;
  cacheStore: TokenCacheStore;
  logger: Logger;
  env?: NodeJS.ProcessEnv;
}

/** Stable name of an app's MSAL cache: one per cloud, tenant, client id and flow kind. */
export function cacheKey(cloud: CloudEndpoints, auth: AuthSettings): string {
  const appOnly = auth.flow === 'client-secret' || auth.flow === 'client-certificate' || auth.flow === 'federated';
  const id = `${cloud.authorityHost}|${auth.tenant ?? ''}|${auth.clientId ?? ''}|${appOnly ? 'app' : 'user'}`;
  return `msal-${createHash('sha256').update(id).digest('hex').slice(0, 24)}`;
}

function msalConfig(auth: AuthSettings, deps: MsalSourceDeps): Configuration {
  const authority = `${deps.cloud.authorityHost}/${auth.tenant}`;
  // The sandbox is not one of Microsoft's known clouds: MSAL must be told to trust its host. MSAL's
  // default (AAD) protocol mode is kept, so the sandbox is talked to exactly as Microsoft's clouds are.
  const sandbox = deps.cloud.name === 'sandbox';
  return {
    auth: { clientId: auth.clientId!, authority, ...(sandbox ? { knownAuthorities: [new URL(deps.cloud.authorityHost).host] } : {}) },
    cache: { cachePlugin: createCachePlugin(deps.cacheStore, cacheKey(deps.cloud, auth)) },
    system: {
      networkClient: deps.networkClient,
      loggerOptions: {
        piiLoggingEnabled: false,
        logLevel: LogLevel.Warning,
        loggerCallback: (_level, message) => deps.logger.debug({ msal: message }, 'msal'),
      },
    },
  };
}

/**
 * Runs a token request under the cache store's lock of the MSAL cache `cacheName`, when the store has
 * one (a cache shared by several nodes): one node at a time asks the identity platform, and a node
 * that waited first looks at what the one before it stored, since MSAL reads the store before each
 * lookup (cache-plugin.ts). `previous` is the token this source handed out last: a forced refresh is
 * only needed when the cache still holds that one. Without a lock, the request runs as it is.
 */
async function refreshUnderLock(
  store: TokenCacheStore,
  cacheName: string,
  options: { force: boolean; previous: string | undefined },
  request: (force: boolean) => Promise<AcquiredToken>,
): Promise<AcquiredToken> {
  if (store.withLock === undefined) return request(options.force);
  return store.withLock(cacheName, async () => {
    if (options.force) {
      // The cached token is returned when still valid, else MSAL refreshes it: either way one request at most.
      const cached = await request(false);
      if (cached.accessToken !== options.previous) return cached;
    }
    return request(options.force);
  });
}

/**
 * The token endpoint's answers to a credential that is no longer the app's: a wrong (replaced) secret,
 * an expired one, an assertion signed by a certificate the app no longer has (Microsoft Learn, "Microsoft
 * Entra authentication and authorization error codes"). On one of them the secret or key is read again
 * and the request sent once more: an admin may have rotated it in the file or the environment.
 */
const ROTATED_CREDENTIAL_CODES = new Set(['AADSTS7000215', 'AADSTS7000222', 'AADSTS700027']);

/** The files a credential is read from, and their size and change time when last read. */
async function fileStamps(paths: readonly string[]): Promise<string> {
  const parts = await Promise.all(
    paths.map(async (p) => {
      const st = await stat(p).catch(() => undefined);
      return st ? `${p}:${st.size}:${st.mtimeMs}:${st.ino}` : `${p}:missing`;
    }),
  );
  return parts.join('|');
}

/**
 * Decrypts a passphrase-protected PEM key (PKCS#8 `ENCRYPTED PRIVATE KEY`, or PKCS#1 with a DEK-Info
 * header) to the unencrypted PKCS#8 PEM that MSAL signs assertions with; a plain key is returned as is.
 */
function decryptKey(pem: string, passphrase: string | undefined, keyFile: string): string {
  if (passphrase === undefined) return pem;
  try {
    return createPrivateKey({ key: pem, format: 'pem', passphrase }).export({ type: 'pkcs8', format: 'pem' }).toString();
  } catch (cause) {
    throw new Relay365Error(
      'R365_SECRET_UNRESOLVED',
      `Cannot decrypt the certificate key ${keyFile} with auth.certificate.passphrase: wrong passphrase, or not a PEM private key.`,
      { cause },
    );
  }
}

/**
 * Reads the external OIDC token of workload identity federation: `assertionCommand`'s output, else
 * `assertionFile`, else the file `AZURE_FEDERATED_TOKEN_FILE` names (AKS workload identity's
 * convention: Microsoft Learn, "Use Microsoft Entra Workload ID with AKS"). The token is a secret.
 */
export function federatedAssertionReader(auth: AuthSettings, env: NodeJS.ProcessEnv): () => Promise<string> {
  if (auth.assertionCommand !== undefined) {
    const command = new CommandSource(auth.assertionCommand, auth.commandTimeoutMs);
    return async () => (await command.acquire(auth.clientId ?? '')).accessToken;
  }
  const file = auth.assertionFile ?? env.AZURE_FEDERATED_TOKEN_FILE;
  if (file === undefined || file === '') {
    return () =>
      Promise.reject(
        new Relay365Error(
          'R365_SECRET_UNRESOLVED',
          'The federated flow needs the external token: set auth.assertionFile (or AZURE_FEDERATED_TOKEN_FILE, as AKS workload identity does) or auth.assertionCommand.',
        ),
      );
  }
  return async () => {
    try {
      return (await readFile(file, 'utf8')).trim();
    } catch (cause) {
      throw new Relay365Error('R365_SECRET_UNRESOLVED', `Cannot read the federated token file ${file} (${(cause as NodeJS.ErrnoException).code ?? 'error'}).`, {
        cause,
      });
    }
  };
}

/** App-only tokens (client credentials with a secret or a certificate): one token serves every mailbox of the app. */
export class ClientCredentialsSource implements TokenSource {
  readonly appOnly = true;
  private app: Promise<ConfidentialClientApplication> | undefined;
  /** The last token handed out, to tell another node's refresh from the token this node replaces. */
  private lastToken: string | undefined;
  /** The credential files' stamps when the app was built: a changed file is read again before the next request. */
  private stamps: string | undefined;

  constructor(
    private readonly auth: AuthSettings,
    private readonly deps: MsalSourceDeps,
    /** Which resource the tokens are for: Exchange (SMTP) or Graph; an app with both has one source per resource. */
    private readonly transport: MailboxTransport = 'smtp',
  ) {}

  /** The files the credential comes from: a `file:` secret or passphrase, the key and certificate files. */
  private credentialFiles(): string[] {
    const refs = [this.auth.clientSecret, this.auth.certificate?.passphrase].filter((r): r is string => r?.startsWith('file:') === true);
    const files = refs.map((r) => r.slice(5));
    if (this.auth.flow === 'client-certificate' && this.auth.certificate) {
      files.push(this.auth.certificate.keyFile);
      if (this.auth.certificate.certFile) files.push(this.auth.certificate.certFile);
    }
    return files;
  }

  /** An inline secret reads the same every time: only a reference or a key file can have been rotated. */
  private rotatable(): boolean {
    return this.auth.flow === 'client-certificate' || /^(env|file):/.test(this.auth.clientSecret ?? '');
  }

  /**
   * Reads the secret or key again before the next token request (SIGHUP, or a rotation seen at the
   * token endpoint). The token already held stays valid and in use: nothing in flight is affected.
   */
  reloadCredentials(): void {
    this.app = undefined;
  }

  private build(): Promise<ConfidentialClientApplication> {
    this.app ??= (async () => {
      const config = msalConfig(this.auth, this.deps);
      this.stamps = await fileStamps(this.credentialFiles());
      if (this.auth.flow === 'client-secret') {
        config.auth.clientSecret = await resolveSecret(this.auth.clientSecret!, this.deps.env);
      } else if (this.auth.flow === 'federated') {
        // MSAL calls this before each token request it sends (a cached token needs none), so a
        // Kubernetes-rotated token file or a fresh OIDC token from the command is always the one sent.
        const read = federatedAssertionReader(this.auth, this.deps.env ?? process.env);
        config.auth.clientAssertion = () => read();
      } else {
        const cert = this.auth.certificate!;
        const pem = await readFile(cert.keyFile, 'utf8').catch((cause: unknown) => {
          throw new Relay365Error('R365_SECRET_UNRESOLVED', `Cannot read the certificate key ${cert.keyFile}.`, { cause });
        });
        const passphrase = cert.passphrase !== undefined ? await resolveSecret(cert.passphrase, this.deps.env) : undefined;
        const privateKey = decryptKey(pem, passphrase, cert.keyFile);
        let thumbprintSha256 = cert.thumbprint?.length === 64 ? cert.thumbprint : undefined;
        let thumbprint = cert.thumbprint?.length === 40 ? cert.thumbprint : undefined;
        if (cert.certFile) {
          const pem = await readFile(cert.certFile, 'utf8').catch((cause: unknown) => {
            throw new Relay365Error('R365_SECRET_UNRESOLVED', `Cannot read the certificate ${cert.certFile}.`, { cause });
          });
          thumbprintSha256 = createHash('sha256').update(new X509Certificate(pem).raw).digest('hex');
          thumbprint = undefined;
        }
        config.auth.clientCertificate = { privateKey, ...(thumbprintSha256 ? { thumbprintSha256 } : { thumbprint: thumbprint! }) };
      }
      return new ConfidentialClientApplication(config);
    })();
    return this.app;
  }

  async acquire(mailbox: string, options: { force: boolean }): Promise<AcquiredToken> {
    // A secret, key or certificate file replaced since the app was built is read again first.
    if (this.app !== undefined && this.stamps !== undefined && (await fileStamps(this.credentialFiles())) !== this.stamps) this.app = undefined;
    try {
      return await this.request(mailbox, options.force);
    } catch (err) {
      this.app = undefined; // a bad secret file may have been fixed; rebuild next time
      const error = toIdentityError(err, mailbox);
      const code = (error.details as { aadsts?: string } | undefined)?.aadsts;
      if (code === undefined || !ROTATED_CREDENTIAL_CODES.has(code) || !this.rotatable()) throw error;
      // Entra no longer takes the credential held in memory: read it again and ask once more. A
      // cached token cannot be what was refused, so this request skips the cache.
      this.deps.logger.info({ mailbox, aadsts: code }, 'the identity platform refused the app credential; reading it again and retrying once');
      try {
        return await this.request(mailbox, true);
      } catch (retryErr) {
        this.app = undefined;
        throw toIdentityError(retryErr, mailbox);
      }
    }
  }

  private async request(mailbox: string, force: boolean): Promise<AcquiredToken> {
    const app = await this.build();
    const request = async (f: boolean): Promise<AcquiredToken> =>
      toAcquired(await app.acquireTokenByClientCredential({ scopes: scopesFor(this.deps.cloud, true, this.transport), skipCache: f }), mailbox);
    const token = await refreshUnderLock(this.deps.cacheStore, cacheKey(this.deps.cloud, this.auth), { force, previous: this.lastToken }, request);
    this.lastToken = token.accessToken;
    return token;
  }
}

/** Delegated tokens (device code or auth code + PKCE sign-in, then refresh tokens from the cache). */
export class DelegatedSource implements TokenSource {
  readonly appOnly = false;
  private readonly app: PublicClientApplication;
  private readonly scopes: string[];
  private readonly cacheStore: TokenCacheStore;
  private readonly cacheName: string;
  /** The last token handed out per mailbox (lower case), to tell another node's refresh from the token this node replaces. */
  private readonly lastTokens = new Map<string, string>();
  private readonly network: INetworkModule;
  /** Mailboxes (lower case) another user signs in for (`mailboxes[].signInAs`: a shared mailbox and its delegate). */
  private readonly delegates = new Map<string, string>();

  constructor(
    private readonly auth: AuthSettings,
    deps: MsalSourceDeps,
    /** Which resource the tokens (and the sign-in) are for: Exchange (SMTP) or Graph. */
    transport: MailboxTransport = 'smtp',
    /** Other scopes than the transport's sending ones (the NDR reader's Graph Mail.ReadWrite). */
    scopes?: string[],
  ) {
    this.app = new PublicClientApplication(msalConfig(auth, deps));
    this.network = deps.networkClient;
    this.scopes = scopes ?? scopesFor(deps.cloud, false, transport);
    this.cacheStore = deps.cacheStore;
    this.cacheName = cacheKey(deps.cloud, auth);
  }

  /**
   * Says that `user` signs in for `mailbox` (a shared mailbox they have FullAccess on): Exchange takes
   * their token with `user=<mailbox>` in XOAUTH2 (Microsoft Learn, "Authenticate an IMAP, POP or SMTP
   * connection using OAuth": shared mailbox access).
   */
  signInAs(mailbox: string, user: string): void {
    this.delegates.set(mailbox.toLowerCase(), user);
  }

  /** Who signs in for `mailbox`: its delegate, or the mailbox's own user. */
  userFor(mailbox: string): string {
    return this.delegates.get(mailbox.toLowerCase()) ?? mailbox;
  }

  private async account(mailbox: string): Promise<AccountInfo | undefined> {
    const accounts = await this.app.getTokenCache().getAllAccounts();
    const user = this.userFor(mailbox).toLowerCase();
    return accounts.find((a) => a.username.toLowerCase() === user);
  }

  async acquire(mailbox: string, options: { force: boolean }): Promise<AcquiredToken> {
    try {
      const request = async (force: boolean): Promise<AcquiredToken> => {
        const account = await this.account(mailbox);
        if (!account) {
          throw new Relay365Error(
            'R365_LOGIN_REQUIRED',
            `${mailbox} has not signed in yet (delegated ${this.auth.flow}). Fix: run \`relay365 login --mailbox ${mailbox}\`.`,
            {
              details: { mailbox },
            },
          );
        }
        // Under the lock, MSAL uses the refresh token the last node stored (Microsoft may rotate it).
        return toAcquired(await this.app.acquireTokenSilent({ account, scopes: this.scopes, forceRefresh: force }), mailbox);
      };
      const key = mailbox.toLowerCase();
      const token = await refreshUnderLock(this.cacheStore, this.cacheName, { force: options.force, previous: this.lastTokens.get(key) }, request);
      this.lastTokens.set(key, token.accessToken);
      return token;
    } catch (err) {
      throw toIdentityError(err, mailbox);
    }
  }

  /** Device code sign-in: `onCode` shows the URL and code to the person, the promise ends when they finish. */
  async loginWithDeviceCode(mailbox: string, onCode: (info: DeviceCodeInfo) => void): Promise<AccountInfo> {
    let deviceCode: string | undefined;
    try {
      const result = await this.app.acquireTokenByDeviceCode({
        scopes: this.scopes,
        deviceCodeCallback: (info) => {
          deviceCode = info.deviceCode;
          onCode(info);
        },
      });
      return signedInAs(result, mailbox, this.userFor(mailbox));
    } catch (err) {
      // MSAL drops the AADSTS description of a refused poll; the network client kept it.
      const description = deviceCode !== undefined && this.network instanceof HttpsNetworkClient ? this.network.deviceCodeError(deviceCode) : undefined;
      throw toIdentityError(description !== undefined && err instanceof Error ? Object.assign(new Error(description), { cause: err }) : err, mailbox);
    }
  }

  /**
   * Authorization code + PKCE with a loopback redirect (MSAL runs the listener and makes the verifier);
   * `openBrowser` shows the sign-in page to the person.
   */
  async loginWithBrowser(mailbox: string, openBrowser: (url: string) => Promise<void>): Promise<AccountInfo> {
    try {
      const result = await this.app.acquireTokenInteractive({
        scopes: this.scopes,
        loginHint: this.userFor(mailbox),
        openBrowser,
        ...(this.auth.redirectPort ? { preferredPort: this.auth.redirectPort } : {}),
        successTemplate: '<h1>relay365: signed in.</h1><p>You can close this window.</p>',
        errorTemplate: '<h1>relay365: sign-in failed.</h1><p>{{error}}</p>',
      });
      return signedInAs(result, mailbox, this.userFor(mailbox));
    } catch (err) {
      throw toIdentityError(err, mailbox);
    }
  }
}

function toAcquired(result: AuthenticationResult | null, mailbox: string): AcquiredToken {
  if (!result?.accessToken || !result.expiresOn) {
    throw new Relay365Error('R365_TOKEN_ENDPOINT_UNAVAILABLE', `The identity platform answered without an access token for ${mailbox}.`, { retryable: true });
  }
  return { accessToken: result.accessToken, expiresOn: result.expiresOn };
}

function signedInAs(result: AuthenticationResult | null, mailbox: string, user = mailbox): AccountInfo {
  const account = result?.account;
  if (!account) throw new Relay365Error('R365_TOKEN_ENDPOINT_UNAVAILABLE', 'The sign-in finished without an account.', { retryable: true });
  if (account.username.toLowerCase() !== user.toLowerCase()) {
    throw new Relay365Error(
      'R365_TOKEN_REJECTED',
      user.toLowerCase() === mailbox.toLowerCase()
        ? `Signed in as ${account.username}, but the mailbox is ${mailbox}: Exchange takes a delegated token for the user's own mailbox, or for a mailbox the user has FullAccess on when the config says so (mailboxes[].signInAs: ${account.username}). Sign in as ${mailbox}, or set signInAs.`
        : `Signed in as ${account.username}, but ${mailbox} is signed in for by ${user} (mailboxes[].signInAs). Sign in as ${user}.`,
      { details: { mailbox, signedInAs: account.username, expected: user } },
    );
  }
  return account;
}
