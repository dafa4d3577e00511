/**
 * The one list of secret-bearing field names. The logger redacts these keys at any of the first
 * three levels of a log object; {@link scrubSecrets} removes secret-looking values from free text
 * (SMTP transcripts, upstream error bodies) where no key tells them apart.
 *
 * Only secrets are replaced: a word that merely sits where a secret could (an EHLO mechanism list,
 * an errno `code`, a `<placeholder>` in a fix text) is kept, since an explanation with holes in it
 * hides the very thing the admin needs to read. `test/unit/logger.test.ts` checks both sides.
 */
export const SECRET_KEYS = [
  'password',
  'pass',
  'secret',
  'clientSecret',
  'passphrase',
  'client_secret',
  'accessToken',
  'access_token',
  'refreshToken',
  'refresh_token',
  'idToken',
  'id_token',
  'token',
  'assertion',
  'client_assertion',
  'privateKey',
  'apiKey',
  'authorization',
  'cookie',
  'xoauth2',
  'code_verifier',
  'device_code',
  // The OAuth authorization code (RFC 6749 section 4.1.2). Plain `code` is not listed: it is the
  // errno (`ECONNREFUSED`), SMTP or R365_* code of nearly every error line; the authorization code
  // only travels as `code` inside a redirect's query or a token request's form, listed below.
  'authorizationCode',
  'authorization_code',
] as const;

/** Where a bare `code` field is the authorization code: the redirect's query, the token request's form. */
const AUTHORIZATION_CODE_PATHS = ['query.code', 'body.code', 'form.code', 'params.code'];

/** Pino redaction paths for {@link SECRET_KEYS} at depth 1 to 3 (pino's `*` matches one level). */
export const REDACT_PATHS: string[] = [...SECRET_KEYS, ...AUTHORIZATION_CODE_PATHS]
  .flatMap((k) => [k, `*.${k}`, `*.*.${k}`, `*.*.*.${k}`])
  .concat(['req.headers.authorization', 'req.headers["idempotency-key"]']);

/** What a redacted value is replaced with. */
export const REDACTED = '<redacted>';

/** SASL mechanism names (IANA registry): after `AUTH <mechanism>` another of these is a list, not a response. */
const SASL_MECHANISMS = new Set([
  'PLAIN',
  'LOGIN',
  'XOAUTH2',
  'XOAUTH',
  'OAUTHBEARER',
  'CRAM-MD5',
  'DIGEST-MD5',
  'NTLM',
  'GSSAPI',
  'ANONYMOUS',
  'EXTERNAL',
  'SCRAM-SHA-1',
  'SCRAM-SHA-256',
  'SCRAM-SHA-1-PLUS',
  'SCRAM-SHA-256-PLUS',
]);

/**
 * `AUTH <mechanism> <initial response>` (RFC 4954 section 4). The response is a secret (XOAUTH2's
 * carries the token, PLAIN's the password) when the line is a command: at the start of a line or after
 * a transcript marker (`C:`, swaks's `->`). Elsewhere (an error message, a sentence of a fix) only a
 * word shaped like base64 is taken for one, so "does not offer AUTH XOAUTH2 (it offers: ...)" stays
 * whole. `[ \t]` rather than `\s`: the next line of a multi-line EHLO reply is not an argument.
 */
const SASL_COMMAND = /(^|\n|C:[ \t]*|->[ \t]*|)\b(AUTH[ \t]+([A-Za-z0-9_-]+)[ \t]+)(\S+)/gi;
const BASE64_LIKE = /^(?:[A-Za-z0-9+/]{8,}={0,2}|=)$/;

function scrubSaslCommand(match: string, lead: string, head: string, _mechanism: string, argument: string, offset: number, text: string): string {
  if (SASL_MECHANISMS.has(argument)) return match; // an EHLO line's mechanism list: `250-AUTH LOGIN XOAUTH2`
  const before = text.slice(Math.max(0, offset - 4), offset);
  if (/250[- ]$/.test(before)) return match; // `250-AUTH ...` is the server's list, never a response
  const isCommand = lead !== '' || offset === 0;
  // A word of prose has no digit, `+`, `/` or `=` and at most a capital first letter; base64 rarely does.
  const looksEncoded = BASE64_LIKE.test(argument) && (/[0-9+/=]/.test(argument) || /[A-Z]/.test(argument.slice(1)));
  return isCommand || looksEncoded ? `${lead}${head}${REDACTED}` : match;
}

/** A secret in `name=value` form; a `<placeholder>` value (as in a fix text) is not a secret. */
const SECRET_FORM_FIELD = /((?:client_secret|refresh_token|access_token|code_verifier|client_assertion|password|device_code)=)(?!<)[^&\s"]+/gi;
/**
 * `code=` is the authorization code only as a field of its own in a redirect or token request
 * (`?code=`, `&code=`, a form body starting with it); an all-digit value is an error number
 * (`https://login.microsoftonline.com/error?code=7000215`), never a code a sign-in issues.
 */
const AUTHORIZATION_CODE_FIELD = /((?:^|[?&\s"'])code=)(?!<)(?!\d+(?:[&\s"']|$))[^&\s"]+/gi;

const PATTERNS: Array<[RegExp, string]> = [
  // JWTs (access and id tokens): three base64url parts, the first starting with '{"' encoded.
  [/eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*/g, REDACTED],
  [/dXNlcj[A-Za-z0-9+/=]{16,}/g, REDACTED], // base64 of "user=..." (XOAUTH2 initial response)
  // Passwords in connection URLs (postgres://user:password@host/db). The password part stops at
  // `/?#` so that `http://host:8025/path?to=a@b` keeps its port.
  [/(\b[a-z][a-z0-9+.-]*:\/\/[^:@/?#\s]*:)[^@/?#\s]+@/gi, `$1${REDACTED}@`],
  // relay365 API keys (`relay365 apikey create`).
  [/\br365_[A-Za-z0-9_-]{16,}/g, REDACTED],
  // Bearer tokens in headers or text. `\b`: the BEARER of an EHLO's `AUTH OAUTHBEARER` is a
  // mechanism name, and the line after it is not its token.
  [/\b(Bearer[ \t]+)[A-Za-z0-9._~+/=-]{8,}/gi, `$1${REDACTED}`],
  // key=value pairs of secrets in form bodies or URLs.
  [SECRET_FORM_FIELD, `$1${REDACTED}`],
  [AUTHORIZATION_CODE_FIELD, `$1${REDACTED}`],
];

/** Removes tokens, SASL responses and secret form fields from free text, and nothing else. */
export function scrubSecrets(text: string): string {
  let out = text.replace(SASL_COMMAND, scrubSaslCommand);
  for (const [pattern, replacement] of PATTERNS) out = out.replace(pattern, replacement);
  return out;
}
