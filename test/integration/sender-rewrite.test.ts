/**
 * Sender rewriting for fixed-sender devices (docs/devices.md): an allowlisted scanner that can only send
 * as scanner@printer.local reaches Exchange (the sandbox) From the mailbox, its own address kept in
 * Reply-To or in the display name; without rewriting it is refused at MAIL FROM as before.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startRelay, type Relay } from '../../src/runtime/index.js';
import { DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';
import { sandboxConfig } from '../helpers/config.js';
import { startTestSandbox, tempDir } from '../helpers/sandbox.js';
import { SmtpWire } from '../helpers/smtp-wire.js';
import { until } from '../helpers/wait.js';

const MAILBOX = DEFAULT_IDS.mailbox;
const SCANNER = 'scanner@printer.local';
/** Each allowlist entry is one loopback address, standing for one device. */
const REPLY_TO_DEVICE = '127.0.0.5';
const DISPLAY_NAME_DEVICE = '127.0.0.6';
const PLAIN_DEVICE = '127.0.0.7';

describe('sender rewriting for a scanner with a fixed sender', () => {
  let sandbox: Sandbox & { dir: string };
  let dir: { path: string; cleanup: () => Promise<void> };
  let relay: Relay;

  before(async () => {
    sandbox = await startTestSandbox();
    dir = await tempDir();
    relay = await startRelay(
      sandboxConfig(sandbox, dir.path, {
        smtp: {
          enabled: true,
          listeners: [{ host: '127.0.0.1', port: 0, tls: 'none' }],
          allowlist: [
            { cidr: `${REPLY_TO_DEVICE}/32`, allowedSenders: [SCANNER], rewriteSender: { to: MAILBOX, keep: 'replyTo' } },
            { cidr: `${DISPLAY_NAME_DEVICE}/32`, allowedSenders: ['@printer.local'], rewriteSender: { to: MAILBOX, keep: 'displayName' } },
            { cidr: `${PLAIN_DEVICE}/32`, allowedSenders: [SCANNER] },
          ],
        },
      }),
    );
  });
  after(async () => {
    await relay?.close();
    await sandbox?.close();
    await dir?.cleanup();
  });

  /** One transaction from a device at `client`; the replies to MAIL FROM and to the end of DATA. */
  async function scan(client: string, headers: string): Promise<{ mail: string; data?: string; id?: string }> {
    const { wire } = await SmtpWire.connect(relay.listeners[0]!.port, '127.0.0.1', client);
    try {
      await wire.command('EHLO scanner.printer.local');
      const mail = await wire.command(`MAIL FROM:<${SCANNER}>`);
      if (mail.code !== 250) return { mail: mail.last };
      assert.equal((await wire.command('RCPT TO:<alice@example.net>')).code, 250);
      assert.equal((await wire.command('DATA')).code, 354);
      wire.writeRaw(`${headers}Subject: Scan 0042\r\nContent-Type: text/plain\r\n\r\nScanned document attached.\r\n.\r\n`);
      const data = await wire.reply();
      return { mail: mail.last, data: data.last, ...(data.code === 250 ? { id: /queued as (\S+)/.exec(data.last)?.[1] } : {}) };
    } finally {
      await wire.quit();
    }
  }

  /** What the sandbox's Exchange received for an outbox message, once it is sent. */
  async function received(id: string): Promise<{ raw: string; mailFrom: string }> {
    await until(async () => (await relay.store.get(id))?.state === 'sent', 15_000, `message ${id} sent`);
    const stored = (await relay.store.get(id))!;
    const got = sandbox.state.messages.find((m) => m.raw.includes(Buffer.from(stored.messageId!)));
    assert.ok(got, 'the sandbox received the message');
    return { raw: got.raw.toString('utf8'), mailFrom: got.envelope.mailFrom };
  }

  it('sends From the mailbox and keeps the scanner in Reply-To, body and other fields untouched', async () => {
    const sent = await scan(REPLY_TO_DEVICE, `From: "Scanner 3rd floor" <${SCANNER}>\r\nTo: alice@example.net\r\n`);
    assert.match(sent.data ?? sent.mail, /^250 /);
    const { raw, mailFrom } = await received(sent.id!);
    assert.equal(mailFrom, MAILBOX, 'envelope sender rewritten');
    const head = raw.slice(0, raw.indexOf('\r\n\r\n'));
    assert.deepEqual(head.match(/^From:.*$/gim), [`From: <${MAILBOX}>`]);
    assert.deepEqual(head.match(/^Reply-To:.*$/gim), [`Reply-To: "Scanner 3rd floor" <${SCANNER}>`]);
    assert.match(head, /^Subject: Scan 0042$/m);
    assert.match(head, /^To: alice@example.net$/m);
    assert.ok(raw.endsWith('\r\n\r\nScanned document attached.\r\n'), raw);
  });

  it('keeps a Reply-To the device set, and adds a From when the device sent none', async () => {
    const sent = await scan(REPLY_TO_DEVICE, `Reply-To: helpdesk@printer.local\r\n`);
    const { raw } = await received(sent.id!);
    const head = raw.slice(0, raw.indexOf('\r\n\r\n'));
    assert.deepEqual(head.match(/^From:.*$/gim), [`From: <${MAILBOX}>`]);
    assert.deepEqual(head.match(/^Reply-To:.*$/gim), ['Reply-To: helpdesk@printer.local']);
  });

  it('can keep the scanner as the display name instead', async () => {
    const sent = await scan(DISPLAY_NAME_DEVICE, `From: ${SCANNER}\r\nSender: ${SCANNER}\r\n`);
    const { raw, mailFrom } = await received(sent.id!);
    assert.equal(mailFrom, MAILBOX);
    const head = raw.slice(0, raw.indexOf('\r\n\r\n'));
    assert.deepEqual(head.match(/^From:.*$/gim), [`From: "${SCANNER}" <${MAILBOX}>`]);
    assert.equal(head.match(/^(Sender|Reply-To):/gim), null, 'no Sender naming the device, no Reply-To');
  });

  it('still refuses a sender the device may not use, before rewriting', async () => {
    const { wire } = await SmtpWire.connect(relay.listeners[0]!.port, '127.0.0.1', REPLY_TO_DEVICE);
    try {
      await wire.command('EHLO scanner.printer.local');
      const mail = await wire.command('MAIL FROM:<other@printer.local>');
      assert.equal(mail.last, `550 5.7.1 Sender not allowed: clients in ${REPLY_TO_DEVICE}/32 may not send as <other@printer.local>`);
    } finally {
      await wire.quit();
    }
  });

  it('without rewriting refuses the scanner as before: no mailbox may send as it', async () => {
    const sent = await scan(PLAIN_DEVICE, `From: ${SCANNER}\r\n`);
    assert.equal(sent.mail, `550 5.7.1 Sender not allowed: no mailbox may send as <${SCANNER}>`);
    assert.equal(sent.data, undefined);
  });
});
