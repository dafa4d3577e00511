import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type TLSSocket } from 'node:tls';
import { configSchema, type Config } from '../../src/config/index.js';
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
});
