import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join, resolve } from 'node:path';
import { connect, type TLSSocket } from 'node:tls';
import { configSchema, type Config, type ConfigInput } from '../../src/config/index.js';
import { generateApiKey, openSqliteIntegrationStore } from '../../src/ingress/http/index.js';
import { createLogger } from '../../src/observe/index.js';
import { startRelay } from '../../src/runtime/index.js';
import { configChanges } from '../../src/runtime/reload.js';
import { hashPassword } from '../../src/ingress/smtp/password.js';
import type { Sandbox } from '../../src/sandbox/index.js';
import { sandboxConfig } from '../helpers/config.js';
import { startTestSandbox, tempDir } from '../helpers/sandbox.js';

/** An implicit-TLS connection, its greeting read; the certificate it was shown. */
async function tlsGreeting(port: number): Promise<{ socket: TLSSocket; sha256: string }> {
  const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false });
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', () => resolve());
    socket.once('error', reject);
  });
  await new Promise<void>((resolve) => socket.once('data', () => resolve()));
  return { socket, sha256: socket.getPeerCertificate().fingerprint256 };
}

/** The dashboard's answer to `GET /` over HTTP Basic with `password` (any user name is accepted). */
async function dashboard(address: string, password: string): Promise<number> {
  const res = await fetch(`${address}/`, { headers: { authorization: `Basic ${Buffer.from(`admin:${password}`).toString('base64')}` } });
  await res.arrayBuffer();
  return res.status;
}

/** A raw HTTP/1.1 request whose headers say a body of `length` bytes, none of it sent yet: it holds a large-body slot. */
async function openUpload(port: number, key: string, length: number): Promise<{ socket: net.Socket; received: () => string; closed: () => boolean }> {
  const socket = net.connect(port, '127.0.0.1');
  let received = '';
  let closed = false;
  socket.on('data', (c: Buffer) => (received += c.toString('latin1')));
  socket.on('error', () => undefined);
  socket.on('close', () => (closed = true));
  await new Promise<void>((res, rej) => {
    socket.once('connect', () => res());
    socket.once('error', rej);
  });
  socket.write(
    `POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nauthorization: Bearer ${key}\r\ncontent-type: application/json\r\ncontent-length: ${length}\r\n\r\n{"from":"`,
  );
  return { socket, received: () => received, closed: () => closed };
}

async function waitUntil(what: string, ok: () => boolean, timeoutMs = 5000): Promise<number> {
  const started = Date.now();
  while (!ok()) {
    if (Date.now() - started > timeoutMs) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return Date.now() - started;
}

describe('relay.reload', () => {
  let sandbox: Sandbox & { dir: string };
  before(async () => {
    sandbox = await startTestSandbox();
  });
  after(() => sandbox.close());

  it('swaps the certificate for new TLS handshakes while a session on the old one goes on, and sets the log level of every component', async () => {
    const dir = await tempDir();
    const lines: Array<Record<string, unknown>> = [];
    const logger = createLogger({ level: 'info', destination: { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) } });
    const hash = await hashPassword('pw');
    const at = (change: { names: string[]; level: 'info' | 'debug' }): Config =>
      sandboxConfig(sandbox, dir.path, {
        log: { level: change.level },
        smtp: { listeners: [{ host: '127.0.0.1', port: 0, tls: 'implicit' }], tls: { names: change.names }, users: [{ name: 'dev', passwordHash: hash }] },
      });
    const first = at({ names: ['relay.before.example'], level: 'info' });
    const relay = await startRelay(first, { logger });
    try {
      const port = relay.listeners[0]!.port;
      const old = await tlsGreeting(port);
      assert.equal(old.sha256, relay.smtp!.certificate()!.sha256);

      const next = at({ names: ['relay.after.example'], level: 'debug' });
      assert.deepEqual(configChanges(first, next), ['log.level', 'smtp.tls']);
      const report = await relay.reload(next);
      assert.deepEqual(report.changed, ['log.level', 'smtp.tls']);
      assert.deepEqual(report.restartRequired, []);
      assert.equal(report.credentialsReread, 1, "the app's secret is read again before its next token request");
      const cert = relay.smtp!.certificate()!;
      assert.notEqual(cert.sha256, old.sha256, 'a new certificate for the new names');
      assert.ok(cert.names.includes('DNS:relay.after.example') || cert.names.includes('relay.after.example'), cert.names.join(', '));
      const fresh = await tlsGreeting(port);
      assert.equal(fresh.sha256, cert.sha256, 'a new handshake gets the new certificate');

      // The session opened before the reload is still served, on its old certificate.
      old.socket.write('EHLO before.example\r\n');
      const ehlo = await new Promise<string>((resolve) => old.socket.once('data', (d: Buffer) => resolve(d.toString())));
      assert.match(ehlo, /^250/);
      // debug from a component child made at start (smtp's login line), now that the level is debug.
      fresh.socket.write(`EHLO after.example\r\nAUTH PLAIN ${Buffer.from('\0dev\0pw').toString('base64')}\r\n`);
      const deadline = Date.now() + 5000;
      while (!lines.some((l) => l.msg === 'SMTP login' && l.level === 20)) {
        if (Date.now() > deadline) throw new Error(`no debug line: ${JSON.stringify(lines.slice(-3))}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      old.socket.destroy();
      fresh.socket.destroy();

      // Nothing applied when one part refuses: a user whose hash the SMTP door cannot use, in a config built
      // in code (loadConfig and configSchema refuse it before it gets this far; the SMTP door checks the same rules).
      const broken: Config = { ...next, smtp: { ...next.smtp, users: [{ name: 'dev', passwordHash: 'scrypt$broken' }] } };
      assert.equal(configSchema.safeParse(broken).success, false, 'the schema refuses it');
      await assert.rejects(relay.reload(broken), /smtp\.users\[0\]\.passwordHash/);
      assert.equal(relay.config.smtp.users[0]!.passwordHash, hash, 'the running config is the previous one');
    } finally {
      await relay.close();
      await dir.cleanup();
    }
  });

  it("applies the dashboard's password from the next request: changed, its file rotated, turned off and on; an unresolvable one is refused and the old one kept", async () => {
    const dir = await tempDir();
    const file = join(dir.path, 'admin-password');
    await writeFile(file, 'first-password\n', { mode: 0o600 });
    const env: NodeJS.ProcessEnv = { RELAY365_TEST_ADMIN_PW: 'env-password' };
    const at = (adminPassword: string | undefined): Config =>
      sandboxConfig(sandbox, dir.path, { http: { port: 0, ...(adminPassword !== undefined ? { adminPassword } : {}) } });
    const relay = await startRelay(at('env:RELAY365_TEST_ADMIN_PW'), { env });
    try {
      const address = relay.httpAddress!;
      assert.equal(await dashboard(address, 'env-password'), 200);
      assert.equal(await dashboard(address, 'first-password'), 401);

      // Another reference: the new password from the next request, the old one refused.
      const report = await relay.reload(at(`file:${file}`));
      assert.deepEqual(report.changed, ['http.adminPassword']);
      assert.deepEqual(report.restartRequired, []);
      assert.equal(await dashboard(address, 'first-password'), 200);
      assert.equal(await dashboard(address, 'env-password'), 401);

      // The same reference, the file rewritten (a rotation): read again by the reload.
      await writeFile(file, 'rotated-password\n');
      assert.equal(await dashboard(address, 'first-password'), 200, 'read at the reload, not at each request');
      const rotated = await relay.reload(at(`file:${file}`));
      assert.deepEqual(rotated.changed, []);
      assert.equal(await dashboard(address, 'rotated-password'), 200);
      assert.equal(await dashboard(address, 'first-password'), 401);

      // A reference that cannot be resolved refuses the reload whole: the running config and password stay.
      await assert.rejects(
        relay.reload(at('env:RELAY365_TEST_UNSET')),
        (err: Error & { code?: string }) =>
          err.code === 'R365_SECRET_UNRESOLVED' && /^http\.adminPassword: Environment variable RELAY365_TEST_UNSET is not set/.test(err.message),
      );
      assert.equal(relay.config.http.adminPassword, `file:${file}`);
      assert.equal(await dashboard(address, 'rotated-password'), 200);
      // So does its file gone, with the reference unchanged.
      await rm(file);
      await assert.rejects(relay.reload(at(`file:${file}`)), (err: Error & { code?: string; details?: { issues?: unknown } }) => {
        assert.equal(err.code, 'R365_SECRET_UNRESOLVED');
        assert.match(err.message, /^http\.adminPassword: Cannot read secret file .* \(ENOENT\)\.$/);
        // How config.reload_refused lists it: one problem, named by its path.
        assert.deepEqual(err.details?.issues, [{ path: 'http.adminPassword', message: err.message.slice('http.adminPassword: '.length) }]);
        return true;
      });
      assert.equal(await dashboard(address, 'rotated-password'), 200);

      // Off: the dashboard answers that it is off, with any password.
      const off = await relay.reload(at(undefined));
      assert.deepEqual(off.changed, ['http.adminPassword']);
      const res = await fetch(`${address}/dashboard/panel`, {
        headers: { authorization: `Basic ${Buffer.from('admin:rotated-password').toString('base64')}` },
      });
      assert.equal(res.status, 404);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'R365_DASHBOARD_DISABLED');
      // And on again.
      await relay.reload(at('env:RELAY365_TEST_ADMIN_PW'));
      assert.equal(await dashboard(address, 'env-password'), 200);
    } finally {
      await relay.close();
      await dir.cleanup();
    }
  });

  it("applies http.maxConcurrentLargeBodies and http.requestTimeoutSeconds to the next request; the listener's settings need a restart", async () => {
    const dir = await tempDir();
    const at = (http: ConfigInput['http']): Config =>
      sandboxConfig(sandbox, dir.path, { http: { port: 0, requestTimeoutSeconds: 60, maxConcurrentLargeBodies: 1, ...http } });
    const first = at({});
    const relay = await startRelay(first);
    const uploads: Array<Awaited<ReturnType<typeof openUpload>>> = [];
    try {
      const port = Number(new URL(relay.httpAddress!).port);
      const store = await openSqliteIntegrationStore(resolve(dir.path, 'relay365.db'));
      const k = generateApiKey();
      await store.createApiKey({ name: 'reload', hash: k.hash, prefix: k.prefix });
      await store.close();
      const big = 2 * 1024 * 1024;
      const upload = async () => {
        const u = await openUpload(port, k.key, big);
        uploads.push(u);
        return u;
      };

      // One large body at a time: the second is refused before its body is read.
      await upload();
      await new Promise((r) => setTimeout(r, 200));
      const refused = await upload();
      await waitUntil('a 503', () => /^HTTP\/1\.1 503/.test(refused.received()));

      // Two at a time after the reload (the one under way still counts); the port and the body limit are kept.
      const report = await relay.reload(at({ maxConcurrentLargeBodies: 2, port: port + 1, bodyLimitBytes: 10 * 1024 * 1024 }));
      assert.deepEqual(report.changed, ['http.maxConcurrentLargeBodies']);
      assert.deepEqual(report.restartRequired, ['http.port', 'http.bodyLimitBytes']);
      assert.equal(relay.config.http.port, 0);
      assert.equal(relay.config.http.bodyLimitBytes, first.http.bodyLimitBytes);
      const second = await upload();
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(second.received(), '', 'being received, not refused');
      const third = await upload();
      await waitUntil('a 503 for the third', () => /^HTTP\/1\.1 503/.test(third.received()));
      for (const u of uploads.splice(0)) u.socket.destroy();

      // A 2 s deadline from the next request: a body that never comes is ended after about 2 s, not 60.
      const shorter = await relay.reload(at({ maxConcurrentLargeBodies: 2, requestTimeoutSeconds: 2 }));
      assert.deepEqual(shorter.changed, ['http.requestTimeoutSeconds']);
      const slow = await upload();
      const took = await waitUntil('the slow upload ended', () => slow.closed(), 8000);
      assert.ok(took >= 1500 && took < 6000, `ended after ${took} ms (deadline 2 s)`);
    } finally {
      for (const u of uploads) u.socket.destroy();
      await relay.close();
      await dir.cleanup();
    }
  });
});
