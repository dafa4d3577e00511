import type { TokenSummary } from './claims.js';

/** One finding of the least-privilege review. */
export interface PermissionFinding {
  level: 'ok' | 'warn' | 'fail';
  permission: string;
  message: string;
  /** How to narrow it, when it is too broad. */
  fix?: string;
}

/**
 * What sending through one transport needs of a token, as data: each transport's descriptor
 * (src/delivery/transports) declares it, and the review below only compares.
 */
export interface PermissionNeeds {
  /** The service the token is for, as the findings name it, e.g. `Exchange Online SMTP`. */
  service: string;
  /** The resource's short name, e.g. `Exchange Online`. */
  resource: string;
  /** The API under which the permission is listed in Entra ID, e.g. `Office 365 Exchange Online`. */
  api: string;
  /** The application permission (app-only tokens) and the delegated one. */
  appOnly: string;
  delegated: string;
  /** True when the token's audience is this service's. */
  audience(audience: string): boolean;
  /** What to ask for instead when the audience is wrong. */
  audienceFix: string;
  /** How an application `Mail.Send` on this token reads: needed but broad (Graph), or not needed at all (SMTP). */
  appMailSend: { message: string; fix: string };
}

/** How to scope an application `Mail.Send` to the sending mailboxes. */
export const SCOPE_FIX =
  'Scope the app to the sending mailboxes: Exchange RBAC for Applications (New-ManagementScope -RecipientRestrictionFilter ...; ' +
  'New-ManagementRoleAssignment -App <appId> -Role "Application Mail.Send" -CustomResourceScope <scope>) or New-ApplicationAccessPolicy -AccessRight RestrictAccess.';

/**
 * Permissions broader than sending mail needs. SMTP needs only `SMTP.SendAsApp` (app-only) or
 * `SMTP.Send` (delegated); everything here reads or writes mail, or acts as any user.
 */
const OVER_BROAD: Record<string, { message: string; fix: string }> = {
  full_access_as_app: {
    message: 'full_access_as_app gives full EWS access to every mailbox in the tenant.',
    fix: 'Remove it from API permissions (Office 365 Exchange Online) and revoke admin consent for it; SMTP.SendAsApp is all that sending needs.',
  },
  'Mail.ReadWrite': {
    message: 'Mail.ReadWrite can read and change mail, far beyond sending.',
    fix: 'Remove Mail.ReadWrite; sending needs SMTP.SendAsApp (SMTP) or Mail.Send (Graph).',
  },
  'Mail.Read': { message: 'Mail.Read can read mail; sending does not need it.', fix: 'Remove Mail.Read from API permissions.' },
  'Mail.ReadBasic.All': { message: 'Mail.ReadBasic.All can read mail metadata of every mailbox.', fix: 'Remove it from API permissions.' },
  'EWS.AccessAsUser.All': { message: 'EWS.AccessAsUser.All gives full EWS access as the user.', fix: 'Remove it; delegated sending needs only SMTP.Send.' },
  'EWS.AccessAsApp': { message: 'EWS.AccessAsApp gives EWS access to mailboxes.', fix: 'Remove it; SMTP needs SMTP.SendAsApp only.' },
  'IMAP.AccessAsUser.All': { message: 'IMAP.AccessAsUser.All can read the whole mailbox over IMAP.', fix: 'Remove it unless this app also reads mail.' },
  'POP.AccessAsUser.All': { message: 'POP.AccessAsUser.All can read the mailbox over POP.', fix: 'Remove it unless this app also reads mail.' },
  'IMAP.AccessAsApp': { message: 'IMAP.AccessAsApp can read mailboxes over IMAP.', fix: 'Remove it unless this app also reads mail.' },
  'POP.AccessAsApp': { message: 'POP.AccessAsApp can read mailboxes over POP.', fix: 'Remove it unless this app also reads mail.' },
  'Directory.ReadWrite.All': { message: 'Directory.ReadWrite.All can change the whole directory.', fix: 'Remove it; mail sending needs no directory rights.' },
  'User.ReadWrite.All': { message: 'User.ReadWrite.All can change every user.', fix: 'Remove it; mail sending needs no user rights.' },
};

/**
 * Reviews what a token grants against what sending through a transport needs (its descriptor's
 * `permissions`). Returns one finding per permission plus audience and "missing permission" findings;
 * `fail` means sending cannot work.
 */
export function reviewPermissions(summary: TokenSummary, needs: PermissionNeeds): PermissionFinding[] {
  const findings: PermissionFinding[] = [];
  const granted = summary.kind === 'app-only' ? summary.roles : summary.scopes;
  const needed = summary.kind === 'app-only' ? needs.appOnly : needs.delegated;
  findings.push(
    needs.audience(summary.audience)
      ? { level: 'ok', permission: 'audience', message: `audience ${summary.audience} is right for ${needs.service}` }
      : {
          level: 'fail',
          permission: 'audience',
          message: `audience ${summary.audience} is not ${needs.resource}: the token was asked for the wrong resource.`,
          fix: needs.audienceFix,
        },
  );
  if (!granted.includes(needed)) {
    findings.push({
      level: 'fail',
      permission: needed,
      message: `the token lacks ${needed}, which sending ${summary.kind === 'app-only' ? 'as the app' : 'as the user'} needs.`,
      fix: `Add ${needed} under API permissions (${needs.api}, ${summary.kind === 'app-only' ? 'Application' : 'Delegated'}) and grant admin consent.`,
    });
  }
  for (const permission of granted) {
    const broad = OVER_BROAD[permission];
    if (broad) {
      findings.push({ level: 'warn', permission, message: broad.message, fix: broad.fix });
    } else if (permission === 'Mail.Send' && summary.kind === 'app-only') {
      findings.push({ level: 'warn', permission, message: needs.appMailSend.message, fix: needs.appMailSend.fix });
    } else if (permission === needed) {
      findings.push({ level: 'ok', permission, message: `${permission} is what sending needs` });
    } else if (!['offline_access', 'openid', 'profile', 'email', 'User.Read'].includes(permission)) {
      findings.push({
        level: 'warn',
        permission,
        message: `${permission} is not needed for sending mail.`,
        fix: `Remove ${permission} from API permissions unless another feature of this app uses it.`,
      });
    }
  }
  return findings;
}

/**
 * Reviews the Graph token the NDR reader uses (`mailboxes[].bounces.read`). Reading needs `Mail.Read`;
 * moving or categorizing the processed reports needs `Mail.ReadWrite` (Microsoft Learn, "message: move",
 * "Update message"). Either consented in Entra ID reaches every mailbox of the tenant; granted through
 * RBAC for Applications ("Application Mail.Read" on a management scope) it reaches only the scope and is
 * not in the token, which is why a token without it is not a failure here: `doctor` reads the Inbox to
 * tell (Microsoft Learn, "Role Based Access Control for Applications in Exchange Online": RBAC adds to
 * what Entra consented, it cannot take a consented permission away).
 */
export function reviewBounceReading(summary: TokenSummary, mailbox: string): PermissionFinding[] {
  const findings: PermissionFinding[] = [];
  const graphAudience = /graph\.microsoft|00000003-0000-0000-c000-000000000000|microsoftgraph/.test(summary.audience);
  if (!graphAudience) {
    findings.push({
      level: 'fail',
      permission: 'audience',
      message: `reading NDRs needs a Microsoft Graph token; this one is for ${summary.audience}.`,
      fix: 'Ask for https://graph.microsoft.com/.default (app-only).',
    });
  }
  if (summary.kind !== 'app-only') {
    // A delegated reader acts as the signed-in user on their own mailbox: reading and moving (or
    // categorizing) the processed reports needs Mail.ReadWrite in the token's scopes.
    const user = summary.user ?? 'the signed-in user';
    if (summary.scopes.includes('Mail.ReadWrite')) {
      findings.push({
        level: 'ok',
        permission: 'Mail.ReadWrite',
        message: `delegated Mail.ReadWrite: the reader acts as ${user}, on the mailboxes ${user} may read, never the whole tenant.`,
        fix: 'Nothing to do.',
      });
    } else {
      findings.push({
        level: 'fail',
        permission: 'Mail.ReadWrite',
        message: `reading NDRs with a sign-in needs the delegated Microsoft Graph permission Mail.ReadWrite (to read the Inbox and move or categorize each report it processed); the token's scopes are ${summary.scopes.join(' ') || '(none)'}.`,
        fix:
          "Add Microsoft Graph > Delegated > Mail.ReadWrite to the app registration's API permissions and grant admin consent (Entra admin center > App registrations > the app > API permissions), " +
          `then run relay365 login --mailbox ${mailbox} again.`,
      });
    }
    return findings;
  }
  const scope =
    `New-ServicePrincipal -AppId ${summary.appId ?? '<appId>'} -ObjectId <enterprise application object id>; ` +
    `New-ManagementScope -Name "relay365 mailboxes" -RecipientRestrictionFilter "PrimarySmtpAddress -eq '${mailbox}'"; ` +
    `New-ManagementRoleAssignment -App ${summary.appId ?? '<appId>'} -Role "Application Mail.Read" -CustomResourceScope "relay365 mailboxes"`;
  for (const permission of ['Mail.Read', 'Mail.ReadWrite'] as const) {
    if (!summary.roles.includes(permission)) continue;
    findings.push({
      level: 'warn',
      permission,
      message: `application ${permission} is consented in Entra ID: the app can read every mailbox of the tenant, not only ${mailbox}, unless an application access policy narrows it.`,
      fix: `Remove ${permission} from the app's API permissions (revoke its admin consent) and grant it for this mailbox only with RBAC for Applications: ${scope}${permission === 'Mail.ReadWrite' ? ' (and -Role "Application Mail.ReadWrite" to move or categorize processed reports)' : ''}.`,
    });
  }
  if (!summary.roles.includes('Mail.Read') && !summary.roles.includes('Mail.ReadWrite')) {
    findings.push({
      level: 'ok',
      permission: 'Mail.Read',
      message: `Mail.Read is not consented tenant-wide (least privilege); it must come from RBAC for Applications, which the token does not show: relay365 doctor reads ${mailbox}'s Inbox to check it.`,
      fix: `If doctor answers 403: ${scope}; to move or categorize processed reports add -Role "Application Mail.ReadWrite" on the same scope.`,
    });
  }
  return findings;
}
