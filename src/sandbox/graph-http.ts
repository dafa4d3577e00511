import { randomUUID } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { checkMailboxAccess, findMailbox, type MailboxNeed } from './graph-access.js';
import { RESOURCES, type Scenario, type Tenant, type User } from './scenario.js';
import type { AccessTokenClaims, TokenIssuer } from './tokens.js';

/**
 * What every sandbox Graph route shares (sendMail and drafts in graph-routes.ts, the Inbox in
 * graph-mail-routes.ts): Graph's error answer and its token and mailbox checks.
 */

/** Audiences Graph takes: `https://graph.microsoft.com` (app-only) or Graph's app id. */
const GRAPH_AUDIENCES = new Set<string>([RESOURCES.graph.appAudience, RESOURCES.graph.appId]);

/** A Graph error answer: status, `error.code`, `error.message` and extra headers (`Retry-After`). */
export class GraphError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** Sends `err` the way Graph does: `{ error: { code, message, innerError } }` with a request id, echoing the client's `client-request-id`. */
export function sendGraphError(request: FastifyRequest, reply: FastifyReply, err: GraphError): FastifyReply {
  const requestId = randomUUID();
  const clientRequestId = request.headers['client-request-id'];
  return reply
    .code(err.status)
    .headers({ 'request-id': requestId, ...(typeof clientRequestId === 'string' ? { 'client-request-id': clientRequestId } : {}), ...err.headers })
    .send({
      error: {
        code: err.code,
        message: err.message,
        innerError: {
          date: new Date().toISOString().replace(/\.\d+Z$/, ''),
          'request-id': requestId,
          'client-request-id': typeof clientRequestId === 'string' ? clientRequestId : requestId,
        },
      },
    });
}

/**
 * The bearer token's checks (signature, expiry, audience), then graph-access.ts's decision for the
 * mailbox (scopes, roles, shared-mailbox rights, RBAC for Applications): the caller, or a GraphError.
 */
export async function authorizeGraph(
  issuer: TokenIssuer,
  scenario: Scenario,
  request: FastifyRequest,
  userRef: string,
  need: MailboxNeed,
): Promise<{ tenant: Tenant; user: User; claims: AccessTokenClaims }> {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '');
  if (!match) throw new GraphError(401, 'InvalidAuthenticationToken', 'Access token is empty.');
  let claims: AccessTokenClaims;
  try {
    claims = await issuer.verify(match[1]!);
  } catch (err) {
    const expired = (err as { code?: string }).code === 'ERR_JWT_EXPIRED';
    throw new GraphError(401, 'InvalidAuthenticationToken', expired ? 'Lifetime validation failed, the token is expired.' : 'Access token validation failure.');
  }
  if (!GRAPH_AUDIENCES.has(claims.aud)) throw new GraphError(401, 'InvalidAuthenticationToken', 'Access token validation failure. Invalid audience.');
  const refusal = checkMailboxAccess(scenario, claims, userRef, need);
  if (refusal) throw new GraphError(refusal.status, refusal.body.error.code, refusal.body.error.message);
  // checkMailboxAccess answers 404 for a mailbox it cannot find, so there is one here.
  return { ...findMailbox(scenario, userRef)!, claims };
}
