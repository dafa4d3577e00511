import type { FastifyInstance } from 'fastify';
import type { OutboxStore } from '../../outbox/index.js';
import { SUPPRESSION_ADDRESS_PATTERN, suppressionJson } from '../../bounces/suppression.js';
import { apiError } from './errors.js';
import { apiRouteOptions, pageLimit } from './route-options.js';
import { limitParameter } from './schemas.js';

const suppressionSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['address', 'reason', 'source', 'createdAt'],
  properties: {
    address: { type: 'string' },
    reason: { type: 'string', description: 'Why: the hard bounce (DSN status and diagnostic) or the operator\'s words.' },
    dsnStatus: { type: ['string', 'null'], description: 'The DSN status of the bounce that added it, e.g. `5.1.10`.' },
    messageId: { type: ['string', 'null'], description: 'The relay365 message whose bounce added it.' },
    source: { type: 'string', enum: ['bounce', 'manual'] },
    createdAt: { type: 'string', format: 'date-time' },
  },
} as const;

const addressParams = {
  type: 'object',
  required: ['address'],
  properties: { address: { type: 'string', maxLength: 320 } },
} as const;

/**
 * `/v1/suppressions`: the addresses relay365 refuses to send to (docs/bounces.md). Reading needs the
 * `read` scope; adding and removing change what may be sent, so they need `admin`.
 */
export function suppressionRoutes(app: FastifyInstance, deps: { store: Pick<OutboxStore, 'suppress' | 'unsuppress' | 'suppressions' | 'suppressed'> }): void {
  app.get<{ Querystring: { limit?: number; cursor?: string } }>(
    '/suppressions',
    apiRouteOptions(
      'read',
      {
        operationId: 'listSuppressions',
        summary: 'List suppressed addresses, newest first',
        tags: ['suppressions'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            limit: limitParameter,
            cursor: { type: 'string', maxLength: 512, description: '`nextCursor` of the previous page.' },
          },
        },
      },
      {
        200: {
          type: 'object',
          required: ['items', 'nextCursor'],
          properties: { items: { type: 'array', items: suppressionSchema }, nextCursor: { type: ['string', 'null'] } },
        },
      },
    ),
    async (request) => {
      const limit = pageLimit(request.query.limit);
      const page = await deps.store.suppressions({ ...(limit !== undefined ? { limit } : {}), ...(request.query.cursor !== undefined ? { cursor: request.query.cursor } : {}) });
      return { items: page.items.map(suppressionJson), nextCursor: page.nextCursor ?? null };
    },
  );

  app.post<{ Body: { address: string; reason?: string } }>(
    '/suppressions',
    apiRouteOptions(
      'admin',
      {
        operationId: 'addSuppression',
        summary: 'Suppress an address',
        description: 'Adds the address (or replaces its entry); messages to it are refused from then on (HTTP 422 R365_SUPPRESSED, SMTP 550 5.1.1).',
        tags: ['suppressions'],
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['address'],
          properties: {
            address: { type: 'string', pattern: SUPPRESSION_ADDRESS_PATTERN, maxLength: 320 },
            reason: { type: 'string', minLength: 1, maxLength: 300, pattern: '^[^\\x00-\\x1f\\x7f]*$', description: 'Why (default: "added by <key name>").' },
          },
        },
      },
      { 201: suppressionSchema },
    ),
    async (request, reply) => {
      const reason = request.body.reason ?? `added by ${request.apiKey?.name ?? 'an operator'} through the API`;
      await deps.store.suppress({ address: request.body.address, reason, source: 'manual' });
      const [entry] = await deps.store.suppressed([request.body.address]);
      return reply.code(201).send(suppressionJson(entry ?? { address: request.body.address, reason, source: 'manual', createdAt: new Date() }));
    },
  );

  app.delete<{ Params: { address: string } }>(
    '/suppressions/:address',
    apiRouteOptions(
      'admin',
      { operationId: 'removeSuppression', summary: 'Remove an address from the suppression list', tags: ['suppressions'], params: addressParams },
      { 200: { type: 'object', required: ['address', 'removed'], properties: { address: { type: 'string' }, removed: { type: 'boolean' } } } },
    ),
    async (request) => {
      const removed = await deps.store.unsuppress(request.params.address);
      if (!removed) throw apiError('R365_HTTP_NOT_FOUND', `${request.params.address} is not on the suppression list.`, { field: 'address' });
      return { address: request.params.address, removed };
    },
  );
}
