import { AuthError, InteractionRequiredAuthError, ServerError } from '@azure/msal-node';
import { explainAadsts, findAadstsCode } from '../catalogue/index.js';
import { Relay365Error } from '../errors.js';
import { scrubSecrets } from '../observe/index.js';

/**
 * Turns what MSAL throws into a Relay365Error that says what happened, why and how to fix it, using
 * the catalogue's AADSTS rows. Upstream text is scrubbed: MSAL quotes request bodies on some errors.
 */
export function toIdentityError(err: unknown, mailbox: string): Relay365Error {
  if (err instanceof Relay365Error) return err;
  const text = err instanceof AuthError ? `${err.errorCode}: ${err.errorMessage}` : err instanceof Error ? err.message : String(err);
  const safe = scrubSecrets(text).split(/\r?\n/)[0] ?? '';
  const code = findAadstsCode(text);
  const row = explainAadsts(code);
  const details = { mailbox, aadsts: code, catalogueId: row?.id };
  if (err instanceof InteractionRequiredAuthError || code === 'AADSTS700082' || code === 'AADSTS50173' || code === 'AADSTS70008' || code === 'AADSTS70043') {
    return new Relay365Error(
      'R365_LOGIN_REQUIRED',
      `${mailbox} must sign in again: ${row ? row.cause : safe}. Fix: run \`relay365 login --mailbox ${mailbox}\`.`,
      { cause: err, details },
    );
  }
  if (code !== undefined) {
    const explained = row ? ` ${row.cause} Fix: ${row.fix}` : '';
    return new Relay365Error('R365_TOKEN_REJECTED', `The identity platform refused a token for ${mailbox}: ${safe}.${explained}`, { cause: err, details });
  }
  const status = err instanceof ServerError ? err.status : undefined;
  if (err instanceof AuthError && err.errorCode === 'endpoints_resolution_error') {
    // MSAL hides the discovery answer: an unknown tenant (AADSTS90002) and an unreachable authority look alike.
    return new Relay365Error(
      'R365_TOKEN_ENDPOINT_UNAVAILABLE',
      `The identity platform's metadata for ${mailbox}'s tenant could not be read: either the tenant id or domain in the config is wrong ` +
        "(AADSTS90002: use the Directory (tenant) ID from the app's Overview page), or the authority cannot be reached (DNS, firewall, HTTPS_PROXY, network.caFile). " +
        '`relay365 doctor` tells which.',
      { cause: err, retryable: true, details },
    );
  }
  return new Relay365Error(
    'R365_TOKEN_ENDPOINT_UNAVAILABLE',
    `The identity platform did not issue a token for ${mailbox}${status ? ` (HTTP ${status})` : ''}: ${safe}. ` +
      'relay365 retries with backoff; check DNS, firewall, HTTPS_PROXY and network.caFile if it persists.',
    { cause: err, retryable: true, details: { ...details, status } },
  );
}
