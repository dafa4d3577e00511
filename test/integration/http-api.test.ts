import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { ConfigInput } from '../../src/config/index.js';
import { composeMessage } from '../../src/delivery/index.js';
import type { Explanation } from '../../src/catalogue/index.js';
import { generateApiKey, openSqliteIntegrationStore, type MailboxStatusView } from '../../src/ingress/http/index.js';
import { createLogger, type RelayEvent } from '../../src/observe/index.js';
import { startRelay, type Relay, type RelayDeps } from '../../src/runtime/index.js';
import { DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';
import { sandboxConfig } from '../helpers/config.js';
import { parseWithPython } from '../helpers/python-mime.js';
import { scenario, startTestSandbox, tempDir } from '../helpers/sandbox.js';

const MAILBOX = DEFAULT_IDS.mailbox;
/** Granted SendAs on the mailbox in the default scenario. */
const NOREPLY = `noreply@${DEFAULT_IDS.tenantDomain}`;
/** Listed as an alias, so the relay routes it, but Exchange (the sandbox) refuses SendAs on it. */
const CEO = `ceo@${DEFAULT_IDS.tenantDomain}`;
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

async function until<T>(check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs: number, what: string): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The config of a relay with only the HTTP front door, on a free port, against the sandbox. */
function apiConfig(sandbox: Sandbox, dataDir: string, overrides: Partial<ConfigInput> = {}) {
  return sandboxConfig(sandbox, dataDir, {
    smtp: { enabled: false },
    mailboxes: [{ address: MAILBOX, aliases: [NOREPLY, CEO] }],
    queue: { retryBaseSeconds: 0.1, retryMaxSeconds: 0.5, authPauseSeconds: 0.5 },
    ...overrides,
    http: { port: 0, bodyLimitBytes: 256 * 1024, ...overrides.http },
  });
}

/** Makes an API key the way `relay365 apikey create --scope send,read,admin` does, straight in the store. */
async function createKey(dataDir: string, name = 'test'): Promise<string> {
  const store = await openSqliteIntegrationStore(resolve(dataDir, 'relay365.db'));
  try {
    const key = generateApiKey();
    await store.createApiKey({ name, hash: key.hash, prefix: key.prefix, scopes: ['send', 'read', 'admin'] });
    return key.key;
  } finally {
    await store.close();
  }
}

/** An answer's JSON as the tests read it: a message, a list, a mailbox list or an error (each field present only in its kind). */
interface ApiBody {
  id: string;
  state: string;
  mailbox: string | null;
  messageId: string | null;
  envelope: { from: string; to: string[] };
  attemptCount: number;
  lastReply: string | null;
  explanation: Explanation | null;
  attempts: Array<{ reply: string | null; explanation: Explanation | null }>;
  recipientCounts: Record<string, number>;
  recipients?: Array<Record<string, unknown> & { explanation: Explanation | null }>;
  items: Array<ApiBody & MailboxStatusView>;
  nextCursor: string | null;
  error: { code: string; message: string; field?: string };
}

type Api = (
  method: string,
  path: string,
  options?: { body?: unknown; raw?: string; headers?: Record<string, string>; key?: string | null },
) => Promise<{ status: number; headers: Headers; body: ApiBody; text: string }>;

/** A small client of the API over a real socket. */
function client(base: string, key: string): Api {
  return async (method, path, options = {}) => {
    const headers: Record<string, string> = { ...options.headers };
    const useKey = options.key === undefined ? key : options.key;
    if (useKey !== null) headers.authorization = `Bearer ${useKey}`;
    let body: string | undefined;
    if (options.raw !== undefined) body = options.raw;
    else if (options.body !== undefined) body = JSON.stringify(options.body);
    if (body !== undefined && headers['content-type'] === undefined) headers['content-type'] = 'application/json';
    const response = await fetch(base + path, { method, headers, ...(body !== undefined ? { body } : {}) });
    const text = await response.text();
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = {};
    }
    return { status: response.status, headers: response.headers, body: parsed as ApiBody, text };
  };
}

interface Running {
  relay: Relay;
  api: Api;
  key: string;
  dataDir: string;
  events: RelayEvent[];
  stop(): Promise<void>;
}

/** Starts a relay with a fresh API key (or `reuse.key`) in a fresh folder (or `reuse.dataDir`, which the caller removes). */
async function startApi(
  sandbox: Sandbox,
  overrides: Partial<ConfigInput> = {},
  deps: RelayDeps = {},
  reuse: { dataDir?: string; key?: string } = {},
): Promise<Running> {
  const dir = reuse.dataDir === undefined ? await tempDir() : undefined;
  const path = reuse.dataDir ?? dir!.path;
  const key = reuse.key ?? (await createKey(path));
  const relay = await startRelay(apiConfig(sandbox, path, overrides), deps);
  const events: RelayEvent[] = [];
  relay.events.subscribe((e) => events.push(e));
  return {
    relay,
    api: client(relay.httpAddress!, key),
    key,
    dataDir: path,
    events,
    async stop() {
      await relay.close();
      await dir?.cleanup();
    },
  };
}

/**
 * Turns SMTP AUTH off (or on again) for the relay mailbox. Exchange applies the change to new
 * sessions, so the sandbox also drops the pooled ones: the next send authenticates again and is refused.
 */
function setSmtpAuth(sandbox: Sandbox, enabled: boolean): void {
  const s = structuredClone(sandbox.state.scenario);
  s.tenants[0]!.users[0]!.smtpAuthEnabled = enabled ? null : false;
  s.faults.smtp = enabled ? [] : [{ stage: 'mail', drop: true, count: 3 }];
  sandbox.state.setScenario(s);
}

const textMessage = (extra: Record<string, unknown> = {}) => ({ from: MAILBOX, to: 'someone@example.net', subject: 'Hello', text: 'Hi there.', ...extra });

async function waitForState(api: Api, id: string, state: string, timeoutMs = 15_000): Promise<ApiBody> {
  return until(
    async () => {
      const r = await api('GET', `/v1/messages/${id}`);
      return r.body.state === state ? r.body : undefined;
    },
    timeoutMs,
    `message ${id} to be ${state}`,
  );
}

describe('HTTP API', () => {
  let sandbox: Sandbox & { dir: string };
  before(async () => {
    sandbox = await startTestSandbox({ scenario: scenario((s) => void (s.limits.unlimited = true)) });
  });
  after(async () => {
    await sandbox.close();
  });

  it('answers 401 without a key, with a malformed, unknown or revoked key, and asks for a Bearer token', async () => {
    const run = await startApi(sandbox);
    try {
      const cases: Array<[string, string | null]> = [
        ['no key', null],
        ['malformed', 'not-a-key'],
        ['unknown', generateApiKey().key],
      ];
      for (const [label, key] of cases) {
        const r = await run.api('POST', '/v1/messages', { body: textMessage(), key });
        assert.equal(r.status, 401, label);
        assert.equal(r.body.error.code, 'R365_HTTP_UNAUTHORIZED', label);
        assert.match(r.body.error.message, /apikey create/, label);
        assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer/);
      }
      for (const path of ['/v1/messages', '/v1/mailboxes', '/v1/messages/x']) assert.equal((await run.api('GET', path, { key: null })).status, 401, path);
      assert.equal((await run.api('GET', '/v1/mailboxes')).status, 200);
      const store = await openSqliteIntegrationStore(resolve(run.dataDir, 'relay365.db'));
      await store.revokeApiKey('test');
      await store.close();
      assert.equal((await run.api('GET', '/v1/mailboxes')).status, 401, 'a revoked key is refused at once');
      assert.equal((await run.relay.store.counts()).queued, 0);
    } finally {
      await run.stop();
    }
  });

  it("queues a message posted as fields only after the commit, sends it with the right MIME, and reports sent with Exchange's 250 2.0.0 OK", async () => {
    const run = await startApi(sandbox);
    try {
      const pdf = Buffer.from('%PDF-1.4\n% a tiny file\n', 'latin1');
      const png = Buffer.from('89504e470d0a1a0a0000000d4948445200000001000000010806000000', 'hex');
      const r = await run.api('POST', '/v1/messages', {
        body: {
          from: { name: 'Ops Team', address: MAILBOX },
          to: ['Alice <alice@example.net>', { address: 'bob@example.net' }],
          cc: 'carol@example.net',
          bcc: ['dave@example.net'],
          replyTo: 'help@example.net',
          subject: 'Rapport trimestriel – résumé ✓',
          text: 'See the attached report.',
          html: '<p>See the <b>attached</b> report.</p><img src="cid:logo@relay365">',
          attachments: [
            { filename: 'report.pdf', content: pdf.toString('base64'), contentType: 'application/pdf' },
            { filename: 'logo.png', content: png.toString('base64'), contentType: 'image/png', contentId: 'logo@relay365', disposition: 'inline' },
          ],
          headers: { 'X-Campaign': 'q3-report', 'List-Unsubscribe': '<mailto:unsubscribe@example.net>' },
        },
      });
      assert.equal(r.status, 202, r.text);
      assert.equal(r.body.state, 'queued');
      assert.equal(r.body.mailbox, MAILBOX);
      assert.equal(r.headers.get('location'), `/v1/messages/${r.body.id}`);
      assert.deepEqual([...r.body.envelope.to].sort(), ['alice@example.net', 'bob@example.net', 'carol@example.net', 'dave@example.net']);
      // 202 means committed: the outbox has it before anything else happens.
      const stored = await run.relay.store.get(r.body.id);
      assert.ok(stored, 'the message is in the outbox when the 202 arrives');
      assert.deepEqual(stored.source, { kind: 'http', client: '127.0.0.1', user: 'test' });

      const sent = await waitForState(run.api, r.body.id, 'sent');
      assert.equal(sent.attemptCount, 1);
      assert.match(sent.lastReply ?? '', /^250 2\.0\.0 OK/);
      assert.match(sent.attempts[0]?.reply ?? '', /^250 2\.0\.0 OK/);
      assert.equal(sent.explanation, null);

      const arrived = sandbox.state.messages.find((m) => m.raw.includes(Buffer.from(r.body.messageId as string)));
      assert.ok(arrived, 'the sandbox received the message');
      assert.equal(arrived.mailbox, MAILBOX);
      assert.deepEqual([...arrived.envelope.rcptTo].sort(), ['alice@example.net', 'bob@example.net', 'carol@example.net', 'dave@example.net']);
      const mime = await parseWithPython(arrived.raw);
      assert.equal(mime.subject, 'Rapport trimestriel – résumé ✓');
      assert.equal(mime.from, 'Ops Team <relay@contoso.example>');
      assert.equal(mime.to, 'Alice <alice@example.net>, bob@example.net');
      assert.equal(mime.cc, 'carol@example.net');
      assert.equal(mime.bcc, null, 'Bcc is in the envelope only');
      assert.equal(mime.messageId, r.body.messageId);
      assert.equal(mime.text?.trim(), 'See the attached report.');
      assert.match(mime.html ?? '', /<b>attached<\/b>/);
      const report = mime.attachments.find((a) => a.filename === 'report.pdf');
      assert.equal(report?.contentType, 'application/pdf');
      assert.equal(report?.sha256, createHash('sha256').update(pdf).digest('hex'));
      const logo = mime.attachments.find((a) => a.filename === 'logo.png');
      assert.equal(logo?.cid, '<logo@relay365>');
      assert.equal(logo?.sha256, createHash('sha256').update(png).digest('hex'));
      const head = arrived.raw.subarray(0, arrived.raw.indexOf('\r\n\r\n')).toString('latin1');
      assert.match(head, /^X-Campaign: q3-report$/m);
      assert.match(head, /^List-Unsubscribe: <mailto:unsubscribe@example\.net>$/m);
      assert.match(head, /^Reply-To: help@example\.net$/m);
    } finally {
      await run.stop();
    }
  });

  it('queues raw MIME (base64 or text) with its envelope and sends it byte for byte', async () => {
    const run = await startApi(sandbox);
    try {
      const raw = `From: Noreply <${NOREPLY}>\r\nTo: x@example.net\r\nSubject: raw one\r\nMessage-ID: <raw-1@contoso.example>\r\n\r\nBody line.\r\n`;
      const a = await run.api('POST', '/v1/messages/mime', {
        body: { raw: Buffer.from(raw).toString('base64'), envelope: { from: NOREPLY, to: ['x@example.net', 'y@example.net'] } },
      });
      assert.equal(a.status, 202, a.text);
      assert.equal(a.body.messageId, '<raw-1@contoso.example>');
      assert.equal(a.body.mailbox, MAILBOX);
      // Bare LFs become CRLF, as on the wire.
      const b = await run.api('POST', '/v1/messages/mime', {
        body: { raw: raw.replaceAll('\r\n', '\n').replace('raw-1', 'raw-2'), encoding: 'utf8', envelope: { from: MAILBOX, to: ['z@example.net'] } },
      });
      assert.equal(b.status, 202, b.text);
      await waitForState(run.api, a.body.id, 'sent');
      await waitForState(run.api, b.body.id, 'sent');
      // Byte for byte behind the one field RFC 5322 3.6 requires and the message lacks (Date), as every door adds it.
      const dated = (sent: string | undefined, original: string): void => {
        assert.ok(sent !== undefined && sent.endsWith(original), sent);
        assert.match(sent.slice(0, sent.length - original.length), /^Date: [A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000\r\n$/);
      };
      const first = sandbox.state.messages.find((m) => m.raw.includes(Buffer.from('<raw-1@contoso.example>')));
      dated(first?.raw.toString(), raw);
      assert.deepEqual(first?.envelope, { mailFrom: NOREPLY, rcptTo: ['x@example.net', 'y@example.net'] });
      const second = sandbox.state.messages.find((m) => m.raw.includes(Buffer.from('<raw-2@contoso.example>')));
      dated(second?.raw.toString(), raw.replace('raw-1', 'raw-2'));

      const noEnvelope = await run.api('POST', '/v1/messages/mime', { body: { raw: Buffer.from(raw).toString('base64') } });
      assert.equal(noEnvelope.status, 400);
      assert.equal(noEnvelope.body.error.field, 'envelope');
      const injected = await run.api('POST', '/v1/messages/mime', {
        body: { raw: Buffer.from(raw).toString('base64'), envelope: { from: MAILBOX, to: ['x@example.net>\r\nRCPT TO:<evil@example.org'] } },
      });
      assert.equal(injected.status, 400, 'an envelope address cannot carry SMTP commands');
      const badBase64 = await run.api('POST', '/v1/messages/mime', { body: { raw: '%%% not base64 %%%', envelope: { from: MAILBOX, to: ['x@example.net'] } } });
      assert.equal(badBase64.status, 400);
      assert.equal(badBase64.body.error.field, 'raw');
      const stranger = await run.api('POST', '/v1/messages/mime', {
        body: { raw: Buffer.from(raw.replace(NOREPLY, 'x@elsewhere.example')).toString('base64'), envelope: { from: MAILBOX, to: ['x@example.net'] } },
      });
      assert.equal(stranger.status, 422, 'the From header decides, as Exchange checks SendAs on it');
      assert.equal(stranger.body.error.code, 'R365_NO_ROUTE_FOR_SENDER');
    } finally {
      await run.stop();
    }
  });

  it('refuses CR or LF in every header value with 400, queues nothing, and nothing reaches Exchange', async () => {
    const run = await startApi(sandbox);
    try {
      const before = sandbox.state.messages.length;
      const attachment = { filename: 'a.txt', content: Buffer.from('x').toString('base64') };
      const cases: Array<[string, Record<string, unknown>, string]> = [
        ['CRLF in the subject', textMessage({ subject: 'Hi\r\nBcc: victim@example.org' }), 'subject'],
        ['LF in the subject', textMessage({ subject: 'Hi\nBcc: victim@example.org' }), 'subject'],
        ['CR in the subject', textMessage({ subject: 'Hi\rBcc: victim@example.org' }), 'subject'],
        ['CRLF in a to address', textMessage({ to: 'x@example.net\r\nBcc: victim@example.org' }), 'to'],
        ['LF in a to list entry', textMessage({ to: ['ok@example.net', 'x@example.net\nBcc: victim@example.org'] }), 'to[1]'],
        ['CRLF in a display name', textMessage({ from: { name: 'Ops\r\nBcc: victim@example.org', address: MAILBOX } }), 'from.name'],
        ['LF in cc', textMessage({ cc: 'c@example.net\nX-Evil: 1' }), 'cc'],
        ['CRLF in bcc', textMessage({ bcc: ['b@example.net\r\nX-Evil: 1'] }), 'bcc[0]'],
        ['LF in replyTo', textMessage({ replyTo: 'r@example.net\nX-Evil: 1' }), 'replyTo'],
        ['CRLF in a custom header value', textMessage({ headers: { 'X-Tag': 'a\r\nBcc: victim@example.org' } }), 'headers.X-Tag'],
        ['LF in a custom header value', textMessage({ headers: { 'X-Tag': 'a\nBcc: victim@example.org' } }), 'headers.X-Tag'],
        [
          'CRLF in an attachment filename',
          textMessage({ attachments: [{ ...attachment, filename: 'a.txt"\r\nBcc: victim@example.org' }] }),
          'attachments[0].filename',
        ],
        [
          'LF in an attachment content type',
          textMessage({ attachments: [{ ...attachment, contentType: 'text/plain\nBcc: victim@example.org' }] }),
          'attachments[0].contentType',
        ],
        ['CRLF in a content id', textMessage({ attachments: [{ ...attachment, contentId: 'x\r\nBcc: victim@example.org' }] }), 'attachments[0].contentId'],
      ];
      for (const [label, body, field] of cases) {
        const r = await run.api('POST', '/v1/messages', { body });
        assert.equal(r.status, 400, label);
        assert.equal(r.body.error.code, 'R365_HTTP_HEADER_LINE_BREAK', label);
        assert.equal(r.body.error.field, field, label);
      }
      const name = await run.api('POST', '/v1/messages', { body: textMessage({ headers: { 'X-Tag\r\nBcc': 'v' } }) });
      assert.equal(name.status, 400, 'a CRLF in a header name');
      const reserved = await run.api('POST', '/v1/messages', { body: textMessage({ headers: { Bcc: 'victim@example.org' } }) });
      assert.equal(reserved.status, 400, 'address headers cannot be set as custom headers');
      assert.equal(reserved.body.error.field, 'headers.Bcc');
      const counts = await run.relay.store.counts();
      assert.equal(
        Object.values(counts).reduce((a, b) => a + b, 0),
        0,
        'nothing was queued',
      );
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(sandbox.state.messages.length, before, 'nothing reached Exchange');
      // A tab and any Unicode are fine in a subject.
      assert.equal((await run.api('POST', '/v1/messages', { body: textMessage({ subject: 'Tab\there — ünïcödé 🚀' }) })).status, 202);
    } finally {
      await run.stop();
    }
  });

  it('answers 400 for invalid JSON, missing or unknown fields, wrong types, path or href attachments and bad base64; 415 for another content type', async () => {
    const run = await startApi(sandbox);
    try {
      const invalid = await run.api('POST', '/v1/messages', { raw: '{"from": "relay@contoso.example", "to": ' });
      assert.equal(invalid.status, 400);
      assert.equal(invalid.body.error.code, 'R365_HTTP_INVALID_REQUEST');
      assert.match(invalid.body.error.message, /not valid JSON/);
      const empty = await run.api('POST', '/v1/messages', { raw: '' });
      assert.equal(empty.status, 400);
      const missing = await run.api('POST', '/v1/messages', { body: { to: 'x@example.net', subject: 's' } });
      assert.deepEqual([missing.status, missing.body.error.code, missing.body.error.field], [400, 'R365_HTTP_INVALID_REQUEST', 'from']);
      const noRecipient = await run.api('POST', '/v1/messages', { body: { from: MAILBOX, subject: 's', text: 't' } });
      assert.deepEqual([noRecipient.status, noRecipient.body.error.code], [400, 'R365_MESSAGE_INVALID']);
      assert.match(noRecipient.body.error.message, /recipient/);
      const unknown = await run.api('POST', '/v1/messages', { body: textMessage({ priority: 'high' }) });
      assert.deepEqual([unknown.status, unknown.body.error.field], [400, 'priority']);
      const wrongType = await run.api('POST', '/v1/messages', { body: textMessage({ subject: 42 }) });
      assert.deepEqual([wrongType.status, wrongType.body.error.field], [400, 'subject']);
      const notObject = await run.api('POST', '/v1/messages', { body: ['a'] });
      assert.equal(notObject.status, 400);
      for (const field of ['path', 'href']) {
        const r = await run.api('POST', '/v1/messages', {
          body: textMessage({ attachments: [{ filename: 'passwd', [field]: field === 'path' ? '/etc/passwd' : 'http://169.254.169.254/latest/meta-data' }] }),
        });
        assert.equal(r.status, 400, field);
        assert.equal(r.body.error.field, `attachments[0].${field}`);
        assert.match(r.body.error.message, /never reads files or URLs/);
      }
      const badBase64 = await run.api('POST', '/v1/messages', { body: textMessage({ attachments: [{ filename: 'a', content: 'not*base64' }] }) });
      assert.deepEqual([badBase64.status, badBase64.body.error.field], [400, 'attachments[0].content']);
      const twoFroms = await run.api('POST', '/v1/messages', { body: textMessage({ from: `${MAILBOX}, ${NOREPLY}` }) });
      assert.deepEqual([twoFroms.status, twoFroms.body.error.field], [400, 'from']);
      const form = await run.api('POST', '/v1/messages', { raw: 'from=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
      assert.deepEqual([form.status, form.body.error.code], [415, 'R365_HTTP_UNSUPPORTED_MEDIA_TYPE']);
      assert.match(
        form.body.error.message,
        /sent as application\/x-www-form-urlencoded; the API reads JSON only: send it with Content-Type: application\/json/,
      );
      // A JSON text sent as text/plain (fetch's default for a string body) is refused for its type, not as "body must be object".
      const plain = await run.api('POST', '/v1/messages', { raw: JSON.stringify(textMessage()), headers: { 'content-type': 'text/plain' } });
      assert.deepEqual([plain.status, plain.body.error.code], [415, 'R365_HTTP_UNSUPPORTED_MEDIA_TYPE']);
      assert.match(plain.body.error.message, /sent as text\/plain/);
      const mime = await run.api('POST', '/v1/messages/mime', { raw: 'From: a@b\r\n\r\nx', headers: { 'content-type': 'message/rfc822' } });
      assert.deepEqual([mime.status, mime.body.error.code], [415, 'R365_HTTP_UNSUPPORTED_MEDIA_TYPE']);
      const badKey = await run.api('POST', '/v1/messages', { body: textMessage(), headers: { 'idempotency-key': 'has space' } });
      assert.deepEqual([badKey.status, badKey.body.error.field], [400, 'Idempotency-Key']);
      assert.equal((await run.relay.store.counts()).queued + (await run.relay.store.counts()).sent, 0, 'nothing was queued');
    } finally {
      await run.stop();
    }
  });

  it('answers 413 for a body over http.bodyLimitBytes and for a message over limits.maxMessageBytes', async () => {
    const run = await startApi(sandbox, { limits: { maxMessageBytes: 100_000 } });
    try {
      const tooBig = await run.api('POST', '/v1/messages', { body: textMessage({ text: 'x'.repeat(300 * 1024) }) });
      assert.equal(tooBig.status, 413);
      assert.equal(tooBig.body.error.code, 'R365_HTTP_BODY_TOO_LARGE');
      assert.match(tooBig.body.error.message, /http\.bodyLimitBytes/);
      const bigMessage = await run.api('POST', '/v1/messages', {
        body: textMessage({ attachments: [{ filename: 'big.bin', content: Buffer.alloc(90_000, 7).toString('base64') }] }),
      });
      assert.equal(bigMessage.status, 413);
      assert.equal(bigMessage.body.error.code, 'R365_MESSAGE_TOO_LARGE');
      assert.equal((await run.relay.store.counts()).queued, 0);
    } finally {
      await run.stop();
    }
  });

  it('refuses a sender no mailbox may send as, an unknown mailbox, and a mailbox that may not send as the sender, with 422', async () => {
    const run = await startApi(sandbox, { mailboxes: [{ address: MAILBOX, aliases: [NOREPLY] }, { address: 'other@contoso.example' }] });
    try {
      const stranger = await run.api('POST', '/v1/messages', { body: textMessage({ from: 'someone@elsewhere.example' }) });
      assert.deepEqual([stranger.status, stranger.body.error.code, stranger.body.error.field], [422, 'R365_NO_ROUTE_FOR_SENDER', 'from']);
      assert.match(stranger.body.error.message, /aliases/);
      const unknownMailbox = await run.api('POST', '/v1/messages', { body: textMessage({ mailbox: 'nobody@contoso.example' }) });
      assert.deepEqual([unknownMailbox.status, unknownMailbox.body.error.code, unknownMailbox.body.error.field], [422, 'R365_UNKNOWN_MAILBOX', 'mailbox']);
      const notAllowed = await run.api('POST', '/v1/messages', { body: textMessage({ from: NOREPLY, mailbox: 'other@contoso.example' }) });
      assert.deepEqual([notAllowed.status, notAllowed.body.error.code], [422, 'R365_NO_ROUTE_FOR_SENDER']);
      const chosen = await run.api('POST', '/v1/messages', { body: textMessage({ from: NOREPLY, mailbox: MAILBOX.toUpperCase() }) });
      assert.deepEqual([chosen.status, chosen.body.mailbox], [202, MAILBOX]);
    } finally {
      await run.stop();
    }
  });

  it('answers 404 with a code for an unknown message id on every route, and for an unknown route', async () => {
    const run = await startApi(sandbox);
    try {
      for (const [method, path] of [
        ['GET', '/v1/messages/01a20c87-0000-7000-8000-000000000000'],
        ['POST', '/v1/messages/01a20c87-0000-7000-8000-000000000000/retry'],
        ['DELETE', '/v1/messages/01a20c87-0000-7000-8000-000000000000'],
      ] as const) {
        const r = await run.api(method, path);
        assert.equal(r.status, 404, `${method} ${path}`);
        assert.equal(r.body.error.code, 'R365_HTTP_NOT_FOUND');
      }
      const route = await run.api('GET', '/v2/messages');
      assert.deepEqual([route.status, route.body.error.code], [404, 'R365_HTTP_NOT_FOUND']);
    } finally {
      await run.stop();
    }
  });

  it('lists messages newest first with state and mailbox filters and a cursor, and explains a failed one (SendAs denied)', async () => {
    const run = await startApi(sandbox);
    try {
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) ids.push((await run.api('POST', '/v1/messages', { body: textMessage({ subject: `n${i}` }) })).body.id);
      const failed = (await run.api('POST', '/v1/messages', { body: textMessage({ from: CEO }) })).body.id;
      for (const id of ids) await waitForState(run.api, id, 'sent');
      const detail = await waitForState(run.api, failed, 'failed');
      assert.match(detail.lastReply ?? '', /^554 5\.2\.252 SendAsDenied; .* not allowed to send as /);
      assert.match(detail.explanation?.fix ?? '', /Add-RecipientPermission/);
      assert.equal(detail.attempts.length, 1);
      assert.match(detail.attempts[0]?.explanation?.cause ?? '', /\S/);

      const page1 = await run.api('GET', '/v1/messages?limit=4');
      assert.equal(page1.status, 200);
      assert.deepEqual(
        page1.body.items.map((m: { id: string }) => m.id),
        [failed, ...ids.slice().reverse()].slice(0, 4),
      );
      const page2 = await run.api('GET', `/v1/messages?limit=4&cursor=${encodeURIComponent(page1.body.nextCursor ?? '')}`);
      assert.deepEqual(
        page2.body.items.map((m: { id: string }) => m.id),
        ids.slice(0, 2).reverse(),
      );
      assert.equal(page2.body.nextCursor, null);
      const onlyFailed = await run.api('GET', `/v1/messages?state=failed&mailbox=${encodeURIComponent(MAILBOX)}`);
      assert.deepEqual(
        onlyFailed.body.items.map((m: { id: string }) => m.id),
        [failed],
      );
      assert.match(onlyFailed.body.items[0]?.explanation?.fix ?? '', /Add-RecipientPermission/);
      assert.equal((await run.api('GET', '/v1/messages?state=lost')).status, 400);
      assert.equal((await run.api('GET', '/v1/messages?limit=0')).status, 400);
      assert.equal((await run.api('GET', '/v1/messages?limit=ten')).status, 400);
      const badCursor = await run.api('GET', '/v1/messages?cursor=garbage');
      assert.deepEqual([badCursor.status, badCursor.body.error.code], [400, 'R365_LIST_CURSOR_INVALID']);
    } finally {
      await run.stop();
    }
  });

  it('lists each recipient of a message with its state, reply and explanation, and counts them in the list; the OpenAPI document describes them', async () => {
    // Unknown at the tenant's own domain: Exchange refuses it at RCPT with 550 5.1.10 and takes the message for the other.
    const nobody = `nobody@${DEFAULT_IDS.tenantDomain}`;
    const before = structuredClone(sandbox.state.scenario);
    const changed = structuredClone(before);
    changed.mailFlow.unknownRecipients = [nobody];
    sandbox.state.setScenario(changed);
    const run = await startApi(sandbox);
    try {
      const posted = await run.api('POST', '/v1/messages', { body: textMessage({ to: ['good@example.net', nobody] }) });
      assert.equal(posted.status, 202);
      const detail = await waitForState(run.api, posted.body.id, 'sent');
      assert.deepEqual(detail.recipientCounts, { pending: 0, accepted: 1, refused: 1, bounced: 0, delayed: 0 });
      const [good, refused] = detail.recipients ?? [];
      assert.deepEqual(
        { ...good, updatedAt: typeof good?.updatedAt },
        { address: 'good@example.net', state: 'accepted', reply: null, explanation: null, dsnStatus: null, remoteMta: null, updatedAt: 'string' },
      );
      assert.equal(refused?.address, nobody);
      assert.equal(refused?.state, 'refused');
      assert.match(String(refused?.reply), new RegExp(`^550 5\\.1\\.10 RESOLVER\\.ADR\\.RecipientNotFound; Recipient ${nobody.replace(/\./g, '\\.')} not found by SMTP address lookup`));
      assert.equal(refused?.explanation?.class, 'permanent');
      assert.match(refused?.explanation?.fix ?? '', /\S/);
      assert.ok(!Number.isNaN(Date.parse(String(refused?.updatedAt))));
      assert.ok(run.events.some((e) => e.type === 'message.recipient.refused' && e.recipient === nobody && e.id === posted.body.id));

      const listed = await run.api('GET', '/v1/messages?limit=1');
      assert.deepEqual(listed.body.items[0]?.recipientCounts, { pending: 0, accepted: 1, refused: 1, bounced: 0, delayed: 0 });
      assert.equal(listed.body.items[0]?.recipients, undefined, 'the list counts; the message itself lists');

      const doc = (await (await fetch(`${run.relay.httpAddress!}/openapi.json`)).json()) as {
        paths: Record<string, { get: { responses: { 200: { content: Record<string, { schema: { properties: Record<string, { items?: { properties: Record<string, { enum?: string[] }> } }> } }> } } } }>;
      };
      const schema = doc.paths['/v1/messages/{id}']?.get.responses[200].content['application/json']?.schema;
      assert.deepEqual(schema?.properties.recipients?.items?.properties.state?.enum, ['pending', 'accepted', 'refused', 'bounced', 'delayed']);
      assert.ok(schema?.properties.recipientCounts, 'the counts are documented');
    } finally {
      await run.stop();
      sandbox.state.setScenario(before);
    }
  });

  it('retries a failed message, cancels one not yet sent, and answers 409 for a sent or cancelled one', async () => {
    const run = await startApi(sandbox);
    try {
      const failed = (await run.api('POST', '/v1/messages', { body: textMessage({ from: CEO }) })).body.id;
      await waitForState(run.api, failed, 'failed');
      // Exchange now lets the mailbox send as the address: the retry goes through.
      const granted = structuredClone(sandbox.state.scenario);
      granted.tenants[0]!.users[0]!.sendAs.push(CEO);
      sandbox.state.setScenario(granted);
      try {
        const retry = await run.api('POST', `/v1/messages/${failed}/retry`);
        assert.deepEqual([retry.status, retry.body], [200, { id: failed, state: 'queued' }]);
        const sent = await waitForState(run.api, failed, 'sent');
        assert.equal(sent.attempts.length, 2);
      } finally {
        const revoked = structuredClone(sandbox.state.scenario);
        revoked.tenants[0]!.users[0]!.sendAs = revoked.tenants[0]!.users[0]!.sendAs.filter((a) => a !== CEO);
        sandbox.state.setScenario(revoked);
      }
      const again = await run.api('POST', `/v1/messages/${failed}/retry`);
      assert.deepEqual([again.status, again.body.error.code], [409, 'R365_MESSAGE_NOT_RETRYABLE']);
      const cantCancel = await run.api('DELETE', `/v1/messages/${failed}`);
      assert.deepEqual([cantCancel.status, cantCancel.body.error.code], [409, 'R365_MESSAGE_NOT_CANCELLABLE']);

      // A message due in an hour (queued by the library) stays queued: cancel it.
      const m = await composeMessage({ from: MAILBOX, to: 'later@example.net', subject: 'later', text: 't' });
      const later = await run.relay.enqueue({
        mailbox: MAILBOX,
        envelope: m.envelope,
        raw: m.raw,
        source: { kind: 'library' },
        notBefore: new Date(Date.now() + 3_600_000),
      });
      const cancel = await run.api('DELETE', `/v1/messages/${later.id}`);
      assert.deepEqual([cancel.status, cancel.body], [200, { id: later.id, state: 'cancelled' }]);
      assert.equal((await run.relay.store.get(later.id))?.state, 'cancelled');
      const twice = await run.api('DELETE', `/v1/messages/${later.id}`);
      assert.equal(twice.status, 409);
      assert.equal((await run.api('POST', `/v1/messages/${later.id}/retry`)).status, 409);
    } finally {
      await run.stop();
    }
  });

  it('reports each mailbox with its token expiry, quota used and left, and its pause with the explanation', async () => {
    const run = await startApi(sandbox);
    try {
      const before = await run.api('GET', '/v1/mailboxes');
      assert.equal(before.status, 200);
      const fresh = before.body.items[0]!;
      assert.equal(fresh.address, MAILBOX);
      assert.deepEqual(fresh.aliases, [NOREPLY, CEO]);
      assert.deepEqual([fresh.token.cached, fresh.token.expiresAt], [false, null]);
      assert.deepEqual(fresh.quota.messagesPerMinute, { limit: 30, used: 0, left: 30 });
      const sent = await run.api('POST', '/v1/messages', { body: textMessage({ to: ['a@example.net', 'b@example.net'] }) });
      await waitForState(run.api, sent.body.id, 'sent');
      const after = (await run.api('GET', '/v1/mailboxes')).body.items[0]!;
      assert.equal(after.token.cached, true);
      assert.ok(Date.parse(after.token.expiresAt ?? '') > Date.now() + 30 * 60_000, 'an hour-long token');
      assert.deepEqual(after.quota.messagesPerMinute, { limit: 30, used: 1, left: 29 });
      assert.deepEqual(after.quota.recipientsPerDay, { limit: 10_000, used: 2, left: 9_998 });
      assert.equal(after.paused, false);
      assert.equal(after.counts.sent, 1);

      // SMTP AUTH turned off for the mailbox: the worker pauses it and says why.
      setSmtpAuth(sandbox, false);
      try {
        await run.api('POST', '/v1/messages', { body: textMessage() });
        const paused = await until(
          async () => {
            const m = (await run.api('GET', '/v1/mailboxes')).body.items[0];
            return m?.paused ? m : undefined;
          },
          15_000,
          'the mailbox to pause',
        );
        assert.match(paused.pauseReason?.cause ?? '', /\S/);
        assert.match(paused.pauseReason?.fix ?? '', /SMTP AUTH|SmtpClientAuthenticationDisabled|Set-CASMailbox/i);
        assert.equal(paused.lastError?.source, 'pause');
      } finally {
        setSmtpAuth(sandbox, true);
      }
    } finally {
      await run.stop();
    }
  });

  it('resumes a paused mailbox (POST /v1/mailboxes/:mailbox/resume, admin scope): paused again while the cause is there, its queue sent at once when it is gone', async () => {
    // A probe only once an hour: only the resume can end the pause within the test.
    const run = await startApi(sandbox, { queue: { authPauseSeconds: 3600, retryBaseSeconds: 0.1, retryMaxSeconds: 0.3 } });
    try {
      type Resumed = { status: number; body: { paused: boolean; pausedSince: string | null; reply: string | null } };
      const resume = async (mailbox: string) => (await run.api('POST', `/v1/mailboxes/${encodeURIComponent(mailbox)}/resume`)) as unknown as Resumed;
      const notPaused = await resume(MAILBOX);
      assert.equal(notPaused.status, 200, JSON.stringify(notPaused.body));
      assert.equal(notPaused.body.paused, false);
      assert.equal((await resume('nobody@contoso.example')).status, 404);
      setSmtpAuth(sandbox, false);
      try {
        const queued = await run.api('POST', '/v1/messages', { body: textMessage({ subject: 'held by a pause' }) });
        await until(() => run.events.some((e) => e.type === 'mailbox.paused'), 15_000, 'the mailbox to pause');
        const paused = (await run.api('GET', '/v1/mailboxes')).body.items[0]!;
        assert.equal(paused.paused, true);
        assert.match(String(paused.pausedSince), /^\d{4}-\d\d-\d\dT/);
        // The cause is still there: resumed, then paused again by the next send.
        const early = await resume(MAILBOX);
        assert.equal(early.status, 200);
        assert.deepEqual([early.body.paused, early.body.pausedSince], [true, paused.pausedSince]);
        assert.match(String(early.body.reply), /^535 5\.7\.139/);
        await until(() => run.events.filter((e) => e.type === 'mailbox.paused').length >= 2, 10_000, 'the pause again');
        assert.ok(run.events.some((e) => e.type === 'mailbox.resumed'));
        setSmtpAuth(sandbox, true);
        const asked = Date.now();
        const late = await resume(MAILBOX);
        assert.equal(late.body.paused, true);
        await waitForState(run.api, String(queued.body.id), 'sent', 10_000);
        assert.ok(Date.now() - asked < 8_000, 'sent at once, not at the next probe');
        assert.equal((await run.api('GET', '/v1/mailboxes')).body.items[0]!.paused, false);
      } finally {
        setSmtpAuth(sandbox, true);
      }
    } finally {
      await run.stop();
    }
  });

  it('runs the setup checks for a mailbox (GET /v1/mailboxes/:mailbox/doctor) and answers 404 for an unknown one', async () => {
    const run = await startApi(sandbox);
    try {
      const res = await run.api('GET', `/v1/mailboxes/${encodeURIComponent(MAILBOX)}/doctor`);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const report = res.body as unknown as { ok: boolean; mailbox: string; checks: Array<{ id: string; status: string }> };
      assert.equal(report.mailbox, MAILBOX);
      assert.ok(report.checks.length >= 8);
      assert.ok(report.checks.some((c) => c.status === 'pass'));
      assert.ok(!JSON.stringify(report).includes('eyJ'), 'no token in the report');
      const unknown = await run.api('GET', '/v1/mailboxes/nobody%40contoso.example/doctor');
      assert.equal(unknown.status, 404);
    } finally {
      await run.stop();
    }
  });

  it('answers a repeated Idempotency-Key with the first response and queues once, also after a restart; refuses the key with another body (422)', async () => {
    const dir = await tempDir();
    try {
      let run = await startApi(sandbox, {}, {}, { dataDir: dir.path });
      const body = textMessage({ subject: 'once' });
      const headers = { 'idempotency-key': 'order-1234-receipt' };
      const first = await run.api('POST', '/v1/messages', { body, headers });
      assert.equal(first.status, 202);
      assert.equal(first.headers.get('idempotent-replayed'), null);
      // Key order and spacing do not make a different request.
      const reordered = Object.fromEntries(Object.entries(body).reverse());
      const second = await run.api('POST', '/v1/messages', { raw: JSON.stringify(reordered, null, 2), headers });
      assert.equal(second.status, 202);
      assert.equal(second.text, first.text, 'the same body, byte for byte');
      assert.equal(second.headers.get('idempotent-replayed'), 'true');
      assert.match(first.headers.get('location') ?? '', /^\/v1\/messages\/[0-9a-f-]{36}$/);
      assert.equal(second.headers.get('location'), first.headers.get('location'), 'the replay says where the message is, as the first answer did');
      const mismatch = await run.api('POST', '/v1/messages', { body: { ...body, subject: 'twice?' }, headers });
      assert.deepEqual([mismatch.status, mismatch.body.error.code], [422, 'R365_IDEMPOTENCY_MISMATCH']);
      const otherRoute = await run.api('POST', '/v1/messages/mime', {
        body: { raw: 'U3ViamVjdDogeA0KDQp4DQo=', envelope: { from: MAILBOX, to: ['x@example.net'] } },
        headers,
      });
      assert.equal(otherRoute.status, 422, 'a key belongs to one request, route included');
      // A failed request does not use up its key.
      const refused = await run.api('POST', '/v1/messages', { body: textMessage({ from: 'x@elsewhere.example' }), headers: { 'idempotency-key': 'k-2' } });
      assert.equal(refused.status, 422);
      const otherKey = await createKey(dir.path, 'another-app');
      const scoped = await client(run.relay.httpAddress!, otherKey)('POST', '/v1/messages', { body, headers });
      assert.equal(scoped.status, 202, 'keys are per API key');
      assert.notEqual(scoped.body.id, first.body.id);
      await run.relay.close();

      run = await startApi(sandbox, {}, {}, { dataDir: dir.path, key: run.key });
      const afterRestart = await run.api('POST', '/v1/messages', { body, headers });
      assert.equal(afterRestart.status, 202);
      assert.equal(afterRestart.text, first.text);
      assert.equal(afterRestart.headers.get('idempotent-replayed'), 'true');
      const all = await run.relay.store.list({});
      assert.equal(all.items.length, 2, 'one message per API key, however many times the request came');
      assert.equal(all.items.filter((m) => m.id === first.body.id).length, 1);
      await run.relay.close();
    } finally {
      await dir.cleanup();
    }
  });

  it('serves /healthz, /readyz and an OpenAPI document generated from the route schemas', async () => {
    const run = await startApi(sandbox);
    try {
      const base = run.relay.httpAddress!;
      const health = await fetch(`${base}/healthz`);
      assert.deepEqual([health.status, await health.json()], [200, { status: 'ok' }]);
      const ready = await fetch(`${base}/readyz`);
      assert.deepEqual([ready.status, await ready.json()], [200, { status: 'ready' }]);
      const doc = (await (await fetch(`${base}/openapi.json`)).json()) as OpenApiDoc;
      assert.equal(doc.openapi, '3.1.0');
      assert.deepEqual(
        Object.keys(doc.paths)
          .filter((p) => p.startsWith('/v1'))
          .sort(),
        ['/v1/mailboxes', '/v1/mailboxes/{mailbox}/doctor', '/v1/mailboxes/{mailbox}/resume', '/v1/messages', '/v1/messages/batch', '/v1/messages/mime', '/v1/messages/{id}', '/v1/messages/{id}/retry', '/v1/suppressions', '/v1/suppressions/{address}'],
      );
      assert.deepEqual(Object.keys(doc.paths['/v1/messages/{id}'] ?? {}).sort(), ['delete', 'get']);
      const send = doc.paths['/v1/messages']?.post;
      assert.ok(send?.requestBody?.content['application/json']?.schema.properties.attachments, 'the body schema is documented');
      assert.ok(send.responses['202'], 'the 202 answer is documented');
      assert.deepEqual(send.security, [{ apiKey: [] }]);
      assert.equal(doc.components.securitySchemes.apiKey?.scheme, 'bearer');
      assert.equal(doc.paths['/'], undefined, 'the dashboard is not part of the API');

      // The outbox goes away: not ready, still alive.
      await run.relay.store.close();
      const notReady = await fetch(`${base}/readyz`);
      assert.equal(notReady.status, 503);
      assert.equal(((await notReady.json()) as { status: string }).status, 'unavailable');
      assert.equal((await fetch(`${base}/healthz`)).status, 200);
    } finally {
      await run.stop();
    }
  });

  it('logs one JSON line per state change with the message id, and never the API key', async () => {
    const lines: string[] = [];
    const logger = createLogger({ level: 'info', destination: { write: (line: string) => void lines.push(line) } });
    const run = await startApi(sandbox, {}, { logger });
    try {
      const { id } = (await run.api('POST', '/v1/messages', { body: textMessage() })).body;
      await waitForState(run.api, id, 'sent');
      await run.api('GET', '/v1/messages/unknown-id');
      await until(() => lines.some((l) => l.includes('"message.sent"')), 5_000, 'the sent line');
      const events = lines
        .map((l) => JSON.parse(l) as { component?: string; event?: string; id?: string; reply?: string })
        .filter((l) => l.component === 'events');
      assert.deepEqual(
        events.filter((e) => e.id === id).map((e) => e.event),
        ['message.queued', 'message.sent'],
      );
      assert.match(events.find((e) => e.event === 'message.sent')?.reply ?? '', /^250 2\.0\.0 OK/);
      assert.ok(!lines.join('').includes(run.key), 'the API key is not logged');
    } finally {
      await run.stop();
    }
  });

  it('delivers each webhook event once with a valid signature, and what a stopped receiver missed once it is back, across a restart', async () => {
    const verify = await docSnippet();
    const secret = 'whsec_test_0123456789';
    const receiver = await startReceiver();
    const dir = await tempDir();
    const http = { port: 0, webhooks: [{ url: `${receiver.url}/hooks`, secret }] };
    const deps: RelayDeps = { webhooks: { backoffBaseMs: 100, backoffMaxMs: 400, pollMs: 100 } };
    let run = await startApi(sandbox, { http }, deps, { dataDir: dir.path });
    try {
      const ok = (await run.api('POST', '/v1/messages', { body: textMessage() })).body.id;
      const bad = (await run.api('POST', '/v1/messages', { body: textMessage({ from: CEO }) })).body.id;
      await waitForState(run.api, ok, 'sent');
      await waitForState(run.api, bad, 'failed');
      // A pause and a resumption: SMTP AUTH off, a send, SMTP AUTH on again.
      setSmtpAuth(sandbox, false);
      const third = (await run.api('POST', '/v1/messages', { body: textMessage({ subject: 'third' }) })).body.id;
      try {
        await until(() => run.events.some((e) => e.type === 'mailbox.paused'), 15_000, 'the mailbox to pause');
      } finally {
        setSmtpAuth(sandbox, true);
      }
      await waitForState(run.api, third, 'sent');
      await until(() => run.events.some((e) => e.type === 'mailbox.resumed'), 5_000, 'the mailbox to resume');

      const expected = run.events.filter((e) =>
        ['message.sent', 'message.deferred', 'message.failed', 'message.recipient.refused', 'mailbox.paused', 'mailbox.resumed'].includes(e.type),
      );
      assert.deepEqual([...new Set(expected.map((e) => e.type))].sort(), [
        'mailbox.paused',
        'mailbox.resumed',
        'message.deferred',
        'message.failed',
        'message.recipient.refused',
        'message.sent',
      ]);
      // The SendAs refusal failed the whole message: its one recipient is refused, signed and delivered like the rest.
      assert.deepEqual(
        expected.filter((e) => e.type === 'message.recipient.refused').map((e) => e.type === 'message.recipient.refused' && [e.id, e.recipient, e.messageState]),
        [[bad, 'someone@example.net', 'failed']],
      );
      await until(() => receiver.received.length >= expected.length, 10_000, `${expected.length} webhook deliveries`);
      await new Promise((r) => setTimeout(r, 500)); // time for a duplicate to show up, if one were coming
      assert.equal(receiver.received.length, expected.length, 'each event once');
      for (const delivery of receiver.received) {
        assert.ok(verify(delivery.body, delivery.headers['x-relay365-signature'], secret), 'the documented check accepts the signature');
        assert.ok(!verify(delivery.body, delivery.headers['x-relay365-signature'], 'another secret'), 'and refuses it with another secret');
        assert.ok(!verify(delivery.body.replace('"data":{', '"data":{"x":1,'), delivery.headers['x-relay365-signature'], secret), 'and refuses a changed body');
        assert.equal(delivery.headers['content-type'], 'application/json');
        assert.equal(delivery.path, '/hooks');
      }
      const bodies = receiver.received.map((d) => JSON.parse(d.body) as { id: string; type: string; createdAt: string; data: Record<string, unknown> });
      assert.equal(new Set(bodies.map((b) => b.id)).size, bodies.length, 'every event has its own id');
      for (const b of bodies) assert.equal(receiver.received.find((d) => d.body.includes(b.id))?.headers['x-relay365-event-id'], b.id);
      // The same events as the bus's, field for field (order across events is not promised).
      // A message's events echo its tags and metadata (none here).
      const asSent = (e: RelayEvent) => {
        const { type, at, ...data } = e;
        const echoed = type.startsWith('message.') ? { ...data, tags: [], metadata: {} } : data;
        return JSON.stringify({ type, createdAt: at.toISOString(), data: JSON.parse(JSON.stringify(echoed)) as unknown });
      };
      assert.deepEqual(bodies.map((b) => JSON.stringify({ type: b.type, createdAt: b.createdAt, data: b.data })).sort(), expected.map(asSent).sort());
      const failedEvent = bodies.find((b) => b.type === 'message.failed');
      assert.equal(failedEvent?.data.id, bad);
      assert.match(JSON.stringify(failedEvent?.data.explanation), /Add-RecipientPermission/);

      // The receiver goes away; two messages are sent meanwhile; relay365 restarts; the receiver comes back.
      await receiver.stop();
      const missed = [];
      for (let i = 0; i < 2; i++) missed.push((await run.api('POST', '/v1/messages', { body: textMessage({ subject: `missed ${i}` }) })).body.id);
      for (const id of missed) await waitForState(run.api, id, 'sent');
      await new Promise((r) => setTimeout(r, 700)); // several failed attempts
      await run.relay.close();
      run = await startApi(sandbox, { http }, deps, { dataDir: dir.path, key: run.key });
      receiver.received.length = 0;
      await receiver.start();
      await until(() => receiver.received.length >= 2, 10_000, 'the missed deliveries');
      await new Promise((r) => setTimeout(r, 500));
      const late = receiver.received.map((d) => JSON.parse(d.body) as { type: string; data: { id: string } });
      assert.deepEqual(
        late.map((b) => b.type),
        ['message.sent', 'message.sent'],
      );
      assert.deepEqual(late.map((b) => b.data.id).sort(), [...missed].sort(), 'each missed event once');
      for (const d of receiver.received) assert.ok(verify(d.body, d.headers['x-relay365-signature'], secret));
    } finally {
      await run.relay.close();
      await receiver.stop();
      await dir.cleanup();
    }
  });

  it('serves Prometheus metrics that count the run: messages by state and mailbox, replies by code, latency, queue depth and age, quota, tokens', async () => {
    const run = await startApi(sandbox);
    try {
      const sent: string[] = [];
      for (let i = 0; i < 3; i++) sent.push((await run.api('POST', '/v1/messages', { body: textMessage({ subject: `m${i}` }) })).body.id);
      const failed = (await run.api('POST', '/v1/messages', { body: textMessage({ from: CEO }) })).body.id;
      for (const id of sent) await waitForState(run.api, id, 'sent');
      await waitForState(run.api, failed, 'failed');
      const m = await composeMessage({ from: MAILBOX, to: 'later@example.net', subject: 'later', text: 't' });
      await run.relay.enqueue({ mailbox: MAILBOX, envelope: m.envelope, raw: m.raw, source: { kind: 'library' }, notBefore: new Date(Date.now() + 3_600_000) });
      await new Promise((r) => setTimeout(r, 1100));

      const response = await fetch(`${run.relay.httpAddress!}/metrics`);
      assert.equal(response.status, 200);
      assert.match(response.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
      const metrics = parsePrometheusText(await response.text());
      const v = (name: string, labels: Record<string, string> = {}) => metrics.value(name, labels);
      const mb = { mailbox: MAILBOX };
      assert.equal(v('relay365_messages', { ...mb, state: 'sent' }), 3);
      assert.equal(v('relay365_messages', { ...mb, state: 'failed' }), 1);
      assert.equal(v('relay365_messages', { ...mb, state: 'queued' }), 1);
      assert.equal(v('relay365_messages', { ...mb, state: 'deferred' }), 0);
      assert.equal(v('relay365_message_events_total', { event: 'queued' }), 5);
      assert.equal(v('relay365_message_events_total', { event: 'sent' }), 3);
      assert.equal(v('relay365_message_events_total', { event: 'failed' }), 1);
      assert.equal(v('relay365_smtp_replies_total', { code: '250', enhanced: '2.0.0' }), 3);
      assert.equal(v('relay365_smtp_replies_total', { code: '554', enhanced: '5.2.252' }), 1);
      assert.equal(v('relay365_send_duration_seconds_count', mb), 3);
      assert.ok(v('relay365_send_duration_seconds_sum', mb) > 0);
      assert.equal(v('relay365_queue_depth'), 1);
      assert.ok(v('relay365_queue_oldest_age_seconds') >= 1, 'the waiting message is over a second old');
      assert.ok(v('relay365_quota_messages_left', mb) <= 30 - 3);
      assert.equal(v('relay365_quota_recipients_left', mb), 10_000 - 4);
      assert.equal(v('relay365_mailbox_paused', mb), 0);
      assert.equal(v('relay365_token_requests_total', { ...mb, outcome: 'success' }), 1);
      assert.ok(v('relay365_token_expires_in_seconds', mb) > 1800);
      assert.equal(metrics.types.get('relay365_send_duration_seconds'), 'histogram');
      assert.equal(metrics.types.get('relay365_messages'), 'gauge');
      assert.equal(metrics.types.get('relay365_smtp_replies_total'), 'counter');
      // The front door: requests by route pattern and status, the HTTP API's sends as 202s.
      assert.equal(v('relay365_http_requests_total', { method: 'POST', route: '/v1/messages', status: '202' }), 4);
      // Node's process metrics under their standard names (stock Node.js dashboards query these).
      assert.equal(metrics.types.get('process_cpu_seconds_total'), 'counter');
      assert.equal(metrics.types.get('nodejs_eventloop_lag_seconds'), 'gauge');
      assert.ok(!metrics.types.has('relay365_process_cpu_seconds_total'), 'not under the relay365_ prefix');
    } finally {
      await run.stop();
    }
  });

  it('creates, lists and revokes API keys with the CLI, printing the key once and storing only its hash', async () => {
    const dir = await tempDir();
    try {
      const configPath = join(dir.path, 'relay365.yaml');
      await writeFile(configPath, `dataDir: ${JSON.stringify(dir.path)}\nlog:\n  level: silent\n`);
      const cli = (...args: string[]) => runTsCli(['apikey', ...args, '--config', configPath]);
      const created = await cli('create', '--name', 'billing-app');
      assert.equal(created.code, 0, created.stderr);
      const key = created.stdout.trim();
      assert.match(key, /^r365_[A-Za-z0-9_-]{43}$/);
      assert.match(created.stderr, /not shown again/);
      const db = await readFile(join(dir.path, 'relay365.db'));
      const wal = await readFile(join(dir.path, 'relay365.db-wal')).catch(() => Buffer.alloc(0));
      assert.ok(!Buffer.concat([db, wal]).includes(Buffer.from(key)), 'the key itself is not stored');
      assert.ok(Buffer.concat([db, wal]).includes(Buffer.from(createHash('sha256').update(key).digest('hex'))), 'its SHA-256 is');
      const list = await cli('list', '--json');
      const keys = JSON.parse(list.stdout) as Array<{ id: string; name: string; prefix: string; revokedAt: string | null }>;
      assert.equal(keys.length, 1);
      assert.equal(keys[0]!.name, 'billing-app');
      assert.ok(key.startsWith(keys[0]!.prefix));
      assert.ok(!list.stdout.includes(key));

      const run = await startApi(sandbox, {}, {}, { dataDir: dir.path, key });
      try {
        const api = run.api;
        assert.equal((await api('GET', '/v1/mailboxes')).status, 200);
        const revoked = await cli('revoke', keys[0]!.id);
        assert.equal(revoked.code, 0, revoked.stderr);
        assert.equal((await api('GET', '/v1/mailboxes')).status, 401);
        const unknown = await cli('revoke', 'nope', '--json');
        assert.notEqual(unknown.code, 0);
        assert.match(unknown.stdout, /R365_API_KEY_UNKNOWN/);
      } finally {
        await run.relay.close();
      }
    } finally {
      await dir.cleanup();
    }
  });
});

/** Runs the CLI from source (the built dist may be stale while developing). */
function runTsCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolvePromise({ code, stdout, stderr }));
  });
}

/** The parts of the OpenAPI document the test reads. */
interface OpenApiDoc {
  openapi: string;
  paths: Record<
    string,
    Record<
      string,
      { requestBody?: { content: Record<string, { schema: { properties: Record<string, unknown> } }> }; responses: Record<string, unknown>; security?: unknown }
    >
  >;
  components: { securitySchemes: Record<string, { scheme: string }> };
}

/** The signature check of docs/webhooks.md, run as a user would copy it. */
async function docSnippet(): Promise<(body: string, header: string | string[] | undefined, secret: string) => boolean> {
  const doc = await readFile(join(ROOT, 'docs/webhooks.md'), 'utf8');
  const code = [...doc.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]!).find((c) => c.includes('export function verifyRelay365Signature'));
  assert.ok(code, 'docs/webhooks.md has the verification snippet');
  const dir = await tempDir();
  try {
    const file = join(dir.path, 'verify.mjs');
    await writeFile(file, code);
    const mod = (await import(pathToFileURL(file).href)) as { verifyRelay365Signature: (body: string, header: unknown, secret: string) => boolean };
    return (body, header, secret) => mod.verifyRelay365Signature(body, header, secret);
  } finally {
    await dir.cleanup();
  }
}

interface ReceivedWebhook {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/** A webhook receiver on 127.0.0.1 that records each request and answers 204; it can stop and start again on its port. */
async function startReceiver(): Promise<{ url: string; received: ReceivedWebhook[]; stop(): Promise<void>; start(): Promise<void> }> {
  const received: ReceivedWebhook[] = [];
  let server: Server | undefined;
  let port = 0;
  const start = async (): Promise<void> => {
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        received.push({ path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((ok, fail) => {
      server!.once('error', fail);
      server!.listen(port, '127.0.0.1', () => ok());
    });
    port = (server.address() as AddressInfo).port;
  };
  await start();
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    start,
    async stop() {
      const s = server;
      server = undefined;
      if (!s) return;
      s.closeAllConnections();
      await new Promise<void>((ok) => s.close(() => ok()));
    },
  };
}

/**
 * A strict reader of the Prometheus text format 0.0.4 (prometheus.io/docs/instrumenting/exposition_formats):
 * every line must be a HELP, a TYPE (once per family, before its samples) or a sample of a declared
 * family; label values are unescaped; no series twice; histogram buckets cumulative up to +Inf = count.
 */
function parsePrometheusText(text: string) {
  assert.ok(text.endsWith('\n'), 'the exposition ends with a line feed');
  const types = new Map<string, string>();
  const samples = new Map<string, number>();
  const seenSamplesOf = new Set<string>();
  const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
  const familyOf = (name: string): string | undefined => {
    if (types.has(name)) return name;
    const base = name.replace(/_(bucket|sum|count)$/, '');
    return types.get(base) === 'histogram' || types.get(base) === 'summary' ? base : undefined;
  };
  const key = (name: string, labels: Record<string, string>) =>
    `${name}{${Object.keys(labels)
      .sort()
      .map((k) => `${k}=${JSON.stringify(labels[k])}`)
      .join(',')}}`;
  for (const line of text.slice(0, -1).split('\n')) {
    if (line === '') continue;
    let m: RegExpExecArray | null;
    if (new RegExp(`^# HELP (${NAME}) (.*)$`).test(line)) continue;
    if ((m = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`).exec(line))) {
      assert.ok(!types.has(m[1]!), `TYPE of ${m[1]} given twice`);
      assert.ok(!seenSamplesOf.has(m[1]!), `TYPE of ${m[1]} after its samples`);
      types.set(m[1]!, m[2]!);
      continue;
    }
    assert.ok(!line.startsWith('#') || /^# /.test(line), `malformed comment: ${line}`);
    if (line.startsWith('# ')) continue;
    m = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)(?: (-?\\d+))?$`).exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    const [, name, labelText, valueText] = m;
    const family = familyOf(name!);
    assert.ok(family, `sample of an undeclared family: ${line}`);
    seenSamplesOf.add(family);
    const labels: Record<string, string> = {};
    if (labelText) {
      const labelRe = new RegExp(`\\s*(${NAME})="((?:[^"\\\\\\n]|\\\\[\\\\"n])*)"\\s*(,|$)`, 'y');
      let pos = 0;
      while (pos < labelText.length) {
        labelRe.lastIndex = pos;
        const l = labelRe.exec(labelText);
        assert.ok(l, `malformed labels: ${line}`);
        assert.ok(!(l[1]! in labels), `label ${l[1]} twice: ${line}`);
        labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
        pos = labelRe.lastIndex;
      }
    }
    assert.ok(/^(?:[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)|[+-]Inf|NaN)$/.test(valueText!), `not a number: ${line}`);
    const value = valueText === '+Inf' ? Infinity : valueText === '-Inf' ? -Infinity : Number(valueText);
    const k = key(name!, labels);
    assert.ok(!samples.has(k), `series given twice: ${k}`);
    samples.set(k, value);
  }
  // Histograms: cumulative buckets, +Inf equal to the count.
  for (const [family, type] of types) {
    if (type !== 'histogram') continue;
    const series = new Map<string, Array<[number, number]>>();
    for (const [k, value] of samples) {
      if (!k.startsWith(`${family}_bucket{`)) continue;
      const le = /le="([^"]+)"/.exec(k)![1]!;
      const rest = k
        .replace(/,?le="[^"]+"/, '')
        .replace('{,', '{')
        .replace(`${family}_bucket`, `${family}_count`);
      series.set(rest, [...(series.get(rest) ?? []), [le === '+Inf' ? Infinity : Number(le), value]]);
    }
    for (const [countKey, buckets] of series) {
      buckets.sort((a, b) => a[0] - b[0]);
      for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i]![1] >= buckets[i - 1]![1], `${family} buckets are cumulative`);
      assert.equal(buckets.at(-1)![0], Infinity, `${family} has a +Inf bucket`);
      assert.equal(buckets.at(-1)![1], samples.get(countKey), `${family}: +Inf bucket equals the count`);
    }
  }
  return {
    types,
    value(name: string, labels: Record<string, string> = {}): number {
      const v = samples.get(key(name, labels));
      assert.ok(v !== undefined, `no sample ${key(name, labels)}`);
      return v;
    },
  };
}
