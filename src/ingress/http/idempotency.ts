import { createHash } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { apiError } from './errors.js';
import type { IntegrationStore } from '../../store/index.js';

/** A repeated key is answered from the first response for 24 hours, as Stripe does. */
export const IDEMPOTENCY_TTL_MS = 24 * 3_600_000;
/**
 * A key whose first request never saved its response (the process died between the outbox commit and
 * the save) is taken over after this long. Such a message may then be queued twice: the one window
 * where a retry with the same key is not exactly-once.
 */
const IDEMPOTENCY_LOCK_MS = 60_000;

/** Printable ASCII, as Stripe and the IETF draft (draft-ietf-httpapi-idempotency-key-header) expect; 255 at most. */
const KEY_PATTERN = /^[\x21-\x7e]{1,255}$/;

/** JSON with object keys sorted: two bodies that differ only in key order or spacing are the same request. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** What a handler answers: the status and the JSON body. */
export interface HandlerResult {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

/** What {@link onceForKey} answers: the handler's result (or the first one's, `replayed`), its body as JSON text. */
export interface KeyedResult {
  status: number;
  /** The body as sent the first time. */
  json: string;
  headers?: Record<string, string>;
  replayed: boolean;
}

/**
 * Runs `handle` at most once per idempotency key (per API key, `scope`) within 24 hours; `request`
 * is what makes two uses of a key the same request (its method, route and canonical body). A repeat
 * gets the first answer again (`replayed`); the same key with another request is refused with 422
 * `R365_IDEMPOTENCY_MISMATCH`; a repeat while the first is still running gets 409. Only a successful
 * answer is saved: after an error the key is released, so the client may retry with it.
 */
export async function onceForKey(
  store: IntegrationStore,
  scope: string,
  key: string,
  request: { route: string; body: unknown },
  log: { warn: (obj: object, msg: string) => void; error: (obj: object, msg: string) => void },
  handle: () => Promise<HandlerResult>,
  field = 'Idempotency-Key',
): Promise<KeyedResult> {
  if (!KEY_PATTERN.test(key)) {
    throw apiError('R365_HTTP_INVALID_REQUEST', `${field} must be 1 to 255 printable ASCII characters without spaces, e.g. a UUID.`, { field });
  }
  const keyHash = createHash('sha256').update(key).digest('hex');
  const fingerprint = createHash('sha256').update(`${request.route}\n${canonicalJson(request.body)}`).digest('hex');
  const reservation = await store.reserveIdempotencyKey({
    scope,
    keyHash,
    fingerprint,
    now: new Date(),
    ttlMs: IDEMPOTENCY_TTL_MS,
    lockMs: IDEMPOTENCY_LOCK_MS,
  });
  switch (reservation.outcome) {
    case 'replay':
      return { status: reservation.status, json: reservation.body, replayed: true };
    case 'mismatch':
      throw apiError(
        'R365_IDEMPOTENCY_MISMATCH',
        `This ${field} was used in the last 24 hours with a different request; nothing was queued. Use a new key for a different message, and reuse a key only to retry the very same request.`,
        { field },
      );
    case 'in-progress':
      throw apiError(
        'R365_IDEMPOTENCY_IN_PROGRESS',
        `A request with this ${field} is still being processed; retry in a moment with the same key to get its answer.`,
        { field },
      );
    case 'reserved':
      break;
  }
  let result: HandlerResult;
  try {
    result = await handle();
  } catch (err) {
    await store.releaseIdempotencyKey(scope, keyHash).catch((releaseErr: unknown) => log.warn({ err: releaseErr }, 'could not release an idempotency key'));
    throw err;
  }
  const json = JSON.stringify(result.body);
  try {
    await store.saveIdempotentResponse(scope, keyHash, result.status, json);
  } catch (err) {
    // The message is committed: say so. A retry with this key after the lock ends would queue it again.
    log.error({ err }, 'could not save the response of an idempotency key');
  }
  return { status: result.status, json, ...(result.headers ? { headers: result.headers } : {}), replayed: false };
}

/**
 * Runs a route's `handle` at most once per `Idempotency-Key` header (see {@link onceForKey}); a
 * replayed answer carries `Idempotent-Replayed: true`. Without the header, `handle` just runs.
 */
export async function idempotent(
  store: IntegrationStore,
  request: FastifyRequest,
  reply: FastifyReply,
  scope: string,
  handle: () => Promise<HandlerResult>,
): Promise<FastifyReply> {
  const header = request.headers['idempotency-key'];
  const send = (status: number, json: string, headers: Record<string, string> | undefined): FastifyReply => {
    for (const [name, value] of Object.entries(headers ?? {})) void reply.header(name, value);
    return reply.code(status).type('application/json; charset=utf-8').send(json);
  };
  if (header === undefined) {
    const result = await handle();
    return send(result.status, JSON.stringify(result.body), result.headers);
  }
  const key = (Array.isArray(header) ? header[0] : header) ?? '';
  const result = await onceForKey(store, scope, key, { route: `${request.method} ${request.routeOptions.url ?? request.url}`, body: request.body }, request.log, handle);
  if (result.replayed) {
    void reply.header('idempotent-replayed', 'true');
    // Only the body was kept: a replayed 202 of a send says again where the message is, as the first did.
    const id = result.status === 202 ? (JSON.parse(result.json) as { id?: unknown }).id : undefined;
    if (typeof id === 'string') void reply.header('location', `/v1/messages/${id}`);
  }
  return send(result.status, result.json, result.headers);
}
