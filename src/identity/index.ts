export { createIdentity, extraCas, type Identity, type IdentityDeps } from './create.js';
export {
  TokenProvider,
  type MailboxToken,
  type MailboxSource,
  type TokenProviderOptions,
  type TokenStatus,
  type TokenRefreshOutcome,
} from './token-provider.js';
export type { TokenSource, AcquiredToken } from './token-source.js';
export { cloudEndpoints, smtpScopes, graphScopes, graphBounceScopes, scopesFor, TRANSPORT_SCOPES, type CloudEndpoints } from './clouds.js';
export { RETRYABLE, failureOf, tokenFailure, type Failure, type FailureKind } from './failure.js';
export { HttpsNetworkClient, trustingContext, type NetworkClientOptions } from './network-client.js';
export { EncryptedFileCacheStore, type TokenCacheStore } from './cache-store.js';
export { loadSecretKey, SECRET_KEY_ENV } from './secret-key.js';
export { decodeClaims, summarizeToken, type TokenSummary } from './claims.js';
export { reviewPermissions, reviewBounceReading, SCOPE_FIX, type PermissionFinding, type PermissionNeeds } from './permissions.js';
export { DelegatedSource, ClientCredentialsSource, type DeviceCodeInfo } from './msal-source.js';
export { CommandSource } from './command-source.js';
export {
  CREDENTIAL_WARN_DAYS,
  CredentialExpiryMonitor,
  credentialExpiry,
  expiryStatus,
  publishCredentialExpiring,
  readCredentialExpiry,
  readSecretEndDate,
  renewalSteps,
  type CredentialExpiry,
  type CredentialKind,
  type CredentialMonitorOptions,
  type ExpiryStatus,
  type MailboxCredential,
} from './credential-expiry.js';
export { secretEndDates, type SecretEndDates } from './secret-end-dates.js';
