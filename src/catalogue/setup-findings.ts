import type { Explanation } from './types.js';
import { SOURCES } from './sources.js';

/**
 * What `relay365 doctor` finds that is neither an SMTP reply nor an AADSTS code: the endpoint does not
 * offer what Exchange Online offers, or the token has the wrong shape (shared/M365.md, "Token shape").
 * Fixes name `{mailbox}`, `{clientId}`, `{servicePrincipalId}`, `{audience}`, `{roles}`, `{user}`,
 * `{tokenTenant}` and `{tenant}`, filled in by {@link explainSetupFinding}.
 */
export const SETUP_FINDINGS = {
  'dns-authority': {
    id: 'setup-dns-authority',
    class: 'transient',
    cause: 'The identity platform host ({host}) does not resolve on this machine (DNS), so no token can be asked for.',
    fix: 'Check the DNS resolver of this machine and the `cloud` setting (login.microsoftonline.com for the global cloud); behind a proxy, set network.httpsProxy or HTTPS_PROXY.',
    doc: SOURCES.smtpOAuth,
  },
  'starttls-missing': {
    id: 'setup-starttls-missing',
    class: 'permanent',
    cause:
      'The SMTP server does not offer STARTTLS: it is not Exchange Online client submission (smtp.office365.com:587), or something on the way (an antivirus, a firewall with SMTP inspection) strips it.',
    fix: 'Use the SMTP host and port of your cloud (smtp.office365.com:587 for the global one) and turn off SMTP inspection between this machine and Microsoft.',
    doc: SOURCES.deviceSetup,
  },
  'tls-version': {
    id: 'setup-tls-version',
    class: 'permanent',
    cause: 'The connection negotiated {version}; Exchange Online and relay365 require TLS 1.2 or newer.',
    fix: 'Check that the host is Exchange Online and that no proxy downgrades TLS.',
    doc: SOURCES.clientSubmission,
  },
  'xoauth2-missing': {
    id: 'setup-xoauth2-missing',
    class: 'permanent',
    cause:
      'After STARTTLS the server does not offer AUTH XOAUTH2 (it offers: {offered}): it is not Exchange Online client submission, or a proxy in between rewrites the EHLO answer.',
    fix: 'Use the SMTP host and port of your cloud (smtp.office365.com:587 for the global one), without an SMTP proxy in between.',
    doc: SOURCES.smtpOAuth,
  },
  'token-audience': {
    id: 'setup-token-audience',
    class: 'auth',
    cause: 'The token is for {audience}, not for Exchange Online: it was asked for the wrong resource (a Microsoft Graph token cannot log in to SMTP).',
    fix: 'Ask for https://outlook.office365.com/.default (app-only) or https://outlook.office.com/SMTP.Send (delegated). With flow: token-command, change the scope your command asks for.',
    doc: SOURCES.smtpOAuth,
  },
  'token-no-roles': {
    id: 'setup-token-no-roles',
    class: 'auth',
    cause:
      'The app-only token carries no roles at all: admin consent was not granted for the app, or SMTP.SendAsApp was never added to its API permissions (either one leaves the token without SMTP.SendAsApp).',
    fix: 'In the Entra admin center, App registrations > the app ({clientId}) > API permissions: add Office 365 Exchange Online > Application permissions > SMTP.SendAsApp if it is not listed, then click "Grant admin consent" (its status must read Granted). Then run relay365 doctor again.',
    doc: SOURCES.adminConsent,
  },
  'token-role-missing': {
    id: 'setup-token-role-missing',
    class: 'auth',
    cause:
      "The app-only token has roles ({roles}) but not SMTP.SendAsApp: the permission is not among the app's API permissions, or it was added after admin consent was last granted.",
    fix: 'In the Entra admin center, App registrations > the app ({clientId}) > API permissions: add Office 365 Exchange Online > Application permissions > SMTP.SendAsApp, then click "Grant admin consent" again.',
    doc: SOURCES.smtpOAuth,
  },
  'token-scope-missing': {
    id: 'setup-token-scope-missing',
    class: 'auth',
    cause: 'The delegated token lacks the SMTP.Send scope: the app registration does not list delegated SMTP.Send, or it was not consented to.',
    fix: 'In API permissions add the delegated permission SMTP.Send (listed under Microsoft Graph and Office 365 Exchange Online), grant admin consent, then sign in again: relay365 login --mailbox {mailbox}.',
    doc: SOURCES.smtpOAuth,
  },
  'token-tenant': {
    id: 'setup-token-tenant',
    class: 'auth',
    cause: 'The token was issued by tenant {tokenTenant}, but the config names tenant {tenant}.',
    fix: "Use the Directory (tenant) ID from the app's Overview page in auth.tenant, and make sure the mailbox belongs to that tenant.",
    doc: SOURCES.accessTokens,
  },
  'token-user': {
    id: 'setup-token-user',
    class: 'auth',
    cause: "The delegated token is signed in as {user}, not as {mailbox}: Exchange accepts XOAUTH2 only for the signed-in user's own mailbox (or its aliases).",
    fix: 'Sign in as the mailbox: relay365 login --mailbox {mailbox}, and log in there as {mailbox}.',
    doc: SOURCES.smtpOAuth,
  },
  'token-expired': {
    id: 'setup-token-expired',
    class: 'auth',
    cause: "The token expired at {expiresAt} by this machine's clock: either the token source hands out old tokens, or this clock is ahead.",
    fix: "Synchronize this machine's clock (NTP). With flow: token-command, make the command print a fresh token.",
    doc: SOURCES.accessTokens,
  },
  'clock-skew': {
    id: 'setup-clock-skew',
    class: 'auth',
    cause: "The token was issued {skew} s in this machine's future (iat/nbf): this clock is behind Microsoft's, and tokens look not yet valid or expire early.",
    fix: "Synchronize this machine's clock (NTP: timedatectl set-ntp true, or w32tm /resync on Windows).",
    doc: SOURCES.accessTokens,
  },
  'auth-refused-app-only': {
    id: 'setup-auth-refused-app-only',
    class: 'auth',
    cause:
      "Exchange refused a token that has the right audience and SMTP.SendAsApp: the app's service principal is not registered in Exchange Online (New-ServicePrincipal), or it holds no FullAccess permission on {mailbox} (Add-MailboxPermission).",
    fix:
      'In Exchange Online PowerShell (Connect-ExchangeOnline): New-ServicePrincipal -AppId {clientId} -ObjectId {servicePrincipalId}; then ' +
      'Add-MailboxPermission -Identity {mailbox} -User {servicePrincipalId} -AccessRights FullAccess. Check with Get-ServicePrincipal -Identity {clientId} and ' +
      'Get-MailboxPermission -Identity {mailbox}. Exchange can take some minutes to apply new permissions.',
    doc: SOURCES.smtpOAuth,
  },
  'auth-refused-delegated': {
    id: 'setup-auth-refused-delegated',
    class: 'auth',
    cause:
      'Exchange refused a delegated token that has the right audience and SMTP.Send: the signed-in user is not {mailbox}, or the user has no Exchange Online mailbox (license).',
    fix: 'Sign in again as the mailbox itself: relay365 login --mailbox {mailbox}; check in the Microsoft 365 admin center that {mailbox} has an Exchange Online license.',
    doc: SOURCES.smtpOAuth,
  },
} as const satisfies Record<string, Explanation>;

/** The name of a row of {@link SETUP_FINDINGS}. */
export type SetupFinding = keyof typeof SETUP_FINDINGS;

/** The explanation of a doctor finding, its `{placeholders}` filled in (unknown ones are left as they are). */
export function explainSetupFinding(finding: SetupFinding, values: Record<string, string | undefined> = {}): Explanation {
  const row: Explanation = SETUP_FINDINGS[finding];
  const fill = (text: string): string => text.replace(/\{(\w+)\}/g, (all, key: string) => values[key] ?? all);
  return { id: row.id, class: row.class, cause: fill(row.cause), fix: fill(row.fix), ...(row.doc ? { doc: row.doc } : {}) };
}
