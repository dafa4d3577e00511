import type { ApiKeyScope } from '../../store/index.js';
import { apiError, errorResponseSchema } from './errors.js';

/** Every `/v1` route answers its errors in one shape and needs an API key (the `apiKey` security scheme of the OpenAPI document). */
const errors = { '4xx': errorResponseSchema, '5xx': errorResponseSchema } as const;
const security = [{ apiKey: [] }];

/** What a `/v1` route documents about itself; the security and error replies are added by {@link apiRouteOptions}. */
export interface ApiRouteDoc {
  summary: string;
  description?: string;
  tags: string[];
  params?: object;
  querystring?: object;
  body?: object;
}

/**
 * The fastify options of a `/v1` route: the API-key scope it needs (`undefined`: none named, so `admin`,
 * see auth.ts) and its schema, which doubles as its OpenAPI entry, with the replies it answers on
 * success (`{ 200: schema }`) beside the error replies every route shares.
 */
export function apiRouteOptions(scope: ApiKeyScope | undefined, doc: ApiRouteDoc, success: Record<number, object>) {
  const { summary, description, tags, ...input } = doc;
  return {
    ...(scope ? { config: { scope } } : {}),
    schema: {
      summary,
      ...(description !== undefined ? { description } : {}),
      tags,
      security,
      ...input,
      response: { ...success, ...errors },
    },
  };
}

/** The `limit` query parameter of a listing: a page size from 1 to 500, or the store's default when absent. */
export function pageLimit(value: string | undefined): number | undefined {
  const limit = value === undefined ? undefined : Number(value);
  if (limit !== undefined && (limit < 1 || limit > 500)) throw apiError('R365_HTTP_INVALID_REQUEST', 'limit must be between 1 and 500.', { field: 'limit' });
  return limit;
}
