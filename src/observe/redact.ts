/**
 * The one list of secret-bearing field names. The logger redacts these keys at any of the first
 * three levels of a log object; {@link scrubSecrets} removes secret-looking values from free text
 * (SMTP transcripts, upstream error bodies) where no key tells them apart.
 */
export const SECRET_KEYS = [
  'password',
  'pass',
  'secret',
  'clientSecret',
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
  'code',
] as const;

/** Pino redaction paths for {@link SECRET_KEYS} at depth 1 to 3 (pino's `*` matches one level). */
export const REDACT_PATHS: string[] = SECRET_KEYS.flatMap((k) => [k, `*.${k}`, `*.*.${k}`, `*.*.*.${k}`]).concat([
  'req.headers.authorization',
  'req.headers["idempotency-key"]',
]);

/** What a redacted value is replaced with. */
export const REDACTED = '<redacted>';

const PATTERNS: Array<[RegExp, string]> = [
  // JWTs (access and id tokens): three base64url parts, the first starting with '{"' encoded.
  [/eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*/g, REDACTED],
  // SASL lines: everything after AUTH XOAUTH2 / PLAIN / LOGIN, and bare base64 continuation lines of XOAUTH2.
  // (An all-capitals word after the mechanism is another mechanism, as in EHLO's `AUTH LOGIN XOAUTH2`.)
  [/(AUTH\s+(?:XOAUTH2|OAUTHBEARER|PLAIN|LOGIN))\s+(?![A-Z0-9_-]+(?:\s|$))\S+/gi, `$1 ${REDACTED}`],
  [/dXNlcj[A-Za-z0-9+/=]{16,}/g, REDACTED], // base64 of "user=..." (XOAUTH2 initial response)
  // Passwords in connection URLs (postgres://user:password@host/db).
  [/(\b[a-z][a-z0-9+.-]*:\/\/[^:@/\s]*:)[^@/\s]+@/gi, `$1${REDACTED}@`],
  // relay365 API keys (`relay365 apikey create`).
  [/\br365_[A-Za-z0-9_-]{16,}/g, REDACTED],
  // Bearer tokens in headers or text.
  [/(Bearer\s+)[A-Za-z0-9._~+/=-]{8,}/gi, `$1${REDACTED}`],
  // key=value pairs of secrets in form bodies or URLs.
  [/((?:client_secret|refresh_token|access_token|code_verifier|client_assertion|password|device_code|code)=)[^&\s"]+/gi, `$1${REDACTED}`],
];

/** Removes tokens, SASL responses and secret form fields from free text. */
export function scrubSecrets(text: string): string {
  let out = text;
  for (const [pattern, replacement] of PATTERNS) out = out.replace(pattern, replacement);
  return out;
}
