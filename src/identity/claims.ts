// By its subpath: jose's index loads its JWS, JWE and JWK code too (about 1 MB of heap), which a relay
// that only reads its own tokens' claims never runs.
import { decodeJwt } from 'jose/jwt/decode';

/** The claims of an access token that matter for sending mail, in plain words. */
export interface TokenSummary {
  kind: 'app-only' | 'delegated';
  audience: string;
  tenantId: string | undefined;
  appId: string | undefined;
  appName: string | undefined;
  /** Delegated: the signed-in user. */
  user: string | undefined;
  roles: string[];
  scopes: string[];
  issuedAt: Date | undefined;
  expiresAt: Date | undefined;
}

/** Reads a JWT's payload without checking its signature (only Microsoft can); undefined if it is not a JWT. */
export function decodeClaims(token: string): Record<string, unknown> | undefined {
  try {
    return decodeJwt(token);
  } catch {
    return undefined;
  }
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const time = (v: unknown): Date | undefined => (typeof v === 'number' ? new Date(v * 1000) : undefined);

/** Summarizes an access token's claims; the token itself is not part of the result. */
export function summarizeToken(token: string): TokenSummary | undefined {
  const c = decodeClaims(token);
  if (!c) return undefined;
  const roles = Array.isArray(c.roles) ? c.roles.filter((r): r is string => typeof r === 'string') : [];
  const scopes = typeof c.scp === 'string' ? c.scp.split(' ').filter(Boolean) : [];
  const aud = Array.isArray(c.aud) ? c.aud.join(' ') : (str(c.aud) ?? '');
  return {
    kind: scopes.length > 0 || c.idtyp === 'user' ? 'delegated' : 'app-only',
    audience: aud,
    tenantId: str(c.tid),
    appId: str(c.appid) ?? str(c.azp),
    appName: str(c.app_displayname),
    user: str(c.upn) ?? str(c.unique_name) ?? str(c.preferred_username),
    roles,
    scopes,
    issuedAt: time(c.iat),
    expiresAt: time(c.exp),
  };
}
