/**
 * One corpus of good and bad messages, fed through every front door: SMTP (a socket, AUTH, DATA),
 * HTTP `POST /v1/messages/mime`, HTTP `POST /v1/messages` where the message can be said in fields, and
 * `relay365 send`'s admission. Each door must give the same verdict (accepted, or refused for the same
 * reason, rendered as that door renders it), and what is accepted must be in the outbox (SQLite file).
 */
import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { RefusalReason } from '../../src/admission/index.js';
import { admitForSend } from '../../src/cli/commands/send.js';
import { hashPassword } from '../../src/ingress/smtp/password.js';
import { generateApiKey, openSqliteIntegrationStore } from '../../src/ingress/http/index.js';
import { startRelay, type Relay } from '../../src/runtime/index.js';
import { DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';
import { sandboxConfig } from '../helpers/config.js';
import { startTestSandbox, tempDir } from '../helpers/sandbox.js';
import { SmtpWire } from '../helpers/smtp-wire.js';

const MAILBOX = DEFAULT_IDS.mailbox;
/** An alias the sandbox's mailbox holds SendAs on. */
const ALIAS = `noreply@${DEFAULT_IDS.tenantDomain}`;
/** Allowed to the user and the key, but no mailbox may send as it. */
const UNROUTABLE = 'someone@fabrikam.example';
/** A tenant address neither the user nor the key may use. */
const FORBIDDEN = `ceo@${DEFAULT_IDS.tenantDomain}`;
const SUPPRESSED = 'bounced@example.net';
const MAX_BYTES = 6000;
const MAX_RECIPIENTS = 3;
const USER = 'corpus';
const PASSWORD = 'corpus-password-1';
const SENDERS = [MAILBOX, ALIAS, '@fabrikam.example'];

/** How each door renders a refusal: the SMTP reply's start and the HTTP status and error code. */
const RENDERED: Record<RefusalReason, { smtp: RegExp; status: number; code: string }> = {
  'too-big': { smtp: /^552 5\.3\.4 /, status: 413, code: 'R365_MESSAGE_TOO_LARGE' },
  'nul-bytes': { smtp: /^554 5\.6\.0 Message contains NUL/, status: 400, code: 'R365_MESSAGE_INVALID' },
  'line-too-long': { smtp: /^500 5\.5\.2 Line too long/, status: 400, code: 'R365_MESSAGE_INVALID' },
  'header-malformed': { smtp: /^554 5\.6\.0 Malformed header section/, status: 400, code: 'R365_MESSAGE_INVALID' },
  'originator-refused': { smtp: /^550 5\.7\.1 Sender not allowed: the message has more than one From/, status: 400, code: 'R365_MESSAGE_INVALID' },
  'sender-not-allowed': { smtp: /^550 5\.7\.1 Sender not allowed: corpus may not send as/, status: 403, code: 'R365_HTTP_FORBIDDEN' },
  'no-route': { smtp: /^550 5\.7\.1 Sender not allowed: no mailbox may send as/, status: 422, code: 'R365_NO_ROUTE_FOR_SENDER' },
  'too-many-recipients': { smtp: /^452 4\.5\.3 /, status: 400, code: 'R365_MESSAGE_INVALID' },
  suppressed: { smtp: /^550 5\.1\.1 /, status: 422, code: 'R365_SUPPRESSED' },
  'no-sender': { smtp: /^550 5\.7\.1 /, status: 400, code: 'R365_MESSAGE_INVALID' },
  'no-recipients': { smtp: /^554 /, status: 400, code: 'R365_MESSAGE_INVALID' },
  'unknown-mailbox': { smtp: /^550 /, status: 422, code: 'R365_UNKNOWN_MAILBOX' },
  'store-unavailable': { smtp: /^451 /, status: 503, code: 'R365_OUTBOX_UNAVAILABLE' },
  // Only the HTTP API and the library take labels; the corpus has no case for it.
  'labels-invalid': { smtp: /^550 5\.6\.0 Message labels refused/, status: 400, code: 'R365_MESSAGE_INVALID' },
  // Only the HTTP API and the library schedule; the library's test (library-queued) has the case.
  'schedule-invalid': { smtp: /^550 5\.6\.0 Scheduled time refused/, status: 400, code: 'R365_MESSAGE_INVALID' },
};

interface Case {
  name: string;
  from: string;
  to: string[];
  /** The message, CRLF line ends unless the case is about them. */
  raw: string;
  /** The same message as `POST /v1/messages` fields, where fields can say it. */
  json?: Record<string, unknown>;
  expect: 'accepted' | RefusalReason;
}

const to = ['alice@example.net'];
const simple = (from: string, extra = ''): string => `From: ${from}\r\nTo: alice@example.net\r\nSubject: corpus\r\n${extra}\r\nHello.\r\n`;
const fields = (from: string, more: Record<string, unknown> = {}): Record<string, unknown> => ({ from, to, subject: 'corpus', text: 'Hello.', ...more });

const CORPUS: Case[] = [
  { name: 'a good message', from: MAILBOX, to, raw: simple(MAILBOX), json: fields(MAILBOX), expect: 'accepted' },
  { name: 'a From alias of the mailbox', from: ALIAS, to, raw: simple(`"No reply" <${ALIAS}>`), json: fields(`No reply <${ALIAS}>`), expect: 'accepted' },
  { name: 'a NUL byte in the body', from: MAILBOX, to, raw: `${simple(MAILBOX)}bin\u0000ary\r\n`, expect: 'nul-bytes' },
  { name: 'a line of 1001 octets', from: MAILBOX, to, raw: `${simple(MAILBOX)}${'a'.repeat(999)}\r\n`, expect: 'line-too-long' },
  { name: 'a bare LF among CRLF in the headers', from: MAILBOX, to, raw: `From: ${MAILBOX}\r\nX-Evil: 1\nSubject: x\r\n\r\nx\r\n`, expect: 'header-malformed' },
  { name: 'two From fields', from: MAILBOX, to, raw: `From: ${MAILBOX}\r\nFrom: ${ALIAS}\r\nSubject: x\r\n\r\nx\r\n`, expect: 'originator-refused' },
  { name: 'a From the submitter may not use', from: MAILBOX, to, raw: simple(FORBIDDEN), json: fields(FORBIDDEN), expect: 'sender-not-allowed' },
  { name: 'an envelope sender the submitter may not use', from: FORBIDDEN, to, raw: simple(MAILBOX), expect: 'sender-not-allowed' },
  {
    name: 'too many recipients',
    from: MAILBOX,
    to: ['a@example.net', 'b@example.net', 'c@example.net', 'd@example.net'],
    raw: simple(MAILBOX),
    json: fields(MAILBOX, { to: ['a@example.net', 'b@example.net', 'c@example.net', 'd@example.net'] }),
    expect: 'too-many-recipients',
  },
  {
    name: 'an oversized message',
    from: MAILBOX,
    to,
    raw: simple(MAILBOX) + `${'b'.repeat(76)}\r\n`.repeat(Math.ceil(MAX_BYTES / 78)),
    json: fields(MAILBOX, { text: `${'b'.repeat(76)}\n`.repeat(Math.ceil(MAX_BYTES / 77)) }),
    expect: 'too-big',
  },
  { name: 'a suppressed recipient', from: MAILBOX, to: [SUPPRESSED], raw: simple(MAILBOX), json: fields(MAILBOX, { to: [SUPPRESSED] }), expect: 'suppressed' },
  { name: 'an unroutable sender', from: UNROUTABLE, to, raw: simple(UNROUTABLE), json: fields(UNROUTABLE), expect: 'no-route' },
];

type Seen = { verdict: 'accepted'; id?: string } | { verdict: 'refused'; smtp?: string; status?: number; code?: string; reason?: RefusalReason };

describe('the admission corpus: the same verdict from every front door', () => {
  let sandbox: Sandbox & { dir: string };
  let dir: { path: string; cleanup: () => Promise<void> };
  let relay: Relay;
  let key: string;
  let smtpPort: number;
  let config: Parameters<typeof admitForSend>[0];

  before(async () => {
    sandbox = await startTestSandbox();
    dir = await tempDir();
    const cfg = sandboxConfig(sandbox, dir.path, {
      mailboxes: [{ address: MAILBOX, aliases: [ALIAS] }],
      limits: { maxMessageBytes: MAX_BYTES, recipientsPerMessage: MAX_RECIPIENTS },
      smtp: {
        enabled: true,
        listeners: [{ host: '127.0.0.1', port: 0, tls: 'none', allowPlainAuth: true }],
        users: [{ name: USER, passwordHash: await hashPassword(PASSWORD), allowedSenders: SENDERS }],
      },
      http: { enabled: true, port: 0 },
    });
    config = cfg;
    const store = await openSqliteIntegrationStore(resolve(dir.path, 'relay365.db'));
    const k = generateApiKey();
    await store.createApiKey({ name: USER, hash: k.hash, prefix: k.prefix, scopes: ['send'], senders: SENDERS });
    await store.close();
    key = k.key;
    relay = await startRelay(cfg);
    smtpPort = relay.listeners[0]!.port;
    await relay.store.suppress({ address: SUPPRESSED, reason: '550 5.1.10 RESOLVER.ADR.RecipientNotFound', source: 'manual' });
  });
  after(async () => {
    await relay?.close();
    await sandbox?.close();
    await dir?.cleanup();
  });

  async function viaSmtp(c: Case): Promise<Seen> {
    const { wire } = await SmtpWire.connect(smtpPort);
    try {
      await wire.command('EHLO corpus.example');
      const auth = await wire.command(`AUTH PLAIN ${Buffer.from(`\0${USER}\0${PASSWORD}`).toString('base64')}`);
      assert.equal(auth.code, 235, auth.last);
      const refused = (reply: { code: number; last: string }): Seen | undefined => (reply.code >= 400 ? { verdict: 'refused', smtp: reply.last } : undefined);
      const mail = await wire.command(`MAIL FROM:<${c.from}>`);
      if (refused(mail)) return refused(mail)!;
      for (const rcpt of c.to) {
        const reply = await wire.command(`RCPT TO:<${rcpt}>`);
        if (refused(reply)) return refused(reply)!;
      }
      const data = await wire.command('DATA');
      assert.equal(data.code, 354, data.last);
      // Dot-stuffing (RFC 5321 4.5.2); the corpus has no line starting with a dot, but the door must not see one.
      wire.writeRaw(Buffer.from(`${c.raw.replace(/^\./gm, '..')}${c.raw.endsWith('\n') ? '' : '\r\n'}.\r\n`, 'utf8'));
      const end = await wire.reply();
      if (refused(end)) return refused(end)!;
      return { verdict: 'accepted', id: /queued as (\S+)/.exec(end.last)?.[1] };
    } finally {
      await wire.quit();
    }
  }

  async function viaHttp(path: string, body: unknown): Promise<Seen> {
    const res = await fetch(`${relay.httpAddress}/v1/messages${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    const json = (await res.json()) as { id?: string; error?: { code: string } };
    if (res.status === 202) return { verdict: 'accepted', id: json.id };
    return { verdict: 'refused', status: res.status, code: json.error?.code };
  }

  async function viaCli(c: Case): Promise<Seen> {
    // The same submitter as the SMTP user and the API key: its allowedSenders.
    const verdict = await admitForSend(
      config,
      { raw: Buffer.from(c.raw, 'utf8'), envelope: { from: c.from, to: c.to } },
      { suppressions: relay.store, submitter: { source: { kind: 'cli' }, display: USER, allowedSenders: SENDERS } },
    );
    return verdict.ok
      ? { verdict: 'accepted' }
      : { verdict: 'refused', reason: verdict.reason, smtp: verdict.smtp, code: verdict.code, status: verdict.status };
  }

  for (const c of CORPUS) {
    it(`${c.name}: ${c.expect === 'accepted' ? 'accepted' : `refused (${c.expect})`} by SMTP, HTTP MIME${c.json ? ', HTTP JSON' : ''} and relay365 send`, async () => {
      const doors: Array<[string, Seen]> = [
        ['smtp', await viaSmtp(c)],
        ['http mime', await viaHttp('/mime', { raw: c.raw, encoding: 'utf8', envelope: { from: c.from, to: c.to } })],
        ...(c.json ? [['http json', await viaHttp('', c.json)] as [string, Seen]] : []),
        ['relay365 send', await viaCli(c)],
      ];
      for (const [door, seen] of doors) {
        if (c.expect === 'accepted') {
          assert.equal(seen.verdict, 'accepted', `${door}: ${JSON.stringify(seen)}`);
          if (door === 'relay365 send') continue; // it sends directly, without an outbox
          assert.ok(seen.verdict === 'accepted' && seen.id, `${door} answered with an id`);
          const stored = await relay.store.get(seen.id);
          assert.ok(stored, `${door}: message ${seen.id} is in the outbox`);
          assert.equal(stored.mailbox, MAILBOX, `${door}: routed to the mailbox`);
          continue;
        }
        assert.equal(seen.verdict, 'refused', `${door}: ${JSON.stringify(seen)} ${c.name}`);
        if (seen.verdict !== 'refused') continue;
        const expected = RENDERED[c.expect];
        if (seen.smtp !== undefined) assert.match(seen.smtp, expected.smtp, `${door}: ${seen.smtp}`);
        if (seen.status !== undefined) assert.equal(seen.status, expected.status, `${door}: ${JSON.stringify(seen)}`);
        if (seen.code !== undefined) assert.equal(seen.code, expected.code, door);
        if (seen.reason !== undefined) assert.equal(seen.reason, c.expect, door);
      }
    });
  }

  it('queued nothing for a refused message', async () => {
    const accepted = CORPUS.filter((c) => c.expect === 'accepted');
    // Each accepted case was queued once by SMTP, once by HTTP MIME and once by HTTP JSON; nothing else.
    const expected = accepted.reduce((n, c) => n + 2 + (c.json ? 1 : 0), 0);
    const counts = await relay.store.counts();
    assert.equal(
      Object.values(counts).reduce((n, v) => n + (v ?? 0), 0),
      expected,
      JSON.stringify(counts),
    );
  });
});
