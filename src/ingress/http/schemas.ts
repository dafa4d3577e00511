/**
 * JSON schemas of the API: fastify validates requests with them and @fastify/swagger turns them into
 * `/openapi.json`, so the documentation is the validation.
 */
import { MAX_SCHEDULE_DAYS } from '../../admission/index.js';
import {
  MAX_METADATA_KEYS,
  MAX_METADATA_VALUE,
  MAX_TAGS,
  MESSAGE_STATES,
  METADATA_KEY_PATTERN,
  RECIPIENT_STATES,
  TAG_PATTERN,
  type RecipientState,
} from '../../outbox/index.js';

/**
 * A header value: one line without control characters (tab allowed). CR or LF would let a field
 * start a header of its own (header injection); the error handler gives this pattern its own code.
 */
export const NO_CONTROL_PATTERN = '^[^\\u0000-\\u0008\\u000a-\\u001f\\u007f]*$';

/** RFC 5322 lines are at most 998 characters; one header value (before folding) stays below that. */
const headerText = (description: string, maxLength = 998) => ({ type: 'string', maxLength, pattern: NO_CONTROL_PATTERN, description }) as const;

/** An address: `"Name" <a@b>` or `a@b`, or an object with name and address. */
const address = {
  anyOf: [
    headerText('An address, e.g. `ops@contoso.com` or `"Ops" <ops@contoso.com>`.'),
    {
      type: 'object',
      properties: { name: headerText('Display name.', 256), address: headerText('Address.', 320) },
      required: ['address'],
      additionalProperties: false,
    },
  ],
} as const;

const addressList = {
  anyOf: [address, { type: 'array', items: address, maxItems: 1000 }],
  description: 'One address, or a list.',
} as const;

/** An SMTP envelope address: no spaces, angle brackets or controls (it goes into MAIL FROM / RCPT TO as is). */
const envelopeAddress = {
  type: 'string',
  minLength: 3,
  maxLength: 320,
  pattern: '^[^\\s<>()\\[\\],;:\\\\"\\u0000-\\u001f\\u007f]+@[^\\s<>()\\[\\],;:\\\\"\\u0000-\\u001f\\u007f@]+$',
} as const;

const mailboxField = {
  type: 'string',
  maxLength: 320,
  pattern: NO_CONTROL_PATTERN,
  description: 'Send from this configured mailbox (default: the one whose address or alias is the sender).',
} as const;

const ignoreSuppressionField = {
  type: 'boolean',
  default: false,
  description:
    'Send even to recipients on the suppression list (addresses that hard-bounced, or were added by an operator). Without it such a message is refused with 422 R365_SUPPRESSED.',
} as const;

/** How far ahead a message may be scheduled (`sendAt`). */
/** How far ahead `sendAt` may be: admission's, one limit for every door. */
export { MAX_SCHEDULE_DAYS };

/** What both send routes (and each batch item) take besides the message: labels, a time, validate-only. */
const sendOptions = {
  tags: {
    type: 'array',
    maxItems: MAX_TAGS,
    items: { type: 'string', pattern: TAG_PATTERN, maxLength: 64 },
    description: `Up to ${MAX_TAGS} labels (letters, digits, \`_ . : -\`, at most 64 each) to search by (\`GET /v1/messages?tag=\`); echoed in the message's webhooks.`,
  },
  metadata: {
    type: 'object',
    maxProperties: MAX_METADATA_KEYS,
    propertyNames: { pattern: METADATA_KEY_PATTERN },
    additionalProperties: { type: 'string', maxLength: MAX_METADATA_VALUE },
    description: `Your own data, up to ${MAX_METADATA_KEYS} keys (letters, digits, \`_ . -\`, at most 40) mapped to strings of at most ${MAX_METADATA_VALUE} characters; stored with the message and echoed in its webhooks.`,
  },
  sendAt: {
    type: 'string',
    format: 'date-time',
    description: `Send at this time (RFC 3339, e.g. \`2026-12-24T08:00:00Z\`), at most ${MAX_SCHEDULE_DAYS} days ahead; a time past sends now. Cancel before it with \`DELETE /v1/messages/{id}\`.`,
  },
  validateOnly: {
    type: 'boolean',
    default: false,
    description:
      'Run every check a send runs (fields, MIME, sender, suppression, route) and store nothing: 200 with where the message would go, or the error the send would get.',
  },
} as const;

/** `POST /v1/messages`. */
export const sendMessageBody = {
  type: 'object',
  additionalProperties: false,
  required: ['from'],
  properties: {
    from: address,
    to: addressList,
    cc: addressList,
    bcc: { ...addressList, description: 'Recipients not shown in the headers.' },
    replyTo: addressList,
    subject: headerText('Subject (any Unicode; encoded as RFC 2047 when needed).'),
    text: { type: 'string', description: 'Plain-text body.' },
    html: { type: 'string', description: 'HTML body.' },
    attachments: {
      type: 'array',
      maxItems: 100,
      items: {
        type: 'object',
        additionalProperties: false,
        // content is required too, checked in code: ajv stops at its first error, and for an attachment
        // with a `path` instead of content the useful error is the refused `path`, not the missing content.
        properties: {
          filename: headerText('File name shown to the recipient.', 255),
          content: {
            type: 'string',
            description: 'Required. The file, base64-encoded. (`path` and `href` are refused: the API never reads server files or URLs.)',
          },
          contentType: { ...headerText('MIME type, e.g. `application/pdf` (default: from the filename).', 255) },
          contentId: headerText('Content-ID for an inline image referenced as `cid:...` in the HTML.', 255),
          disposition: { type: 'string', enum: ['attachment', 'inline'] },
        },
      },
    },
    headers: {
      type: 'object',
      description: 'Extra headers, e.g. `{"X-Campaign": "spring"}`. Address, MIME-structure and trace headers cannot be set here.',
      maxProperties: 50,
      propertyNames: { pattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,76}$" },
      additionalProperties: headerText('Header value.'),
    },
    mailbox: mailboxField,
    ignoreSuppression: ignoreSuppressionField,
    ...sendOptions,
  },
} as const;

/** `POST /v1/messages/mime`. */
export const sendMimeBody = {
  type: 'object',
  additionalProperties: false,
  required: ['raw', 'envelope'],
  properties: {
    raw: { type: 'string', minLength: 1, description: 'The whole message (headers and body): base64, or text when encoding is `utf8`.' },
    encoding: { type: 'string', enum: ['base64', 'utf8'], default: 'base64' },
    envelope: {
      type: 'object',
      additionalProperties: false,
      required: ['from', 'to'],
      properties: {
        from: { ...envelopeAddress, description: 'MAIL FROM.' },
        to: { type: 'array', items: envelopeAddress, minItems: 1, maxItems: 1000, description: 'RCPT TO.' },
      },
    },
    mailbox: mailboxField,
    ignoreSuppression: ignoreSuppressionField,
    ...sendOptions,
  },
} as const;

/** The most a page of a listing holds (`limit`). */
export const MAX_PAGE = 500;

/**
 * The `limit` query parameter of a listing. Query strings are text and ajv coerces nothing: the route
 * reads it first (route-options.ts `pageLimit`, with its own error), so the integer is checked here.
 */
export const limitParameter = { type: 'integer', minimum: 1, maximum: MAX_PAGE, description: `Page size, 1 to ${MAX_PAGE} (default 50).` } as const;

export const idParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', maxLength: 64 } },
} as const;

export const listQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    state: { type: 'string', enum: [...MESSAGE_STATES] },
    mailbox: { type: 'string', maxLength: 320 },
    recipient: { type: 'string', maxLength: 320, description: 'Messages with this envelope recipient (any case).' },
    tag: { type: 'string', maxLength: 64, description: 'Messages with this tag (exact).' },
    since: { type: 'string', format: 'date-time', description: 'Created at or after this time (RFC 3339).' },
    until: { type: 'string', format: 'date-time', description: 'Created before this time (RFC 3339).' },
    limit: limitParameter,
    cursor: { type: 'string', maxLength: 512, description: '`nextCursor` of the previous page, with the same filters.' },
  },
} as const;

const nullable = <T extends object>(schema: T) => ({ anyOf: [schema, { type: 'null' }] }) as const;

const explanation = {
  type: 'object',
  description: "The reply catalogue's explanation: the cause and the fix, for a person.",
  properties: { id: { type: 'string' }, class: { type: 'string' }, cause: { type: 'string' }, fix: { type: 'string' }, doc: { type: 'string' } },
  required: ['id', 'class', 'cause', 'fix'],
} as const;

const envelope = {
  type: 'object',
  properties: { from: { type: 'string' }, to: { type: 'array', items: { type: 'string' } } },
  required: ['from', 'to'],
} as const;

/** 202 answer of both send routes. */
export const queuedResponse = {
  type: 'object',
  description: 'The message is stored in the outbox (committed to disk) and will be sent.',
  properties: {
    id: { type: 'string' },
    state: { type: 'string', enum: ['queued'] },
    mailbox: nullable({ type: 'string' }),
    pool: nullable({ type: 'string' }),
    messageId: nullable({ type: 'string' }),
    envelope,
    createdAt: { type: 'string', format: 'date-time' },
    sendAt: nullable({ type: 'string', format: 'date-time', description: 'When it is scheduled for; null when it is sent at once.' }),
    tags: { type: 'array', items: { type: 'string' } },
    metadata: { type: 'object', additionalProperties: { type: 'string' } },
  },
  required: ['id', 'state', 'mailbox', 'pool', 'messageId', 'envelope', 'createdAt', 'sendAt', 'tags', 'metadata'],
} as const;

/** 200 answer of a send with `validateOnly`: every check passed, nothing was stored. */
export const validatedResponse = {
  type: 'object',
  description: 'The message passed every check a send runs; nothing was stored or sent.',
  properties: {
    valid: { type: 'boolean', enum: [true] },
    mailbox: nullable({ type: 'string' }),
    pool: nullable({ type: 'string' }),
    messageId: nullable({ type: 'string' }),
    envelope,
    size: { type: 'integer', description: 'The message in bytes, as it would be stored.' },
    sendAt: nullable({ type: 'string', format: 'date-time' }),
  },
  required: ['valid', 'mailbox', 'pool', 'messageId', 'envelope', 'size', 'sendAt'],
} as const;

/** `POST /v1/messages/batch`. */
export const batchBody = {
  type: 'object',
  additionalProperties: false,
  required: ['messages'],
  properties: {
    messages: {
      type: 'array',
      minItems: 1,
      maxItems: 500,
      description: 'Up to 500 messages, each a `POST /v1/messages` body with an optional `idempotencyKey`.',
      items: {
        ...sendMessageBody,
        properties: {
          ...sendMessageBody.properties,
          idempotencyKey: {
            type: 'string',
            minLength: 1,
            maxLength: 255,
            pattern: '^[\\x21-\\x7e]+$',
            description: "This item's idempotency key: the same as sending it alone with this `Idempotency-Key` header.",
          },
        },
      },
    },
  },
} as const;

/** `POST /v1/messages/batch`'s 200: one result per item, in order. */
export const batchResponse = {
  type: 'object',
  required: ['queued', 'refused', 'items'],
  properties: {
    queued: { type: 'integer', description: 'Items queued (status 202).' },
    refused: { type: 'integer', description: 'Items refused (status 4xx or 5xx); the others are queued all the same.' },
    items: {
      type: 'array',
      items: {
        type: 'object',
        description:
          "The item's index and the status and body a single send would have answered: the queued message (202), the check's result (200, validateOnly) or `error`.",
        required: ['index', 'status'],
        properties: {
          index: { type: 'integer' },
          status: { type: 'integer' },
          replayed: { type: 'boolean', description: 'True when the idempotencyKey was used before and this is its first answer again.' },
          ...queuedResponse.properties,
          ...validatedResponse.properties,
          error: { type: 'object', properties: { code: { type: 'string' }, message: { type: 'string' }, field: { type: 'string' } } },
        },
      },
    },
  },
} as const;

const attempt = {
  type: 'object',
  properties: {
    at: { type: 'string', format: 'date-time' },
    mailbox: { type: 'string' },
    reply: nullable({ type: 'string' }),
    class: { type: 'string' },
    explanation: nullable(explanation),
    durationMs: { type: 'number' },
  },
  required: ['at', 'mailbox', 'reply', 'class', 'explanation', 'durationMs'],
} as const;

/** One recipient and where it stands (see docs/http-api.md, "Recipient states"). */
const recipient = {
  type: 'object',
  properties: {
    address: { type: 'string' },
    state: {
      type: 'string',
      enum: [...RECIPIENT_STATES],
      description: "`accepted` is Exchange's 250, not delivery; `bounced` and `delayed` come from NDRs when the mailbox's `bounces.read` is on.",
    },
    reply: nullable({ type: 'string', description: "Exchange's RCPT reply (refused) or the NDR's Diagnostic-Code (bounced, delayed)." }),
    explanation: nullable(explanation),
    dsnStatus: nullable({ type: 'string', description: "The NDR's status code, e.g. 5.1.1." }),
    remoteMta: nullable({ type: 'string' }),
    updatedAt: { type: 'string', format: 'date-time' },
  },
  required: ['address', 'state', 'reply', 'explanation', 'dsnStatus', 'remoteMta', 'updatedAt'],
} as const;

/** How many recipients are in each state. */
const recipientCounts = {
  type: 'object',
  description: "How many of the message's recipients are in each state.",
  properties: Object.fromEntries(RECIPIENT_STATES.map((s) => [s, { type: 'integer' }])) as Record<RecipientState, { type: 'integer' }>,
  required: [...RECIPIENT_STATES],
} as const;

const messageProperties = {
  id: { type: 'string' },
  state: { type: 'string', enum: [...MESSAGE_STATES] },
  mailbox: nullable({ type: 'string' }),
  pool: nullable({ type: 'string' }),
  envelope,
  size: { type: 'integer' },
  messageId: nullable({ type: 'string' }),
  source: { type: 'object', properties: { kind: { type: 'string' }, client: { type: 'string' }, user: { type: 'string' } }, required: ['kind'] },
  attemptCount: { type: 'integer' },
  createdAt: { type: 'string', format: 'date-time' },
  updatedAt: { type: 'string', format: 'date-time' },
  nextAttemptAt: nullable({ type: 'string', format: 'date-time' }),
  lastReply: nullable({ type: 'string' }),
  lastClass: nullable({ type: 'string' }),
  explanation: nullable(explanation),
  recipientCounts,
  tags: { type: 'array', items: { type: 'string' } },
  metadata: { type: 'object', additionalProperties: { type: 'string' } },
  sendAt: nullable({ type: 'string', format: 'date-time', description: 'The time the message was scheduled for; null when sent at once.' }),
} as const;

/** Every field of a listed message is present (`null` when it has no value). */
const messageRequired = Object.keys(messageProperties) as Array<keyof typeof messageProperties>;

export const messageResponse = {
  type: 'object',
  properties: { ...messageProperties, recipients: { type: 'array', items: recipient }, attempts: { type: 'array', items: attempt } },
  required: [...messageRequired, 'recipients', 'attempts'],
} as const;

export const messageListResponse = {
  type: 'object',
  properties: {
    items: { type: 'array', items: { type: 'object', properties: messageProperties, required: messageRequired } },
    nextCursor: nullable({ type: 'string' }),
  },
  required: ['items', 'nextCursor'],
} as const;

export const stateChangeResponse = {
  type: 'object',
  properties: { id: { type: 'string' }, state: { type: 'string', enum: [...MESSAGE_STATES] } },
  required: ['id', 'state'],
} as const;

/** `POST /v1/mailboxes/{mailbox}/resume`: whether the mailbox was paused, and the pause the request ends. */
export const mailboxResumeResponse = {
  type: 'object',
  properties: {
    mailbox: { type: 'string' },
    paused: { type: 'boolean', description: 'Whether the mailbox was paused (false: nothing to resume).' },
    resumeRequestedAt: nullable({ type: 'string', format: 'date-time' }),
    pausedSince: nullable({ type: 'string', format: 'date-time' }),
    reply: nullable({ type: 'string' }),
    explanation: nullable(explanation),
  },
  required: ['mailbox', 'paused', 'resumeRequestedAt', 'pausedSince', 'reply', 'explanation'],
} as const;

const quota = {
  type: 'object',
  properties: { limit: { type: 'integer' }, used: { type: 'integer' }, left: { type: 'integer' } },
  required: ['limit', 'used', 'left'],
} as const;

export const mailboxListResponse = {
  type: 'object',
  properties: {
    items: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          address: { type: 'string' },
          aliases: { type: 'array', items: { type: 'string' } },
          pools: { type: 'array', items: { type: 'string' } },
          paused: { type: 'boolean' },
          pausedSince: nullable({ type: 'string', format: 'date-time' }),
          pausedUntil: nullable({ type: 'string', format: 'date-time' }),
          pauseReason: nullable(explanation),
          token: {
            type: 'object',
            properties: {
              cached: { type: 'boolean' },
              expiresAt: nullable({ type: 'string', format: 'date-time' }),
              refreshing: { type: 'boolean' },
              failures: { type: 'integer' },
              lastError: nullable({ type: 'object', properties: { code: { type: 'string' }, message: { type: 'string' } }, required: ['code', 'message'] }),
            },
            required: ['cached', 'expiresAt', 'refreshing', 'failures', 'lastError'],
          },
          quota: {
            type: 'object',
            properties: {
              messagesPerMinute: quota,
              recipientsPerDay: quota,
              connections: { type: 'object', properties: { limit: { type: 'integer' }, inUse: { type: 'integer' } }, required: ['limit', 'inUse'] },
            },
            required: ['messagesPerMinute', 'recipientsPerDay', 'connections'],
          },
          counts: { type: 'object', additionalProperties: { type: 'integer' } },
          lastError: nullable({
            type: 'object',
            properties: {
              source: { type: 'string' },
              at: nullable({ type: 'string', format: 'date-time' }),
              reply: nullable({ type: 'string' }),
              code: nullable({ type: 'string' }),
              cause: { type: 'string' },
              fix: { type: 'string' },
            },
            required: ['source', 'at', 'reply', 'code', 'cause', 'fix'],
          }),
        },
        required: ['address', 'aliases', 'pools', 'paused', 'pausedSince', 'pausedUntil', 'pauseReason', 'token', 'quota', 'counts', 'lastError'],
      },
    },
  },
  required: ['items'],
} as const;
