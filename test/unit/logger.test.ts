import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createLogger, scrubSecrets } from '../../src/observe/index.js';

function capture(): { stream: Writable; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString());
      cb();
    },
  });
  return { stream, text: () => chunks.join('') };
}

// Every kind of secret relay365 handles, each a distinctive string to search the output for.
const jwt = 'eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL291dGxvb2sub2ZmaWNlMzY1LmNvbSJ9.c2lnbmF0dXJlLXNlY3JldC1ieXRlcw';
const secrets = {
  clientSecret: 'client-secret-VALUE-1234',
  accessToken: jwt,
  refreshToken: 'refresh-token-VALUE-5678',
  password: 'local-password-VALUE-9',
  apiKey: 'r365_apikey_VALUE_abcdef',
  xoauth2: Buffer.from(`user=relay@contoso.example\x01auth=Bearer ${jwt}\x01\x01`).toString('base64'),
  device_code: 'device-code-VALUE-77',
  code_verifier: 'code-verifier-VALUE-78',
  client_assertion: 'client-assertion-VALUE-79',
  authorizationCode: 'authorization-code-VALUE-80',
};

describe('logger redaction', () => {
  it('never writes a secret, whatever key, depth or message it comes in', () => {
    const out = capture();
    const log = createLogger({ destination: out.stream, level: 'trace' });
    log.info(secrets, 'top level');
    log.info({ mailbox: { auth: secrets } }, 'nested');
    log.info({ req: { headers: { authorization: `Bearer ${jwt}` } } }, 'header');
    log.info(`free text with AUTH XOAUTH2 ${secrets.xoauth2} and Bearer ${jwt}`);
    log.error({ err: new Error(`upstream said client_secret=${secrets.clientSecret}&refresh_token=${secrets.refreshToken}`) }, 'failed');
    log.error({ err: new Error(`token request code=${secrets.authorizationCode}&code_verifier=${secrets.code_verifier}&device_code=${secrets.device_code}`) }, 'form');
    const text = out.text();
    assert.ok(text.includes('<redacted>'), 'redaction marker present');
    for (const [kind, value] of Object.entries(secrets)) assert.ok(!text.includes(value), `${kind} leaked into the log`);
    assert.ok(!text.includes('c2lnbmF0dXJl'), 'token signature leaked');
    assert.match(text, /"msg":"nested"/);
  });

  it('scrubs SMTP transcripts: AUTH lines, bearer tokens and bare XOAUTH2 responses', () => {
    const transcript = [`C: AUTH XOAUTH2 ${secrets.xoauth2}`, 'S: 235 2.7.0 Authentication successful', `C: ${secrets.xoauth2}`].join('\n');
    const scrubbed = scrubSecrets(transcript);
    assert.ok(!scrubbed.includes(secrets.xoauth2));
    assert.match(scrubbed, /AUTH XOAUTH2 <redacted>/);
    assert.match(scrubbed, /235 2\.7\.0 Authentication successful/);
  });
});

describe('scrubSecrets', () => {
  it('keeps the mechanism list of an EHLO reply while redacting AUTH responses', () => {
    assert.equal(scrubSecrets('250-AUTH LOGIN XOAUTH2'), '250-AUTH LOGIN XOAUTH2');
    assert.equal(scrubSecrets('C: AUTH XOAUTH2 dXNlcj1yZWxheUBjb250b3NvLmV4YW1wbGUBYXV0aD1CZWFyZXIg'), 'C: AUTH XOAUTH2 <redacted>');
    assert.equal(scrubSecrets('C: AUTH PLAIN AHVzZXIAcGFzc3dvcmQ='), 'C: AUTH PLAIN <redacted>');
  });
});

describe('logger errors', () => {
  it('logs a thrown string or object without crashing, scrubbed', () => {
    const out = capture();
    const log = createLogger({ destination: out.stream });
    log.error({ err: `Bearer ${jwt}` }, 'string thrown');
    log.error({ err: { weird: true } }, 'object thrown');
    assert.ok(!out.text().includes(jwt));
    assert.match(out.text(), /string thrown/);
    assert.match(out.text(), /object thrown/);
  });
});

describe('scrubSecrets keeps what is not a secret', () => {
  it("keeps a doctor fix text's <placeholder> and redacts a real value in the same place", () => {
    const fix = 'Provide the secret where env:RELAY365_CLIENT_SECRET points (e.g. export RELAY365_CLIENT_SECRET=<secret value> before starting relay365).';
    assert.equal(scrubSecrets(fix), fix);
    assert.equal(scrubSecrets('export RELAY365_CLIENT_SECRET=Zx8Q~real.secret'), 'export RELAY365_CLIENT_SECRET=<redacted>');
    assert.equal(scrubSecrets('PGPASSWORD=hunter22 psql'), 'PGPASSWORD=<redacted> psql');
  });

  it('keeps every line of an EHLO reply that offers OAUTHBEARER (BEARER is a mechanism, the next line no token)', () => {
    const ehlo = ['S: 250-smtp.example.net Hello [127.0.0.1]', 'S: 250-AUTH PLAIN LOGIN OAUTHBEARER XOAUTH2', 'S: 250-BURL imap', 'S: 250 SMTPUTF8'].join('\n');
    assert.equal(scrubSecrets(ehlo), ehlo);
    assert.equal(scrubSecrets('250-AUTH LOGIN OAUTHBEARER\r\n250-BURL imap'), '250-AUTH LOGIN OAUTHBEARER\r\n250-BURL imap');
  });

  it('keeps sentences that name a mechanism, and still redacts a response quoted in prose', () => {
    const finding = 'After STARTTLS the server does not offer AUTH XOAUTH2 (it offers: LOGIN PLAIN).';
    assert.equal(scrubSecrets(finding), finding);
    assert.equal(scrubSecrets('Use AUTH XOAUTH2 with an access token'), 'Use AUTH XOAUTH2 with an access token');
    assert.equal(scrubSecrets('the server closed after AUTH PLAIN AHVzZXIAcGFzc3dvcmQ= was sent'), 'the server closed after AUTH PLAIN <redacted> was sent');
    assert.equal(scrubSecrets(' -> AUTH PLAIN AGZvbwBiYXI='), ' -> AUTH PLAIN <redacted>');
  });

  it('redacts the authorization code of a redirect or token request, not an error number or another word ending in code', () => {
    assert.equal(scrubSecrets('GET /?code=1.AbCdEf0123456789xyz&state=s1 HTTP/1.1'), 'GET /?code=<redacted>&state=s1 HTTP/1.1');
    assert.equal(
      scrubSecrets('grant_type=authorization_code&code=0.ARoAv4j5cvGGr0GRqy180BHbR&code_verifier=abcdefgh12345678'),
      'grant_type=authorization_code&code=<redacted>&code_verifier=<redacted>',
    );
    const errorUri = 'see https://login.microsoftonline.com/error?code=7000215';
    assert.equal(scrubSecrets(errorUri), errorUri);
    assert.equal(scrubSecrets('statuscode=EAUTH'), 'statuscode=EAUTH');
  });

  it('keeps the port of a URL whose query holds an address', () => {
    assert.equal(scrubSecrets('http://127.0.0.1:8025/v1/messages?to=a@example.net'), 'http://127.0.0.1:8025/v1/messages?to=a@example.net');
  });

  it('logs an error code field (errno, SMTP, R365_*) as it is, and redacts an authorization code in a query or form', () => {
    const out = capture();
    const log = createLogger({ destination: out.stream });
    const err = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:587'), { code: 'ECONNREFUSED' });
    log.warn({ err, code: 'ECONNREFUSED' }, 'connection failed');
    log.warn({ mailbox: 'relay@contoso.example', code: 'R365_TOKEN_REJECTED' }, 'token request failed');
    log.info({ redirect: { query: { code: 'auth-code-VALUE-42', state: 'st' } } }, 'redirect');
    log.info({ request: { form: { grant_type: 'authorization_code', code: 'auth-code-VALUE-43' } }, authorizationCode: 'auth-code-VALUE-44' }, 'token request');
    const lines = out
      .text()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(lines[0]!.code, 'ECONNREFUSED');
    assert.equal((lines[0]!.err as { code?: string }).code, 'ECONNREFUSED');
    assert.equal(lines[1]!.code, 'R365_TOKEN_REJECTED');
    for (const n of [42, 43, 44]) assert.ok(!out.text().includes(`auth-code-VALUE-${n}`), `authorization code ${n} leaked`);
    assert.equal((lines[2]!.redirect as { query: Record<string, string> }).query.state, 'st');
  });
});

describe('scrubSecrets on connection URLs', () => {
  it('hides the password of a postgres:// URL', () => {
    assert.equal(
      scrubSecrets('connect postgres://relay:S3cret!pw@db.lan:5432/relay365 failed'),
      'connect postgres://relay:<redacted>@db.lan:5432/relay365 failed',
    );
  });
});
