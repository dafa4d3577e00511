import { decodeJwt, decodeProtectedHeader, errors as joseErrors, importSPKI, jwtVerify } from 'jose';
import { AadstsError, aadTimestamp } from './aadsts-errors.js';
import { JWT_BEARER_ASSERTION_TYPE } from './client-assertion.js';
import type { App } from './scenario.js';

/**
 * Workload identity federation at the token endpoint (Microsoft Learn, "Workload identity federation"
 * and "Microsoft identity platform application authentication certificate credentials"): a
 * `client_assertion` that is not the app's own certificate assertion (no `x5t`, `iss` not the client
 * id) is an external OIDC token, accepted when one of the app's federated identity credentials names
 * its issuer, subject and an audience it carries (`api://AzureADTokenExchange` by default), and its
 * signature verifies with that issuer's key.
 */
export function isFederatedAssertion(assertion: string, app: App): boolean {
  if (app.federatedCredentials.length === 0) return false;
  try {
    const header = decodeProtectedHeader(assertion);
    if (typeof header.x5t === 'string' || typeof header['x5t#S256'] === 'string') return false;
    return String(decodeJwt(assertion).iss ?? '').toLowerCase() !== app.clientId.toLowerCase();
  } catch {
    return false;
  }
}

/**
 * Matches issuer, then subject, then audience, exactly (Entra's matching is case-sensitive since 2025:
 * Microsoft Learn "What's new for authentication", federated identity credentials), and answers the
 * first mismatch with its AADSTS code; then checks the signature and the lifetime.
 * @throws AadstsError AADSTS700211 (issuer), AADSTS700213 (subject), AADSTS700212 (audience),
 *   AADSTS700027 (signature), AADSTS700024 (expired)
 */
export async function verifyFederatedAssertion(input: { assertion: string; assertionType: string | undefined; app: App }): Promise<void> {
  if (input.assertionType !== JWT_BEARER_ASSERTION_TYPE) {
    throw new AadstsError('AADSTS700027', { detail: `client_assertion_type must be '${JWT_BEARER_ASSERTION_TYPE}'.` });
  }
  const claims = decodeJwt(input.assertion);
  const iss = String(claims.iss ?? '');
  const sub = String(claims.sub ?? '');
  const auds = Array.isArray(claims.aud) ? claims.aud.map(String) : claims.aud !== undefined ? [String(claims.aud)] : [];
  const byIssuer = input.app.federatedCredentials.filter((c) => c.issuer === iss);
  if (byIssuer.length === 0) throw new AadstsError('AADSTS700211', { detail: iss });
  const bySubject = byIssuer.filter((c) => c.subject === sub);
  if (bySubject.length === 0) throw new AadstsError('AADSTS700213', { detail: sub });
  const credential = bySubject.find((c) => c.audiences.some((a) => auds.includes(a)));
  if (!credential) throw new AadstsError('AADSTS700212', { detail: auds.join(',') });
  const alg = decodeProtectedHeader(input.assertion).alg ?? 'RS256';
  try {
    await jwtVerify(input.assertion, await importSPKI(credential.publicKeyPem, alg), { issuer: iss, clockTolerance: 300 });
  } catch (err) {
    if (err instanceof joseErrors.JWTExpired) {
      const when = (s: unknown): string => (typeof s === 'number' ? aadTimestamp(new Date(s * 1000)) : '(none)');
      throw new AadstsError('AADSTS700024', {
        detail: `Current time: ${aadTimestamp()}, assertion valid from ${when(claims.nbf ?? claims.iat)}, expiry time of assertion ${when(claims.exp)}.`,
      });
    }
    throw new AadstsError('AADSTS700027', { detail: 'Client assertion contains an invalid signature.' });
  }
}
