import { randomInt } from 'node:crypto';
import { opaqueId } from './tokens.js';

/**
 * The identity platform's pending and issued grants: device codes, authorization codes and refresh
 * tokens. They hold ids (tenant, client, user), never copies of the scenario, so a scenario changed
 * at run time (consent withdrawn, user removed) takes effect at the next redemption.
 */

/** A device code from `/oauth2/v2.0/devicecode` (RFC 8628 section 3.2). */
export interface DeviceCodeGrant {
  deviceCode: string;
  userCode: string;
  tenantId: string;
  clientId: string;
  scope: string;
  issuedAt: number;
  expiresAt: number;
  /** Set when a person approved the code at `/devicelogin`. */
  userId?: string;
  /** The approval included multifactor authentication. */
  mfa?: boolean;
  redeemed: boolean;
}

/** An authorization code from `/oauth2/v2.0/authorize` (RFC 6749 section 4.1, RFC 7636). */
export interface AuthCodeGrant {
  code: string;
  tenantId: string;
  clientId: string;
  userId: string;
  redirectUri: string;
  scope: string;
  codeChallenge?: string;
  codeChallengeMethod?: 'S256' | 'plain';
  nonce?: string;
  /** The sign-in included multifactor authentication. */
  mfa: boolean;
  issuedAt: number;
  expiresAt: number;
  redeemed: boolean;
}

/**
 * A refresh token. Each answer carries a new one, but using a refresh token does not revoke it: it
 * stays valid until it expires or the user's tokens are revoked (Microsoft Learn "Refresh tokens in
 * the Microsoft identity platform": "Refresh tokens aren't revoked when used to acquire new access tokens").
 */
export interface RefreshTokenGrant {
  token: string;
  tenantId: string;
  clientId: string;
  userId: string;
  scope: string;
  /** When the user signed in interactively (kept across refreshes; sign-in frequency counts from it). */
  authTime: number;
  /** That sign-in included multifactor authentication. */
  mfa: boolean;
  issuedAt: number;
  expiresAt: number;
}

/** Authorization codes live about 10 minutes (Microsoft identity platform, "authorization code flow"). */
export const AUTH_CODE_LIFETIME_MS = 10 * 60_000;

/** Expired grants are kept this long, so that late use is answered "expired", not "unknown". */
const RETAIN_EXPIRED_MS = 60 * 60_000;

/** User code letters: no vowels (no words) and no look-alikes (0/O, 1/I). */
const USER_CODE_ALPHABET = 'BCDFGHJKLMNPQRSTVWXZ23456789';

/** Keeps the grants of one sandbox run in memory. */
export class IdentityGrants {
  private readonly deviceCodes = new Map<string, DeviceCodeGrant>();
  private readonly userCodes = new Map<string, string>();
  private readonly authCodes = new Map<string, AuthCodeGrant>();
  private readonly refreshTokens = new Map<string, RefreshTokenGrant>();

  createDeviceCode(input: Pick<DeviceCodeGrant, 'tenantId' | 'clientId' | 'scope'>, lifetimeSeconds: number, now = Date.now()): DeviceCodeGrant {
    this.prune(now);
    let userCode: string;
    do {
      // Nine characters, as the identity platform's user codes have.
      userCode = Array.from({ length: 9 }, () => USER_CODE_ALPHABET[randomInt(USER_CODE_ALPHABET.length)]).join('');
    } while (this.userCodes.has(userCode));
    const grant: DeviceCodeGrant = {
      ...input,
      deviceCode: `DAQABIQEAAAD${opaqueId(180)}`,
      userCode,
      issuedAt: now,
      expiresAt: now + lifetimeSeconds * 1000,
      redeemed: false,
    };
    this.deviceCodes.set(grant.deviceCode, grant);
    this.userCodes.set(userCode, grant.deviceCode);
    return grant;
  }

  deviceCode(deviceCode: string): DeviceCodeGrant | undefined {
    return this.deviceCodes.get(deviceCode);
  }

  /** Finds a device code by the code a person types: case, spaces and dashes do not matter. */
  deviceCodeByUserCode(userCode: string): DeviceCodeGrant | undefined {
    const deviceCode = this.userCodes.get(userCode.replace(/[\s-]/g, '').toUpperCase());
    return deviceCode === undefined ? undefined : this.deviceCodes.get(deviceCode);
  }

  createAuthCode(input: Omit<AuthCodeGrant, 'code' | 'issuedAt' | 'expiresAt' | 'redeemed'>, now = Date.now()): AuthCodeGrant {
    this.prune(now);
    const grant: AuthCodeGrant = { ...input, code: `1.A${opaqueId(300)}`, issuedAt: now, expiresAt: now + AUTH_CODE_LIFETIME_MS, redeemed: false };
    this.authCodes.set(grant.code, grant);
    return grant;
  }

  authCode(code: string): AuthCodeGrant | undefined {
    return this.authCodes.get(code);
  }

  createRefreshToken(
    input: Pick<RefreshTokenGrant, 'tenantId' | 'clientId' | 'userId' | 'scope' | 'authTime' | 'mfa'>,
    lifetimeSeconds: number,
    now = Date.now(),
  ): RefreshTokenGrant {
    this.prune(now);
    // Real refresh tokens are opaque and about 1 KB long.
    const grant: RefreshTokenGrant = { ...input, token: `1.A${opaqueId(700)}`, issuedAt: now, expiresAt: now + lifetimeSeconds * 1000 };
    this.refreshTokens.set(grant.token, grant);
    return grant;
  }

  refreshToken(token: string): RefreshTokenGrant | undefined {
    return this.refreshTokens.get(token);
  }

  /** Forgets grants that expired more than an hour ago. */
  private prune(now: number): void {
    const cutoff = now - RETAIN_EXPIRED_MS;
    for (const [key, grant] of this.deviceCodes) {
      if (grant.expiresAt < cutoff) {
        this.deviceCodes.delete(key);
        this.userCodes.delete(grant.userCode);
      }
    }
    for (const [key, grant] of this.authCodes) if (grant.expiresAt < cutoff) this.authCodes.delete(key);
    for (const [key, grant] of this.refreshTokens) if (grant.expiresAt < cutoff) this.refreshTokens.delete(key);
  }
}
