/**
 * The one error type relay365 throws. Callers branch on `code`, never on the message.
 *
 * Every code is listed in {@link ERROR_CODES} and documented in `docs/errors.md`;
 * `test/unit/errors.test.ts` fails when the two drift apart.
 */

/** Every stable error code, with a one-line summary used by the docs test. */
export const ERROR_CODES = {
  R365_CONFIG_NOT_FOUND: 'The config file does not exist or cannot be read.',
  R365_CONFIG_INVALID: 'The config file or a RELAY365_* override does not pass validation.',
  R365_SECRET_UNRESOLVED: 'A secret reference (env: or file:) points at nothing.',
  R365_SCENARIO_INVALID: 'A sandbox scenario file does not pass validation.',
  R365_SANDBOX_START_FAILED: 'The sandbox could not listen on its ports or write its files.',
  R365_SECRET_KEY_UNREADABLE: 'The key that encrypts the token cache cannot be read.',
  R365_TOKEN_CACHE_UNREADABLE: 'The token cache cannot be decrypted: wrong key or damaged file.',
  R365_TOKEN_CACHE_UNAVAILABLE: 'The shared token cache (PostgreSQL) cannot be reached, or another node held a refresh lock too long.',
  R365_TOKEN_REJECTED: 'The identity platform refused to issue a token (AADSTS error); the setup must change.',
  R365_TOKEN_ENDPOINT_UNAVAILABLE: 'The identity platform could not be reached or answered with a server error.',
  R365_LOGIN_REQUIRED: 'A delegated mailbox has no usable sign-in: run relay365 login.',
  R365_TOKEN_COMMAND_FAILED: 'The external token command failed or printed no token.',
  R365_UNKNOWN_MAILBOX: 'The mailbox is not in the config.',
  R365_MESSAGE_INVALID: 'The message cannot be sent as given (no sender, no recipient, unreadable file).',
  R365_OUTBOX_UNAVAILABLE: 'The outbox database cannot be opened, migrated or written (locked, disk full, damaged).',
  R365_SCHEMA_TOO_NEW: 'The database was upgraded by a newer relay365: its schema version is one this relay365 does not know.',
  R365_LIST_CURSOR_INVALID: 'A list cursor was not one the outbox returned.',
  R365_MESSAGE_TOO_LARGE: 'The message is larger than Exchange Online accepts (limits.maxMessageBytes).',
  R365_NO_ROUTE_FOR_SENDER: "No configured mailbox may send as the message's sender.",
  R365_SUPPRESSED: 'A recipient is on the suppression list (it hard-bounced, or an operator added it).',
  R365_SUPPRESSION_NOT_FOUND: 'relay365 suppression remove was given an address that is not on the suppression list.',
  R365_MESSAGE_NOT_RETRYABLE: 'The message cannot be retried: it is sent, being sent or cancelled.',
  R365_MESSAGE_NOT_CANCELLABLE: 'The message cannot be cancelled: it is sent, being sent or already cancelled.',
  R365_HTTP_UNAUTHORIZED: 'The HTTP request has no valid API key (or the dashboard no valid admin password).',
  R365_HTTP_FORBIDDEN: "The API key is valid but may not do this: the route needs a scope it lacks, or it may not send as the message's sender.",
  R365_HTTP_INVALID_REQUEST: 'The HTTP request is not valid JSON or does not match the API schema.',
  R365_HTTP_HEADER_LINE_BREAK: 'A header value in the request (subject, address, header, filename) contains a line break.',
  R365_HTTP_BODY_TOO_LARGE: 'The HTTP request body is larger than http.bodyLimitBytes.',
  R365_HTTP_NOT_FOUND: 'No such message, or no such route.',
  R365_HTTP_INTERNAL_ERROR: 'The HTTP API failed unexpectedly (a bug).',
  R365_IDEMPOTENCY_MISMATCH: 'An Idempotency-Key was reused with a different request.',
  R365_IDEMPOTENCY_IN_PROGRESS: 'The first request with this Idempotency-Key is still being processed.',
  R365_DASHBOARD_DISABLED: 'The dashboard is off because http.adminPassword is not set.',
  R365_HTTP_BUSY: 'Too many large request bodies are being received at once (http.maxConcurrentLargeBodies); try again shortly.',
  R365_HTTP_TOO_MANY_LOGINS: 'Too many wrong dashboard passwords from this address; it is locked for a while.',
  R365_API_KEY_UNKNOWN: 'No active API key matches the id, name or prefix given.',
  R365_SMTP_LISTEN_FAILED: 'The SMTP relay cannot listen on a configured address and port.',
  R365_HTTP_LISTEN_FAILED: 'The HTTP API cannot listen on http.host and http.port.',
  R365_TLS_CERTIFICATE_UNUSABLE: "The SMTP relay's TLS certificate or key cannot be read, do not match, or the self-signed pair cannot be written.",
  R365_PASSWORD_INPUT_INVALID: 'relay365 user add got an empty password, two that differ, or no terminal to ask on.',
  R365_INIT_INPUT_INVALID: 'relay365 init got a missing or invalid answer (tenant, client id, setup, mailbox, user), or no terminal to ask on.',
  R365_INIT_OUTPUT_EXISTS: 'relay365 init would overwrite an existing config or secret file; pass --force to replace it.',
  R365_HTTP_UNSUPPORTED_MEDIA_TYPE: 'The HTTP request body is not sent as application/json.',
  R365_MESSAGE_NOT_FOUND: 'No message in the outbox has this id.',
  R365_RELAY_CLOSED: 'The library relay (createRelay) was closed and takes no more messages.',
  R365_OUTCOME_TIMEOUT: 'A queued message reached no final state within the time the library was asked to wait.',
  R365_NO_MAILBOX_CONFIGURED: 'The command needs a mailbox and the config lists none.',
  R365_MAILBOX_NOT_CHOSEN: 'Several mailboxes are configured and the command was not told which one (--mailbox).',
  R365_TOKEN_NOT_JWT: "The mailbox's access token is not a JWT, so its claims cannot be read.",
  R365_CLI_USAGE: 'The command line has an unknown command or option, misses an argument, or gives a value outside its choices.',
  R365_CLI_OPTION_INVALID: 'A command-line option has a value of the wrong kind or out of range (a number, a port).',
  R365_UNEXPECTED: 'relay365 failed in a way it does not expect: a bug to report.',
} as const;

export type Relay365ErrorCode = keyof typeof ERROR_CODES;

export interface Relay365ErrorOptions {
  /** The error that led to this one; kept for logs and debuggers. */
  cause?: unknown;
  /** True when trying the same thing again later may succeed. */
  retryable?: boolean;
  /** Structured facts about the failure (never secrets). */
  details?: Record<string, unknown>;
}

/** Base error with a stable `code`; `cause` is always kept. */
export class Relay365Error extends Error {
  readonly code: Relay365ErrorCode;
  readonly retryable: boolean;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: Relay365ErrorCode, message: string, options: Relay365ErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'Relay365Error';
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.details = options.details;
  }
}

/** Narrowing helper: `isRelay365Error(err, 'R365_CONFIG_INVALID')`. */
export function isRelay365Error(err: unknown, code?: Relay365ErrorCode): err is Relay365Error {
  return err instanceof Relay365Error && (code === undefined || err.code === code);
}

/**
 * The database holds a schema version this release does not know: a newer relay365 migrated it. The same
 * words for every ledger (outbox, HTTP tables, token cache; SQLite and PostgreSQL), so an operator who
 * downgraded, or started an old node beside upgraded ones, reads one instruction.
 * @param what - the tables and where they are, e.g. `the outbox tables in /var/lib/relay365/relay365.db`.
 */
export function schemaTooNew(what: string, version: number, known: number, details: Record<string, unknown> = {}): Relay365Error {
  return new Relay365Error(
    'R365_SCHEMA_TOO_NEW',
    `This database was upgraded by a newer relay365 (schema ${version}, this one knows ${known}); upgrade relay365 or restore the backup taken before the upgrade. (${what})`,
    { details: { ...details, version, known } },
  );
}
