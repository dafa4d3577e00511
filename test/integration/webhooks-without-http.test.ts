import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { composeMessage } from '../../src/delivery/index.js';
import { startRelay, type Relay } from '../../src/runtime/index.js';
import { DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';
import { sandboxConfig } from '../helpers/config.js';
import { startTestSandbox, tempDir } from '../helpers/sandbox.js';
import { until } from '../helpers/wait.js';

const MAILBOX = DEFAULT_IDS.mailbox;

describe('webhooks with the HTTP front door off (http.enabled: false)', () => {
  let sandbox: Sandbox & { dir: string };
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let receiver: Server;
  let receiverUrl: string;
  const received: Array<{ headers: IncomingHttpHeaders; body: string }> = [];
  let relay: Relay | undefined;

  before(async () => {
    sandbox = await startTestSandbox();
    dir = await tempDir();
    receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        received.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((ok) => receiver.listen(0, '127.0.0.1', () => ok()));
    receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`;
  });

  after(async () => {
    await relay?.close();
    receiver.closeAllConnections();
    await new Promise<void>((ok) => receiver.close(() => ok()));
    await sandbox.close();
    await dir.cleanup();
  });

  it('delivers a signed message.sent webhook from the store while no HTTP listener runs', async () => {
    const secret = 'whsec_no_http_door_0123';
    relay = await startRelay(
      sandboxConfig(sandbox, dir.path, {
        smtp: { enabled: false },
        http: { enabled: false, webhooks: [{ url: receiverUrl, secret, events: ['message.sent'] }] },
      }),
      { webhooks: { backoffBaseMs: 100, backoffMaxMs: 400, pollMs: 100 } },
    );
    assert.equal(relay.http, undefined, 'no HTTP front door');
    assert.equal(relay.httpAddress, undefined);
    const m = await composeMessage({ from: MAILBOX, to: 'door-off@example.net', subject: 'webhook, door off', text: 'x' });
    const stored = await relay.enqueue({ mailbox: MAILBOX, envelope: m.envelope, raw: m.raw, source: { kind: 'library' } });

    const delivery = await until(() => received[0], 15_000, 'the message.sent webhook');
    const body = JSON.parse(delivery.body) as { type: string; data: { id: string } };
    assert.equal(body.type, 'message.sent');
    assert.equal(body.data.id, stored.id);
    // The signature of docs/webhooks.md: t=<seconds>,v1=<HMAC-SHA256 of "<t>.<body>">.
    const signature = String(delivery.headers['x-relay365-signature']);
    const t = /t=(\d+)/.exec(signature)?.[1];
    assert.ok(t, `a timestamp in ${signature}`);
    assert.ok(signature.includes(`v1=${createHmac('sha256', secret).update(`${t}.${delivery.body}`).digest('hex')}`), 'signed with the secret');
    await new Promise((r) => setTimeout(r, 400)); // time for a duplicate to show up, if one were coming
    assert.equal(received.length, 1, 'delivered once');
  });
});
