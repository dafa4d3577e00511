/**
 * `POST /v1/messages/batch`: up to 500 messages in one request, each with its own answer, as the
 * managed email APIs' batch endpoints do. Each item is the body of `POST /v1/messages`, plus its own
 * `idempotencyKey`; an item with a key is the same request as a single send with that key in the
 * `Idempotency-Key` header, so a client that retries a batch (or sends an item alone) queues nothing twice.
 */
import type { FastifyInstance } from 'fastify';
import type { Admission } from '../../admission/index.js';
import type { IntegrationStore } from '../../store/index.js';
import { toApiError } from './errors.js';
import { onceForKey, type HandlerResult } from './idempotency.js';
import { composeFromFields, type SendMessageBody } from './message-input.js';
import { apiRouteOptions } from './route-options.js';
import { batchBody, batchResponse } from './schemas.js';
import { submit } from './submit.js';

/** The most messages one batch takes. */
export const MAX_BATCH = 500;

export interface BatchItem extends SendMessageBody {
  idempotencyKey?: string;
}

/** One item's answer: the status and body a single send would have given. */
interface ItemResult {
  index: number;
  status: number;
  replayed: boolean;
  body: unknown;
}

/** How many items are composed and checked at once: the outbox commits those that arrive together in one transaction. */
const CONCURRENCY = 32;

export function batchRoutes(app: FastifyInstance, deps: { admission: Admission; integrationStore: IntegrationStore; bodyLimitBytes: number }): void {
  app.post<{ Body: { messages: BatchItem[] } }>(
    '/messages/batch',
    apiRouteOptions(
      'send',
      {
        operationId: 'sendBatch',
        summary: 'Send up to 500 messages in one request',
        description:
          'Each item is a `POST /v1/messages` body, with an optional `idempotencyKey` of its own (the same as sending it alone with that `Idempotency-Key`). ' +
          'Answers 200 with one result per item, in order: `status` 202 and the queued message, 200 for a `validateOnly` item, or the error status and body the single send would get. ' +
          'An item refused leaves the others queued. A body that does not match the schema (an unknown field, a bad address) is refused whole with 400, naming the item (`messages[3].to`), and queues nothing.',
        tags: ['messages'],
        body: batchBody,
      },
      { 200: batchResponse },
    ),
    async (request) => {
      const key = request.apiKey!;
      const items = request.body.messages;
      const results: ItemResult[] = new Array<ItemResult>(items.length);
      const one = async (item: BatchItem, index: number): Promise<ItemResult> => {
        const { idempotencyKey, ...body } = item;
        const field = `messages[${index}].`;
        const handle = async (): Promise<HandlerResult> => submit(deps.admission, key, request.ip, await composeFromFields(body), body, field);
        try {
          if (idempotencyKey === undefined) {
            const result = await handle();
            return { index, status: result.status, replayed: false, body: result.body };
          }
          // The same request as POST /v1/messages with this key in its header.
          const keyed = await onceForKey(
            deps.integrationStore,
            key.id,
            idempotencyKey,
            { route: 'POST /v1/messages', body },
            request.log,
            handle,
            `${field}idempotencyKey`,
          );
          return { index, status: keyed.status, replayed: keyed.replayed, body: JSON.parse(keyed.json) as unknown };
        } catch (err) {
          const { status, body: error, error: cause } = toApiError(err, deps.bodyLimitBytes);
          if (status >= 500) request.log.error({ err: cause.cause ?? cause, code: cause.code, item: index }, 'batch item failed');
          return { index, status, replayed: false, body: error };
        }
      };
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < items.length) {
          const index = next++;
          results[index] = await one(items[index]!, index);
        }
      };
      await Promise.all(Array.from({ length: Math.min(CONCURRENCY, items.length) }, worker));
      const queued = results.filter((r) => r.status === 202).length;
      return {
        queued,
        refused: results.filter((r) => r.status >= 400).length,
        items: results.map((r) => ({ index: r.index, status: r.status, ...(r.replayed ? { replayed: true } : {}), ...(r.body as object) })),
      };
    },
  );
}
