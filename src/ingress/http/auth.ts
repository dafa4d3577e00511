import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest, onRequestAsyncHookHandler } from 'fastify';
import { bearerApiKey, hashApiKey, type ApiKeyScope } from '../../store/api-keys.js';
import type { ApiKeyRecord, IntegrationStore } from '../../store/integration-store.js';
import { apiError } from './errors.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The API key that authenticated the request (routes under `/v1`). */
    apiKey?: ApiKeyRecord;
  }
  interface FastifyContextConfig {
    /** The scope an API key needs for the route; a route under `/v1` without one needs `admin`. */
    scope?: ApiKeyScope;
  }
}

/**
 * `onRequest` hook: a valid `Authorization: Bearer r365_...` or 401. It runs before the body is read,
 * so an unauthenticated client cannot make the relay parse a large body.
 */
export function apiKeyAuth(store: IntegrationStore): onRequestAsyncHookHandler {
  return async (request: FastifyRequest, reply: FastifyReply) => {
    const key = bearerApiKey(request.headers.authorization);
    const record = key === undefined ? undefined : await store.findApiKey(hashApiKey(key));
    if (!record) {
      // RFC 6750 section 3: tell the client which scheme to use. The body, if any, is never read: close
      // the connection after the answer, or a client could trickle it into an open socket for ever.
      void reply.header('www-authenticate', 'Bearer realm="relay365"').header('connection', 'close');
      throw apiError(
        'R365_HTTP_UNAUTHORIZED',
        request.headers.authorization === undefined
          ? 'This request needs an API key: send Authorization: Bearer r365_... (create one with relay365 apikey create --name <app>).'
          : 'The API key is not valid: it is unknown, revoked or mistyped. Create a new one with relay365 apikey create --name <app>.',
      );
    }
    // Fail closed: a route that names no scope is an admin's.
    const scope = request.routeOptions.config.scope ?? 'admin';
    if (!record.scopes.includes(scope)) {
      throw apiError(
        'R365_HTTP_FORBIDDEN',
        `The API key ${record.name} (${record.prefix}...) may ${record.scopes.join(', ') || 'do nothing'}; this request needs the ${scope} scope. ` +
          `Create a key with it: relay365 apikey create --name <app> --scope ${scope}.`,
      );
    }
    request.apiKey = record;
    await store.touchApiKey(record.id).catch((err: unknown) => request.log.warn({ err }, 'could not record the use of an API key'));
  };
}

/** The dashboard's realm; browsers show it in the password prompt. */
const REALM = 'relay365 dashboard';

/**
 * Checks HTTP Basic credentials (RFC 7617) against the admin password; any user name is accepted.
 * Both sides are hashed first so the comparison takes the same time whatever the lengths.
 */
export function adminPasswordMatches(authorization: string | undefined, password: string): boolean {
  const m = /^Basic[ \t]+([A-Za-z0-9+/=]+)[ \t]*$/i.exec(authorization ?? '');
  if (!m?.[1]) return false;
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon === -1) return false;
  const given = createHash('sha256')
    .update(decoded.slice(colon + 1))
    .digest();
  const wanted = createHash('sha256').update(password).digest();
  return timingSafeEqual(given, wanted);
}

/** Sends the Basic challenge for the dashboard. */
export function challengeAdmin(reply: FastifyReply): void {
  void reply.header('www-authenticate', `Basic realm="${REALM}", charset="UTF-8"`);
}
