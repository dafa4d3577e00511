import type { Explanation } from './types.js';

const DOC_CODES = 'https://learn.microsoft.com/entra/identity-platform/reference-error-codes';
const DOC_OAUTH = 'https://learn.microsoft.com/exchange/client-developers/legacy-protocols/how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth';

/**
 * Errors of the Microsoft identity platform's token endpoint (AADSTS codes in `error_codes` and
 * `error_description`), from shared/M365.md and Microsoft's error code reference.
 */
export const AADSTS_CATALOGUE: Record<string, Explanation> = {
  AADSTS7000215: {
    id: 'aadsts-7000215',
    class: 'auth',
    cause: "The client secret is wrong: either a wrong value, or the secret's ID was pasted instead of its value.",
    fix: 'In the Entra admin center, App registrations > your app > Certificates & secrets, create a new client secret and copy its Value (not the Secret ID) into the config (e.g. env:RELAY365_CLIENT_SECRET).',
    doc: DOC_CODES,
  },
  AADSTS7000222: {
    id: 'aadsts-7000222',
    class: 'auth',
    cause: 'The client secret has expired.',
    fix: 'Create a new client secret (App registrations > your app > Certificates & secrets > New client secret), put its Value in the config, and delete the expired one. Consider a certificate credential instead.',
    doc: DOC_CODES,
  },
  AADSTS700016: {
    id: 'aadsts-700016',
    class: 'auth',
    cause: 'No application with this client id exists in the tenant: a wrong client id, or the right id in the wrong tenant.',
    fix: "Copy the Application (client) ID and the Directory (tenant) ID from the app's Overview page in the Entra admin center.",
    doc: DOC_CODES,
  },
  AADSTS90002: {
    id: 'aadsts-90002',
    class: 'auth',
    cause: 'The tenant does not exist: the tenant id or domain in the config is wrong, or belongs to another cloud.',
    fix: "Use the Directory (tenant) ID from the app's Overview page, or the tenant's *.onmicrosoft.com domain, and check the cloud setting.",
    doc: DOC_CODES,
  },
  AADSTS70011: {
    id: 'aadsts-70011',
    class: 'auth',
    cause:
      'The scope asked for is invalid: app-only requests need exactly `https://outlook.office365.com/.default`; delegated ones `https://outlook.office.com/SMTP.Send`.',
    fix: 'Check the auth flow in the config: client-secret and client-certificate are app-only; device-code and auth-code are delegated.',
    doc: DOC_OAUTH,
  },
  AADSTS65001: {
    id: 'aadsts-65001',
    class: 'auth',
    cause: 'Consent was not granted for the permission asked (SMTP.Send or SMTP.SendAsApp), or the app does not request it.',
    fix: 'In API permissions, add the permission (Office 365 Exchange Online > SMTP.SendAsApp for app-only; SMTP.Send delegated) and click "Grant admin consent".',
    doc: DOC_OAUTH,
  },
  AADSTS50076: {
    id: 'aadsts-50076',
    class: 'auth',
    cause: 'Multi-factor authentication is required for this sign-in (Conditional Access).',
    fix: 'Sign in again with `relay365 login`, completing MFA, or use an app-only setup (client credentials) for unattended sending.',
    doc: DOC_CODES,
  },
  AADSTS50079: {
    id: 'aadsts-50079',
    class: 'auth',
    cause: 'The user must register for multi-factor authentication.',
    fix: 'Have the user complete MFA registration, then run `relay365 login` again.',
    doc: DOC_CODES,
  },
  AADSTS50034: {
    id: 'aadsts-50034',
    class: 'auth',
    cause: 'The user account does not exist in the tenant.',
    fix: 'Check the mailbox address and that it signs in to this tenant.',
    doc: DOC_CODES,
  },
  AADSTS700027: {
    id: 'aadsts-700027',
    class: 'auth',
    cause:
      'The client assertion (certificate credential) is invalid: the certificate is not registered on the app, the thumbprint is wrong, or the signature does not match.',
    fix: "Upload the certificate's public part (.cer/.pem) under Certificates & secrets and check that keyFile and certFile belong together.",
    doc: DOC_CODES,
  },
  AADSTS700024: {
    id: 'aadsts-700024',
    class: 'auth',
    cause: "The client assertion is not within its valid time range: this machine's clock is off.",
    fix: 'Synchronize the clock (NTP), then retry.',
    doc: DOC_CODES,
  },
  AADSTS7000218: {
    id: 'aadsts-7000218',
    class: 'auth',
    cause: 'The app does not allow public client flows, so device code sign-in needs a client secret or certificate.',
    fix: 'In the app registration, Authentication > Advanced settings, set "Allow public client flows" to Yes.',
    doc: DOC_CODES,
  },
  AADSTS50011: {
    id: 'aadsts-50011',
    class: 'auth',
    cause: 'The redirect URI is not registered on the app.',
    fix: 'In Authentication, add a "Mobile and desktop applications" platform with redirect URI http://localhost.',
    doc: DOC_CODES,
  },
  AADSTS70016: {
    id: 'aadsts-70016',
    class: 'transient',
    cause: 'The device code sign-in is not finished yet.',
    fix: 'Complete the sign-in at the URL shown, with the code shown.',
    doc: DOC_CODES,
  },
  AADSTS70019: {
    id: 'aadsts-70019',
    class: 'auth',
    cause: 'The device code expired before the sign-in was completed.',
    fix: 'Run `relay365 login` again and finish within the time shown.',
    doc: DOC_CODES,
  },
  AADSTS70008: {
    id: 'aadsts-70008',
    class: 'auth',
    cause: 'The authorization code or refresh token has expired or was already used.',
    fix: 'Run `relay365 login` again.',
    doc: DOC_CODES,
  },
  AADSTS700082: {
    id: 'aadsts-700082',
    class: 'auth',
    cause: 'The refresh token has expired after long inactivity.',
    fix: 'Run `relay365 login --mailbox <address>` again.',
    doc: DOC_CODES,
  },
  AADSTS50173: {
    id: 'aadsts-50173',
    class: 'auth',
    cause: 'The refresh token was revoked (password change, admin revocation, or already used).',
    fix: 'Run `relay365 login --mailbox <address>` again.',
    doc: DOC_CODES,
  },
  AADSTS53003: {
    id: 'aadsts-53003',
    class: 'auth',
    cause: 'Conditional Access blocked the sign-in.',
    fix: 'Ask the Entra admin to exclude this app or location from the blocking Conditional Access policy, or use app-only credentials.',
    doc: DOC_CODES,
  },
};

/** Finds the AADSTS code in an error body or message (`error_codes` or the `AADSTSnnn:` prefix). */
export function findAadstsCode(text: string | undefined, errorCodes?: readonly number[]): string | undefined {
  if (errorCodes && errorCodes.length > 0) return `AADSTS${errorCodes[0]}`;
  return text ? /AADSTS\d+/.exec(text)?.[0] : undefined;
}

/** The catalogue row for an AADSTS code, if known. */
export function explainAadsts(code: string | undefined): Explanation | undefined {
  return code ? AADSTS_CATALOGUE[code] : undefined;
}
