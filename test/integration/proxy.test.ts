import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage } from 'node:http';
import { connect, type Socket, type AddressInfo } from 'node:net';
import { createIdentity } from '../../src/identity/index.js';
import { DEFAULT_IDS } from '../../src/sandbox/index.js';
import { sandboxConfig } from '../helpers/config.js';
import { startTestSandbox, tempDir } from '../helpers/sandbox.js';

/** A minimal HTTP CONNECT proxy (what corporate proxies speak for HTTPS) that records where it tunnels to. */
async function startConnectProxy(): Promise<{ url: string; tunnels: string[]; close: () => Promise<void> }> {
  const tunnels: string[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((_req, res) => res.writeHead(405).end());
  server.on('connect', (req: IncomingMessage, client: Socket, head: Buffer) => {
    tunnels.push(req.url ?? '');
    const [host, port] = (req.url ?? '').split(':');
    const upstream = connect(Number(port), host === 'localhost' ? '127.0.0.1' : host!, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    tunnels,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

describe('identity through an HTTPS proxy', () => {
  it('reaches the identity platform through the proxy named by network.httpsProxy, trusting the extra CA', async () => {
    const sandbox = await startTestSandbox();
    const proxy = await startConnectProxy();
    const dir = await tempDir();
    const identity = await createIdentity(sandboxConfig(sandbox, dir.path, { network: { httpsProxy: proxy.url } }), { env: {} });
    try {
      const token = await identity.provider.getToken(DEFAULT_IDS.mailbox);
      assert.ok(token.accessToken.length > 1000);
      assert.ok(proxy.tunnels.includes(`localhost:${sandbox.httpsPort}`), `tunnels: ${proxy.tunnels.join(', ')}`);
    } finally {
      identity.close();
      await proxy.close();
      await sandbox.close();
      await dir.cleanup();
    }
  });

  it('bypasses the proxy for hosts in NO_PROXY', async () => {
    const sandbox = await startTestSandbox();
    const proxy = await startConnectProxy();
    const dir = await tempDir();
    const identity = await createIdentity(sandboxConfig(sandbox, dir.path), { env: { HTTPS_PROXY: proxy.url, NO_PROXY: 'localhost' } });
    try {
      await identity.provider.getToken(DEFAULT_IDS.mailbox);
      assert.deepEqual(proxy.tunnels, []);
    } finally {
      identity.close();
      await proxy.close();
      await sandbox.close();
      await dir.cleanup();
    }
  });
});
