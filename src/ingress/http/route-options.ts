import type { FastifyRequest } from 'fastify';
import type { ApiKeyScope } from '../../store/index.js';
import { apiError, ERROR_SCHEMA_REF } from './errors.js';
import { MAX_PAGE } from './schemas.js';

/** Every `/v1` route answers its errors in one shape (the document's `Error` schema) and needs an API key (the `apiKey` security scheme). */
const errors = { '4xx': ERROR_SCHEMA_REF, '5xx': ERROR_SCHEMA_REF } as const;
const security = [{ apiKey: [] }];

/** What a `/v1` route documents about itself; the security and error replies are added by {@link apiRouteOptions}. */
export interface ApiRouteDoc {
  /** The operation's name in `/openapi.json`, which client generators name their methods after: a verb and a noun, `sendMessage`. */
  operationId: string;
  summary: string;
  description?: string;
  tags: string[];
  params?: object;
  querystring?: object;
  body?: object;
  /** Request headers the route reads, e.g. {@link idempotencyKeyHeader}. */
  headers?: object;
}

/**
 * The `Idempotency-Key` request header of the send routes. idempotency.ts checks its value (with its
 * own error), so the schema here only documents it; /openapi.json shows it as the reusable
 * `IdempotencyKey` parameter (app.ts).
 */
export const idempotencyKeyHeader = {
  type: 'object',
  properties: { 'idempotency-key': { type: 'string' } },
} as const;

/** `components/parameters/IdempotencyKey` of /openapi.json: the header as idempotency.ts reads it. */
export const idempotencyKeyParameter = {
  name: 'Idempotency-Key',
  in: 'header',
  required: false,
  description:
    'Makes a retry safe: the same key with the same request within 24 hours answers as the first time (with `Idempotent-Replayed: true`) and queues nothing; the same key with another request is refused with 422. Use a new UUID per message.',
  schema: { type: 'string', minLength: 1, maxLength: 255, pattern: '^[\\x21-\\x7e]+$' },
} as const;

/** The parts of the generated document {@link withIdempotencyKeyRefs} reads. */
export interface OpenApiObject {
  paths?: Record<string, Record<string, { parameters?: Array<{ in?: string; name?: string; $ref?: string }> }>>;
}

/**
 * Replaces, in the generated document, each operation's `Idempotency-Key` header (generated inline
 * from {@link idempotencyKeyHeader}) by a reference to the one `IdempotencyKey` parameter, so that
 * client generators make one type of it.
 */
export function withIdempotencyKeyRefs(document: OpenApiObject): void {
  for (const item of Object.values(document.paths ?? {})) {
    for (const operation of Object.values(item)) {
      if (!Array.isArray(operation.parameters)) continue;
      operation.parameters = operation.parameters.map((p) =>
        p.in === 'header' && p.name?.toLowerCase() === 'idempotency-key' ? { $ref: '#/components/parameters/IdempotencyKey' } : p,
      );
    }
  }
}

/** The `Location` header of a 202: where the queued message is followed. */
export const locationHeader = {
  Location: { type: 'string', description: 'The queued message: `/v1/messages/{id}`.', example: '/v1/messages/0b9a7c1e-2f0e-4a51-9d0c-6c2f3e1d5a77' },
} as const;

/**
 * Query parameters documented as integers (`limit`) arrive as text, and ajv coerces nothing (app.ts:
 * a body's `"true"` must stay a string). The route reads `limit` before validation, with
 * {@link pageLimit}'s error, so the schema's `integer` sees a number.
 */
function readLimit(request: FastifyRequest, _reply: unknown, done: (err?: Error) => void): void {
  const query = request.query as Record<string, unknown> | undefined;
  try {
    if (query && typeof query.limit === 'string') query.limit = pageLimit(query.limit);
    done();
  } catch (err) {
    done(err as Error);
  }
}

/**
 * The fastify options of a `/v1` route: the API-key scope it needs (`undefined`: none named, so `admin`,
 * see auth.ts) and its schema, which doubles as its OpenAPI entry, with the replies it answers on
 * success (`{ 200: schema }`) beside the error replies every route shares.
 */
export function apiRouteOptions(scope: ApiKeyScope | undefined, doc: ApiRouteDoc, success: Record<number, object>) {
  const { operationId, summary, description, tags, ...input } = doc;
  return {
    ...(scope ? { config: { scope } } : {}),
    ...(input.querystring ? { preValidation: readLimit } : {}),
    schema: {
      operationId,
      summary,
      ...(description !== undefined ? { description } : {}),
      tags,
      security,
      ...input,
      response: { ...success, ...errors },
    },
  };
}

/**
 * The `limit` query parameter of a listing: a page size from 1 to 500, or the store's default when absent.
 *
 * @throws Relay365Error `R365_HTTP_INVALID_REQUEST` (field `limit`) for anything else: `0`, `501`, `ten`, `2.5`.
 */
export function pageLimit(value: string | number | undefined): number | undefined {
  if (value === undefined) return undefined;
  const limit = typeof value === 'number' ? value : /^[0-9]{1,10}$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) {
    throw apiError('R365_HTTP_INVALID_REQUEST', `limit must be a whole number between 1 and ${MAX_PAGE} (got ${JSON.stringify(String(value))}).`, {
      field: 'limit',
    });
  }
  return limit;
}
