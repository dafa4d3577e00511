import type { FastifyPluginCallback } from 'fastify';
import { RESOURCES, type ResourceName } from './scenario.js';
import type { SandboxState } from './state.js';
import type { TokenIssuer } from './tokens.js';

export interface ManagedIdentityRoutesOptions {
  state: SandboxState;
  issuer: TokenIssuer;
}

/**
 * The managed identity endpoint of Azure App Service / Functions, as Microsoft Learn documents it
 * ("How to use managed identities for App Service and Azure Functions", REST endpoint reference):
 * `GET {IDENTITY_ENDPOINT}?resource=<resource>&api-version=2019-08-01`, the `X-IDENTITY-HEADER` header
 * carrying `IDENTITY_HEADER`, `client_id` (or `principal_id`, `mi_res_id`) choosing a user-assigned
 * identity; the answer `{ access_token, expires_on, resource, token_type, client_id }` with
 * `expires_on` in seconds since the epoch. MSAL Node's AppService source reads IDENTITY_ENDPOINT and
 * IDENTITY_HEADER from the environment, so a test points it at this route on loopback.
 */
export const managedIdentityRoutes: FastifyPluginCallback<ManagedIdentityRoutesOptions> = (app, opts, done) => {
  const { state, issuer } = opts;
  app.get<{ Querystring: Record<string, string | undefined> }>('/msi/token', async (req, reply) => {
    const mi = state.scenario.managedIdentity;
    // No managed identity on this host: the endpoint is not there.
    if (!mi) return reply.code(404).send();
    // The header guards against server-side request forgery; without the right one there is no token.
    // Learn gives no reply text for it: the sandbox answers a bare 400.
    if (req.headers['x-identity-header'] !== mi.header) return reply.code(400).send();
    const clientId = req.query.client_id;
    const chosen = clientId !== undefined ? mi.userAssigned.find((id) => id.toLowerCase() === clientId.toLowerCase()) : mi.systemAssigned;
    const tenant = state.scenario.tenants[0]!;
    const identity = chosen !== undefined ? tenant.apps.find((a) => a.clientId.toLowerCase() === chosen.toLowerCase()) : undefined;
    if (!identity) return reply.code(400).send();
    const resource = (req.query.resource ?? '').replace(/\/(\.default)?$/, '');
    const name = (Object.keys(RESOURCES) as ResourceName[]).find((n) => RESOURCES[n].appAudience === resource || RESOURCES[n].appId === resource);
    if (!name) return reply.code(400).send();
    const lifetimeSeconds = state.scenario.token.lifetimeSeconds;
    const { token } = await issuer.accessToken({
      tenant,
      app: identity,
      audience: RESOURCES[name].appAudience,
      lifetimeSeconds,
      roles: identity.adminConsent ? [...identity.roles[name]] : [],
      // A managed identity authenticates with a certificate Azure holds for it.
      clientAuth: '2',
    });
    return {
      access_token: token,
      expires_on: String(Math.floor(Date.now() / 1000) + lifetimeSeconds),
      resource,
      token_type: 'Bearer',
      client_id: identity.clientId,
    };
  });
  done();
};
