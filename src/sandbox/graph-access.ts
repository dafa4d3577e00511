import type { Scenario, Tenant, User } from './scenario.js';
import type { AccessTokenClaims } from './tokens.js';

/**
 * Whether a token may act on a mailbox, as Microsoft Graph and Exchange Online decide it. One place
 * for every sandbox route that touches a mailbox (Graph sendMail and drafts, the Graph Inbox routes)
 * and for SMTP's delegated XOAUTH2 login to a shared mailbox.
 */

/** What the caller wants to do with the mailbox, named by the Graph permission that allows it. */
export type MailboxNeed = 'Mail.Send' | 'Mail.Read' | 'Mail.ReadWrite';

/** Graph's error body without `innerError` (the route adds its date and request ids). */
export interface GraphErrorBody {
  error: { code: string; message: string };
}

export interface MailboxAccessRefusal {
  status: number;
  body: GraphErrorBody;
}

/**
 * Graph's reply to an app-only token for a mailbox outside the app's RBAC for Applications scope (or
 * application access policy). Text as users pasted it: "Access to OData is disabled" in
 * https://github.com/microsoftgraph/microsoft-graph-docs-contrib/issues/8731 (a sendMail app scoped by
 * New-ApplicationAccessPolicy), the whole wording as users print it from sendMail:
 * `403 - {"error":{"code":"ErrorAccessDenied","message":"Access to OData is disabled: [RAOP] : Blocked
 * by tenant configured AppOnly AccessPolicy settings."}}`. Microsoft Learn "Role Based Access Control
 * for Applications in Exchange Online" (https://learn.microsoft.com/en-us/exchange/permissions-exo/application-rbac)
 * describes the scopes; "Limiting application permissions to specific Exchange Online mailboxes"
 * (https://learn.microsoft.com/en-us/graph/auth-limit-mailbox-access) the 403.
 */
export const RAOP_DENIED: GraphErrorBody = {
  error: { code: 'ErrorAccessDenied', message: 'Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly AccessPolicy settings.' },
};

/**
 * A token carrying neither `roles` nor `scp` (an app-only token issued without admin consent).
 * Microsoft Learn "NoPermissionsInAccessToken error when calling the /me endpoint"
 * (https://learn.microsoft.com/en-us/troubleshoot/entra/entra-id/users-groups-entra-apis/error-call-me-endpoint-microsoft-graph).
 */
export const NO_PERMISSIONS: GraphErrorBody = {
  error: { code: 'NoPermissionsInAccessToken', message: 'The token contains no permissions, or permissions can not be understood.' },
};

/**
 * A token whose permissions do not cover the request (Microsoft Learn "Resolve Microsoft Graph
 * authorization errors", https://learn.microsoft.com/en-us/graph/resolve-auth-errors: 403; the text as
 * Graph sends it, pasted in microsoftgraph/msgraph-sdk-php#1204).
 */
export const ACCESS_DENIED: GraphErrorBody = {
  error: { code: 'ErrorAccessDenied', message: 'Access is denied. Check credentials and try again.' },
};

function same(a: string | undefined, b: string | undefined): boolean {
  return a !== undefined && b !== undefined && a.toLowerCase() === b.toLowerCase();
}

/** A mailbox by UPN, alias or object id, in any tenant of the scenario. */
export function findMailbox(scenario: Scenario, ref: string): { tenant: Tenant; user: User } | undefined {
  for (const tenant of scenario.tenants) {
    const user = tenant.users.find((u) => same(u.upn, ref) || same(u.id, ref) || u.aliases.some((a) => same(a, ref)));
    if (user) return { tenant, user };
  }
  return undefined;
}

function names(user: User): string[] {
  return [user.upn, ...user.aliases];
}

function listed(list: string[], user: User): boolean {
  return list.some((entry) => names(user).some((n) => same(n, entry)));
}

/** The signed-in user of a delegated token, in the token's tenant. */
function signedInUser(tenant: Tenant, claims: AccessTokenClaims): User | undefined {
  return tenant.users.find((u) => same(u.id, claims.oid) || same(u.upn, claims.upn) || same(u.upn, claims.unique_name));
}

function isAppOnly(claims: AccessTokenClaims): boolean {
  return claims.idtyp === 'app' || (claims.scp === undefined && claims.roles !== undefined);
}

/**
 * The permissions (case-insensitive, as Graph compares them) that allow `need`: a ReadWrite
 * permission covers reading. On another user's mailbox a delegated token needs the `.Shared` form
 * (Microsoft Graph permissions reference, https://learn.microsoft.com/en-us/graph/permissions-reference:
 * Mail.Send.Shared "send mail as the signed-in user, including sending on-behalf of others",
 * Mail.Read.Shared "read mail a user can access, including their own and shared mail").
 */
function permissionsFor(need: MailboxNeed, shared: boolean): string[] {
  const base = need === 'Mail.Read' ? ['Mail.Read', 'Mail.ReadWrite'] : [need];
  return (shared ? base.map((p) => `${p}.Shared`) : base).map((p) => p.toLowerCase());
}

/**
 * Whether the user is allowed `need` on another user's mailbox by Exchange permissions: FullAccess
 * to read or change its items; SendAs or SendOnBehalf to send from it (Microsoft Learn "Manage
 * permissions for recipients in Exchange Online", https://learn.microsoft.com/en-us/exchange/recipients-in-exchange-online/manage-permissions-for-recipients).
 */
function delegateAllowed(mailbox: User, user: User, need: MailboxNeed): boolean {
  if (need === 'Mail.Send') return listed(mailbox.sendAsUsers, user) || listed(mailbox.sendOnBehalfUsers, user);
  return listed(mailbox.fullAccessUsers, user);
}

/**
 * Decides whether a verified Graph token may do `need` on `mailboxRef` (UPN, alias or object id),
 * in Graph's order: the mailbox exists in the token's tenant (404 ErrorInvalidUser), the token has
 * permissions at all (401 NoPermissionsInAccessToken), they cover the request (403 ErrorAccessDenied),
 * an app-only token's RBAC for Applications scope holds the mailbox (403 "[RAOP]"), and the user has
 * a mailbox (404 MailboxNotEnabledForRESTAPI). Returns undefined when access is allowed.
 */
export function checkMailboxAccess(
  scenario: Scenario,
  claims: AccessTokenClaims,
  mailboxRef: string,
  need: MailboxNeed,
): undefined | MailboxAccessRefusal {
  const found = findMailbox(scenario, mailboxRef);
  if (!found || !same(found.tenant.id, claims.tid)) {
    return { status: 404, body: { error: { code: 'ErrorInvalidUser', message: `The requested user '${mailboxRef}' is invalid.` } } };
  }
  const { tenant, user: mailbox } = found;
  const roles = (claims.roles ?? []).map((r) => r.toLowerCase());
  const scopes = (claims.scp ?? '').split(' ').filter((s) => s !== '').map((s) => s.toLowerCase());
  if (roles.length === 0 && scopes.length === 0) return { status: 401, body: NO_PERMISSIONS };

  if (isAppOnly(claims)) {
    if (!permissionsFor(need, false).some((p) => roles.includes(p))) return { status: 403, body: ACCESS_DENIED };
    // RBAC for Applications: the role assignment reaches only the mailboxes of its management scope.
    const app = tenant.apps.find((a) => same(a.clientId, claims.appid));
    if (app?.mailboxScope && !listed(app.mailboxScope, mailbox)) return { status: 403, body: RAOP_DENIED };
  } else {
    const user = signedInUser(tenant, claims);
    if (!user) return { status: 403, body: ACCESS_DENIED };
    const self = same(user.id, mailbox.id);
    if (self) {
      if (!permissionsFor(need, false).some((p) => scopes.includes(p))) return { status: 403, body: ACCESS_DENIED };
    } else if (!permissionsFor(need, true).some((p) => scopes.includes(p)) || !delegateAllowed(mailbox, user, need)) {
      return { status: 403, body: ACCESS_DENIED };
    }
  }
  if (!mailbox.mailbox) {
    return {
      status: 404,
      body: { error: { code: 'MailboxNotEnabledForRESTAPI', message: 'The mailbox is either inactive, soft-deleted, or is hosted on-premise.' } },
    };
  }
  return undefined;
}

/**
 * SMTP AUTH XOAUTH2 with a delegated token: the token's user may log in as their own mailbox, or as a
 * shared mailbox on which they hold FullAccess (Microsoft Learn "Authenticate an IMAP, POP or SMTP
 * connection using OAuth", https://learn.microsoft.com/en-us/exchange/client-developer/legacy-protocols/how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth:
 * "shared mailbox access ... the user needs FullAccess", with the shared mailbox's address as `user=`).
 * Sending as the shared address afterwards is SendAs, checked at MAIL FROM / the header From.
 * Returns undefined when the login is allowed, else the reason (for the sandbox's log, never the client).
 */
export function delegatedSmtpLoginRefusal(tenant: Tenant, claims: AccessTokenClaims, mailbox: User): string | undefined {
  const user = signedInUser(tenant, claims);
  const upn = claims.upn ?? claims.unique_name;
  if (!user) return `token of ${String(upn)} used for ${mailbox.upn}`;
  if (same(user.id, mailbox.id)) return undefined;
  if (listed(mailbox.fullAccessUsers, user)) return undefined;
  return `token of ${user.upn} used for ${mailbox.upn}, and ${user.upn} has no FullAccess on it (Add-MailboxPermission -User)`;
}
