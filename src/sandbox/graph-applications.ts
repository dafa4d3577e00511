import { createHash } from 'node:crypto';
import type { FastifyPluginCallback } from 'fastify';
import { GraphError, sendGraphError } from './graph-http.js';
import { RESOURCES } from './scenario.js';
import type { SandboxState } from './state.js';
import type { TokenIssuer } from './tokens.js';

export interface GraphApplicationRoutesOptions {
  state: SandboxState;
  issuer: TokenIssuer;
}

/** Either application permission lets an app read app registrations, its own included. */
const READERS = new Set(['Application.Read.All', 'Application.ReadWrite.All']);

/** `applications(appId='{appId}')`, Graph's alternate key (Microsoft Learn, "Get application"). */
const BY_APP_ID = /^applications\(appId='([0-9a-fA-F-]{36})'\)$/;

/** A stable GUID-shaped keyId for a scenario secret (the scenario gives none). */
function keyIdOf(value: string): string {
  const h = createHash('sha256').update(value).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/**
 * `GET /v1.0/applications(appId='{id}')?$select=passwordCredentials`: the app registration's client
 * secrets as Graph lists them, without their values. Each passwordCredential carries `endDateTime`
 * (ISO 8601, UTC) and `hint`, the secret's first three characters (Microsoft Learn, "passwordCredential
 * resource type", https://learn.microsoft.com/en-us/graph/api/resources/passwordcredential);
 * `secretText` is only ever returned by addPassword, so it is null here. Reading needs the application
 * permission Application.Read.All (or ReadWrite.All); without it Graph answers 403
 * Authorization_RequestDenied, "Insufficient privileges to complete the operation.".
 */
export const graphApplicationRoutes: FastifyPluginCallback<GraphApplicationRoutesOptions> = (app, opts, done) => {
  app.get<{ Params: { '*': string } }>('/v1.0/*', async (request, reply) => {
    try {
      const match = BY_APP_ID.exec(decodeURIComponent(request.params['*']));
      if (!match) throw new GraphError(400, 'BadRequest', `Resource not found for the segment '${request.params['*'].split('/')[0] ?? ''}'.`);
      const bearer = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '');
      if (!bearer) throw new GraphError(401, 'InvalidAuthenticationToken', 'Access token is empty.');
      const claims = await opts.issuer.verify(bearer[1]!).catch(() => {
        throw new GraphError(401, 'InvalidAuthenticationToken', 'Access token validation failure.');
      });
      if (claims.aud !== RESOURCES.graph.appAudience && claims.aud !== RESOURCES.graph.appId)
        throw new GraphError(401, 'InvalidAuthenticationToken', 'Access token validation failure. Invalid audience.');
      if (!(claims.roles ?? []).some((r) => READERS.has(r)))
        throw new GraphError(403, 'Authorization_RequestDenied', 'Insufficient privileges to complete the operation.');
      const tenant = opts.state.scenario.tenants.find((t) => t.id === claims.tid);
      const application = tenant?.apps.find((a) => a.clientId.toLowerCase() === match[1]!.toLowerCase());
      if (!application)
        throw new GraphError(
          404,
          'Request_ResourceNotFound',
          `Resource '${match[1]!}' does not exist or one of its queried reference-property objects are not present.`,
        );
      const passwordCredentials = application.secrets.map((s) => ({
        customKeyIdentifier: null,
        displayName: 'relay365',
        endDateTime: s.expiresAt ?? null,
        hint: s.value.slice(0, 3),
        keyId: s.id ?? keyIdOf(s.value),
        secretText: null,
        startDateTime: null,
      }));
      return await reply.send({
        '@odata.context': 'https://graph.microsoft.com/v1.0/$metadata#applications(passwordCredentials)/$entity',
        passwordCredentials,
      });
    } catch (err) {
      if (err instanceof GraphError) return sendGraphError(request, reply, err);
      throw err;
    }
  });
  done();
};
