import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { bounceClass, parseNdr, suppressionReply } from '../../src/bounces/index.js';

const fixture = (name: string): Promise<Buffer> => readFile(new URL(`../fixtures/ndr/${name}`, import.meta.url));

// Each public sample (test/fixtures/ndr/README.md names its source) with the recipient, status and
// original Message-ID a person reading it finds.
const SAMPLES = [
  {
    file: 'office365-5.1.10-recipient-not-found.eml',
    recipient: 'rui-lopes@example.com',
    action: 'failed',
    status: '5.1.10',
    diagnostic: '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup',
    remoteMta: undefined,
    messageId: '<560418D8.2010303@example.com>',
    cls: 'hard',
  },
  {
    file: 'exchange-online-5.1.351-unknown-user.eml',
    recipient: 'azumakuniyuki@example.ne.jp',
    action: 'failed',
    status: '5.1.351',
    diagnostic: '550 5.1.351 Remote server returned unknown recipient or mailbox unavailable -> 550 Unknown user azumakuniyuki@example.ne.jp',
    remoteMta: 'example.ne.jp',
    messageId: '<SLXP216MB0381A2BCD997D05F53CDB50BA9220@SLXP216MB0381.KORP216.PROD.OUTLOOK.COM>',
    cls: 'hard',
  },
  {
    file: 'exchange2007-gmail-5.1.1.eml',
    recipient: 'email_that_does_not_exists_this_is_just_a_test@gmail.com',
    action: 'failed',
    status: '5.1.1',
    diagnostic: undefined,
    remoteMta: 'mx.google.com',
    messageId: '<560418D8.2010303@example.com>',
    cls: 'hard',
  },
  {
    file: 'exchange-delay-4.4.7.eml',
    recipient: 'rui.lopes@example.com',
    action: 'delayed',
    status: '4.4.7',
    diagnostic: '400 4.4.7 Message delayed',
    remoteMta: undefined,
    messageId: '<Q8P3DY5EH0U4.ERW6TCCK5TMF3@example.com>',
    cls: 'delayed',
  },
  {
    file: 'postfix-5.4.1-no-message-id.eml',
    recipient: 'kijitora@example.br',
    action: 'failed',
    status: '5.4.1',
    diagnostic: '550 5.4.1 <kijitora@example.br>: Recipient address rejected: Access denied [BL2NAM02FT061.eop-nam02.prod.protection.outlook.com]',
    remoteMta: 'here-redacted-br.mail.protection.outlook.com',
    messageId: undefined,
    cls: 'hard',
  },
] as const;

describe('parseNdr on public NDR samples', () => {
  for (const s of SAMPLES) {
    it(`reads ${s.file}: ${s.recipient}, ${s.action} ${s.status}`, async () => {
      const parsed = parseNdr(await fixture(s.file));
      assert.ok(parsed.ok, parsed.ok ? '' : parsed.reason);
      const [entry, ...rest] = parsed.report.recipients;
      assert.equal(rest.length, 0);
      assert.equal(entry?.recipient, s.recipient);
      assert.equal(entry?.action, s.action);
      assert.equal(entry?.status, s.status);
      if (s.diagnostic !== undefined) assert.equal(entry?.diagnostic, s.diagnostic);
      assert.equal(entry?.remoteMta, s.remoteMta);
      assert.equal(parsed.report.originalMessageId, s.messageId);
      assert.equal(bounceClass(entry.action, entry.status), s.cls);
    });
  }

  it("takes Exchange 2007's X-Supplementary-Info as the diagnostic when there is no Diagnostic-Code", async () => {
    const parsed = parseNdr(await fixture('exchange2007-gmail-5.1.1.eml'));
    assert.ok(parsed.ok);
    assert.match(parsed.report.recipients[0]!.diagnostic!, /^mx\.google\.com #5\.1\.1 smtp;550-5\.1\.1 The email account that you tried to reach does not exist/);
  });

  it('falls back to In-Reply-To when the report returns no headers, and to the last of References without it', async () => {
    const text = (await fixture('office365-5.1.10-recipient-not-found.eml')).toString('latin1');
    const noReturned = text.replace(/--_000_015a955121ac4408b0ac8541bcbb7c62_\r?\nContent-Type: message\/rfc822[\s\S]*?(?=--_000_015a955121ac4408b0ac8541bcbb7c62_--)/, '');
    const a = parseNdr(noReturned);
    assert.ok(a.ok);
    assert.equal(a.report.originalMessageId, '<560418D8.2010303@example.com>');
    assert.equal(a.report.messageIdFrom, 'in-reply-to');
    const b = parseNdr(noReturned.replace(/^In-Reply-To: .*\r?\n/m, '').replace(/^References: .*$/m, 'References: <first@example.com> <second@example.com>'));
    assert.ok(b.ok);
    assert.equal(b.report.originalMessageId, '<second@example.com>');
    assert.equal(b.report.messageIdFrom, 'references');
  });
});

/** A minimal report around a delivery-status body (the shape of RFC 3464's examples). */
function report(status: string, extraHeaders = ''): string {
  return [
    'From: postmaster@contoso.example',
    'Subject: Undeliverable: hello',
    'In-Reply-To: <orig@contoso.example>',
    extraHeaders,
    'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"',
    '',
    '--b1',
    'Content-Type: text/plain',
    '',
    'Delivery has failed to these recipients or groups:',
    '--b1',
    'Content-Type: message/delivery-status',
    '',
    status,
    '--b1--',
    '',
  ]
    .filter((l, i) => l !== '' || i > 3)
    .join('\r\n');
}

describe('parseNdr on malformed and hostile reports', () => {
  it('says why an ordinary message is not a report', () => {
    const parsed = parseNdr('From: a@b.example\r\nSubject: hi\r\n\r\nhello\r\n');
    assert.equal(parsed.ok, false);
    assert.match(parsed.ok ? '' : parsed.reason, /not a delivery status notification/);
  });

  it('never throws on any truncation of a real report, and reads the recipient once the status part is whole', async () => {
    const raw = (await fixture('exchange-online-5.1.351-unknown-user.eml')).toString('latin1');
    const statusEnd = raw.indexOf('X-Display-Name: azumakuniyuki@example.ne.jp');
    for (let cut = 0; cut < raw.length; cut += 97) {
      const parsed = parseNdr(raw.slice(0, cut));
      if (cut > statusEnd + 60) assert.ok(parsed.ok && parsed.report.recipients[0]?.status === '5.1.351', `cut at ${cut}`);
      if (parsed.ok) assert.ok(parsed.report.recipients.every((r) => r.recipient.includes('@')));
    }
  });

  it('refuses a report over the byte limit without reading it', () => {
    const parsed = parseNdr(Buffer.alloc(11 * 1024 * 1024, 0x41));
    assert.equal(parsed.ok, false);
    assert.match(parsed.ok ? '' : parsed.reason, /over the 10485760 read/);
  });

  it('stops at five levels of nested multiparts (a bomb of 5,000 levels does not overflow the stack)', () => {
    let body = 'Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns;x\r\n\r\nFinal-Recipient: rfc822;deep@x.example\r\nAction: failed\r\nStatus: 5.1.1\r\n';
    for (let i = 0; i < 5000; i++) body = `Content-Type: multipart/mixed; boundary="n${i}"\r\n\r\n--n${i}\r\n${body}\r\n--n${i}--\r\n`;
    const parsed = parseNdr(`From: x@y.example\r\n${body}`);
    assert.equal(parsed.ok, false);
    // Within the limit the same report is read.
    let shallow = 'Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns;x\r\n\r\nFinal-Recipient: rfc822;deep@x.example\r\nAction: failed\r\nStatus: 5.1.1\r\n';
    for (let i = 0; i < 3; i++) shallow = `Content-Type: multipart/mixed; boundary="n${i}"\r\n\r\n--n${i}\r\n${shallow}\r\n--n${i}--\r\n`;
    const ok = parseNdr(`From: x@y.example\r\n${shallow}`);
    assert.ok(ok.ok);
    assert.equal(ok.report.recipients[0]?.recipient, 'deep@x.example');
  });

  it('keeps at most 1000 recipient entries of a report that lists 50,000', () => {
    const groups = Array.from({ length: 50_000 }, (_, i) => `Final-Recipient: rfc822;r${i}@x.example\r\nAction: failed\r\nStatus: 5.1.1`).join('\r\n\r\n');
    const parsed = parseNdr(report(`Reporting-MTA: dns;x\r\n\r\n${groups}`));
    assert.ok(parsed.ok);
    assert.equal(parsed.report.recipients.length, 1000);
  });

  it('drops entries without a valid status, action or address, and keeps the good one beside them', () => {
    const parsed = parseNdr(
      report(
        [
          'Reporting-MTA: dns;x',
          '',
          'Final-Recipient: rfc822;bad-status@x.example\r\nAction: failed\r\nStatus: 9.9.9',
          '',
          'Final-Recipient: rfc822;delivered@x.example\r\nAction: delivered\r\nStatus: 2.0.0',
          '',
          'Final-Recipient: rfc822;not an address\r\nAction: failed\r\nStatus: 5.1.1',
          '',
          'Final-Recipient: rfc822;good@x.example\r\nAction: failed\r\nStatus: 5.1.1',
        ].join('\r\n'),
      ),
    );
    assert.ok(parsed.ok);
    assert.deepEqual(
      parsed.report.recipients.map((r) => r.recipient),
      ['good@x.example'],
    );
  });

  it('flattens control characters and line breaks in a diagnostic so it cannot forge a reply or a log line', () => {
    const parsed = parseNdr(report('Reporting-MTA: dns;x\r\n\r\nFinal-Recipient: rfc822;a@x.example\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp;550 no\x00 such\x1b[31m user\r\n 250 OK forged'));
    assert.ok(parsed.ok);
    assert.equal(parsed.report.recipients[0]?.diagnostic, '550 no such [31m user 250 OK forged');
  });

  it('reports a missing Message-ID as undefined rather than guessing one', () => {
    const parsed = parseNdr(report('Reporting-MTA: dns;x\r\n\r\nFinal-Recipient: rfc822;a@x.example\r\nAction: failed\r\nStatus: 5.1.1').replace('In-Reply-To: <orig@contoso.example>\r\n', ''));
    assert.ok(parsed.ok);
    assert.equal(parsed.report.originalMessageId, undefined);
  });
});

describe('bounceClass (RFC 3463 class and subject)', () => {
  it('is hard for addresses that do not exist, soft for other failures, delayed for delays', () => {
    for (const s of ['5.1.1', '5.1.2', '5.1.10', '5.4.1']) assert.equal(bounceClass('failed', s), 'hard', s);
    for (const s of ['5.2.2', '5.3.4', '5.7.1', '5.7.233', '5.1.8', '5.1.0', '5.1.90', '4.4.7']) assert.equal(bounceClass('failed', s), 'soft', s);
    assert.equal(bounceClass('delayed', '4.4.7'), 'delayed');
    assert.equal(bounceClass('delayed', '5.1.1'), 'delayed');
  });
});

describe('suppressionReply', () => {
  it('names the address, the date, the reason and the remedy in one SMTP line of at most 512 octets', () => {
    const at = new Date('2026-12-02T10:00:00.000Z');
    const reply = suppressionReply({ address: 'nobody@fabrikam.example', reason: 'a hard bounce 5.1.1 (bad destination mailbox address)', createdAt: at });
    assert.equal(
      reply,
      '550 5.1.1 <nobody@fabrikam.example>: suppressed by relay365 since 2026-12-02T10:00:00.000Z after a hard bounce 5.1.1 (bad destination mailbox address); remove with relay365 suppression remove nobody@fabrikam.example',
    );
    const long = suppressionReply({ address: `${'x'.repeat(60)}@fabrikam.example`, reason: `r\r\n${'y'.repeat(2000)}`, createdAt: at });
    assert.ok(long.length + 2 <= 512, `${long.length}`);
    assert.doesNotMatch(long, /[\r\n]/);
    assert.match(long, /; remove with relay365 suppression remove x{60}@fabrikam\.example$/);
  });
});
