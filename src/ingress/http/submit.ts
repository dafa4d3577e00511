/**
 * What every send route of the API does with a composed message: the admission pipeline every door
 * runs, with the API's own options (labels, a scheduled time, validate-only), and the answer it gives.
 * The single sends and each item of a batch go through {@link submit}.
 */
import { scheduleProblem, type Admission } from '../../admission/index.js';
import type { ApiKeyRecord } from '../../store/index.js';
import type { ListQuery, MessageState } from '../../outbox/index.js';
import { apiError } from './errors.js';
import type { HandlerResult } from './idempotency.js';
import type { ComposedRequest } from './message-input.js';
import { pageLimit } from './route-options.js';

/** The fields of a send body beside the message itself. */
export interface SendOptions {
  mailbox?: string | undefined;
  /** Send to suppressed addresses too (docs/bounces.md). */
  ignoreSuppression?: boolean | undefined;
  tags?: string[] | undefined;
  metadata?: Record<string, string> | undefined;
  /** RFC 3339, validated as `date-time` by the schema. */
  sendAt?: string | undefined;
  validateOnly?: boolean | undefined;
}

/**
 * The time a `sendAt` names, or undefined when it is absent or already past (then the message is due
 * at once, as if it had none).
 *
 * @throws Relay365Error `R365_HTTP_INVALID_REQUEST` for a time more than 30 days ahead.
 */
export function scheduledTime(sendAt: string | undefined, field = 'sendAt', now = Date.now()): Date | undefined {
  if (sendAt === undefined) return undefined;
  const at = new Date(sendAt);
  if (Number.isNaN(at.getTime()))
    throw apiError('R365_HTTP_INVALID_REQUEST', `${field} is not a date-time: use RFC 3339, e.g. 2026-12-24T08:00:00Z.`, { field });
  // Admission's limit and words: the HTTP API answers it before the message is read, as a bad request.
  const problem = scheduleProblem(at, now, field);
  if (problem) throw apiError('R365_HTTP_INVALID_REQUEST', problem, { field });
  return at.getTime() > now ? at : undefined;
}

/**
 * Runs the admission checks for one message and commits it (unless `validateOnly`); answers 202 with
 * the queued message, or 200 with where it would go. A refusal is thrown as the API's error.
 * `field` prefixes the fields an error names (`messages[3].`, for a batch item).
 */
export async function submit(
  admission: Admission,
  key: ApiKeyRecord | undefined,
  client: string,
  composed: ComposedRequest,
  options: SendOptions,
  field = '',
): Promise<HandlerResult> {
  const sendAt = scheduledTime(options.sendAt, `${field}sendAt`);
  const verdict = await admission.admit(
    {
      raw: composed.raw,
      envelope: composed.envelope,
      mailbox: options.mailbox,
      ignoreSuppression: options.ignoreSuppression,
      sendAt,
      tags: options.tags,
      metadata: options.metadata,
      validateOnly: options.validateOnly,
    },
    {
      source: { kind: 'http', client, ...(key ? { user: key.name } : {}) },
      display: key ? `The API key ${key.name}` : 'This request',
      // A key limited to some senders, like an SMTP user with allowedSenders.
      allowedSenders: key?.senders,
    },
  );
  if (!verdict.ok) {
    // The store's own error (R365_OUTBOX_UNAVAILABLE and its fix) says more than a generic one.
    if (verdict.reason === 'store-unavailable' && verdict.cause instanceof Error) throw verdict.cause;
    const hint = verdict.reason === 'suppressed' ? ' To send anyway, set "ignoreSuppression": true.' : '';
    throw apiError(verdict.code, verdict.message + hint, {
      ...(verdict.field !== undefined ? { field: `${field}${verdict.field}` } : {}),
      status: verdict.status,
    });
  }
  const stored = verdict.stored;
  if (stored === undefined) {
    // validateOnly: every check passed and nothing was stored.
    const message = verdict.message;
    return {
      status: 200,
      body: {
        valid: true,
        mailbox: message.mailbox ?? null,
        pool: message.pool ?? null,
        messageId: message.messageId ?? null,
        envelope: message.envelope,
        size: message.raw.length,
        sendAt: sendAt?.toISOString() ?? null,
      },
    };
  }
  return {
    status: 202,
    headers: { location: `/v1/messages/${stored.id}` },
    body: {
      id: stored.id,
      state: 'queued',
      mailbox: stored.mailbox ?? null,
      pool: stored.pool ?? null,
      messageId: stored.messageId ?? null,
      envelope: stored.envelope,
      createdAt: stored.createdAt.toISOString(),
      sendAt: stored.sendAt?.toISOString() ?? null,
      tags: stored.tags,
      metadata: stored.metadata,
    },
  };
}

/** `GET /v1/messages`' query string, as validated by `listQuery`. */
export interface ListQuerystring {
  state?: MessageState;
  mailbox?: string;
  recipient?: string;
  tag?: string;
  since?: string;
  until?: string;
  limit?: string | number;
  cursor?: string;
}

/** The store's query for a validated query string. */
export function listQueryOf(query: ListQuerystring): ListQuery {
  const limit = pageLimit(query.limit === undefined ? undefined : String(query.limit));
  const time = (value: string | undefined, field: string): Date | undefined => {
    if (value === undefined) return undefined;
    const at = new Date(value);
    if (Number.isNaN(at.getTime()))
      throw apiError('R365_HTTP_INVALID_REQUEST', `${field} is not a date-time: use RFC 3339, e.g. 2026-12-01T00:00:00Z.`, { field });
    return at;
  };
  const since = time(query.since, 'since');
  const until = time(query.until, 'until');
  return {
    ...(query.state !== undefined ? { state: query.state } : {}),
    ...(query.mailbox !== undefined ? { mailbox: query.mailbox.toLowerCase() } : {}),
    ...(query.recipient !== undefined ? { recipient: query.recipient } : {}),
    ...(query.tag !== undefined ? { tag: query.tag } : {}),
    ...(since !== undefined ? { since } : {}),
    ...(until !== undefined ? { until } : {}),
    ...(limit !== undefined ? { limit } : {}),
    ...(query.cursor !== undefined ? { cursor: query.cursor } : {}),
  };
}
