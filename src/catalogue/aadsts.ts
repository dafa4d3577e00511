import type { Explanation } from './types.js';
import { SOURCES } from './sources.js';

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
    doc: SOURCES.aadstsCodes,
  },
  AADSTS7000222: {
    id: 'aadsts-7000222',
    class: 'auth',
    cause: 'The client secret has expired.',
    fix: 'Create a new client secret (App registrations > your app > Certificates & secrets > New client secret), put its Value in the config, and delete the expired one. Consider a certificate credential instead.',
    doc: SOURCES.aadstsCodes,
  },
  AADSTS700211: {
    id: 'aadsts-700211',
    class: 'auth',
    cause:
      "The external token's issuer (iss) matches no federated identity credential of the app: the credential names another issuer (a cluster's OIDC issuer URL, GitHub's https://token.actions.githubusercontent.com), or the wrong file is read.",
    fix: "Check the app's federated credential (Entra admin center > App registrations > your app > Certificates & secrets > Federated credentials): its issuer, subject and audience must match the token's iss, sub and aud exactly, case included (decode the token file to compare); `az ad app federated-credential list --id <client-id>` shows them.",
    doc: 'https://learn.microsoft.com/entra/workload-id/workload-identity-federation-create-trust',
  },
  AADSTS700212: {
    id: 'aadsts-700212',
    class: 'auth',
    cause:
      "The external token's audience (aud) matches no federated identity credential of the app: the token was requested for another audience than api://AzureADTokenExchange (or the credential's own).",
    fix: "Check the app's federated credential (Entra admin center > App registrations > your app > Certificates & secrets > Federated credentials): its issuer, subject and audience must match the token's iss, sub and aud exactly, case included (decode the token file to compare); `az ad app federated-credential list --id <client-id>` shows them.",
    doc: 'https://learn.microsoft.com/entra/workload-id/workload-identity-federation-create-trust',
  },
  AADSTS700213: {
    id: 'aadsts-700213',
    class: 'auth',
    cause:
      "The external token's subject (sub) matches no federated identity credential of the app: the Kubernetes service account (system:serviceaccount:NAMESPACE:NAME) or the GitHub repository, branch or environment differs from the credential's, case included.",
    fix: "Check the app's federated credential (Entra admin center > App registrations > your app > Certificates & secrets > Federated credentials): its issuer, subject and audience must match the token's iss, sub and aud exactly, case included (decode the token file to compare); `az ad app federated-credential list --id <client-id>` shows them.",
    doc: 'https://learn.microsoft.com/entra/workload-id/workload-identity-federation-create-trust',
  },
  AADSTS700016: {
    id: 'aadsts-700016',
    class: 'auth',
    cause: 'No application with this client id exists in the tenant: a wrong client id, or the right id in the wrong tenant.',
    fix: "Copy the Application (client) ID and the Directory (tenant) ID from the app's Overview page in the Entra admin center.",
    doc: SOURCES.aadstsCodes,
  },
  AADSTS90002: {
    id: 'aadsts-90002',
    class: 'auth',
    cause: 'The tenant does not exist: the tenant id or domain in the config is wrong, or belongs to another cloud.',
    fix: "Use the Directory (tenant) ID from the app's Overview page, or the tenant's *.onmicrosoft.com domain, and check the cloud setting.",
    doc: SOURCES.aadstsCodes,
  },
  AADSTS70011: {
    id: 'aadsts-70011',
    class: 'auth',
    cause:
      'The scope asked for is invalid: app-only requests need exactly `https://outlook.office365.com/.default`; delegated ones `https://outlook.office.com/SMTP.Send`.',
    fix: 'Check the auth flow in the config: client-secret and client-certificate are app-only; device-code and auth-code are delegated.',
    doc: SOURCES.smtpOAuth,
  },
  AADSTS65001: {
    id: 'aadsts-65001',
    class: 'auth',
    cause:
      'Consent was not granted for the permission asked (SMTP.Send or SMTP.SendAsApp to send; Graph Mail.Send; Graph Mail.ReadWrite delegated to read NDRs back), or the app does not request it.',
    fix: 'In API permissions, add the permission (Office 365 Exchange Online > SMTP.SendAsApp for app-only; SMTP.Send delegated) and click "Grant admin consent".',
    doc: SOURCES.smtpOAuth,
  },
  AADSTS50076: {
    id: 'aadsts-50076',
    class: 'auth',
    cause:
      'Multi-factor authentication is required for this sign-in: Conditional Access or Security Defaults ask for it at the token endpoint (for OAuth, not at SMTP).',
    fix: 'Sign in again with `relay365 login`, completing MFA, or use an app-only setup (client credentials) for unattended sending.',
    doc: SOURCES.aadstsCodes,
  },
  AADSTS50079: {
    id: 'aadsts-50079',
    class: 'auth',
    cause: 'The user must register for multi-factor authentication.',
    fix: 'Have the user complete MFA registration, then run `relay365 login` again.',
    doc: SOURCES.aadstsCodes,
  },
  AADSTS50034: {
    id: 'aadsts-50034',
    class: 'auth',
    cause: 'The user account does not exist in the tenant.',
    fix: 'Check the mailbox address and that it signs in to this tenant.',
    doc: SOURCES.aadstsCodes,
  },
  AADSTS700027: {
    id: 'aadsts-700027',
    class: 'auth',
    cause:
      'The client assertion (certificate credential) is invalid: the certificate is not registered on the app, the thumbprint is wrong, or the signature does not match.',
    fix: "Upload the certificate's public part (.cer/.pem) under Certificates & secrets and check that keyFile and certFile belong together.",
    doc: SOURCES.aadstsCodes,
  },
  AADSTS700024: {
    id: 'aadsts-700024',
    class: 'auth',
    cause: "The client assertion is not within its valid time range: this machine's clock is off.",
    fix: 'Synchronize the clock (NTP), then retry.',
    doc: SOURCES.aadstsCodes,
  },
  AADSTS7000218: {
    id: 'aadsts-7000218',
    class: 'auth',
    cause: 'The app does not allow public client flows, so device code sign-in needs a client secret or certificate.',
    fix: 'In the app registration, Authentication > Advanced settings, set "Allow public client flows" to Yes.',
    doc: SOURCES.aadstsCodes,
  },
  AADSTS50011: {
    id: 'aadsts-50011',
    class: 'auth',
    cause: 'The redirect URI is not registered on the app.',
    fix: 'In Authentication, add a "Mobile and desktop applications" platform with redirect URI http://localhost.',
    doc: SOURCES.aadstsCodes,
  },
  AADSTS70016: {
    id: 'aadsts-70016',
    class: 'transient',
    cause: 'The device code sign-in is not finished yet.',
    fix: 'Complete the sign-in at the URL shown, with the code shown.',
    doc: SOURCES.aadstsCodes,
  },
  AADSTS70019: {
    id: 'aadsts-70019',
    class: 'auth',
    cause: 'The device code expired before the sign-in was completed.',
    fix: 'Run `relay365 login` again and finish within the time shown.',
    doc: SOURCES.aadstsCodes,
  },
  AADSTS70008: {
    id: 'aadsts-70008',
    class: 'auth',
    cause: 'The authorization code or refresh token has expired or was already used.',
    fix: 'Run `relay365 login` again.',
    doc: SOURCES.aadstsCodes,
  },
  AADSTS700082: {
    id: 'aadsts-700082',
    class: 'auth',
    cause: 'The refresh token has expired after long inactivity.',
    fix: 'Run `relay365 login --mailbox <address>` again.',
    doc: SOURCES.aadstsCodes,
  },
  AADSTS50173: {
    id: 'aadsts-50173',
    class: 'auth',
    cause:
      "The refresh token was revoked: the user changed or reset the password, or an admin revoked the user's sessions (Revoke-MgUserSignInSession). Using a refresh token does not revoke it.",
    fix: 'Run `relay365 login --mailbox <address>` again to sign in afresh.',
    doc: SOURCES.aadstsCodes,
  },
  AADSTS53003: {
    id: 'aadsts-53003',
    class: 'auth',
    cause:
      'A Conditional Access policy blocked the token request (for OAuth, Conditional Access acts here, at the token endpoint, not when relay365 connects to SMTP).',
    fix: 'In the Entra admin center, Sign-in logs > the failed sign-in > Conditional Access shows the policy; exclude this app or location from it, or use app-only credentials (client-secret or client-certificate), to which user policies do not apply.',
    doc: SOURCES.aadstsCodes,
  },
  AADSTS530035: {
    id: 'aadsts-530035',
    class: 'auth',
    cause:
      "The tenant's Security Defaults blocked the token request: it used legacy authentication or was deemed unsafe by the Security Defaults policies. For OAuth, Security Defaults act here, at the token endpoint, not at SMTP.",
    fix: 'Sign in with a flow Security Defaults allow (auth-code in a browser, completing MFA: `relay365 login --mailbox <address>`), or use app-only credentials (client-secret or client-certificate), which sign in no user. To keep MFA with finer control, replace Security Defaults by Conditional Access policies (Entra ID P1); do not simply turn them off.',
    doc: SOURCES.aadstsCodes,
  },
  AADSTS70020: {
    id: 'aadsts-70020',
    class: 'auth',
    cause:
      'The device code expired before the sign-in was completed at the verification page (the code is valid for the expires_in the device code answer gave, usually 15 minutes).',
    fix: 'Run `relay365 login --mailbox <address>` again and enter the new code promptly; check that the machine clock is right.',
    doc: SOURCES.aadstsCodes,
  },
  AADSTS1002012: {
    id: 'aadsts-1002012',
    class: 'auth',
    cause: 'An app-only (client credentials) token was asked for with a named scope; client credentials take only `<resource>/.default`.',
    fix: 'For SMTP app-only the scope is https://outlook.office365.com/.default, for Graph https://graph.microsoft.com/.default (relay365 asks for these); a named scope such as SMTP.Send means the mailbox should use a delegated flow (device-code or auth-code).',
    doc: SOURCES.smtpOAuth,
  },
  AADSTS70043: {
    id: 'aadsts-70043',
    class: 'auth',
    cause:
      "The refresh token was ended by a Conditional Access sign-in frequency policy: the user must sign in again after the policy's interval, however recently the token was used.",
    fix: 'Run `relay365 login --mailbox <address>` again. For unattended sending, use app-only credentials (client-secret or client-certificate), to which sign-in frequency does not apply, or ask the Entra admin to exclude this app from the sign-in frequency policy.',
    doc: SOURCES.aadstsCodes,
  },
  AADSTS50057: {
    id: 'aadsts-50057',
    class: 'auth',
    cause: 'The user account that signs in for this mailbox is disabled in Entra ID.',
    fix: 'Re-enable the account (Entra admin center > Users > the user > Edit properties > Account enabled; or Update-MgUser -UserId <address> -AccountEnabled:$true), or sign in as another user with rights on the mailbox, then `relay365 login --mailbox <address>`.',
    doc: SOURCES.aadstsCodes,
  },
  AADSTS50055: {
    id: 'aadsts-50055',
    class: 'auth',
    cause: 'The password of the user that signs in for this mailbox has expired.',
    fix: 'Have the user change the password (sign in at https://myaccount.microsoft.com), then run `relay365 login --mailbox <address>` again.',
    doc: SOURCES.aadstsCodes,
  },
  AADSTS7000112: {
    id: 'aadsts-7000112',
    class: 'auth',
    cause: 'The application is disabled in the tenant: its enterprise application (service principal) has sign-in turned off, or Microsoft disabled it.',
    fix: 'In the Entra admin center, Enterprise applications > the app > Properties, set "Enabled for users to sign-in?" to Yes (or Update-MgServicePrincipal -ServicePrincipalId <object id> -AccountEnabled:$true). If Microsoft disabled it (the app registration says so), register a new app.',
    doc: SOURCES.aadstsCodes,
  },
  AADSTS650057: {
    id: 'aadsts-650057',
    class: 'auth',
    cause:
      'A token was asked for a resource the app registration does not list in its API permissions (e.g. Office 365 Exchange Online for SMTP, or Microsoft Graph for Graph sending).',
    fix: 'In App registrations > the app > API permissions, add the permission on the resource the mailbox uses (Office 365 Exchange Online: SMTP.SendAsApp or SMTP.Send; Microsoft Graph: Mail.Send) and grant admin consent.',
    doc: SOURCES.aadstsCodes,
  },
  AADSTS700025: {
    id: 'aadsts-700025',
    class: 'auth',
    cause:
      'The app is registered as a public client (a Mobile and desktop platform, or Allow public client flows), and a client secret or certificate was sent with the request.',
    fix: 'A delegated mailbox (device-code, auth-code) of a public-client app takes no secret: remove clientSecret / the certificate from that mailbox in the config; an app-only mailbox needs a confidential app (a Web platform, Allow public client flows: No).',
    doc: SOURCES.aadstsCodes,
  },
  AADSTS50126: {
    id: 'aadsts-50126',
    class: 'auth',
    cause:
      'The user name or password was wrong: typed at the sign-in page during `relay365 login`, or sent by another client that signs in with a password (relay365 itself never sends one to the token endpoint).',
    fix: 'Run `relay365 login --mailbox <address>` again and sign in with the right password (reset it in the Microsoft 365 admin center if it is lost); after repeated failures Entra locks the account for a while (AADSTS50053).',
    doc: SOURCES.aadstsCodes,
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
