/**
 * The HTTP API's managed-email parity over real HTTP against the sandbox: tags and metadata stored,
 * searchable and echoed in webhooks; search by recipient, tag and time with cursor pages; scheduled
 * send and its cancel; validate-only; batch send with per-item results and per-item idempotency keys.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { generateApiKey, openSqliteIntegrationStore } from '../../src/ingress/http/index.js';
import { startRelay, type Relay } from '../../src/runtime/index.js';
import { DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';
import { sandboxConfig } from '../helpers/config.js';
import { scenario, startTestSandbox, tempDir } from '../helpers/sandbox.js';
import { until } from '../helpers/wait.js';

const MAILBOX = DEFAULT_IDS.mailbox;

/** The fields of the answers the tests read: a message, a batch item, a validate-only answer, an error (each present in its kind). */
interface Item {
  id: string;
  index: number;
  status: number;
  state: string;
  replayed?: boolean;
  valid?: boolean;
  mailbox: string | null;
  messageId: string;
  envelope: { from: string; to: string[] };
  createdAt: string;
  nextAttemptAt: string | null;
  sendAt: string | null;
  tags: string[];
  metadata: Record<string, string>;
  error: { code: string; message: string; field?: string };
}

interface Answer {
  status: number;
  headers: Headers;
  body: Item & { items: Item[]; nextCursor: string | null; queued: number; refused: number };
}

async function startReceiver(): Promise<{ url: string; received: Array<{ headers: IncomingHttpHeaders; body: string }>; server: Server }> {
  const received: Array<{ headers: IncomingHttpHeaders; body: string }> = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      received.push({ headers: req.headers, body });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`, received, server };
}

describe('HTTP API: tags, metadata, search, scheduled send, validate-only and batch', () => {
  let sandbox: Sandbox & { dir: string };
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let relay: Relay;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let api: (method: string, path: string, body?: unknown, headers?: Record<string, string>) => Promise<Answer>;

  before(async () => {
    sandbox = await startTestSandbox({ scenario: scenario((s) => void (s.limits.unlimited = true)) });
    dir = await tempDir();
    receiver = await startReceiver();
    const http = await openSqliteIntegrationStore(resolve(dir.path, 'relay365.db'));
    const key = generateApiKey();
    await http.createApiKey({ name: 'app', hash: key.hash, prefix: key.prefix, scopes: ['send', 'read', 'admin'] });
    await http.close();
    relay = await startRelay(
      sandboxConfig(sandbox, dir.path, {
        // The name both doors put in the Message-IDs they add.
        smtp: { enabled: false, hostname: 'relay.contoso.example' },
        mailboxes: [{ address: MAILBOX }],
        queue: { retryBaseSeconds: 0.1, retryMaxSeconds: 0.5 },
        http: { enabled: true, port: 0, webhooks: [{ url: receiver.url, secret: 'whsec-labels', events: ['message.sent'] }] },
      }),
      { webhooks: { backoffBaseMs: 100, backoffMaxMs: 400, pollMs: 100 } },
    );
    api = async (method, path, body, headers = {}) => {
      const response = await fetch(relay.httpAddress! + path, {
        method,
        headers: { authorization: `Bearer ${key.key}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      return { status: response.status, headers: response.headers, body: (await response.json()) as Answer['body'] };
    };
  });
  after(async () => {
    await relay?.close();
    await new Promise((r) => receiver?.server.close(r));
    await dir?.cleanup();
    await sandbox?.close();
  });

  const text = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
    from: MAILBOX,
    to: 'someone@example.net',
    subject: 'Hello',
    text: 'Hi.',
    ...extra,
  });
  const waitSent = (id: string) =>
    until(async () => ((await api('GET', `/v1/messages/${id}`)).body.state === 'sent' ? true : undefined), 15_000, `message ${id} sent`);

  it('stores tags and metadata, shows them, finds the message by tag and echoes them in its webhooks', async () => {
    const sent = await api('POST', '/v1/messages', text({ to: 'tagged@example.net', tags: ['invoice', 'eu'], metadata: { customer: 'c-42' } }));
    assert.equal(sent.status, 202, JSON.stringify(sent.body));
    assert.deepEqual([sent.body.tags, sent.body.metadata, sent.body.sendAt], [['invoice', 'eu'], { customer: 'c-42' }, null]);
    const id = sent.body.id;
    await waitSent(id);
    const shown = await api('GET', `/v1/messages/${id}`);
    assert.deepEqual([shown.body.tags, shown.body.metadata], [['invoice', 'eu'], { customer: 'c-42' }]);
    assert.deepEqual(
      (await api('GET', '/v1/messages?tag=invoice')).body.items.map((m) => m.id),
      [id],
    );

    const hooks = await until(
      () => {
        const mine = receiver.received.map((r) => JSON.parse(r.body) as { type: string; data: Record<string, unknown> }).filter((e) => e.data.id === id);
        return mine.length >= 1 ? mine : undefined;
      },
      15_000,
      'the message.sent webhook',
    );
    for (const hook of hooks) {
      assert.deepEqual([hook.data.tags, hook.data.metadata], [['invoice', 'eu'], { customer: 'c-42' }], `${hook.type} echoes the labels`);
    }

    for (const [body, field] of [
      [text({ tags: ['no spaces'] }), 'tags[0]'],
      [text({ tags: Array.from({ length: 11 }, (_, i) => `t${i}`) }), 'tags'],
      [text({ metadata: { k: 'v'.repeat(501) } }), 'metadata.k'],
      [text({ metadata: { n: 5 } }), 'metadata.n'],
    ] as const) {
      const r = await api('POST', '/v1/messages', body);
      assert.equal(r.status, 400, JSON.stringify(body).slice(0, 80));
      assert.equal(r.body.error.code, 'R365_HTTP_INVALID_REQUEST');
      assert.equal(r.body.error.field, field, r.body.error.message);
    }
  });

  it('searches by recipient in any case, tag and creation time, and pages within the search', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await api('POST', '/v1/messages', text({ to: ['Search.Me@Example.net', `other${i}@example.net`], tags: ['search'] }));
      assert.equal(r.status, 202);
      ids.push(r.body.id);
    }
    const first = await api('GET', '/v1/messages?recipient=search.me%40example.net&limit=2');
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.deepEqual(
      first.body.items.map((m) => m.id),
      [ids[2], ids[1]],
    );
    const second = await api('GET', `/v1/messages?recipient=search.me%40example.net&limit=2&cursor=${first.body.nextCursor}`);
    assert.deepEqual(
      second.body.items.map((m) => m.id),
      [ids[0]],
    );
    assert.equal(second.body.nextCursor, null);
    assert.deepEqual(
      (await api('GET', '/v1/messages?recipient=other1%40example.net&tag=search')).body.items.map((m) => m.id),
      [ids[1]],
    );

    const created = (await api('GET', `/v1/messages/${ids[1]}`)).body.createdAt;
    const since = await api('GET', `/v1/messages?tag=search&since=${encodeURIComponent(created)}`);
    assert.ok(
      since.body.items.every((m) => m.createdAt >= created),
      'since is inclusive',
    );
    assert.ok(since.body.items.some((m) => m.id === ids[1]));
    const untilAnswer = await api('GET', `/v1/messages?tag=search&until=${encodeURIComponent(created)}`);
    assert.ok(
      untilAnswer.body.items.every((m) => m.createdAt < created),
      'until is exclusive',
    );
    assert.ok(!untilAnswer.body.items.some((m) => m.id === ids[1]));

    const bad = await api('GET', '/v1/messages?since=yesterday');
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.field, 'since', bad.body.error.message);
  });

  it('holds a scheduled message until its time, lets it be cancelled before, and refuses a time over 30 days ahead', async () => {
    const before = sandbox.state.messages.length;
    const at = new Date(Date.now() + 3_600_000).toISOString();
    const later = await api('POST', '/v1/messages', text({ to: 'scheduled@example.net', sendAt: at }));
    assert.equal(later.status, 202, JSON.stringify(later.body));
    assert.equal(later.body.sendAt, at);
    const shown = await api('GET', `/v1/messages/${later.body.id}`);
    assert.deepEqual([shown.body.state, shown.body.sendAt, shown.body.nextAttemptAt], ['queued', at, at]);

    const soon = await api('POST', '/v1/messages', text({ to: 'soon@example.net', sendAt: new Date(Date.now() + 1_500).toISOString() }));
    assert.equal(soon.status, 202);
    assert.equal((await api('GET', `/v1/messages/${soon.body.id}`)).body.state, 'queued', 'not sent before its time');
    await waitSent(soon.body.id);
    assert.ok(
      sandbox.state.messages.slice(before).some((m) => m.envelope.rcptTo.includes('soon@example.net')),
      'it reached Exchange',
    );

    const cancelled = await api('DELETE', `/v1/messages/${later.body.id}`);
    assert.deepEqual([cancelled.status, cancelled.body.state], [200, 'cancelled']);
    assert.ok(!sandbox.state.messages.slice(before).some((m) => m.envelope.rcptTo.includes('scheduled@example.net')), 'the cancelled one never left');

    const tooFar = await api('POST', '/v1/messages', text({ sendAt: new Date(Date.now() + 31 * 86_400_000).toISOString() }));
    assert.equal(tooFar.status, 400);
    assert.equal(tooFar.body.error.field, 'sendAt');
    assert.match(tooFar.body.error.message, /at most 30 days/);
    const notADate = await api('POST', '/v1/messages', text({ sendAt: 'tomorrow' }));
    assert.deepEqual([notADate.status, notADate.body.error.field], [400, 'sendAt']);
  });

  it('validates without storing: 200 with where the message would go, or the error the send would get', async () => {
    const count = (await relay.store.list({ limit: 500 })).items.length;
    const ok = await api('POST', '/v1/messages', text({ validateOnly: true, tags: ['dry'] }));
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.deepEqual([ok.body.valid, ok.body.mailbox, ok.body.envelope.to], [true, MAILBOX, ['someone@example.net']]);
    assert.match(ok.body.messageId, /^<.+@.+>$/);
    const mime = await api('POST', '/v1/messages/mime', {
      raw: `From: ${MAILBOX}\r\nTo: a@example.net\r\nSubject: dry\r\n\r\nbody\r\n`,
      encoding: 'utf8',
      envelope: { from: MAILBOX, to: ['a@example.net'] },
      validateOnly: true,
    });
    assert.equal(mime.status, 200, JSON.stringify(mime.body));
    assert.match(mime.body.messageId, /@relay\.contoso\.example>$/, 'the Message-ID added names smtp.hostname');
    const refused = await api('POST', '/v1/messages', text({ from: 'stranger@fabrikam.example', validateOnly: true }));
    assert.equal(refused.status, 422);
    assert.equal(refused.body.error.code, 'R365_NO_ROUTE_FOR_SENDER');
    assert.equal((await relay.store.list({ limit: 500 })).items.length, count, 'nothing was stored');
    assert.deepEqual((await relay.store.list({ tag: 'dry' })).items, []);
  });

  it('sends a batch with one result per item, queues the good ones when one is refused, and dedupes items by their own key', async () => {
    await relay.store.suppress({ address: 'gone@example.net', reason: 'test', source: 'manual' });
    const items = [
      text({ to: 'batch1@example.net', tags: ['batch'], idempotencyKey: 'batch-item-1' }),
      text({ to: 'gone@example.net', tags: ['batch'], idempotencyKey: 'batch-item-2' }),
      text({ to: 'batch3@example.net', tags: ['batch'] }),
      text({ to: 'batch4@example.net', validateOnly: true }),
    ];
    const first = await api('POST', '/v1/messages/batch', { messages: items });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.deepEqual([first.body.queued, first.body.refused], [2, 1]);
    const results = first.body.items;
    assert.deepEqual(
      results.map((r) => [r.index, r.status]),
      [
        [0, 202],
        [1, 422],
        [2, 202],
        [3, 200],
      ],
    );
    assert.equal(results[1]!.error.code, 'R365_SUPPRESSED');
    assert.match(results[1]!.error.message, /gone@example\.net/);
    assert.equal(results[3]!.valid, true);
    await waitSent(results[0]!.id);
    await waitSent(results[2]!.id);
    assert.deepEqual((await api('GET', '/v1/messages?tag=batch')).body.items.map((m) => m.id).sort(), [results[0]!.id, results[2]!.id].sort());

    // The client retries the batch: the keyed item answers as before and queues nothing; the refused one is tried again.
    const again = await api('POST', '/v1/messages/batch', { messages: items.slice(0, 2) });
    const retried = again.body.items;
    assert.deepEqual([retried[0]!.status, retried[0]!.id, retried[0]!.replayed], [202, results[0]!.id, true]);
    assert.equal(retried[1]!.status, 422);
    // A single send with the item's key is the same request.
    const single = await api('POST', '/v1/messages', (({ idempotencyKey: _k, ...rest }) => rest)(items[0]!), { 'idempotency-key': 'batch-item-1' });
    assert.deepEqual([single.status, single.body.id, single.headers.get('idempotent-replayed')], [202, results[0]!.id, 'true']);
    // The same key on another message is refused for that item only.
    const mismatch = await api('POST', '/v1/messages/batch', {
      messages: [text({ to: 'different@example.net', idempotencyKey: 'batch-item-1' }), text({ to: 'fine@example.net' })],
    });
    assert.deepEqual(
      mismatch.body.items.map((r) => r.status),
      [422, 202],
    );
    assert.equal(mismatch.body.items[0]!.error.code, 'R365_IDEMPOTENCY_MISMATCH');
    assert.equal(mismatch.body.items[0]!.error.field, 'messages[0].idempotencyKey');
    assert.equal((await api('GET', '/v1/messages?recipient=batch1%40example.net')).body.items.length, 1, 'queued once in all');
  });

  it('refuses a batch over 500 messages, an empty one, and one with a malformed item, queuing nothing', async () => {
    const count = (await relay.store.list({ limit: 500 })).items.length;
    const tooMany = await api('POST', '/v1/messages/batch', { messages: Array.from({ length: 501 }, () => ({ from: MAILBOX, to: 'x@example.net' })) });
    assert.equal(tooMany.status, 400);
    assert.equal(tooMany.body.error.field, 'messages');
    assert.equal((await api('POST', '/v1/messages/batch', { messages: [] })).status, 400);
    const malformed = await api('POST', '/v1/messages/batch', { messages: [text(), text({ to: 'a@b', attachments: [{ path: '/etc/passwd' }] })] });
    assert.equal(malformed.status, 400);
    assert.equal(malformed.body.error.field, 'messages[1].attachments[0].path', malformed.body.error.message);
    assert.equal((await relay.store.list({ limit: 500 })).items.length, count);
  });
});
