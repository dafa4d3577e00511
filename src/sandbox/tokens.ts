import { randomBytes, randomUUID } from 'node:crypto';
import { SignJWT, exportJWK, generateKeyPair, jwtVerify, createLocalJWKSet, type JSONWebKeySet, type JWTPayload, type CryptoKey } from 'jose';
import type { App, Tenant, User } from './scenario.js';

/** Claims the sandbox puts in an access token; shaped like Microsoft's v1 tokens for Exchange and Graph. */
export interface AccessTokenClaims extends JWTPayload {
  aud: string;
  iss: string;
  tid: string;
  appid: string;
  oid: string;
  ver: '1.0';
  idtyp: 'app' | 'user';
  roles?: string[];
  scp?: string;
  upn?: string;
  unique_name?: string;
}

export interface IssueAccessTokenInput {
  tenant: Tenant;
  app: App;
  audience: string;
  lifetimeSeconds: number;
  /** App-only: granted roles. */
  roles?: string[];
  /** Delegated: the signed-in user and granted scopes. */
  user?: User;
  scopes?: string[];
  /** How the client authenticated: 0 public, 1 secret, 2 certificate (`appidacr`). */
  clientAuth: '0' | '1' | '2';
}

function b64url(bytes: number): string {
  return randomBytes(bytes).toString('base64url');
}

/**
 * Signs and checks the sandbox's tokens with one RS256 key, published as a JWKS the way the
 * Microsoft identity platform publishes its signing keys.
 */
export class TokenIssuer {
  private constructor(
    private readonly privateKey: CryptoKey,
    private readonly publicJwks: JSONWebKeySet,
    readonly kid: string,
  ) {}

  static async create(): Promise<TokenIssuer> {
    const { privateKey, publicKey } = await generateKeyPair('RS256', { modulusLength: 2048, extractable: true });
    const kid = b64url(20);
    const jwk = { ...(await exportJWK(publicKey)), kid, use: 'sig', alg: 'RS256', x5t: kid };
    return new TokenIssuer(privateKey, { keys: [jwk] }, kid);
  }

  /** The public keys, as served at `/{tenant}/discovery/v2.0/keys`. */
  jwks(): JSONWebKeySet {
    return structuredClone(this.publicJwks);
  }

  /** The `iss` of v1 access tokens. */
  static accessTokenIssuer(tenantId: string): string {
    return `https://sts.windows.net/${tenantId}/`;
  }

  /** Issues an access token the size of a real one (1.5 to 2.5 KB), so clients meet real line lengths. */
  async accessToken(input: IssueAccessTokenInput): Promise<{ token: string; expiresIn: number; claims: AccessTokenClaims }> {
    const now = Math.floor(Date.now() / 1000);
    const { tenant, app, user } = input;
    const claims: AccessTokenClaims = {
      aud: input.audience,
      iss: TokenIssuer.accessTokenIssuer(tenant.id),
      iat: now,
      nbf: now,
      exp: now + input.lifetimeSeconds,
      // Microsoft's tokens carry opaque session claims; `aio` alone is often 300+ characters.
      aio: b64url(240),
      app_displayname: app.name,
      appid: app.clientId,
      appidacr: input.clientAuth,
      idp: TokenIssuer.accessTokenIssuer(tenant.id),
      idtyp: user ? 'user' : 'app',
      oid: user ? user.id : (app.servicePrincipalId ?? app.clientId),
      rh: `0.${b64url(60)}.`,
      sub: user ? b64url(32) : (app.servicePrincipalId ?? app.clientId),
      tid: tenant.id,
      uti: b64url(16),
      ver: '1.0',
      wids: ['0997a1d0-0d1d-4acb-b408-d5ca73121e90'],
      xms_ftd: b64url(48),
      xms_idrel: '7 26',
    };
    if (user) {
      claims.scp = (input.scopes ?? []).join(' ');
      claims.upn = user.upn;
      claims.unique_name = user.upn;
      claims.name = user.displayName ?? user.upn;
      claims.ipaddr = '127.0.0.1';
      claims.puid = randomBytes(8).toString('hex').toUpperCase();
      claims.acct = 0;
    } else {
      claims.roles = input.roles ?? [];
    }
    if (claims.roles?.length === 0) delete claims.roles;
    const token = await new SignJWT(claims)
      .setProtectedHeader({ typ: 'JWT', alg: 'RS256', kid: this.kid, x5t: this.kid, nonce: b64url(32) })
      .sign(this.privateKey);
    return { token, expiresIn: input.lifetimeSeconds, claims };
  }

  /** An OpenID Connect id token (v2) for delegated flows; MSAL builds its account from it. */
  async idToken(input: { tenant: Tenant; app: App; user: User; issuer: string; nonce?: string }): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    const payload: JWTPayload = {
      aud: input.app.clientId,
      iss: input.issuer,
      iat: now,
      nbf: now,
      exp: now + 3600,
      name: input.user.displayName ?? input.user.upn,
      oid: input.user.id,
      preferred_username: input.user.upn,
      sub: input.user.id.replace(/-/g, ''),
      tid: input.tenant.id,
      ver: '2.0',
      uti: b64url(16),
    };
    if (input.nonce) payload.nonce = input.nonce;
    return new SignJWT(payload).setProtectedHeader({ typ: 'JWT', alg: 'RS256', kid: this.kid }).sign(this.privateKey);
  }

  /**
   * Checks a token's signature against the sandbox's key (RS256 only: `alg: none` and other keys fail)
   * and its time claims. Audience, roles and user are the caller's business, as in Exchange.
   * @throws jose's errors (`ERR_JWT_EXPIRED`, `ERR_JWS_SIGNATURE_VERIFICATION_FAILED`, ...)
   */
  async verify(token: string): Promise<AccessTokenClaims> {
    const { payload } = await jwtVerify(token, createLocalJWKSet(this.publicJwks), { algorithms: ['RS256'], clockTolerance: 0 });
    return payload as AccessTokenClaims;
  }
}

/** A fresh opaque id for refresh tokens, device codes and authorization codes. */
export function opaqueId(bytes = 48): string {
  return b64url(bytes);
}

export { randomUUID };
