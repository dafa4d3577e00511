import { CREDENTIAL_WARN_DAYS, credentialExpiry, expiryStatus, renewalSteps } from '../identity/index.js';
import type { Check } from './types.js';

/** Microsoft Learn's page on adding and renewing an app's secrets and certificates. */
const CREDENTIALS_DOC = 'https://learn.microsoft.com/entra/identity-platform/how-to-add-credentials';

/**
 * The app credential's end date: a certificate's notAfter (read from `certFile`), a client secret's
 * `auth.secretExpires`. Warns under {@link CREDENTIAL_WARN_DAYS} days, fails once expired (Entra then
 * answers AADSTS7000222 for a secret, AADSTS700027 for an expired certificate), each with the steps to
 * make a new one. Skips for flows without an app credential.
 */
export const credentialExpiryCheck: Check = {
  id: 'credential-expiry',
  title: "App credential: the client secret's or certificate's end date",
  dependsOn: ['config'],
  async run(ctx) {
    const auth = ctx.auth;
    if (!auth) return { status: 'skip', detail: 'no auth settings' };
    const expiry = await credentialExpiry(auth);
    if (!expiry) return { status: 'skip', detail: `the ${auth.flow ?? 'configured'} flow has no client secret or certificate of its own` };
    const { status, daysLeft } = expiryStatus(expiry.expiresAt);
    const what = expiry.kind === 'client-secret' ? 'client secret' : `certificate${expiry.thumbprint ? ` ${expiry.thumbprint}` : ''}`;
    const data = { kind: expiry.kind, expiresAt: expiry.expiresAt?.toISOString(), daysLeft, source: expiry.source };
    if (status === 'unknown') {
      // Not a warning: most setups do not note the date yet, and nothing is wrong today. The detail says how.
      return expiry.kind === 'client-secret'
        ? {
            status: 'skip',
            detail:
              "the client secret's end date is unknown: copy its Expires date (Entra admin center > App registrations > the app > Certificates & secrets) into auth.secretExpires to be warned 30 days ahead",
            data,
          }
        : { status: 'skip', detail: 'the certificate is given by thumbprint only: set auth.certificate.certFile to have its end date read', data };
    }
    const date = expiry.expiresAt!.toISOString();
    const days = Math.floor(daysLeft!);
    if (status === 'expired') {
      return {
        status: 'fail',
        detail: `the ${what} expired on ${date}`,
        cause:
          expiry.kind === 'client-secret'
            ? 'An expired client secret is refused at the token endpoint (AADSTS7000222): no token, no mail.'
            : 'An expired certificate is refused at the token endpoint (AADSTS700027): no token, no mail.',
        fix: renewalSteps(expiry, auth),
        doc: CREDENTIALS_DOC,
        data,
      };
    }
    if (status === 'expiring') {
      return {
        status: 'warn',
        detail: `the ${what} expires on ${date}, in ${days} day${days === 1 ? '' : 's'} (warning under ${CREDENTIAL_WARN_DAYS} days)`,
        cause: 'When it expires every token request is refused and sending stops until a new one is in place.',
        fix: renewalSteps(expiry, auth),
        doc: CREDENTIALS_DOC,
        data,
      };
    }
    return { status: 'pass', detail: `the ${what} expires on ${date}, in ${days} days`, data };
  },
};
