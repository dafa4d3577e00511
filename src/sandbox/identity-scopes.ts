import { AadstsError } from './aadsts-errors.js';
import { RESOURCES, type App, type ResourceName } from './scenario.js';

/**
 * How the identity platform reads the `scope` parameter (Microsoft identity platform "Scopes and
 * permissions"): `{resource}/{permission}` names a permission of that resource, a bare permission
 * belongs to Microsoft Graph, `{resource}/.default` asks for everything the app registration lists
 * for that resource, and `openid`, `profile`, `email`, `offline_access` are OpenID Connect scopes
 * that name no resource. One request may name one resource only.
 */

/** OpenID Connect scopes, in the order the token response lists them. */
export const OIDC_SCOPES = ['openid', 'profile', 'email', 'offline_access'] as const;
export type OidcScope = (typeof OIDC_SCOPES)[number];

/** Identifiers the identity platform accepts for each resource: its URIs and its app id. */
const RESOURCE_IDENTIFIERS: Array<[identifier: string, resource: ResourceName]> = [
  [RESOURCES.exchange.appAudience, 'exchange'],
  [RESOURCES.exchange.delegatedAudience, 'exchange'],
  [RESOURCES.exchange.appId, 'exchange'],
  [RESOURCES.graph.appAudience, 'graph'],
  [RESOURCES.graph.appId, 'graph'],
];

/** A resource named in a scope, with the identifier to put in the token's `aud`. */
export interface ResourceRef {
  name: ResourceName;
  /** The identifier as requested (canonical case, no trailing slash), e.g. `https://outlook.office365.com`. */
  audience: string;
}

/** Finds the resource an identifier names (`https://outlook.office.com`, a resource app id, ...). */
export function resolveResource(identifier: string): ResourceRef | undefined {
  const key = identifier.replace(/\/+$/, '').toLowerCase();
  const hit = RESOURCE_IDENTIFIERS.find(([id]) => id.toLowerCase() === key);
  return hit ? { name: hit[1], audience: hit[0] } : undefined;
}

function splitScope(scope: string | undefined): string[] {
  return (scope ?? '').split(/\s+/).filter((s) => s.length > 0);
}

/** A resource identifier that looks like one (URI or GUID) but is not known: AADSTS500011, not 70011. */
function looksLikeResource(identifier: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(identifier) || /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(identifier);
}

/**
 * Reads the scope of a client credentials request, which must be exactly one `{resource}/.default`.
 * @throws AadstsError AADSTS1002012 (one scope, not `.default`), AADSTS70011 (missing, or several), AADSTS500011 (unknown resource)
 */
export function parseAppOnlyScope(scope: string | undefined, tenant: string): ResourceRef {
  const parts = splitScope(scope);
  if (parts.length === 0) throw new AadstsError('AADSTS70011', { scope: '' });
  const [only] = parts;
  // One scope that is not `{resource}/.default` (a delegated permission, bare or with its resource):
  // AADSTS1002012, as Entra answers it (https://github.com/microsoftgraph/msgraph-sdk-python/issues/181,
  // https://github.com/MicrosoftDocs/azure-docs/issues/99862).
  if (parts.length === 1 && only !== undefined && !only.toLowerCase().endsWith('/.default')) throw new AadstsError('AADSTS1002012', { scope: only });
  if (parts.length > 1 || only === undefined || !only.toLowerCase().endsWith('/.default')) {
    throw new AadstsError('AADSTS70011', {
      scope: scope?.trim(),
      detail: 'Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).',
    });
  }
  const identifier = only.slice(0, -'/.default'.length);
  const resource = resolveResource(identifier);
  if (!resource) {
    if (looksLikeResource(identifier)) throw new AadstsError('AADSTS500011', { resource: identifier, tenant });
    throw new AadstsError('AADSTS70011', { scope: only });
  }
  return resource;
}

/** The parsed scope of a delegated request (device code, authorization code, refresh token). */
export interface DelegatedScopeRequest {
  resource: ResourceRef;
  /** Permission names as requested (`SMTP.Send`), or `['.default']`; empty when only OIDC scopes were asked. */
  permissions: string[];
  oidc: Set<OidcScope>;
}

/**
 * Reads a delegated request's scope.
 * @throws AadstsError AADSTS70011 (missing or malformed), AADSTS700022 (two resources),
 *   AADSTS500011 (unknown resource)
 */
export function parseDelegatedScope(scope: string | undefined, tenant: string): DelegatedScopeRequest {
  const parts = splitScope(scope);
  if (parts.length === 0) throw new AadstsError('AADSTS70011', { scope: '' });
  const oidc = new Set<OidcScope>();
  const permissions: string[] = [];
  let resource: ResourceRef | undefined;
  for (const part of parts) {
    const lower = part.toLowerCase();
    if ((OIDC_SCOPES as readonly string[]).includes(lower)) {
      oidc.add(lower as OidcScope);
      continue;
    }
    const slash = part.lastIndexOf('/');
    let ref: ResourceRef | undefined;
    let permission: string;
    if (slash === -1) {
      // A bare permission is Microsoft Graph's (Microsoft identity platform, "Scopes and permissions").
      ref = { name: 'graph', audience: RESOURCES.graph.delegatedAudience };
      permission = part;
    } else {
      const identifier = part.slice(0, slash);
      permission = part.slice(slash + 1);
      ref = resolveResource(identifier);
      if (!ref) {
        if (looksLikeResource(identifier)) throw new AadstsError('AADSTS500011', { resource: identifier, tenant });
        throw new AadstsError('AADSTS70011', { scope: part });
      }
    }
    if (permission === '' || !/^[A-Za-z0-9._-]+$/.test(permission)) throw new AadstsError('AADSTS70011', { scope: part });
    if (resource && resource.name !== ref.name) throw new AadstsError('AADSTS700022', { scope: scope?.trim() });
    resource ??= ref;
    permissions.push(permission);
  }
  if (permissions.some((p) => p.toLowerCase() === '.default') && permissions.length > 1) {
    throw new AadstsError('AADSTS70011', { scope: scope?.trim(), detail: "'.default' cannot be combined with other scopes of the same resource." });
  }
  return { resource: resource ?? { name: 'graph', audience: RESOURCES.graph.delegatedAudience }, permissions, oidc };
}

/**
 * The permissions the app may be granted for a delegated request: `.default` expands to the app
 * registration's list; any other permission must be in it, with the registration's spelling.
 * Returns `undefined` when a permission is not registered, which the caller answers with
 * AADSTS65001 (consent for it was never given).
 */
export function grantablePermissions(app: App, request: DelegatedScopeRequest): string[] | undefined {
  const registered = app.delegatedScopes[request.resource.name];
  if (request.permissions.length === 1 && request.permissions[0]!.toLowerCase() === '.default') return [...registered];
  const granted: string[] = [];
  for (const permission of request.permissions) {
    const match = registered.find((r) => r.toLowerCase() === permission.toLowerCase());
    if (!match) return undefined;
    granted.push(match);
  }
  return granted;
}

/**
 * The `scope` of a token response: granted permissions as full URIs of their resource (as the v2.0
 * endpoint answers, e.g. `https://outlook.office.com/SMTP.Send`), then the OpenID Connect scopes asked for.
 */
export function grantedScopeString(request: DelegatedScopeRequest, permissions: string[]): string {
  const named = permissions.map((p) => `${request.resource.audience}/${p}`);
  return [...named, ...OIDC_SCOPES.filter((s) => request.oidc.has(s))].join(' ');
}
