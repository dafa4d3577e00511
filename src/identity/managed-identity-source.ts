import { LogLevel, ManagedIdentityApplication, type INetworkModule } from '@azure/msal-node';
import type { AuthSettings, MailboxTransport } from '../config/index.js';
import type { Logger } from '../observe/index.js';
import { scopesFor, type CloudEndpoints } from './clouds.js';
import { toIdentityError } from './msal-errors.js';
import { Relay365Error } from '../errors.js';
import type { AcquiredToken, TokenSource } from './token-source.js';

/**
 * App-only tokens for the Azure host's managed identity (system-assigned, or user-assigned by
 * `auth.managedIdentityClientId`), through MSAL Node's ManagedIdentityApplication: MSAL finds the
 * source (App Service / Functions from IDENTITY_ENDPOINT and IDENTITY_HEADER, Azure Arc, Service
 * Fabric, Cloud Shell, else the VM's IMDS) from the environment, as Microsoft Learn "Managed identity
 * with MSAL Node" describes. No secret, certificate or app registration of relay365's own.
 */
export class ManagedIdentitySource implements TokenSource {
  readonly appOnly = true;
  private readonly app: ManagedIdentityApplication;
  private readonly resource: string;

  constructor(auth: AuthSettings, deps: { cloud: CloudEndpoints; networkClient: INetworkModule; logger: Logger }, transport: MailboxTransport = 'smtp') {
    this.app = new ManagedIdentityApplication({
      ...(auth.managedIdentityClientId ? { managedIdentityIdParams: { userAssignedClientId: auth.managedIdentityClientId } } : {}),
      system: {
        networkClient: deps.networkClient,
        loggerOptions: { piiLoggingEnabled: false, logLevel: LogLevel.Warning, loggerCallback: (_l, message) => deps.logger.debug({ msal: message }, 'msal') },
      },
    });
    // Managed identity endpoints take a resource, not a scope: https://outlook.office365.com/.default -> https://outlook.office365.com.
    this.resource = scopesFor(deps.cloud, true, transport)[0]!.replace(/\/\.default$/, '');
  }

  async acquire(mailbox: string, options: { force: boolean }): Promise<AcquiredToken> {
    try {
      const result = await this.app.acquireToken({ resource: this.resource, forceRefresh: options.force });
      if (!result.accessToken || !result.expiresOn) {
        throw new Relay365Error('R365_TOKEN_ENDPOINT_UNAVAILABLE', `The managed identity endpoint answered without an access token for ${mailbox}.`, { retryable: true });
      }
      return { accessToken: result.accessToken, expiresOn: result.expiresOn };
    } catch (err) {
      throw toIdentityError(err, mailbox);
    }
  }
}
