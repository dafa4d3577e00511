import { CREDENTIAL_WARN_DAYS, expiryStatus, readCredentialExpiry, renewalSteps, secretEndDates } from '../identity/index.js';
import { scrubSecrets } from '../observe/index.js';
import type { Check, CheckResult } from './types.js';

/** Microsoft Learn's page on adding and renewing an app's secrets and certificates. */
const CREDENTIALS_DOC = 'https://learn.microsoft.com/entra/identity-platform/how-to-add-credentials';

/**
 * The app credential's end date: a certificate's notAfter (read from `certFile`), a client secret's
 * `auth.secretExpires`, or with `auth.secretExpiresFromGraph` the date its app registration lists
 * (through Graph, as serve reads it; a Graph refusal warns, with `auth.secretExpires` standing). Warns under {@link CREDENTIAL_WARN_DAYS} days, fails once expired (Entra then
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
    const mailbox = ctx.mailbox;
    const graph =
      mailbox !== undefined && auth.flow === 'client-secret' && auth.secretExpiresFromGraph === true
        ? secretEndDates(() => ctx.config, { logger: ctx.logger, env: ctx.env })
        : undefined;
    const read = await readCredentialExpiry(mailbox ?? '', auth, graph?.read).finally(() => graph?.close());
    if (!read) return { status: 'skip', detail: `the ${auth.flow ?? 'configured'} flow has no client secret or certificate of its own` };
    const { graphError, ...expiry } = read;
    const { status, daysLeft } = expiryStatus(expiry.expiresAt);
    const what = expiry.kind === 'client-secret' ? 'client secret' : `certificate${expiry.thumbprint ? ` ${expiry.thumbprint}` : ''}`;
    const data = { kind: expiry.kind, expiresAt: expiry.expiresAt?.toISOString(), daysLeft, source: expiry.source };
    if (status === 'unknown' && graphError !== undefined)
      return graphRefused(graphError, "the client secret's end date is unknown (no auth.secretExpires)", data);
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
    if (graphError !== undefined) return graphRefused(graphError, `the ${what} expires on ${date}, in ${days} days (auth.secretExpires)`, data);
    return {
      status: 'pass',
      detail: `the ${what} expires on ${date}, in ${days} days${expiry.source === 'graph' ? ' (as the app registration lists it)' : ''}`,
      data,
    };
  },
};

/** `auth.secretExpiresFromGraph` asked for the app registration's date and Graph did not give it. */
function graphRefused(err: Error, detail: string, data: Record<string, unknown>): CheckResult {
  return {
    status: 'warn',
    detail: `${detail}; Graph did not give the end date: ${scrubSecrets(err.message)}`,
    cause:
      "auth.secretExpiresFromGraph reads the secret's end date from the app registration (Microsoft Graph, GET /applications); without it the date is only as right as auth.secretExpires.",
    fix:
      'Grant the app the Microsoft Graph application permission Application.Read.All with admin consent (Entra admin center > App registrations > the app > API permissions), ' +
      'or remove auth.secretExpiresFromGraph and keep auth.secretExpires up to date.',
    doc: 'https://learn.microsoft.com/en-us/graph/api/application-get',
    data,
  };
}
