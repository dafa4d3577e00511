import { createHash, X509Certificate } from 'node:crypto';
import { decodeProtectedHeader, errors as joseErrors, importX509, jwtVerify } from 'jose';
import { AadstsError, aadTimestamp } from './aadsts-errors.js';
import type { App } from './scenario.js';

/** RFC 7523 section 2.2: the `client_assertion_type` of a JWT client assertion. */
export const JWT_BEARER_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/**
 * Clock skew allowed on `exp` and `nbf`: five minutes, the default of the .NET token validation the
 * identity platform is built on, so a slightly fast or slow client clock still signs in.
 */
const CLOCK_SKEW_SECONDS = 300;

/** Algorithms Entra accepts for certificate credentials: MSAL signs RS256 with `x5t`, PS256 with `x5t#S256`. */
const ALGORITHMS = ['RS256', 'PS256'] as const;

interface RegisteredCertificate {
  pem: string;
  /** base64url SHA-1 and SHA-256 of the DER certificate, as `x5t` and `x5t#S256` carry them (RFC 7515 4.1.7, 4.1.8). */
  x5t: string;
  x5tS256: string;
}

function registered(app: App): RegisteredCertificate[] {
  return app.certificates.map(({ pem }) => {
    const der = new X509Certificate(pem).raw;
    return {
      pem,
      x5t: createHash('sha1').update(der).digest('base64url'),
      x5tS256: createHash('sha256').update(der).digest('base64url'),
    };
  });
}

function thumbprintHex(b64url: string): string {
  return Buffer.from(b64url, 'base64url').toString('hex').toUpperCase();
}

/**
 * Checks a client assertion the way the identity platform does for certificate credentials
 * (Microsoft identity platform "Certificate credentials"): signed RS256 or PS256 by the private key
 * of a certificate registered on the app, found by `x5t` or `x5t#S256`; `aud` one of the token
 * endpoint's URLs; `iss` and `sub` the client id; `exp` in the future.
 * @throws AadstsError AADSTS700027 (invalid) or AADSTS700024 (outside its valid time range)
 */
export async function verifyClientAssertion(input: { assertion: string; assertionType: string | undefined; app: App; audiences: string[] }): Promise<void> {
  const { assertion, app } = input;
  if (input.assertionType !== JWT_BEARER_ASSERTION_TYPE) {
    throw new AadstsError('AADSTS700027', { detail: `client_assertion_type must be '${JWT_BEARER_ASSERTION_TYPE}'.` });
  }
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(assertion);
  } catch {
    throw new AadstsError('AADSTS700027', { detail: 'The client assertion is not a well-formed JWT.' });
  }
  const alg = ALGORITHMS.find((a) => a === header.alg);
  if (!alg) throw new AadstsError('AADSTS700027', { detail: `Unsupported signing algorithm '${String(header.alg)}'; use RS256 or PS256.` });
  const x5t = typeof header.x5t === 'string' ? header.x5t : undefined;
  const x5tS256 = typeof header['x5t#S256'] === 'string' ? header['x5t#S256'] : undefined;
  if (!x5t && !x5tS256) throw new AadstsError('AADSTS700027', { detail: 'The client assertion header has neither x5t nor x5t#S256.' });
  const certificate = registered(app).find((c) => (x5tS256 !== undefined && c.x5tS256 === x5tS256) || (x5t !== undefined && c.x5t === x5t));
  if (!certificate) {
    throw new AadstsError('AADSTS700027', {
      detail: `The key was not found., Thumbprint of key used by client: '${thumbprintHex(x5tS256 ?? x5t ?? '')}', Please visit the Azure Portal to see configured keys for app Id '${app.clientId}'.`,
    });
  }
  const key = await importX509(certificate.pem, alg);
  let payload: Awaited<ReturnType<typeof jwtVerify>>['payload'];
  try {
    ({ payload } = await jwtVerify(assertion, key, {
      algorithms: [alg],
      audience: input.audiences,
      clockTolerance: CLOCK_SKEW_SECONDS,
      requiredClaims: ['exp', 'iss', 'sub', 'aud'],
    }));
  } catch (err) {
    if (err instanceof joseErrors.JWTExpired || (err instanceof joseErrors.JWTClaimValidationFailed && err.claim === 'nbf')) {
      const claims = err.payload;
      const when = (s: unknown): string => (typeof s === 'number' ? aadTimestamp(new Date(s * 1000)) : '(none)');
      throw new AadstsError('AADSTS700024', {
        detail: `Current time: ${aadTimestamp()}, assertion valid from ${when(claims.nbf)}, expiry time of assertion ${when(claims.exp)}.`,
      });
    }
    if (err instanceof joseErrors.JWTClaimValidationFailed && err.claim === 'aud') {
      throw new AadstsError('AADSTS700027', { detail: `The audience must be the token endpoint, ${input.audiences[0]}.` });
    }
    if (err instanceof joseErrors.JWSSignatureVerificationFailed)
      throw new AadstsError('AADSTS700027', { detail: 'Client assertion contains an invalid signature.' });
    throw new AadstsError('AADSTS700027', { detail: err instanceof Error ? err.message : 'The client assertion is invalid.' });
  }
  // Client ids are GUIDs, compared without regard to case.
  const clientId = app.clientId.toLowerCase();
  if (String(payload.iss).toLowerCase() !== clientId || String(payload.sub).toLowerCase() !== clientId) {
    throw new AadstsError('AADSTS700027', { detail: `The assertion's iss and sub must both be the client id '${app.clientId}'.` });
  }
}
