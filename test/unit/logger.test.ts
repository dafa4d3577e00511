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

describe('scrubSecrets on connection URLs', () => {
  it('hides the password of a postgres:// URL', () => {
    assert.equal(
      scrubSecrets('connect postgres://relay:S3cret!pw@db.lan:5432/relay365 failed'),
      'connect postgres://relay:<redacted>@db.lan:5432/relay365 failed',
    );
  });
});
