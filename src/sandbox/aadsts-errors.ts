import { randomUUID } from 'node:crypto';

/**
 * The Microsoft identity platform errors the sandbox gives, in one table: the AADSTS code, the OAuth
 * `error` value, the HTTP status and the description text. Codes and texts follow Microsoft's
 * "Microsoft Entra authentication and authorization error codes" reference
 * (MicrosoftDocs/entra-docs `docs/identity-platform/reference-error-codes.md`) and shared/M365.md;
 * descriptions are worded as the token endpoint words them, with the placeholders filled in.
 */

/** Values of `error` that the identity platform uses (RFC 6749 section 5.2, RFC 8628 section 3.5). */
export type OAuthErrorValue =
  | 'invalid_request'
  | 'invalid_client'
  | 'invalid_grant'
  | 'unauthorized_client'
  | 'unsupported_grant_type'
  | 'unsupported_response_type'
  | 'invalid_scope'
  | 'invalid_resource'
  | 'interaction_required'
  | 'authorization_pending'
  | 'expired_token'
  | 'access_denied'
  | 'temporarily_unavailable'
  | 'server_error';

/** Facts a description may name; each error uses the ones it needs. */
export interface AadstsParams {
  tenant?: string;
  clientId?: string;
  appName?: string;
  /** A parameter name, e.g. `grant_type`. */
  parameter?: string;
  scope?: string;
  resource?: string;
  redirectUri?: string;
  /** The redirect URI an authorization code was issued for (code redemption with another one). */
  codeRedirectUri?: string;
  grantType?: string;
  responseType?: string;
  user?: string;
  /** When the grant was issued (ISO). */
  issuedAt?: string;
  /** Extra reason text, e.g. why an assertion failed. */
  detail?: string;
  method?: string;
  /** The user's TokensValidFrom (ISO): grants issued before it are revoked (AADSTS50173). */
  validFrom?: string;
  /** The longest lifetime a policy allows (seconds), e.g. a sign-in frequency (AADSTS70043). */
  maxLifetime?: string;
  /** The app id of the requested resource, and those the app registration lists (AADSTS650057). */
  resourceAppId?: string;
  validResources?: string;
}

interface AadstsEntry {
  error: OAuthErrorValue;
  /** 401 for client authentication failures (RFC 6749 section 5.2), 400 for the rest. */
  status: 400 | 401;
  /** Microsoft adds a `suberror` to some interaction errors, which MSAL reads. */
  suberror?: string;
  describe: (p: Required<AadstsParams>) => string;
}

/** Office 365 Exchange Online's app id, which MFA errors name when no resource is known. */
const RESOURCE_PLACEHOLDER = '00000002-0000-0ff1-ce00-000000000000';

const reason = (p: Required<AadstsParams>): string => (p.detail ? ` [Reason - ${p.detail}]` : '');

/** Every AADSTS error the sandbox can give. Keys are the codes as they appear in `error_description`. */
export const AADSTS_ERRORS = {
  AADSTS90002: {
    error: 'invalid_request',
    status: 400,
    describe: (p) =>
      `Tenant '${p.tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant.`,
  },
  AADSTS700016: {
    error: 'unauthorized_client',
    status: 400,
    describe: (p) =>
      `Application with identifier '${p.clientId}' was not found in the directory '${p.tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.`,
  },
  AADSTS7000215: {
    error: 'invalid_client',
    status: 401,
    describe: (p) =>
      `Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '${p.clientId}'.`,
  },
  AADSTS7000222: {
    error: 'invalid_client',
    status: 401,
    describe: (p) =>
      `The provided client secret keys for app '${p.clientId}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds.`,
  },
  AADSTS7000218: {
    error: 'invalid_client',
    status: 401,
    describe: () => `The request body must contain the following parameter: 'client_assertion' or 'client_secret'.`,
  },
  AADSTS700027: {
    error: 'invalid_client',
    status: 401,
    describe: (p) => `Client assertion failed signature validation.${reason(p)}`,
  },
  // Workload identity federation: an assertion from an external issuer that no federated identity
  // credential of the app trusts. Texts as users pasted Entra's replies: AADSTS700211 and AADSTS700213
  // in https://github.com/Azure/azure-workload-identity/issues/1200 (2024-03-01, 2025-04-22);
  // AADSTS700212 in a Java client's recorded Entra reply of 2024-04-16 (AthenZ AzureAccessTokenProviderTest);
  // all invalid_client. `detail` carries the presented issuer, audience or subject.
  AADSTS700211: {
    error: 'invalid_client',
    status: 401,
    describe: (p) =>
      `No matching federated identity record found for presented assertion issuer '${p.detail}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion. https://docs.microsoft.com/en-us/azure/active-directory/develop/workload-identity-federation`,
  },
  AADSTS700212: {
    error: 'invalid_client',
    status: 401,
    describe: (p) =>
      `No matching federated identity record found for presented assertion audience '${p.detail}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion. https://docs.microsoft.com/en-us/azure/active-directory/develop/workload-identity-federation`,
  },
  AADSTS700213: {
    error: 'invalid_client',
    status: 401,
    describe: (p) =>
      `No matching federated identity record found for presented assertion subject '${p.detail}'. Check your federated identity credential Subject, Audience and Issuer against the presented assertion. https://learn.microsoft.com/entra/workload-id/workload-identity-federation`,
  },
  AADSTS700024: {
    error: 'invalid_client',
    status: 401,
    describe: (p) => `Client assertion is not within its valid time range.${p.detail ? ` ${p.detail}` : ''}`,
  },
  AADSTS70011: {
    error: 'invalid_scope',
    status: 400,
    describe: (p) =>
      p.scope === ''
        ? `The provided request must include a 'scope' input parameter.`
        : `The provided value for the input parameter 'scope' is not valid. The scope ${p.scope} is not valid.${p.detail ? ` ${p.detail}` : ''}`,
  },
  AADSTS700022: {
    error: 'invalid_scope',
    status: 400,
    describe: (p) => `The provided value for the input parameter scope is not valid because it contains more than one resource. Scope ${p.scope} is not valid.`,
  },
  AADSTS500011: {
    error: 'invalid_resource',
    status: 400,
    describe: (p) =>
      `The resource principal named ${p.resource} was not found in the tenant named ${p.tenant}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.`,
  },
  AADSTS65001: {
    error: 'invalid_grant',
    status: 400,
    suberror: 'consent_required',
    describe: (p) =>
      `The user or administrator has not consented to use the application with ID '${p.clientId}' named '${p.appName}'. Send an interactive authorization request for this user and resource.`,
  },
  AADSTS70016: {
    error: 'authorization_pending',
    status: 400,
    describe: () => `OAuth 2.0 device flow error. Authorization is pending. Continue polling.`,
  },
  AADSTS70019: {
    error: 'expired_token',
    status: 400,
    describe: () => `Verification code expired.`,
  },
  AADSTS70018: {
    error: 'invalid_grant',
    status: 400,
    describe: () => `Invalid verification code. The code you entered does not match a pending sign-in request.`,
  },
  AADSTS90120: {
    error: 'invalid_grant',
    status: 400,
    describe: () => `The request was already authorized or declined.`,
  },
  AADSTS50011: {
    error: 'invalid_request',
    status: 400,
    // The same code answers a code redemption whose redirect_uri differs from the authorize request's.
    describe: (p) =>
      p.codeRedirectUri
        ? `The reply address '${p.redirectUri}' does not match the reply address '${p.codeRedirectUri}' provided when requesting Authorization code.`
        : `The redirect URI '${p.redirectUri}' specified in the request does not match the redirect URIs configured for the application '${p.clientId}'. Make sure the redirect URI sent in the request matches one added to your application in the Azure portal. Navigate to https://aka.ms/redirectUriMismatchError to learn more about how to fix this.`,
  },
  AADSTS900971: {
    error: 'invalid_request',
    status: 400,
    describe: () => `No reply address provided.`,
  },
  AADSTS70005: {
    error: 'unsupported_response_type',
    status: 400,
    describe: (p) => `response_type '${p.responseType}' is not supported by this sandbox; use response_type=code.`,
  },
  AADSTS50149: {
    error: 'invalid_request',
    status: 400,
    describe: () => `Invalid code_challenge_method parameter. Use S256 (or plain).`,
  },
  AADSTS501491: {
    error: 'invalid_request',
    status: 400,
    describe: () => `Invalid size of Code_Challenge parameter.`,
  },
  AADSTS70008: {
    error: 'invalid_grant',
    status: 400,
    describe: (p) =>
      `The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.${p.issuedAt ? ` The code was issued on ${p.issuedAt}.` : ''}`,
  },
  AADSTS54005: {
    error: 'invalid_grant',
    status: 400,
    describe: () => `OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.`,
  },
  AADSTS700005: {
    error: 'invalid_grant',
    status: 400,
    describe: () =>
      `Provided Authorization Code is intended to use against other tenant, thus rejected. OAuth2 Authorization Code must be redeemed against same tenant it was acquired for.`,
  },
  AADSTS501481: {
    error: 'invalid_grant',
    status: 400,
    describe: () => `The Code_Verifier does not match the code_challenge supplied in the authorization request.`,
  },
  AADSTS70000: {
    error: 'invalid_grant',
    status: 400,
    describe: (p) => `Provided grant is invalid or malformed.${reason(p)}`,
  },
  // A refresh token issued before the user's TokensValidFrom (password change, Revoke-MgUserSignInSession):
  // the 2021 wording users pasted (https://github.com/microsoft/vscode/issues/135299). Using a refresh
  // token does not revoke it (Microsoft Learn "Refresh tokens in the Microsoft identity platform").
  AADSTS50173: {
    error: 'invalid_grant',
    status: 400,
    describe: (p) =>
      `The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password. The grant was issued on '${p.issuedAt}' and the TokensValidFrom date (before which tokens are not valid) for this user is '${p.validFrom}'.`,
  },
  // The device code's lifetime passed before it was redeemed (https://github.com/Azure/azure-cli/issues/22251);
  // `expired_token` is RFC 8628 section 3.5's error for it.
  AADSTS70020: {
    error: 'expired_token',
    status: 400,
    describe: () => `The provided value for the input parameter 'device_code' is not valid. This device code has expired.`,
  },
  // Client credentials with a scope that is not `{resource}/.default` (https://github.com/microsoftgraph/msgraph-sdk-python/issues/181).
  AADSTS1002012: {
    error: 'invalid_scope',
    status: 400,
    describe: (p) =>
      `The provided value for scope ${p.scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).`,
  },
  // A Conditional Access sign-in frequency older than the refresh token's sign-in: the answer to a
  // refresh is interaction_required (https://github.com/KelvinTegelaar/CIPP/issues/1156, Azure/azure-cli#16209).
  AADSTS70043: {
    error: 'interaction_required',
    status: 400,
    describe: (p) =>
      `The refresh token has expired or is invalid due to sign-in frequency checks by conditional access. The token was issued on ${p.issuedAt} and the maximum allowed lifetime for this request is ${p.maxLifetime}.`,
  },
  // The user's account is disabled (accountEnabled false): a sign-in or a refresh
  // (https://github.com/Azure/azure-cli/issues/18945: HTTP 400, invalid_grant).
  AADSTS50057: {
    error: 'invalid_grant',
    status: 400,
    describe: () => `The user account is disabled.`,
  },
  // The user's password expired: the sign-in asks for a new one (https://github.com/AtlasPublicPolicy/power-bi-embedded/issues/11);
  // MSAL reads the suberror `user_password_expired`.
  AADSTS50055: {
    error: 'invalid_grant',
    status: 400,
    suberror: 'user_password_expired',
    describe: () => `Password is expired.`,
  },
  // The app's service principal is disabled in the tenant: an unauthorized_client answer
  // (https://github.com/Worklytics/psoxy/pull/74; wording from https://github.com/EvanBasalik/OOFSponder/issues/42).
  AADSTS7000112: {
    error: 'unauthorized_client',
    status: 400,
    describe: (p) => `Application '${p.clientId}'(${p.appName}) is disabled.`,
  },
  // A delegated sign-in for a resource the app registration lists no permission of
  // (https://github.com/microsoft/azure-devops-auth-samples/issues/90: invalid_client; https://github.com/Azure-Samples/IoTDemos/issues/40).
  AADSTS650057: {
    error: 'invalid_client',
    status: 401,
    describe: (p) =>
      `Invalid resource. The client has requested access to a resource which is not listed in the requested permissions in the client's application registration. Client app ID: ${p.clientId}(${p.appName}). Resource value from request: ${p.resource}. Resource app ID: ${p.resourceAppId}. List of valid resources from app registration: ${p.validResources}.`,
  },
  // A public client (no credentials, public client flows allowed) sent a secret or an assertion
  // (https://github.com/O365/python-o365/issues/469: invalid_client).
  AADSTS700025: {
    error: 'invalid_client',
    status: 401,
    describe: () => `Client is public so neither 'client_assertion' nor 'client_secret' should be presented.`,
  },
  // Security Defaults block the sign-in (Microsoft Learn "Microsoft Entra authentication and authorization
  // error codes", https://learn.microsoft.com/entra/identity-platform/reference-error-codes: BlockedBySecurityDefaults).
  AADSTS530035: {
    error: 'invalid_grant',
    status: 400,
    suberror: 'message_only',
    describe: () => `Access has been blocked by security defaults. This is due to the request using legacy auth or being deemed unsafe by security defaults policies.`,
  },
  AADSTS700082: {
    error: 'invalid_grant',
    status: 400,
    describe: (p) => `The refresh token has expired due to inactivity. The token was issued on ${p.issuedAt} and was inactive for longer than its lifetime.`,
  },
  AADSTS900144: {
    error: 'invalid_request',
    status: 400,
    describe: (p) => `The request body must contain the following parameter: '${p.parameter}'.`,
  },
  AADSTS9002313: {
    error: 'invalid_request',
    status: 400,
    describe: (p) => `Invalid request. Request is malformed or invalid.${reason(p)}`,
  },
  AADSTS70003: {
    error: 'unsupported_grant_type',
    status: 400,
    describe: (p) => `The app requested an unsupported grant type '${p.grantType}'.`,
  },
  AADSTS9001023: {
    error: 'invalid_request',
    status: 400,
    describe: () => `The grant type isn't supported over the /common or /consumers endpoints. Please use the /organizations or tenant-specific endpoint.`,
  },
  AADSTS900561: {
    error: 'invalid_request',
    status: 400,
    describe: (p) => `The endpoint only accepts POST, OPTIONS requests. Received a ${p.method} request.`,
  },
  AADSTS50034: {
    error: 'invalid_grant',
    status: 400,
    describe: (p) =>
      `The user account ${p.user} does not exist in the ${p.tenant} directory. To sign into this application, the account must be added to the directory.`,
  },
  AADSTS50126: {
    error: 'invalid_grant',
    status: 400,
    describe: () => `Error validating credentials due to invalid username or password.`,
  },
  AADSTS50076: {
    error: 'invalid_grant',
    status: 400,
    suberror: 'basic_action',
    describe: (p) =>
      `Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '${p.resource || RESOURCE_PLACEHOLDER}'.`,
  },
  AADSTS50079: {
    error: 'interaction_required',
    status: 400,
    describe: (p) =>
      `Due to a configuration change made by your administrator, or because you moved to a new location, you must enroll in multi-factor authentication to access '${p.resource || RESOURCE_PLACEHOLDER}'.`,
  },
  AADSTS53003: {
    error: 'invalid_grant',
    status: 400,
    suberror: 'message_only',
    describe: () => `Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.`,
  },
} as const satisfies Record<string, AadstsEntry>;

const EMPTY_PARAMS: Required<AadstsParams> = {
  tenant: '',
  clientId: '',
  appName: '',
  parameter: '',
  scope: '',
  resource: '',
  redirectUri: '',
  codeRedirectUri: '',
  grantType: '',
  responseType: '',
  user: '',
  issuedAt: '',
  detail: '',
  method: '',
  validFrom: '',
  maxLifetime: '',
  resourceAppId: '',
  validResources: '',
};

/** The description of a known code; a fact the caller did not give reads as empty, never as "undefined". */
function describe(code: AadstsCode, params: AadstsParams): string {
  const filled: Required<AadstsParams> = { ...EMPTY_PARAMS };
  for (const [key, value] of Object.entries(params) as Array<[keyof AadstsParams, string | undefined]>) if (value !== undefined) filled[key] = value;
  return AADSTS_ERRORS[code].describe(filled);
}

/** An AADSTS code the sandbox knows. */
export type AadstsCode = keyof typeof AADSTS_ERRORS;

/** True when `code` is in {@link AADSTS_ERRORS}. */
export function isKnownAadsts(code: string): code is AadstsCode {
  return Object.hasOwn(AADSTS_ERRORS, code);
}

/** The JSON error body of the token, devicecode and authorize endpoints, as Microsoft shapes it. */
export interface AadstsErrorBody {
  error: OAuthErrorValue;
  error_description: string;
  error_codes: number[];
  timestamp: string;
  trace_id: string;
  correlation_id: string;
  error_uri: string;
  suberror?: string;
}

/**
 * A failed identity platform request: route handlers throw it, the plugin's error handler renders it.
 * `code` may be a code outside the table (a scenario fault), which renders as a generic `invalid_request`.
 */
export class AadstsError extends Error {
  constructor(
    readonly code: string,
    readonly params: AadstsParams = {},
  ) {
    super(code);
    this.name = 'AadstsError';
  }

  get status(): 400 | 401 {
    return isKnownAadsts(this.code) ? AADSTS_ERRORS[this.code].status : 400;
  }
}

/** `2021-07-19T14:01:41.1468970Z`: how descriptions name when a grant was issued (seven fraction digits). */
export function aadIssuedAt(date: Date): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, (_m, ms: string) => `.${ms}0000Z`);
}

/** `2024-01-09 02:02:12Z`, the identity platform's timestamp format. */
export function aadTimestamp(date = new Date()): string {
  return date
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, 'Z');
}

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Builds the error body for `code`. The correlation id echoes the client's `client-request-id`
 * header when it is a GUID, as the identity platform does; MSAL sends one with every request.
 */
export function aadstsErrorBody(
  code: string,
  params: AadstsParams = {},
  clientRequestId?: string,
  now = new Date(),
): { status: 400 | 401; body: AadstsErrorBody } {
  const entry: AadstsEntry | undefined = isKnownAadsts(code) ? AADSTS_ERRORS[code] : undefined;
  const number = Number(code.replace(/^AADSTS/, ''));
  const traceId = randomUUID();
  const correlationId = clientRequestId && GUID.test(clientRequestId) ? clientRequestId.toLowerCase() : randomUUID();
  const timestamp = aadTimestamp(now);
  const text = isKnownAadsts(code) ? describe(code, params) : `Sandbox fault ${code}: the scenario asked the identity platform to fail this request.`;
  const body: AadstsErrorBody = {
    error: entry?.error ?? 'invalid_request',
    error_description: `${code}: ${text}\r\nTrace ID: ${traceId}\r\nCorrelation ID: ${correlationId}\r\nTimestamp: ${timestamp}`,
    error_codes: [number],
    timestamp,
    trace_id: traceId,
    correlation_id: correlationId,
    error_uri: `https://login.microsoftonline.com/error?code=${number}`,
  };
  if (entry?.suberror) body.suberror = entry.suberror;
  return { status: entry?.status ?? 400, body };
}

/** `AADSTS50126: Error validating credentials ...`: the code and its text, for pages shown to a person. */
export function aadstsMessage(code: string, params: AadstsParams = {}): string {
  return isKnownAadsts(code) ? `${code}: ${describe(code, params)}` : code;
}
