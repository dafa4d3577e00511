import { AadstsError, aadIssuedAt } from './aadsts-errors.js';
import type { Tenant, User } from './scenario.js';

/**
 * The sign-in policies the sandbox's identity platform applies to a user's delegated sign-ins, at the
 * token endpoint (Conditional Access and Security Defaults act there for an OAuth sign-in, not when
 * the token is later used at SMTP: Microsoft Learn "Conditional Access: Cloud apps, actions, and
 * authentication context" evaluates at token issuance; "Security defaults in Microsoft Entra ID").
 * App-only client credentials are not subject to them: user policies do not apply to service principals.
 */
export interface SignInPolicy {
  /** Conditional Access blocks access (AADSTS53003). */
  block: boolean;
  /** Security Defaults deem the sign-in unsafe (AADSTS530035). */
  blockedBySecurityDefaults: boolean;
  /** Conditional Access or Security Defaults require MFA (AADSTS50076 without it). */
  requireMfa: boolean;
  /** The shortest sign-in frequency of the policies that apply (AADSTS70043 past it), or null. */
  signInFrequencySeconds: number | null;
}

/** The tenant's and the user's policies together: the strictest of each setting wins, as Entra combines policies. */
export function signInPolicy(tenant: Tenant, user: User): SignInPolicy {
  const policies = [tenant.conditionalAccess, user.conditionalAccess].filter((p) => p !== undefined);
  const securityDefaults = user.securityDefaults ?? tenant.securityDefaults ?? 'off';
  const frequencies = policies.map((p) => p.signInFrequencySeconds).filter((f): f is number => f !== null);
  return {
    block: user.blockedByConditionalAccess || policies.some((p) => p.block),
    blockedBySecurityDefaults: securityDefaults === 'block',
    requireMfa: securityDefaults === 'on' || policies.some((p) => p.requireMfa),
    signInFrequencySeconds: frequencies.length > 0 ? Math.min(...frequencies) : null,
  };
}

/**
 * Checks made at a person's sign-in (the device login and authorize pages), after the password:
 * a disabled account (AADSTS50057, https://github.com/Azure/azure-cli/issues/18945) and an expired
 * password (AADSTS50055, https://github.com/AtlasPublicPolicy/power-bi-embedded/issues/11).
 * @throws AadstsError
 */
export function checkInteractiveSignIn(user: User): void {
  if (!user.accountEnabled) throw new AadstsError('AADSTS50057');
  if (user.passwordExpired) throw new AadstsError('AADSTS50055');
}

/**
 * Whether this sign-in did MFA: the one-time code the person typed matches the user's, or an
 * `autoApprove` user (approved without a person) has a code, standing for an authenticator app
 * that approves by itself.
 */
export function mfaDone(user: User, otp: string | undefined, unattended: boolean): boolean {
  if (user.mfaCode === undefined) return false;
  return unattended ? otp === undefined || otp === user.mfaCode : otp === user.mfaCode;
}

/**
 * The checks of every delegated token request (device code, authorization code, refresh token), in
 * Entra's order: the account (AADSTS50057), Security Defaults (AADSTS530035), Conditional Access
 * block (AADSTS53003, https://github.com/AzureAD/microsoft-identity-web/issues/2419), MFA (AADSTS50076,
 * https://github.com/AzureAD/microsoft-authentication-library-for-go/issues/398: a token request that
 * needs MFA the sign-in lacked), then, for a refresh, the sign-in frequency (AADSTS70043,
 * https://github.com/KelvinTegelaar/CIPP/issues/1156).
 * @throws AadstsError
 */
export function checkDelegatedToken(
  tenant: Tenant,
  user: User,
  sign: { mfa: boolean; authTime: number; refresh: boolean; resourceAppId: string },
  now = Date.now(),
): void {
  if (!user.accountEnabled) throw new AadstsError('AADSTS50057');
  const policy = signInPolicy(tenant, user);
  if (policy.blockedBySecurityDefaults) throw new AadstsError('AADSTS530035');
  if (policy.block) throw new AadstsError('AADSTS53003');
  if (policy.requireMfa && !sign.mfa) throw new AadstsError('AADSTS50076', { resource: sign.resourceAppId });
  if (sign.refresh && policy.signInFrequencySeconds !== null && now - sign.authTime > policy.signInFrequencySeconds * 1000) {
    throw new AadstsError('AADSTS70043', { issuedAt: aadIssuedAt(new Date(sign.authTime)), maxLifetime: String(policy.signInFrequencySeconds) });
  }
}

/**
 * A refresh token issued before the user's TokensValidFrom is revoked (AADSTS50173). Using a refresh
 * token does not revoke it (Microsoft Learn "Refresh tokens in the Microsoft identity platform",
 * https://learn.microsoft.com/en-us/entra/identity-platform/refresh-tokens: "Refresh tokens aren't
 * revoked when used to acquire new access tokens"; a password change or an admin's revoke does).
 * @throws AadstsError
 */
export function checkNotRevoked(user: User, issuedAt: number): void {
  if (user.tokensValidFrom === null) return;
  const validFrom = Date.parse(user.tokensValidFrom);
  if (issuedAt < validFrom) {
    throw new AadstsError('AADSTS50173', { issuedAt: aadIssuedAt(new Date(issuedAt)), validFrom: aadIssuedAt(new Date(validFrom)) });
  }
}
