import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { generateApiKey, openSqliteIntegrationStore } from '../../src/ingress/http/index.js';
import { startRelay, type Relay } from '../../src/runtime/index.js';
import { DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';
import { sandboxConfig } from '../helpers/config.js';
import { startTestSandbox, tempDir } from '../helpers/sandbox.js';

const MAILBOX = DEFAULT_IDS.mailbox;

describe('HTTP sends: the same header, line and address rules as the SMTP door', () => {
  let sandbox: Sandbox & { dir: string };
  let dir: { path: string; cleanup: () => Promise<void> };
  let relay: Relay;
  let key: string;

  before(async () => {
    sandbox = await startTestSandbox();
    dir = await tempDir();
    relay = await startRelay(sandboxConfig(sandbox, dir.path, { http: { port: 0 }, mailboxes: [{ address: MAILBOX }] }));
    const store = await openSqliteIntegrationStore(resolve(dir.path, 'relay365.db'));
    const k = generateApiKey();
    await store.createApiKey({ name: 'mime', hash: k.hash, prefix: k.prefix });
    await store.close();
    key = k.key;
  });
  after(async () => {
    await relay.close();
    await sandbox.close();
    await dir.cleanup();
  });

  async function sendMime(raw: string): Promise<{ status: number; body: { error?: { code: string; message: string; field?: string }; id?: string } }> {
    const res = await fetch(`${relay.httpAddress}/v1/messages/mime`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ raw, encoding: 'utf8', envelope: { from: MAILBOX, to: ['alice@example.net'] } }),
    });
    return { status: res.status, body: (await res.json()) as never };
  }

  it('refuses a recipient it would otherwise rewrite or drop, naming the field, and queues nothing', async () => {
    const post = (body: unknown) =>
      fetch(`${relay.httpAddress}/v1/messages`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ to: ['alice@example.net', 'x&y<b>@example.net'] }, 'to[1]'],
      [{ to: 'no-domain' }, 'to'],
      [{ to: ['alice@example.net'], cc: ['"A" <a@example.net> <b@example.net>'] }, 'cc[0]'],
      [{ to: [{ name: 'B', address: 'b@example.net>' }] }, 'to[0].address'],
      // A lenient parser reads a display name `a` and sends to b@example.net.
      [{ to: ['a b@example.net'] }, 'to[0]'],
    ];
    for (const [fields, field] of cases) {
      const res = await post({ from: MAILBOX, subject: 'x', text: 'x', ...fields });
      const body = (await res.json()) as { error?: { code: string; field?: string } };
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal(body.error?.code, 'R365_HTTP_INVALID_REQUEST');
      assert.equal(body.error?.field, field);
    }
    assert.equal((await relay.store.counts()).queued ?? 0, 0);
  });

  it('refuses NUL bytes, lines over 998 octets, a second From, `From :` naming another sender and a bare CR, each with 400 naming raw', async () => {
    const cases: Array<[string, RegExp]> = [
      [`From: ${MAILBOX}\r\nSubject: x\r\n\r\nbin\u0000ary\r\n`, /NUL bytes/],
      [`From: ${MAILBOX}\r\nSubject: x\r\n\r\n${'a'.repeat(999)}\r\n`, /line of 1001 octets/],
      [`From: ${MAILBOX}\r\nFrom: ceo@${DEFAULT_IDS.tenantDomain}\r\n\r\nx\r\n`, /more than one From/],
      [`From: ${MAILBOX}\rX-Evil: 1\r\nSubject: x\r\n\r\nx\r\n`, /bare carriage return/],
      [` Subject: folded first\r\nFrom: ${MAILBOX}\r\n\r\nx\r\n`, /first header line starts with white space/],
    ];
    for (const [raw, problem] of cases) {
      const { status, body } = await sendMime(raw);
      assert.equal(status, 400, JSON.stringify(body));
      assert.equal(body.error?.code, 'R365_MESSAGE_INVALID');
      assert.equal(body.error?.field, 'raw');
      assert.match(body.error.message, problem);
    }
    // `From :` (obsolete space before the colon) is a From like any other: routed, and refused when no mailbox may send as it.
    const spaced = await sendMime(`From : someone@fabrikam.example\r\nSubject: x\r\n\r\nx\r\n`);
    assert.equal(spaced.status, 422, JSON.stringify(spaced.body));
    assert.equal(spaced.body.error?.code, 'R365_NO_ROUTE_FOR_SENDER');
    assert.equal((await relay.store.counts()).queued ?? 0, 0, 'nothing was queued');
    const good = await sendMime(`From: ${MAILBOX}\r\nSubject: fine\r\n\r\nhello\r\n`);
    assert.equal(good.status, 202, JSON.stringify(good.body));
  });

  it('gives a message without From the envelope sender as From, as the SMTP door does (RFC 6409 8.1), with a Message-ID and Date', async () => {
    const { status, body } = await sendMime(`Subject: no from\r\n\r\nx\r\n`);
    assert.equal(status, 202, JSON.stringify(body));
    const raw = (await relay.store.getRaw(body.id!))!.toString('utf8');
    assert.match(raw, new RegExp(`^From: <${MAILBOX}>\r$`, 'm'));
    assert.match(raw, /^Message-ID: <[^>]+>\r$/m);
    assert.match(raw, /^Date: .+\+0000\r$/m);
  });

  it('holds a key allowed one sender to it in Sender and Resent-From too, as the SMTP door does', async () => {
    const store = await openSqliteIntegrationStore(resolve(dir.path, 'relay365.db'));
    const k = generateApiKey();
    await store.createApiKey({ name: 'one-sender', hash: k.hash, prefix: k.prefix, scopes: ['send'], senders: [MAILBOX] });
    await store.close();
    const send = async (headers: string) => {
      const res = await fetch(`${relay.httpAddress}/v1/messages/mime`, {
        method: 'POST',
        headers: { authorization: `Bearer ${k.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ raw: `${headers}\r\nSubject: x\r\n\r\nx\r\n`, encoding: 'utf8', envelope: { from: MAILBOX, to: ['alice@example.net'] } }),
      });
      return { status: res.status, body: (await res.json()) as { error?: { code: string; message: string } } };
    };
    const before = (await relay.store.counts()).queued ?? 0;
    for (const other of [`Sender: ceo@${DEFAULT_IDS.tenantDomain}`, `Resent-From: ceo@${DEFAULT_IDS.tenantDomain}`, `Resent-Sender: ceo@${DEFAULT_IDS.tenantDomain}`]) {
      const { status, body } = await send(`From: ${MAILBOX}\r\n${other}`);
      assert.equal(status, 403, JSON.stringify(body));
      assert.equal(body.error?.code, 'R365_HTTP_FORBIDDEN');
      assert.match(body.error.message, new RegExp(`not as ceo@${DEFAULT_IDS.tenantDomain}`));
    }
    assert.equal((await relay.store.counts()).queued ?? 0, before, 'nothing was queued');
    assert.equal((await send(`From: ${MAILBOX}\r\nSender: ${MAILBOX}`)).status, 202);
  });
});
