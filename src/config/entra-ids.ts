/** A GUID, as Entra writes tenant ids and application (client) ids. */
export const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** A verified domain such as `contoso.onmicrosoft.com`. */
const DOMAIN = /^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/i;

/**
 * What is wrong with `auth.tenant`, or undefined. App-only tokens and Exchange mailboxes belong to one
 * tenant, so the multi-tenant aliases (`common`, `organizations`, `consumers`) are refused. The config
 * schema, `relay365 init` and the doctor all ask this one function.
 */
export function tenantProblem(tenant: string): string | undefined {
  if (/^(common|organizations|consumers)$/i.test(tenant)) return `${tenant} is not a tenant: give the tenant's own id or domain`;
  if (GUID.test(tenant) || DOMAIN.test(tenant)) return undefined;
  return `${tenant} is neither a tenant id (GUID) nor a domain such as contoso.onmicrosoft.com`;
}

/** What is wrong with `auth.clientId`, or undefined: the Application (client) ID is a GUID. */
export function clientIdProblem(clientId: string): string | undefined {
  return GUID.test(clientId) ? undefined : `${clientId} is not an application (client) id: a GUID from the app's Overview page`;
}
