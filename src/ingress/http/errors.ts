import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { isRelay365Error, Relay365Error, type Relay365ErrorCode } from '../../errors.js';
import type { OutboxStore, StoredMessage } from '../../outbox/index.js';
import { NO_CONTROL_PATTERN } from './schemas.js';

/** Every error answer of the API: a stable code to branch on, a message that says how to fix it, the field at fault. */
export interface ApiErrorBody {
  error: { code: Relay365ErrorCode; message: string; field?: string };
}

/** The HTTP status of each code the API answers with; a code not listed is a server-side failure (500). */
const STATUS_BY_CODE: Partial<Record<Relay365ErrorCode, number>> = {
  R365_HTTP_INVALID_REQUEST: 400,
  R365_HTTP_HEADER_LINE_BREAK: 400,
  R365_MESSAGE_INVALID: 400,
  R365_LIST_CURSOR_INVALID: 400,
  R365_HTTP_UNAUTHORIZED: 401,
  R365_HTTP_FORBIDDEN: 403,
  R365_HTTP_NOT_FOUND: 404,
  R365_DASHBOARD_DISABLED: 404,
  R365_MESSAGE_NOT_RETRYABLE: 409,
  R365_MESSAGE_NOT_CANCELLABLE: 409,
  R365_IDEMPOTENCY_IN_PROGRESS: 409,
  R365_HTTP_BODY_TOO_LARGE: 413,
  R365_HTTP_UNSUPPORTED_MEDIA_TYPE: 415,
  R365_MESSAGE_TOO_LARGE: 413,
  R365_IDEMPOTENCY_MISMATCH: 422,
  R365_NO_ROUTE_FOR_SENDER: 422,
  R365_SUPPRESSED: 422,
  R365_UNKNOWN_MAILBOX: 422,
  // The outbox is locked or the disk full: nothing was queued, and trying again later may work.
  R365_OUTBOX_UNAVAILABLE: 503,
  R365_HTTP_TOO_MANY_LOGINS: 429,
  R365_HTTP_BUSY: 503,
};

/**
 * An error the API answers with: `status` overrides the code's usual status, `field` names the
 * request field at fault (dotted, with indexes: `attachments[0].filename`).
 */
export function apiError(code: Relay365ErrorCode, message: string, options: { field?: string; status?: number } = {}): Relay365Error {
  return new Relay365Error(code, message, {
    details: { ...(options.field !== undefined ? { field: options.field } : {}), ...(options.status !== undefined ? { status: options.status } : {}) },
  });
}

/**
 * Why the outbox did not retry or cancel a message (409), for the API and the dashboard alike: the state
 * the message is in now, read again, since it may have moved after the caller read it.
 */
export async function stateChangeRefused(
  store: Pick<OutboxStore, 'get'>,
  message: StoredMessage,
  code: 'R365_MESSAGE_NOT_RETRYABLE' | 'R365_MESSAGE_NOT_CANCELLABLE',
  done: 'retried' | 'cancelled',
): Promise<Relay365Error> {
  const now = (await store.get(message.id))?.state ?? message.state;
  return apiError(code, `Message ${message.id} is ${now}: only a queued, deferred or failed message can be ${done}.`);
}

/** Ajv's `/attachments/0/filename` as `attachments[0].filename`. */
function fieldOf(instancePath: string, property?: string): string {
  const parts = instancePath.split('/').filter(Boolean);
  if (property !== undefined) parts.push(property);
  return parts.reduce((out, p) => (/^\d+$/.test(p) ? `${out}[${p}]` : out === '' ? p : `${out}.${p}`), '');
}

interface AjvError {
  keyword: string;
  instancePath: string;
  message?: string;
  params: Record<string, unknown>;
}

/** The most useful of ajv's errors, as the API's error body. */
function validationError(errors: readonly AjvError[], context: string): Relay365Error {
  // A control character in a header value is the one violation worth a code of its own: it is an
  // attempt (or a bug) that would add headers to the message.
  const lineBreak = errors.find((e) => e.keyword === 'pattern' && e.params.pattern === NO_CONTROL_PATTERN);
  if (lineBreak) {
    const field = fieldOf(lineBreak.instancePath);
    return apiError(
      'R365_HTTP_HEADER_LINE_BREAK',
      `${field} contains a line break or another control character. A header value must be one line of text: remove the CR/LF.`,
      { field },
    );
  }
  const extra = errors.find((e) => e.keyword === 'additionalProperties');
  if (extra) {
    const property = String(extra.params.additionalProperty);
    const field = fieldOf(extra.instancePath, property);
    if (/^attachments\[\d+\]$/.test(fieldOf(extra.instancePath)) && ['path', 'href', 'raw'].includes(property)) {
      return apiError(
        'R365_HTTP_INVALID_REQUEST',
        `${field} is not accepted: the API never reads files or URLs on the server. Send the file's bytes base64-encoded in content.`,
        { field },
      );
    }
    return apiError('R365_HTTP_INVALID_REQUEST', `${field} is not a field of this request; see /openapi.json for the fields accepted.`, { field });
  }
  const required = errors.find((e) => e.keyword === 'required');
  if (required) {
    const field = fieldOf(required.instancePath, String(required.params.missingProperty));
    return apiError('R365_HTTP_INVALID_REQUEST', `${field} is required.`, { field });
  }
  // For anyOf (an address as a string or an object), ajv lists each branch's complaint: the anyOf's own is the summary.
  const first = errors.find((e) => e.keyword === 'anyOf') ?? errors[0];
  const field = first ? fieldOf(first.instancePath) : '';
  const where = field || context;
  return apiError(
    'R365_HTTP_INVALID_REQUEST',
    `${where} ${first?.message ?? 'is not valid'}${first?.keyword === 'anyOf' ? ' (see /openapi.json for its shape)' : ''}.`,
    field ? { field } : {},
  );
}

/** Turns anything thrown in a route into the API's error body and status. */
export function toApiError(err: unknown, bodyLimitBytes: number, contentType?: string): { status: number; body: ApiErrorBody; error: Relay365Error } {
  let error: Relay365Error;
  const fastifyError = err as Partial<FastifyError> & { validation?: AjvError[]; validationContext?: string };
  if (isRelay365Error(err)) error = err;
  else if (fastifyError.validation) error = validationError(fastifyError.validation, fastifyError.validationContext ?? 'body');
  else if (fastifyError.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
    error = apiError(
      'R365_HTTP_BODY_TOO_LARGE',
      `The request body is larger than ${bodyLimitBytes} bytes (http.bodyLimitBytes). Send smaller attachments, or raise the limit.`,
    );
  } else if (
    fastifyError.code === 'FST_ERR_CTP_INVALID_JSON_BODY' ||
    fastifyError.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' ||
    (err instanceof SyntaxError && fastifyError.statusCode === 400)
  ) {
    error = apiError(
      'R365_HTTP_INVALID_REQUEST',
      `The request body is not valid JSON (${fastifyError.message ?? 'parse error'}). Send a JSON object with Content-Type: application/json.`,
    );
  } else if (fastifyError.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    const sent = contentType?.split(';')[0]?.trim();
    error = apiError(
      'R365_HTTP_UNSUPPORTED_MEDIA_TYPE',
      `The request body was sent as ${sent ? sent : 'no Content-Type'}; the API reads JSON only: send it with Content-Type: application/json (curl: -H 'Content-Type: application/json').`,
    );
  } else if (typeof fastifyError.statusCode === 'number' && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500) {
    error = apiError('R365_HTTP_INVALID_REQUEST', fastifyError.message ?? 'The request is not valid.', { status: fastifyError.statusCode });
  } else {
    error = new Relay365Error('R365_HTTP_INTERNAL_ERROR', 'The request failed unexpectedly; the relay365 log has the details (search it for the request id).', {
      cause: err,
    });
  }
  const details = error.details ?? {};
  const status = typeof details.status === 'number' ? details.status : (STATUS_BY_CODE[error.code] ?? 500);
  const field = typeof details.field === 'string' ? details.field : undefined;
  // A code outside the table is an internal failure: its message may name paths or SQL, so it stays in the log.
  const message =
    STATUS_BY_CODE[error.code] !== undefined || typeof details.status === 'number'
      ? error.message
      : 'The request failed unexpectedly; the relay365 log has the details (search it for the request id).';
  const code = status === 500 && STATUS_BY_CODE[error.code] === undefined ? 'R365_HTTP_INTERNAL_ERROR' : error.code;
  return { status, error, body: { error: { code, message, ...(field !== undefined ? { field } : {}) } } };
}

/** Sends the API's error body for `err` (and logs what is not the client's fault). */
export function sendApiError(request: FastifyRequest, reply: FastifyReply, err: unknown, bodyLimitBytes: number): FastifyReply {
  const { status, body, error } = toApiError(err, bodyLimitBytes, request.headers['content-type']);
  if (status >= 500) request.log.error({ err: error.cause ?? error, code: error.code }, 'request failed');
  if (status === 503) void reply.header('retry-after', '5');
  return reply.code(status).type('application/json; charset=utf-8').send(JSON.stringify(body));
}

/**
 * The error for an HTTP listener that cannot open, like the SMTP relay's `R365_SMTP_LISTEN_FAILED`:
 * the address, the system's reason and what to change in `http`.
 */
export function httpListenFailed(cause: unknown, host: string, port: number): Relay365Error {
  const code = (cause as NodeJS.ErrnoException).code;
  const fix =
    code === 'EADDRINUSE'
      ? 'Another program (or another relay365) uses the port: stop it, or choose another http.port.'
      : code === 'EACCES'
        ? 'Ports below 1024 need privileges: choose an http.port above 1024 or grant CAP_NET_BIND_SERVICE.'
        : code === 'EADDRNOTAVAIL'
          ? "The address is not one of this machine's: set http.host to 127.0.0.1, 0.0.0.0 or an address it has."
          : 'Check http.host and http.port, or set http.enabled: false.';
  return new Relay365Error('R365_HTTP_LISTEN_FAILED', `The HTTP API cannot listen on ${host}:${port} (${code ?? (cause as Error).message}). ${fix}`, {
    cause,
    details: { host, port },
  });
}

/** Installs the JSON error answers: for thrown errors, validation failures, bodies too large, and unknown routes. */
export function installErrorHandling(app: FastifyInstance, bodyLimitBytes: number): void {
  // Fastify reads text/plain bodies as strings by default, which the routes' schemas then refuse with
  // a puzzling 400 "body must be object". Every body the API takes is JSON: any other type is a 415.
  app.removeContentTypeParser('text/plain');
  app.setErrorHandler((err, request, reply) => sendApiError(request, reply, err, bodyLimitBytes));
  app.setNotFoundHandler((request, reply) =>
    sendApiError(
      request,
      reply,
      apiError('R365_HTTP_NOT_FOUND', `No route ${request.method} ${request.url.split('?')[0]}. The API is under /v1; its description is at /openapi.json.`),
      bodyLimitBytes,
    ),
  );
}

/**
 * The error body's JSON schema, added once with `app.addSchema` (app.ts): /openapi.json shows it as
 * `components/schemas/Error`, and every route's error replies refer to it ({@link ERROR_SCHEMA_REF}).
 */
export const errorResponseSchema = {
  $id: 'Error',
  type: 'object',
  description: 'An error: a stable code (docs/errors.md), what to do, and the field at fault.',
  properties: {
    error: {
      type: 'object',
      properties: {
        code: { type: 'string', example: 'R365_HTTP_INVALID_REQUEST' },
        message: { type: 'string' },
        field: { type: 'string' },
      },
      required: ['code', 'message'],
    },
  },
  required: ['error'],
} as const;

/** A reference to {@link errorResponseSchema}, for a route's `4xx` and `5xx` replies. */
export const ERROR_SCHEMA_REF = { $ref: 'Error#' } as const;
