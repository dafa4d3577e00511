import type { Explanation } from './types.js';
import { SOURCES } from './sources.js';

/** One row: which Graph answers it matches (HTTP status and, when given, the `error.code`) and what they mean. */
export interface GraphErrorRow extends Explanation {
  /** The HTTP status; absent on a code row whose status no source shows (it matches the code at any status). */
  status?: number;
  /** Graph's `error.code`; a row without one matches any code of its status. */
  code?: string;
  /** Key words of `error.message` that tell two causes with one code apart (only when the message is known). */
  pattern?: RegExp;
}

/**
 * Microsoft Graph's answers to `sendMail`, draft creation, upload sessions and `send` (shared/M365.md,
 * Scopes and Limits), most specific first. `{mailbox}` in a fix is filled in by {@link explainGraphError}.
 */
export const GRAPH_ERROR_CATALOGUE: readonly GraphErrorRow[] = [
  {
    id: 'graph-401-invalid-token',
    status: 401,
    class: 'auth',
    cause: 'Graph refused the access token: expired, wrong audience (an Exchange token instead of a Graph one), or issued for another tenant.',
    fix: 'Graph mailboxes need a token for https://graph.microsoft.com (app-only: https://graph.microsoft.com/.default; delegated: Mail.Send). Run `relay365 doctor --mailbox {mailbox}`.',
    doc: SOURCES.graphErrors,
  },
  {
    id: 'graph-403-sendas-denied',
    status: 403,
    code: 'ErrorSendAsDenied',
    class: 'permanent',
    cause: "The message's From address is not the mailbox and the mailbox has no SendAs right on it.",
    fix: "Send from the mailbox's own address, or grant the right: Add-RecipientPermission -Identity <From address> -Trustee {mailbox} -AccessRights SendAs.",
    doc: SOURCES.graphSendMail,
  },
  {
    id: 'graph-401-no-permissions',
    status: 401,
    code: 'NoPermissionsInAccessToken',
    class: 'auth',
    cause:
      'The Graph token carries no permission: the app has no Mail.Send application permission with admin consent (its token has no roles), or a delegated token lacks the Mail.Send scope.',
    fix: 'In App registrations > the app > API permissions, add Microsoft Graph > Application permissions > Mail.Send and click "Grant admin consent" (delegated mailboxes: Delegated > Mail.Send, then `relay365 login --mailbox {mailbox}`); `relay365 permissions --mailbox {mailbox}` shows the roles and scopes the token holds.',
    doc: SOURCES.graphNoPermissions,
  },
  {
    id: 'graph-403-access-denied-scoped',
    status: 403,
    code: 'ErrorAccessDenied',
    pattern: /OData is disabled|RAOP|AccessPolicy/i,
    class: 'auth',
    cause:
      "Exchange refused the app this mailbox: an application access policy (\"[RAOP] : Blocked by tenant configured AppOnly AccessPolicy settings\") or an RBAC for Applications scope leaves {mailbox} out. The app's Mail.Send permission itself is fine.",
    fix: 'With RBAC for Applications (Exchange Online PowerShell): New-ServicePrincipal -AppId <appId> -ObjectId <enterprise app object id> -DisplayName relay365; New-ManagementScope -Name "relay365 mailboxes" -RecipientRestrictionFilter "PrimarySmtpAddress -eq \'{mailbox}\'"; New-ManagementRoleAssignment -App <appId> -Role "Application Mail.Send" -CustomResourceScope "relay365 mailboxes"; check with Test-ServicePrincipalAuthorization -Identity <appId> -Resource {mailbox}. With a legacy application access policy: add {mailbox} to the policy\'s group (Add-DistributionGroupMember -Identity <group> -Member {mailbox}) and check with Test-ApplicationAccessPolicy -Identity {mailbox} -AppId <appId>. Changes can take over an hour to reach Graph.',
    doc: SOURCES.applicationRbac,
  },
  {
    id: 'graph-403-access-denied',
    status: 403,
    code: 'ErrorAccessDenied',
    class: 'auth',
    cause:
      'Graph denied access to this mailbox: the app lacks the Mail.Send application permission (or admin consent for it; a delegated Mail.Send does not serve app-only tokens), an application access policy or RBAC for Applications scope leaves this mailbox out, or (delegated) the signed-in user is not the mailbox.',
    fix: 'Grant Mail.Send (Application) on Microsoft Graph and admin consent (`relay365 permissions --mailbox {mailbox}` shows what the token holds); if the tenant scopes apps, include {mailbox} in the app\'s scope (New-ManagementScope + New-ManagementRoleAssignment -App <appId> -Role "Application Mail.Send" -CustomResourceScope <scope>; check with Test-ServicePrincipalAuthorization -Identity <appId> -Resource {mailbox}, or Test-ApplicationAccessPolicy -Identity {mailbox} -AppId <appId>). For delegated: sign in as {mailbox} with Mail.Send.',
    doc: SOURCES.applicationRbac,
  },
  {
    id: 'graph-403',
    status: 403,
    class: 'auth',
    cause: 'Graph refused the request for lack of permission.',
    fix: 'Check that the app has Mail.Send (Application, admin consent) or the user Mail.Send (delegated), and that an application access policy does not exclude {mailbox}.',
    doc: SOURCES.graphErrors,
  },
  {
    id: 'graph-404-mailbox-not-enabled',
    status: 404,
    code: 'MailboxNotEnabledForRESTAPI',
    class: 'permanent',
    cause: 'The user exists but has no Exchange Online mailbox (no licence, inactive, soft-deleted, or hosted on-premises).',
    fix: 'Assign an Exchange Online licence to {mailbox} (or send as a cloud mailbox); on-premises mailboxes need SMTP (transport: smtp) through hybrid.',
    doc: SOURCES.graphErrors,
  },
  {
    id: 'graph-404-invalid-user',
    status: 404,
    code: 'ErrorInvalidUser',
    class: 'permanent',
    cause: 'Graph does not know this user in the tenant the token is for.',
    fix: 'Check the mailbox address in the config and that the app registration is in the same tenant as {mailbox}.',
    doc: SOURCES.graphErrors,
  },
  {
    id: 'graph-400-invalid-recipients',
    status: 400,
    code: 'ErrorInvalidRecipients',
    class: 'permanent',
    cause: 'At least one recipient address of the message is not valid.',
    fix: 'Correct the To, Cc and Bcc addresses of the message and send it again.',
    doc: SOURCES.graphSendMail,
  },
  {
    id: 'graph-400-mime-base64',
    status: 400,
    code: 'ErrorMimeContentInvalidBase64String',
    class: 'permanent',
    cause: 'Graph could not decode the base64 MIME body.',
    fix: 'This is a relay365 bug if it happens: report it with the message id.',
    doc: SOURCES.graphMime,
  },
  {
    id: 'graph-413-request-too-large',
    status: 413,
    class: 'permanent',
    cause: "The request body is over Graph's 4 MB limit for sendMail and draft creation.",
    fix: 'relay365 sends larger messages through a draft and upload sessions; if this persists, the message has a single body part over 3 MB: send it as an attachment.',
    doc: SOURCES.graphLargeAttachments,
  },
  {
    id: 'graph-message-size-exceeded',
    status: 400,
    code: 'ErrorMessageSizeExceeded',
    class: 'permanent',
    cause: "The message is larger than the mailbox's maximum send size (35 MB by default, up to 150 MB).",
    fix: 'Make the message smaller, or raise the limit: Set-Mailbox -Identity {mailbox} -MaxSendSize 150MB.',
    doc: 'https://learn.microsoft.com/office365/servicedescriptions/exchange-online-service-description/exchange-online-limits',
  },
  {
    id: 'graph-400',
    status: 400,
    class: 'permanent',
    cause: 'Graph refused the request as invalid.',
    fix: 'Read the error code and message in the reply; the same message will not go through as it is.',
    doc: SOURCES.graphErrors,
  },
  {
    id: 'graph-error-quota-exceeded',
    code: 'ErrorQuotaExceeded',
    class: 'blocked',
    cause: 'The sending mailbox is full: every message sent by Graph sendMail is kept in its Sent Items, and a full mailbox cannot send.',
    fix: 'Free space in {mailbox} (a retention policy that deletes Sent Items after some days: New-RetentionPolicyTag "Sent 7d" -Type SentItems -AgeLimitForRetention 7 -RetentionAction DeletePermanently; New-RetentionPolicy "Relay" -RetentionPolicyTagLinks "Sent 7d"; Set-Mailbox {mailbox} -RetentionPolicy "Relay"), or give it a bigger quota; relay365 tries {mailbox} again every queue.authPauseSeconds and resumes it when a message goes through. Its queue is kept.',
    doc: SOURCES.exchangeLimits,
  },
  {
    id: 'graph-429-mailbox-concurrency',
    status: 429,
    code: 'ApplicationThrottled',
    pattern: /MailboxConcurrency/i,
    class: 'throttled',
    handling: { lowerConcurrency: true },
    cause: 'More than 4 concurrent Graph requests for this mailbox (the MailboxConcurrency limit of the Outlook service).',
    fix: "relay365 lowers the mailbox's concurrency, waits the Retry-After and retries; keep delivery.maxConnections at 4 or less for Graph mailboxes, and make sure no other app works on {mailbox} at the same time.",
    doc: SOURCES.graphThrottling,
  },
  {
    id: 'graph-429',
    status: 429,
    class: 'throttled',
    cause:
      'Graph throttled this mailbox: over 10,000 requests per 10 minutes for the app and mailbox, over 4 concurrent requests, or over 150 MB uploaded per 5 minutes.',
    fix: 'Nothing to do if rare: relay365 waits the Retry-After that Graph gave, then tries again. If frequent, lower mailboxes[].messagesPerMinute or spread the load over more mailboxes.',
    doc: SOURCES.graphThrottling,
  },
  {
    id: 'graph-503',
    status: 503,
    class: 'throttled',
    cause: 'Graph is busy (service unavailable); it may say when to come back in Retry-After.',
    fix: 'Nothing to do: relay365 waits Retry-After (or backs off) and tries again.',
    doc: SOURCES.graphThrottling,
  },
  {
    id: 'graph-5xx',
    status: 500,
    class: 'transient',
    cause: 'Graph failed with a server error.',
    fix: 'Nothing to do if rare: relay365 retries with backoff.',
    doc: SOURCES.graphErrors,
  },
];

/** What an unlisted status means: 5xx transient; any other unlisted answer permanent. */
function fallback(status: number): GraphErrorRow {
  if (status >= 500) return GRAPH_ERROR_CATALOGUE.find((r) => r.id === 'graph-5xx')!;
  return {
    id: `graph-${status}`,
    status,
    class: 'permanent',
    cause: `Graph answered ${status}.`,
    fix: 'Read the error code and message in the reply.',
    doc: SOURCES.graphErrors,
  };
}

/**
 * Explains a Graph error answer by its HTTP status, `error.code` and (when known) `error.message`,
 * filling `{mailbox}` into the cause and fix. A row with a code matches it whatever the status (a paste or
 * a new Graph build may give another); every status gets an explanation: unknown 5xx are transient,
 * unknown 4xx permanent.
 */
export function explainGraphError(status: number, code: string | undefined, mailbox = '<mailbox>', message?: string): Explanation {
  const sameCode = (row: GraphErrorRow): boolean =>
    row.code !== undefined && code !== undefined && row.code.toLowerCase() === code.toLowerCase() && (row.pattern === undefined || (message !== undefined && row.pattern.test(message)));
  const row =
    GRAPH_ERROR_CATALOGUE.find((r) => sameCode(r) && r.status === status) ??
    GRAPH_ERROR_CATALOGUE.find((r) => sameCode(r)) ??
    GRAPH_ERROR_CATALOGUE.find((r) => r.status === status && r.code === undefined) ??
    fallback(status);
  const { status: _status, code: _code, pattern: _pattern, ...explanation } = row;
  return { ...explanation, cause: explanation.cause.replaceAll('{mailbox}', mailbox), fix: explanation.fix.replaceAll('{mailbox}', mailbox) };
}
