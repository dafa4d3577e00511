import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { resolve } from 'node:path';
import type { ConfigInput } from '../../src/config/index.js';
import { generateApiKey, openSqliteIntegrationStore } from '../../src/ingress/http/index.js';
import { startRelay, type Relay } from '../../src/runtime/index.js';
import { DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';
import { sandboxConfig } from '../helpers/config.js';
import { startTestSandbox, tempDir } from '../helpers/sandbox.js';

/** A raw HTTP/1.1 client: what it writes is exactly what the test says, as slowly as the test says. */
class RawHttp {
  readonly socket: net.Socket;
  received = '';
  closedAt: number | undefined;
  private readonly opened: Promise<void>;

  constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1');
    this.opened = new Promise((res, rej) => {
      this.socket.once('connect', () => res());
      this.socket.once('error', rej);
    });
    this.socket.on('data', (c: Buffer) => (this.received += c.toString('latin1')));
    this.socket.on('error', () => undefined);
    this.socket.on('close', () => (this.closedAt = Date.now()));
  }

  async write(text: string): Promise<void> {
    await this.opened;
    this.socket.write(text);
  }

  /** The status line's code, once one has arrived. */
  async status(timeoutMs = 5000): Promise<number> {
    const end = Date.now() + timeoutMs;
    while (!/^HTTP\/1\.1 (\d{3})/.test(this.received)) {
      if (Date.now() > end) throw new Error(`no status within ${timeoutMs} ms; got ${JSON.stringify(this.received)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return Number(/^HTTP\/1\.1 (\d{3})/.exec(this.received)![1]);
  }

  async closed(timeoutMs: number): Promise<boolean> {
    const end = Date.now() + timeoutMs;
    while (this.closedAt === undefined && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    return this.closedAt !== undefined;
  }

  end(): void {
    this.socket.destroy();
  }
}

function post(path: string, headers: Record<string, string>): string {
  return `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('')}\r\n`;
}

describe('HTTP front door limits against slow, large and guessing clients', () => {
  let sandbox: Sandbox & { dir: string };
  let dir: { path: string; cleanup: () => Promise<void> };
  let relay: Relay;
  let port: number;
  let key: string;
  const ADMIN = 'dashboard-pw-1';

  before(async () => {
    sandbox = await startTestSandbox();
    dir = await tempDir();
    process.env.RELAY365_TEST_ADMIN_PW = ADMIN;
    const http: ConfigInput['http'] = {
      port: 0,
      requestTimeoutSeconds: 2,
      maxConcurrentLargeBodies: 1,
      maxConnections: 40,
      adminPassword: 'env:RELAY365_TEST_ADMIN_PW',
    };
    relay = await startRelay(sandboxConfig(sandbox, dir.path, { http, mailboxes: [{ address: DEFAULT_IDS.mailbox }] }));
    port = Number(new URL(relay.httpAddress!).port);
    const store = await openSqliteIntegrationStore(resolve(dir.path, 'relay365.db'));
    const k = generateApiKey();
    await store.createApiKey({ name: 'limits', hash: k.hash, prefix: k.prefix });
    await store.close();
    key = k.key;
  });

  after(async () => {
    await relay.close();
    await sandbox.close();
    await dir.cleanup();
    delete process.env.RELAY365_TEST_ADMIN_PW;
  });

  it('answers 401 to a request without a key before its body and closes the connection, so the body cannot be trickled in', async () => {
    const c = new RawHttp(port);
    await c.write(post('/v1/messages', { 'content-type': 'application/json', 'content-length': '100000' }));
    assert.equal(await c.status(), 401);
    assert.match(c.received, /\r\nconnection: close\r\n/i);
    assert.ok(await c.closed(2000), 'the relay closed the connection after its 401');
  });

  it('ends a request whose body trickles in slower than http.requestTimeoutSeconds allows', async () => {
    const c = new RawHttp(port);
    const started = Date.now();
    await c.write(post('/v1/messages', { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-length': '5000' }));
    const trickle = setInterval(() => c.socket.write('{'), 500);
    try {
      assert.ok(await c.closed(8000), 'the connection was ended');
      const took = Date.now() - started;
      assert.ok(took >= 1500 && took < 6000, `ended after ${took} ms (deadline 2 s)`);
      if (c.received !== '') assert.match(c.received, /^HTTP\/1\.1 408/);
    } finally {
      clearInterval(trickle);
      c.end();
    }
  });

  it('receives one large body at a time (http.maxConcurrentLargeBodies: 1): the second gets 503 R365_HTTP_BUSY before its body is read', async () => {
    const big = String(2 * 1024 * 1024);
    const first = new RawHttp(port);
    await first.write(post('/v1/messages', { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-length': big }));
    await first.write('{"from":"');
    // The first is being received (it holds the slot) until its deadline or its end.
    await new Promise((r) => setTimeout(r, 200));
    const second = new RawHttp(port);
    await second.write(post('/v1/messages', { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-length': big }));
    assert.equal(await second.status(), 503);
    assert.match(second.received, /\r\nretry-after: \d+\r\n/i);
    assert.match(second.received, /R365_HTTP_BUSY/);
    second.end();
    first.end();
    // Once the first has gone, a large body is received again: read whole, and judged on what it holds
    // (400: not a message), not refused unread.
    const body = JSON.stringify({ padding: 'x'.repeat(1.5 * 1024 * 1024) });
    const third = new RawHttp(port);
    await new Promise((r) => setTimeout(r, 200));
    await third.write(post('/v1/messages', { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-length': String(body.length) }) + body);
    assert.equal(await third.status(), 400);
    third.end();
  });

  it('refuses connections over http.maxConnections as they are accepted', async () => {
    const idle = Array.from({ length: 40 }, () => new RawHttp(port));
    await Promise.all(idle.map((c) => c.write('')));
    await new Promise((r) => setTimeout(r, 200));
    const extra = new RawHttp(port);
    await extra.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.ok(await extra.closed(3000), 'the 41st connection was dropped');
    assert.equal(extra.received, '');
    for (const c of idle) c.end();
    await new Promise((r) => setTimeout(r, 200));
    const after = await fetch(`${relay.httpAddress}/healthz`);
    assert.equal(after.status, 200, 'below the cap again, connections are served');
  });

  it('locks an address out of the dashboard after ten wrong passwords: the eleventh try gets 429, the right password too', async () => {
    const basic = (pw: string) => ({ authorization: `Basic ${Buffer.from(`admin:${pw}`).toString('base64')}` });
    assert.equal((await fetch(`${relay.httpAddress}/`)).status, 401, 'no credentials: the prompt, not a guess');
    assert.equal((await fetch(`${relay.httpAddress}/`, { headers: basic(ADMIN) })).status, 200);
    for (let i = 0; i < 10; i++) assert.equal((await fetch(`${relay.httpAddress}/`, { headers: basic(`guess-${i}`) })).status, 401);
    const locked = await fetch(`${relay.httpAddress}/`, { headers: basic(ADMIN) });
    assert.equal(locked.status, 429);
    assert.ok(Number(locked.headers.get('retry-after')) > 800, `Retry-After ${locked.headers.get('retry-after')}`);
    assert.equal(((await locked.json()) as { error: { code: string } }).error.code, 'R365_HTTP_TOO_MANY_LOGINS');
  });
});
