import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyPluginCallback, FastifyReply, FastifyRequest } from 'fastify';
import { AadstsError, aadstsErrorBody, aadstsMessage, aadTimestamp, type AadstsParams } from './aadsts-errors.js';
import { isFederatedAssertion, verifyFederatedAssertion } from './federated.js';
import { verifyClientAssertion } from './client-assertion.js';
import { IdentityGrants, type AuthCodeGrant, type RefreshTokenGrant } from './identity-grants.js';
import { deviceLoginDonePage, deviceLoginPage, errorPage, formPostPage, signInPage } from './identity-pages.js';
import { checkDelegatedToken, checkInteractiveSignIn, checkNotRevoked, mfaDone, signInPolicy } from './identity-policy.js';
import { OIDC_SCOPES, grantablePermissions, grantedScopeString, parseAppOnlyScope, parseDelegatedScope, type ResourceRef } from './identity-scopes.js';
import { RESOURCES, type App, type ResourceName, type Tenant, type User } from './scenario.js';
import type { SandboxState } from './state.js';
import type { TokenIssuer } from './tokens.js';

export interface IdentityRoutesOptions {
  state: SandboxState;
  issuer: TokenIssuer;
  /** `https://localhost:PORT`, known once the server listens. */
  baseUrl: () => string;
}

/** RFC 8628 section 3.4. */
const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
/** The short name Entra also accepts for the device code grant, and the one MSAL sends. */
const DEVICE_CODE_GRANT_SHORT = 'device_code';
const GRANT_TYPES = new Set(['client_credentials', 'authorization_code', 'refresh_token', DEVICE_CODE_GRANT, DEVICE_CODE_GRANT_SHORT]);

/** Tenant-independent authority segments; `consumers` (personal accounts) has no place in the sandbox. */
const MULTI_TENANT = new Set(['common', 'organizations']);

/** Token and sign-in requests are small forms; 1 MB leaves room for long assertions and refresh tokens. */
const FORM_BODY_LIMIT = 1024 * 1024;

const TOKEN_ROUTE = '/:tenant/oauth2/v2.0/token';

/** Token responses must not be cached (RFC 6749 section 5.1). */
const NO_STORE = { 'cache-control': 'no-store, no-cache', pragma: 'no-cache' } as const;

/** How the client authenticated, as the access token's `appidacr` says: public, secret, certificate. */
type ClientAuth = '0' | '1' | '2';

/** The answer to a client credentials request (no refresh token, no id token: there is no user). */
interface AppTokenResponse {
  token_type: 'Bearer';
  expires_in: number;
  ext_expires_in: number;
  access_token: string;
}

/** The answer to a delegated request; MSAL builds its account from `id_token` and `client_info`. */
interface DelegatedTokenResponse extends AppTokenResponse {
  scope: string;
  refresh_token?: string;
  id_token?: string;
  client_info: string;
}

type AuthorizeOutcome = { redirect: string } | { status: number; html: string };

function field(form: URLSearchParams, name: string): string | undefined {
  const value = form.get(name);
  return value === null || value === '' ? undefined : value;
}

/** The request's form fields; any other content type reads as an empty form, as the identity platform treats it. */
function readForm(request: FastifyRequest): URLSearchParams {
  const type = (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded' || typeof request.body !== 'string') return new URLSearchParams();
  return new URLSearchParams(request.body);
}

/** Query parameters as a form, so the authorize endpoint reads GET and POST alike. */
function queryForm(request: FastifyRequest): URLSearchParams {
  const query = (request.query ?? {}) as Record<string, string | string[] | undefined>;
  const form = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    const first = Array.isArray(value) ? value[0] : value;
    if (first !== undefined) form.set(name, first);
  }
  return form;
}

/** `Authorization: Basic` client credentials; RFC 6749 section 2.3.1 form-encodes both parts first. */
function basicCredentials(header: string | undefined): { clientId: string; secret: string } | undefined {
  const match = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? '');
  if (!match) return undefined;
  const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  const unescape = (s: string): string => decodeURIComponent(s.replace(/\+/g, ' '));
  try {
    return { clientId: unescape(decoded.slice(0, colon)), secret: unescape(decoded.slice(colon + 1)) };
  } catch {
    return undefined;
  }
}

/** Compares secrets in constant time (hashing first makes the lengths equal). */
function sameSecret(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

function sameId(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}

/** RFC 7636 section 4.6. */
function pkceMatches(verifier: string, challenge: string, method: 'S256' | 'plain'): boolean {
  const computed = method === 'S256' ? createHash('sha256').update(verifier).digest('base64url') : verifier;
  return sameSecret(computed, challenge);
}

function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '127.0.0.1' || hostname === '[::1]';
}

/**
 * Whether `uri` is one of the app's redirect URIs. An `http` loopback entry matches any port on
 * `localhost` or `127.0.0.1` with the same path, as Entra allows for native apps (RFC 8252 section 7.3).
 */
function redirectUriAllowed(app: App, uri: string): boolean {
  let requested: URL;
  try {
    requested = new URL(uri);
  } catch {
    return false;
  }
  return app.redirectUris.some((registered) => {
    if (registered === uri) return true;
    const entry = new URL(registered);
    return (
      entry.protocol === 'http:' &&
      requested.protocol === 'http:' &&
      isLoopback(entry.hostname) &&
      isLoopback(requested.hostname) &&
      entry.pathname === requested.pathname &&
      entry.search === requested.search
    );
  });
}

function clientRequestId(request: FastifyRequest): string | undefined {
  const value = request.headers['client-request-id'];
  return Array.isArray(value) ? value[0] : value;
}

/**
 * The Microsoft identity platform of the sandbox: OpenID Connect discovery, signing keys, the token
 * endpoint (client credentials with a secret or a certificate, device code, authorization code with
 * PKCE, refresh token with rotation), the device code and authorize endpoints, and the pages a person
 * uses to approve a device or sign in. Errors are Microsoft's AADSTS errors (see `aadsts-errors.ts`).
 */
export const identityRoutes: FastifyPluginCallback<IdentityRoutesOptions> = (app, opts, done) => {
  const { state, issuer, baseUrl } = opts;
  const grants = new IdentityGrants();

  // The identity platform reads forms only; a JSON or other body reads as an empty form and gets the
  // missing-parameter answer Microsoft gives, instead of a parser error. Parsers are scoped to this plugin.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string', bodyLimit: FORM_BODY_LIMIT }, (_request, body, parsed) => parsed(null, body));

  app.setErrorHandler((error, request, reply) => {
    const isTokenRequest = request.method === 'POST' && request.routeOptions.url === TOKEN_ROUTE;
    if (error instanceof AadstsError) {
      if (isTokenRequest) state.recordTokenError(error.code);
      const { status, body } = aadstsErrorBody(error.code, error.params, clientRequestId(request));
      return reply.code(status).headers(NO_STORE).send(body);
    }
    const statusCode = (error as { statusCode?: unknown }).statusCode;
    if (typeof statusCode === 'number' && statusCode >= 400 && statusCode < 500) {
      // Fastify's own rejections (body too large, bad content length): a malformed request to Microsoft.
      if (isTokenRequest) state.recordTokenError('AADSTS9002313');
      const { status, body } = aadstsErrorBody('AADSTS9002313', {}, clientRequestId(request));
      return reply.code(status).headers(NO_STORE).send(body);
    }
    request.log.error({ err: error, url: request.routeOptions.url }, 'identity platform request failed');
    if (isTokenRequest) state.recordTokenError('500');
    return reply.code(500).send({ error: 'server_error', error_description: 'The sandbox identity platform failed; see its log.' });
  });

  // ---- tenants and clients ----

  /** The tenant an authority segment names; `/common` and `/organizations` resolve to the app's home tenant. */
  function resolveTenant(segment: string, clientId: string | undefined): Tenant {
    if (MULTI_TENANT.has(segment.toLowerCase())) {
      if (!clientId) throw new AadstsError('AADSTS900144', { parameter: 'client_id' });
      const home = state.scenario.tenants.find((t) => state.findApp(t, clientId));
      if (!home) throw new AadstsError('AADSTS700016', { clientId, tenant: segment });
      return home;
    }
    const tenant = state.findTenant(segment);
    if (!tenant) throw new AadstsError('AADSTS90002', { tenant: segment });
    return tenant;
  }

  /** A disabled service principal gets no tokens and no sign-ins: AADSTS7000112. */
  function requireEnabled(app: App): void {
    if (!app.enabled) throw new AadstsError('AADSTS7000112', { clientId: app.clientId, appName: app.name });
  }

  function findApp(tenant: Tenant, segment: string, clientId: string | undefined): App {
    if (!clientId) throw new AadstsError('AADSTS900144', { parameter: 'client_id' });
    const found = state.findApp(tenant, clientId);
    if (!found) throw new AadstsError('AADSTS700016', { clientId, tenant: segment });
    return found;
  }

  /** URLs a client assertion's `aud` may name: this tenant's token endpoint, by id or domain, v2.0 or v1. */
  function tokenEndpointAudiences(segment: string, tenant: Tenant): string[] {
    const bases = [baseUrl(), baseUrl().replace('//localhost:', '//127.0.0.1:')];
    const segments = [...new Set([tenant.id, tenant.domain, segment])];
    return [
      `${baseUrl()}/${tenant.id}/oauth2/v2.0/token`,
      ...bases.flatMap((base) => segments.flatMap((s) => [`${base}/${s}/oauth2/v2.0/token`, `${base}/${s}/oauth2/token`])),
      `${baseUrl()}/${tenant.id}/v2.0`,
    ];
  }

  /**
   * Authenticates a confidential client by `client_assertion` or `client_secret` (form or HTTP Basic).
   * A public client may send neither; a confidential one must send one (AADSTS7000218).
   */
  async function authenticateClient(
    ctx: { segment: string; tenant: Tenant; app: App; form: URLSearchParams; basicSecret?: string },
    required: boolean,
  ): Promise<ClientAuth> {
    const { app, form } = ctx;
    const assertion = field(form, 'client_assertion');
    // A public client (public client flows allowed, no secret or certificate registered) must not
    // authenticate: Entra answers a secret or an assertion with AADSTS700025 (https://github.com/O365/python-o365/issues/469).
    const presented = assertion !== undefined || field(form, 'client_secret') !== undefined || ctx.basicSecret !== undefined;
    if (presented && app.publicClient && app.secrets.length === 0 && app.certificates.length === 0) throw new AadstsError('AADSTS700025');
    if (assertion !== undefined && isFederatedAssertion(assertion, app)) {
      await verifyFederatedAssertion({ assertion, assertionType: field(form, 'client_assertion_type'), app });
      return '2';
    }
    if (assertion !== undefined) {
      await verifyClientAssertion({
        assertion,
        assertionType: field(form, 'client_assertion_type'),
        app,
        audiences: tokenEndpointAudiences(ctx.segment, ctx.tenant),
      });
      return '2';
    }
    const secret = field(form, 'client_secret') ?? ctx.basicSecret;
    if (secret !== undefined) {
      // A secret's id pasted instead of its value matches nothing: AADSTS7000215, as Entra answers.
      const match = app.secrets.find((s) => sameSecret(secret, s.value));
      if (!match) throw new AadstsError('AADSTS7000215', { clientId: app.clientId });
      if (match.expiresAt !== undefined && Date.parse(match.expiresAt) <= Date.now()) throw new AadstsError('AADSTS7000222', { clientId: app.clientId });
      return '1';
    }
    if (required) throw new AadstsError('AADSTS7000218');
    return '0';
  }

  /**
   * Signs a person in by UPN or alias: the password must match, or be empty for an `autoApprove` user;
   * then the account checks (disabled, password expired) and, when a policy requires it, MFA: a person
   * without the code is shown AADSTS50076; an unattended approval without MFA is let through and its
   * token request answered AADSTS50076 at the token endpoint.
   */
  function signInUser(tenant: Tenant, username: string | undefined, password: string | undefined, otp: string | undefined): { user: User; mfa: boolean } {
    const found = username ? state.findUser(username) : undefined;
    if (!found || found.tenant.id !== tenant.id) throw new AadstsError('AADSTS50034', { user: username ?? '(none)', tenant: tenant.domain });
    const { user } = found;
    const passwordOk = password !== undefined ? user.password !== undefined && sameSecret(password, user.password) : user.autoApprove;
    if (!passwordOk) throw new AadstsError('AADSTS50126');
    checkInteractiveSignIn(user);
    const unattended = password === undefined;
    const mfa = mfaDone(user, otp, unattended);
    if (!unattended && !mfa && signInPolicy(tenant, user).requireMfa) throw new AadstsError('AADSTS50076');
    return { user, mfa };
  }

  /**
   * AADSTS650057 when a delegated request names a resource the app registration lists no permission of
   * (interactive and device code sign-ins users pasted it from: microsoft/azure-devops-auth-samples#90,
   * Azure-Samples/IoTDemos#40).
   */
  function requireListedResource(app: App, resource: ResourceRef): void {
    const listed = (name: ResourceName): boolean => app.roles[name].length > 0 || app.delegatedScopes[name].length > 0;
    if (listed(resource.name)) return;
    const valid = (Object.keys(RESOURCES) as ResourceName[]).filter(listed).map((n) => RESOURCES[n].appId);
    throw new AadstsError('AADSTS650057', {
      clientId: app.clientId,
      appName: app.name,
      resource: resource.audience,
      resourceAppId: RESOURCES[resource.name].appId,
      validResources: valid.join(', '),
    });
  }

  // ---- tokens ----

  async function issueAppOnly(tenant: Tenant, app: App, scope: string | undefined, clientAuth: ClientAuth): Promise<AppTokenResponse> {
    const resource = parseAppOnlyScope(scope, tenant.domain);
    // Client credentials for a resource the app has no application permission on still get a token, only
    // without roles (what admins meet when an app has Graph Mail.Send but not SMTP.SendAsApp); AADSTS650057
    // answers delegated sign-ins (issueDelegated).
    // Without admin consent Entra still issues the token, only without roles.
    const roles = app.adminConsent ? [...app.roles[resource.name]] : [];
    const lifetimeSeconds = state.scenario.token.lifetimeSeconds;
    const { token } = await issuer.accessToken({ tenant, app, audience: resource.audience, lifetimeSeconds, roles, clientAuth });
    return { token_type: 'Bearer', expires_in: lifetimeSeconds, ext_expires_in: lifetimeSeconds, access_token: token };
  }

  /**
   * Issues a delegated token for a signed-in user: the scope must name permissions the app
   * registration lists, with admin consent or the user's own (else AADSTS65001). A refresh token
   * comes only with `offline_access`, an id token only with `openid`.
   */
  async function issueDelegated(input: {
    tenant: Tenant;
    app: App;
    userId: string;
    scope: string | undefined;
    clientAuth: ClientAuth;
    nonce?: string;
    /** The sign-in behind the request: whether it did MFA, when it happened, and whether this is a refresh. */
    sign: { mfa: boolean; authTime: number; refresh: boolean };
  }): Promise<DelegatedTokenResponse> {
    const { tenant, app } = input;
    const user = tenant.users.find((u) => sameId(u.id, input.userId));
    if (!user) throw new AadstsError('AADSTS50034', { user: input.userId, tenant: tenant.domain });
    const request = parseDelegatedScope(input.scope, tenant.domain);
    // Conditional Access and Security Defaults act here, at the token endpoint, for an OAuth sign-in,
    // not at SMTP time (see identity-policy.ts). App-only tokens are not subject to them.
    checkDelegatedToken(tenant, user, { ...input.sign, resourceAppId: RESOURCES[request.resource.name].appId });
    if (request.permissions.length > 0) requireListedResource(app, request.resource);
    const permissions = grantablePermissions(app, request);
    const consented = app.adminConsent || user.consentedApps.some((id) => sameId(id, app.clientId));
    if (!permissions || !consented) throw new AadstsError('AADSTS65001', { clientId: app.clientId, appName: app.name });
    const lifetimeSeconds = state.scenario.token.lifetimeSeconds;
    // A request with OpenID Connect scopes only gets a Graph token carrying them, as Entra does.
    const scp = permissions.length > 0 ? permissions : OIDC_SCOPES.filter((s) => s !== 'offline_access' && request.oidc.has(s));
    const { token } = await issuer.accessToken({
      tenant,
      app,
      user,
      audience: request.resource.audience,
      lifetimeSeconds,
      scopes: scp,
      clientAuth: input.clientAuth,
    });
    const body: DelegatedTokenResponse = {
      token_type: 'Bearer',
      scope: grantedScopeString(request, permissions),
      expires_in: lifetimeSeconds,
      ext_expires_in: lifetimeSeconds,
      access_token: token,
      client_info: Buffer.from(JSON.stringify({ uid: user.id, utid: tenant.id })).toString('base64url'),
    };
    if (request.oidc.has('offline_access')) {
      const refresh = grants.createRefreshToken(
        { tenantId: tenant.id, clientId: app.clientId, userId: user.id, scope: input.scope ?? '', authTime: input.sign.authTime, mfa: input.sign.mfa },
        state.scenario.token.refreshTokenLifetimeSeconds,
      );
      body.refresh_token = refresh.token;
    }
    if (request.oidc.has('openid')) {
      body.id_token = await issuer.idToken({ tenant, app, user, issuer: `${baseUrl()}/${tenant.id}/v2.0`, ...(input.nonce ? { nonce: input.nonce } : {}) });
    }
    return body;
  }

  async function tokenRequest(
    segment: string,
    form: URLSearchParams,
    basic: { clientId: string; secret: string } | undefined,
  ): Promise<AppTokenResponse | DelegatedTokenResponse> {
    const grantType = field(form, 'grant_type');
    const clientId = field(form, 'client_id') ?? basic?.clientId;
    const tenant = resolveTenant(segment, clientId);
    if (grantType === undefined) throw new AadstsError('AADSTS900144', { parameter: 'grant_type' });
    if (!GRANT_TYPES.has(grantType)) throw new AadstsError('AADSTS70003', { grantType });
    if (grantType === 'client_credentials' && MULTI_TENANT.has(segment.toLowerCase())) throw new AadstsError('AADSTS9001023');
    const app = findApp(tenant, segment, clientId);
    requireEnabled(app);
    const ctx = { segment, tenant, app, form, ...(basic ? { basicSecret: basic.secret } : {}) };
    const now = Date.now();
    /**
     * The tokens an authorization code or a refresh token grants: to its user, for the scope the request
     * names (none: the grant's), with the grant's sign-in (whether it did MFA).
     */
    const redeem = (grant: AuthCodeGrant | RefreshTokenGrant, clientAuth: ClientAuth, sign: { authTime: number; refresh: boolean }, nonce?: string) =>
      issueDelegated({
        tenant,
        app,
        userId: grant.userId,
        scope: field(form, 'scope') ?? grant.scope,
        clientAuth,
        ...(nonce ? { nonce } : {}),
        sign: { mfa: grant.mfa, ...sign },
      });

    switch (grantType) {
      case 'client_credentials': {
        const clientAuth = await authenticateClient(ctx, true);
        return issueAppOnly(tenant, app, field(form, 'scope'), clientAuth);
      }

      case DEVICE_CODE_GRANT:
      case DEVICE_CODE_GRANT_SHORT: {
        const clientAuth = await authenticateClient(ctx, !app.publicClient);
        const deviceCode = field(form, 'device_code');
        if (deviceCode === undefined) throw new AadstsError('AADSTS900144', { parameter: 'device_code' });
        const grant = grants.deviceCode(deviceCode);
        if (!grant || !sameId(grant.clientId, app.clientId) || grant.tenantId !== tenant.id) {
          throw new AadstsError('AADSTS70000', { detail: 'The device code is unknown or was issued to another client or tenant.' });
        }
        if (grant.redeemed) throw new AadstsError('AADSTS70000', { detail: 'The device code was already redeemed.' });
        if (now >= grant.expiresAt) throw new AadstsError('AADSTS70020');
        if (grant.userId === undefined) throw new AadstsError('AADSTS70016');
        const body = await issueDelegated({
          tenant,
          app,
          userId: grant.userId,
          scope: grant.scope,
          clientAuth,
          sign: { mfa: grant.mfa ?? false, authTime: now, refresh: false },
        });
        grant.redeemed = true;
        return body;
      }

      case 'authorization_code': {
        const clientAuth = await authenticateClient(ctx, !app.publicClient);
        const code = field(form, 'code');
        if (code === undefined) throw new AadstsError('AADSTS900144', { parameter: 'code' });
        const redirectUri = field(form, 'redirect_uri');
        if (redirectUri === undefined) throw new AadstsError('AADSTS900144', { parameter: 'redirect_uri' });
        const grant = grants.authCode(code);
        if (!grant) throw new AadstsError('AADSTS70000', { detail: 'The authorization code is unknown.' });
        if (grant.tenantId !== tenant.id) throw new AadstsError('AADSTS700005');
        if (!sameId(grant.clientId, app.clientId)) throw new AadstsError('AADSTS70000', { detail: 'The authorization code was issued to another client.' });
        if (grant.redeemed) throw new AadstsError('AADSTS54005');
        if (now >= grant.expiresAt) throw new AadstsError('AADSTS70008', { issuedAt: aadTimestamp(new Date(grant.issuedAt)) });
        if (redirectUri !== grant.redirectUri) throw new AadstsError('AADSTS50011', { redirectUri, codeRedirectUri: grant.redirectUri });
        if (grant.codeChallenge !== undefined) {
          const verifier = field(form, 'code_verifier');
          if (verifier === undefined || !pkceMatches(verifier, grant.codeChallenge, grant.codeChallengeMethod ?? 'plain'))
            throw new AadstsError('AADSTS501481');
        }
        // An authorization code is redeemed once (RFC 6749 section 4.1.2); mark it before signing so a
        // concurrent second redemption fails.
        grant.redeemed = true;
        return redeem(grant, clientAuth, { authTime: grant.issuedAt, refresh: false }, grant.nonce);
      }

      case 'refresh_token': {
        const clientAuth = await authenticateClient(ctx, !app.publicClient);
        const token = field(form, 'refresh_token');
        if (token === undefined) throw new AadstsError('AADSTS900144', { parameter: 'refresh_token' });
        const grant = grants.refreshToken(token);
        if (!grant || grant.tenantId !== tenant.id || !sameId(grant.clientId, app.clientId)) {
          throw new AadstsError('AADSTS70000', { detail: 'The refresh token is unknown or was issued to another client or tenant.' });
        }
        const issuedAt = aadTimestamp(new Date(grant.issuedAt));
        // Using a refresh token does not revoke it; a password change or an admin's revoke does (see identity-policy.ts).
        const owner = tenant.users.find((u) => sameId(u.id, grant.userId));
        if (owner) checkNotRevoked(owner, grant.issuedAt);
        if (now >= grant.expiresAt) throw new AadstsError('AADSTS700082', { issuedAt });
        return redeem(grant, clientAuth, { authTime: grant.authTime, refresh: true });
      }

      default:
        throw new AadstsError('AADSTS70003', { grantType });
    }
  }

  app.post(TOKEN_ROUTE, { bodyLimit: FORM_BODY_LIMIT }, async (request: FastifyRequest<{ Params: { tenant: string } }>, reply) => {
    const segment = request.params.tenant;
    const form = readForm(request);
    const basic = basicCredentials(request.headers.authorization);
    const clientId = field(form, 'client_id') ?? basic?.clientId;
    state.recordTokenRequest(field(form, 'grant_type') ?? '', clientId);

    const fault = state.takeTokenFault(clientId);
    if (fault) {
      if (fault.latencyMs > 0) await sleep(fault.latencyMs);
      if (fault.status !== undefined) {
        state.recordTokenError(String(fault.status));
        const error =
          fault.status === 429 || fault.status === 503 || fault.status === 504
            ? 'temporarily_unavailable'
            : fault.status >= 500
              ? 'server_error'
              : 'invalid_request';
        return reply
          .code(fault.status)
          .headers(NO_STORE)
          .send({ error, error_description: `Sandbox token fault: HTTP ${fault.status}.` });
      }
      if (fault.aadsts !== undefined) {
        const faultTenant = state.findTenant(segment);
        const faultApp = faultTenant && clientId ? state.findApp(faultTenant, clientId) : undefined;
        const params: AadstsParams = {
          tenant: segment,
          clientId: clientId ?? '',
          appName: faultApp?.name ?? '',
          scope: field(form, 'scope') ?? '',
          user: '',
          issuedAt: aadTimestamp(),
        };
        throw new AadstsError(fault.aadsts, params);
      }
    }
    const body = await tokenRequest(segment, form, basic);
    return reply.headers(NO_STORE).send(body);
  });

  app.get(TOKEN_ROUTE, (request) => {
    throw new AadstsError('AADSTS900561', { method: request.method });
  });

  // ---- device code (RFC 8628) ----

  app.post('/:tenant/oauth2/v2.0/devicecode', { bodyLimit: FORM_BODY_LIMIT }, async (request: FastifyRequest<{ Params: { tenant: string } }>, reply) => {
    const segment = request.params.tenant;
    const form = readForm(request);
    const clientId = field(form, 'client_id');
    const tenant = resolveTenant(segment, clientId);
    const client = findApp(tenant, segment, clientId);
    requireEnabled(client);
    const scope = field(form, 'scope');
    // Checked now so a bad scope fails before a person is asked to sign in; consent is checked at redemption.
    parseDelegatedScope(scope, tenant.domain);
    const { deviceCodeLifetimeSeconds, deviceCodeIntervalSeconds } = state.scenario.token;
    const grant = grants.createDeviceCode({ tenantId: tenant.id, clientId: client.clientId, scope: scope ?? '' }, deviceCodeLifetimeSeconds);
    const verificationUri = `${baseUrl()}/devicelogin`;
    return reply.headers(NO_STORE).send({
      user_code: grant.userCode,
      device_code: grant.deviceCode,
      verification_uri: verificationUri,
      expires_in: deviceCodeLifetimeSeconds,
      interval: deviceCodeIntervalSeconds,
      message: `To sign in, use a web browser to open the page ${verificationUri} and enter the code ${grant.userCode} to authenticate.`,
    });
  });

  app.get('/devicelogin', async (request, reply) => {
    const query = queryForm(request);
    // Microsoft's page takes the code as `otc`, which lets a link carry it.
    const userCode = field(query, 'otc') ?? field(query, 'user_code');
    return reply.type('text/html; charset=utf-8').send(deviceLoginPage({ action: '/devicelogin', ...(userCode ? { userCode } : {}) }));
  });

  app.post('/devicelogin', { bodyLimit: FORM_BODY_LIMIT }, async (request, reply) => {
    const form = readForm(request);
    const userCode = field(form, 'user_code');
    const username = field(form, 'username');
    try {
      const grant = userCode ? grants.deviceCodeByUserCode(userCode) : undefined;
      if (!grant) throw new AadstsError('AADSTS70018');
      if (Date.now() >= grant.expiresAt) throw new AadstsError('AADSTS70019');
      if (grant.userId !== undefined || grant.redeemed) throw new AadstsError('AADSTS90120');
      const tenant = state.findTenant(grant.tenantId);
      if (!tenant) throw new AadstsError('AADSTS90002', { tenant: grant.tenantId });
      const { user, mfa } = signInUser(tenant, username, field(form, 'password'), field(form, 'otp'));
      grant.userId = user.id;
      grant.mfa = mfa;
      const client = state.findApp(tenant, grant.clientId);
      return reply.type('text/html; charset=utf-8').send(deviceLoginDonePage(client?.name ?? grant.clientId, user.upn));
    } catch (err) {
      if (!(err instanceof AadstsError)) throw err;
      const page = deviceLoginPage({
        action: '/devicelogin',
        ...(userCode ? { userCode } : {}),
        ...(username ? { username } : {}),
        error: aadstsMessage(err.code, err.params),
      });
      return reply.code(400).type('text/html; charset=utf-8').send(page);
    }
  });

  // ---- authorization code with PKCE (RFC 6749 section 4.1, RFC 7636) ----

  /** Sends the response parameters back to the app: in the redirect's query, or posted by the browser (`form_post`). */
  function respond(redirectUri: string, fields: Record<string, string>, params: URLSearchParams): AuthorizeOutcome {
    if (field(params, 'response_mode') === 'form_post') return { status: 200, html: formPostPage(redirectUri, fields) };
    const url = new URL(redirectUri);
    for (const [name, value] of Object.entries(fields)) url.searchParams.set(name, value);
    return { redirect: url.toString() };
  }

  function errorResponse(redirectUri: string, err: AadstsError, stateParam: string | undefined, params: URLSearchParams): AuthorizeOutcome {
    const { body } = aadstsErrorBody(err.code, err.params);
    return respond(
      redirectUri,
      { error: body.error, error_description: body.error_description, error_uri: body.error_uri, ...(stateParam !== undefined ? { state: stateParam } : {}) },
      params,
    );
  }

  /** The authorize parameters carried through the sign-in form. */
  const AUTHORIZE_PARAMS = [
    'client_id',
    'response_type',
    'redirect_uri',
    'scope',
    'state',
    'code_challenge',
    'code_challenge_method',
    'nonce',
    'login_hint',
    'response_mode',
    'prompt',
  ];

  /**
   * One authorize request: errors about the app or its redirect URI are shown as a page (the redirect
   * URI cannot be trusted yet); later errors go back to the app on its redirect URI.
   */
  function authorize(
    segment: string,
    params: URLSearchParams,
    signIn: { username: string | undefined; password: string | undefined; otp: string | undefined } | undefined,
  ): AuthorizeOutcome {
    const clientId = field(params, 'client_id');
    let tenant: Tenant;
    let client: App;
    const redirectUri = field(params, 'redirect_uri');
    try {
      tenant = resolveTenant(segment, clientId);
      client = findApp(tenant, segment, clientId);
      requireEnabled(client);
      if (redirectUri === undefined) throw new AadstsError('AADSTS900971');
      if (!redirectUriAllowed(client, redirectUri)) throw new AadstsError('AADSTS50011', { redirectUri, clientId: client.clientId });
    } catch (err) {
      if (!(err instanceof AadstsError)) throw err;
      return { status: 400, html: errorPage(aadstsMessage(err.code, err.params)) };
    }
    const stateParam = field(params, 'state');
    const scope = field(params, 'scope');
    let user: User | undefined;
    let mfa = false;
    let challenge: { codeChallenge: string; codeChallengeMethod: 'S256' | 'plain' } | undefined;
    try {
      const responseType = field(params, 'response_type');
      if (responseType === undefined) throw new AadstsError('AADSTS900144', { parameter: 'response_type' });
      if (responseType !== 'code') throw new AadstsError('AADSTS70005', { responseType });
      parseDelegatedScope(scope, tenant.domain);
      const codeChallenge = field(params, 'code_challenge');
      if (codeChallenge !== undefined) {
        // RFC 7636 section 4.3: the method defaults to plain; section 4.1: 43 to 128 characters.
        const method = field(params, 'code_challenge_method') ?? 'plain';
        if (method !== 'S256' && method !== 'plain') throw new AadstsError('AADSTS50149');
        if (codeChallenge.length < 43 || codeChallenge.length > 128) throw new AadstsError('AADSTS501491');
        challenge = { codeChallenge, codeChallengeMethod: method };
      }
    } catch (err) {
      if (!(err instanceof AadstsError)) throw err;
      return errorResponse(redirectUri, err, stateParam, params);
    }

    const loginHint = field(params, 'login_hint');
    if (signIn) {
      try {
        ({ user, mfa } = signInUser(tenant, signIn.username, signIn.password, signIn.otp));
      } catch (err) {
        if (!(err instanceof AadstsError)) throw err;
        return { status: 200, html: signInForm(segment, client, params, signIn.username, aadstsMessage(err.code, err.params)) };
      }
    } else if (loginHint !== undefined) {
      const hinted = state.findUser(loginHint);
      if (hinted && hinted.tenant.id === tenant.id && hinted.user.autoApprove) {
        try {
          ({ user, mfa } = signInUser(tenant, loginHint, undefined, undefined));
        } catch (err) {
          if (!(err instanceof AadstsError)) throw err;
          return { status: 200, html: signInForm(segment, client, params, loginHint, aadstsMessage(err.code, err.params)) };
        }
      }
    }
    if (!user) return { status: 200, html: signInForm(segment, client, params, loginHint) };

    const nonce = field(params, 'nonce');
    const grant = grants.createAuthCode({
      tenantId: tenant.id,
      clientId: client.clientId,
      userId: user.id,
      redirectUri,
      scope: scope ?? '',
      mfa,
      ...(challenge ?? {}),
      ...(nonce !== undefined ? { nonce } : {}),
    });
    return respond(redirectUri, { code: grant.code, ...(stateParam !== undefined ? { state: stateParam } : {}), session_state: randomUUID() }, params);
  }

  function signInForm(segment: string, client: App, params: URLSearchParams, username: string | undefined, error?: string): string {
    const hidden: Record<string, string> = {};
    for (const name of AUTHORIZE_PARAMS) {
      const value = field(params, name);
      if (value !== undefined) hidden[name] = value;
    }
    return signInPage({
      action: `/${encodeURIComponent(segment)}/oauth2/v2.0/authorize`,
      appName: client.name,
      hidden,
      ...(username !== undefined ? { username } : {}),
      ...(error !== undefined ? { error } : {}),
    });
  }

  function sendAuthorize(reply: FastifyReply, outcome: AuthorizeOutcome): FastifyReply {
    if ('redirect' in outcome) return reply.redirect(outcome.redirect, 302);
    return reply.code(outcome.status).type('text/html; charset=utf-8').send(outcome.html);
  }

  app.get('/:tenant/oauth2/v2.0/authorize', async (request: FastifyRequest<{ Params: { tenant: string } }>, reply) => {
    return sendAuthorize(reply, authorize(request.params.tenant, queryForm(request), undefined));
  });

  app.post('/:tenant/oauth2/v2.0/authorize', { bodyLimit: FORM_BODY_LIMIT }, async (request: FastifyRequest<{ Params: { tenant: string } }>, reply) => {
    const form = readForm(request);
    return sendAuthorize(
      reply,
      authorize(request.params.tenant, form, { username: field(form, 'username'), password: field(form, 'password'), otp: field(form, 'otp') }),
    );
  });

  // ---- discovery and keys ----

  /** The tenant-specific path segment, or the multi-tenant one, of a discovery request. */
  function discoveryTenant(segment: string): { path: string; issuerTenant: string } {
    if (MULTI_TENANT.has(segment.toLowerCase())) return { path: segment.toLowerCase(), issuerTenant: '{tenantid}' };
    const tenant = state.findTenant(segment);
    if (!tenant) throw new AadstsError('AADSTS90002', { tenant: segment });
    return { path: tenant.id, issuerTenant: tenant.id };
  }

  const openIdConfiguration = async (request: FastifyRequest<{ Params: { tenant: string } }>, reply: FastifyReply): Promise<FastifyReply> => {
    const { path, issuerTenant } = discoveryTenant(request.params.tenant);
    const base = baseUrl();
    const authority = `${base}/${path}`;
    // Field for field Microsoft's v2.0 document, with the values the sandbox supports.
    return reply.header('access-control-allow-origin', '*').send({
      token_endpoint: `${authority}/oauth2/v2.0/token`,
      token_endpoint_auth_methods_supported: ['client_secret_post', 'private_key_jwt', 'client_secret_basic'],
      jwks_uri: `${authority}/discovery/v2.0/keys`,
      response_modes_supported: ['query', 'form_post'],
      subject_types_supported: ['pairwise'],
      id_token_signing_alg_values_supported: ['RS256'],
      response_types_supported: ['code'],
      scopes_supported: ['openid', 'profile', 'email', 'offline_access'],
      issuer: `${base}/${issuerTenant}/v2.0`,
      request_uri_parameter_supported: false,
      authorization_endpoint: `${authority}/oauth2/v2.0/authorize`,
      device_authorization_endpoint: `${authority}/oauth2/v2.0/devicecode`,
      grant_types_supported: ['authorization_code', 'client_credentials', 'refresh_token', DEVICE_CODE_GRANT],
      code_challenge_methods_supported: ['S256', 'plain'],
      claims_supported: ['sub', 'iss', 'aud', 'exp', 'iat', 'nonce', 'preferred_username', 'name', 'tid', 'ver', 'oid'],
      tenant_region_scope: 'NA',
      cloud_instance_name: 'microsoftonline.com',
      cloud_graph_host_name: 'graph.windows.net',
      // The sandbox serves Graph on the same HTTPS listener.
      msgraph_host: new URL(base).host,
    });
  };
  app.get('/:tenant/v2.0/.well-known/openid-configuration', openIdConfiguration);
  // Microsoft serves its v1 document here, but MSAL in OIDC mode reads `{authority}/.well-known/openid-configuration`
  // for any non-Microsoft host (msal-common Authority.defaultOpenIdConfigurationEndpoint), so the sandbox answers
  // with the v2.0 document: that is what makes `authority = https://localhost:PORT/{tenant}` work unmodified.
  app.get('/:tenant/.well-known/openid-configuration', openIdConfiguration);

  const keys = async (request: FastifyRequest<{ Params: { tenant: string } }>, reply: FastifyReply): Promise<FastifyReply> => {
    discoveryTenant(request.params.tenant);
    return reply.header('access-control-allow-origin', '*').send(issuer.jwks());
  };
  app.get('/:tenant/discovery/v2.0/keys', keys);
  // v1 keys path; `/common/discovery/keys` is the one most token validators know.
  app.get('/:tenant/discovery/keys', keys);

  done();
};
