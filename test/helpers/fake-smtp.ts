import { createServer, type Server, type Socket } from 'node:net';
import { TLSSocket, type SecureContextOptions } from 'node:tls';
import type { AddressInfo } from 'node:net';

/**
 * A minimal SMTP server that greets, offers STARTTLS and upgrades with the given TLS settings, for
 * tests of what the client does with a bad certificate or an old TLS version. It never accepts mail.
 */
export async function startFakeStarttlsServer(
  tls: SecureContextOptions & { minVersion?: 'TLSv1' | 'TLSv1.1' | 'TLSv1.2'; maxVersion?: 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3' },
): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.write('220 fake ESMTP\r\n');
    let buffer = '';
    const onData = (chunk: Buffer): void => {
      buffer += chunk.toString('latin1');
      let i;
      while ((i = buffer.indexOf('\r\n')) !== -1) {
        const line = buffer.slice(0, i);
        buffer = buffer.slice(i + 2);
        if (/^EHLO/i.test(line)) socket.write('250-fake\r\n250 STARTTLS\r\n');
        else if (/^STARTTLS/i.test(line)) {
          socket.off('data', onData);
          socket.write('220 2.0.0 ready\r\n', () => {
            const secure = new TLSSocket(socket, { isServer: true, ...tls });
            secure.on('error', () => socket.destroy());
          });
          return;
        } else socket.write('502 5.5.2 no\r\n');
      }
    };
    socket.on('data', onData);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
