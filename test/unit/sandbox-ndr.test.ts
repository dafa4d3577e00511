import { execFile } from 'node:child_process';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildNdr, NDR_REASONS } from '../../src/sandbox/ndr.js';

/** What Python's email package (a parser no one here wrote) reads from a delivery report. */
interface ParsedReport {
  contentType: string;
  reportType: string | null;
  from: string;
  to: string;
  subject: string;
  messageId: string;
  inReplyTo: string | null;
  references: string | null;
  parts: string[];
  text: string | null;
  perMessage: Record<string, string>;
  perRecipient: Array<Record<string, string>>;
  returnedHeaders: string | null;
}

const SCRIPT = `
import sys, json
from email import policy
from email.parser import BytesParser
m = BytesParser(policy=policy.default).parse(sys.stdin.buffer)
parts = [p.get_content_type() for p in m.iter_parts()]
status = next(p for p in m.iter_parts() if p.get_content_type() == 'message/delivery-status')
# Exchange ends the part with two blank lines (as in the archived report), which Python reads as one
# more, empty, block: keep the blocks that have fields.
blocks = [b for b in status.get_payload() if len(b.keys()) > 0]
text = m.get_body(preferencelist=('plain',))
headers = next((p for p in m.iter_parts() if p.get_content_type() == 'text/rfc822-headers'), None)
print(json.dumps({
  'contentType': m.get_content_type(), 'reportType': m.get_param('report-type'),
  'from': str(m['from']), 'to': str(m['to']), 'subject': str(m['subject']), 'messageId': str(m['message-id']).strip(),
  'inReplyTo': m['in-reply-to'], 'references': m['references'], 'parts': parts,
  'text': text.get_content() if text is not None else None,
  'perMessage': {k: str(v) for k, v in blocks[0].items()},
  'perRecipient': [{k: str(v) for k, v in b.items()} for b in blocks[1:]],
  'returnedHeaders': headers.get_content() if headers is not None else None,
}))
`;

function parseReport(raw: Buffer): Promise<ParsedReport> {
  return new Promise((resolve, reject) => {
    const child = execFile('python3', ['-c', SCRIPT], (err, stdout, stderr) => {
      if (err) reject(new Error(`python3 could not parse the report: ${stderr}`));
      else resolve(JSON.parse(stdout) as ParsedReport);
    });
    child.stdin!.end(raw);
  });
}

const ORIGINAL = Buffer.from(
  [
    'From: Relay <relay@contoso.example>',
    'To: "Nobody Here" <nobody@fabrikam.example>, full@tailspin.example',
    'Subject: Invoice 42',
    'Message-ID: <orig-42@relay.contoso.example>',
    'Date: Wed, 2 Dec 2026 10:00:00 +0000',
    'MIME-Version: 1.0',
    'Content-Type: text/plain',
    '',
    'the body, which a report returns only the headers of',
    '',
  ].join('\r\n'),
);

describe('sandbox NDRs in Exchange Online shape', () => {
  it('builds a multipart/report that a foreign MIME parser reads: recipients, status codes, remote server, returned headers', async () => {
    const arrival = new Date('2026-12-02T10:00:01Z');
    const ndr = buildNdr({
      tenantDomain: 'contoso.example',
      mailbox: 'relay@contoso.example',
      original: ORIGINAL,
      arrivalDate: arrival,
      receivedFromMta: 'client.contoso.example',
      recipients: [
        { address: 'nobody@fabrikam.example', reason: 'recipientUnknown', remoteMta: 'mx1.fabrikam.example' },
        { address: 'full@tailspin.example', reason: 'recipientMailboxFull' },
      ],
    });
    const parsed = await parseReport(ndr.raw);
    assert.equal(parsed.contentType, 'multipart/report');
    assert.equal(parsed.reportType, 'delivery-status');
    assert.deepEqual(parsed.parts, ['multipart/alternative', 'message/delivery-status', 'text/rfc822-headers']);
    assert.equal(parsed.from, 'Microsoft Outlook <postmaster@contoso.example>');
    assert.equal(parsed.to, 'relay@contoso.example');
    assert.equal(parsed.subject, 'Undeliverable: Invoice 42');
    assert.equal(parsed.messageId, ndr.messageId);
    assert.equal(parsed.inReplyTo, '<orig-42@relay.contoso.example>');
    assert.equal(parsed.references, '<orig-42@relay.contoso.example>');
    assert.equal(ndr.originalMessageId, '<orig-42@relay.contoso.example>');
    assert.equal(ndr.kind, 'failed');

    assert.equal(parsed.perMessage['Reporting-MTA'], 'dns;SANDBOX01.namprd00.prod.outlook.com');
    assert.equal(parsed.perMessage['Received-From-MTA'], 'dns;client.contoso.example');
    assert.equal(parsed.perMessage['Arrival-Date'], 'Wed, 2 Dec 2026 10:00:01 +0000');
    assert.equal(parsed.perRecipient.length, 2);
    const [unknown, full] = parsed.perRecipient;
    assert.equal(unknown!['Final-Recipient'], 'rfc822;nobody@fabrikam.example');
    assert.equal(unknown!.Action, 'failed');
    assert.equal(unknown!.Status, '5.1.1');
    assert.equal(unknown!['Diagnostic-Code'], 'smtp;550 5.1.1 <nobody@fabrikam.example>: Recipient address rejected: User unknown in local recipient table');
    assert.equal(unknown!['Remote-MTA'], 'dns;mx1.fabrikam.example');
    assert.equal(unknown!['X-Display-Name'], 'Nobody Here');
    assert.equal(full!['Final-Recipient'], 'rfc822;full@tailspin.example');
    assert.equal(full!.Status, '5.2.2');
    assert.match(full!['Diagnostic-Code']!, /^smtp;554 5\.2\.2 mailbox full; STOREDRV\.Deliver\.Exception:QuotaExceededException/);
    assert.equal(full!['Remote-MTA'], 'dns;mx.tailspin.example');
    assert.equal(full!['X-Display-Name'], 'full');

    assert.match(parsed.returnedHeaders!, /^From: Relay <relay@contoso\.example>\r?\n/);
    assert.match(parsed.returnedHeaders!, /Message-ID: <orig-42@relay\.contoso\.example>/);
    assert.doesNotMatch(parsed.returnedHeaders!, /the body/);
    assert.match(parsed.text!, /Delivery has failed to these recipients or groups:/);
    assert.match(parsed.text!, /Remote Server returned '550 5\.1\.1 <nobody@fabrikam\.example>/);
  });

  it('writes a delay notification (Action: delayed, 4.4.7, Will-Retry-Until) when every recipient is only delayed', async () => {
    const until = new Date('2026-12-03T10:00:00Z');
    const ndr = buildNdr({
      tenantDomain: 'contoso.example',
      mailbox: 'relay@contoso.example',
      original: ORIGINAL,
      arrivalDate: new Date('2026-12-02T10:00:01Z'),
      recipients: [{ address: 'someone@down.example', reason: 'domainUnreachableDelayed', willRetryUntil: until }],
    });
    const parsed = await parseReport(ndr.raw);
    assert.equal(ndr.kind, 'delayed');
    assert.equal(parsed.subject, 'Delivery delayed: Invoice 42');
    const [r] = parsed.perRecipient;
    assert.equal(r!.Action, 'delayed');
    assert.equal(r!.Status, NDR_REASONS.domainUnreachableDelayed.status);
    assert.equal(r!['Will-Retry-Until'], 'Thu, 3 Dec 2026 10:00:00 +0000');
    assert.equal(r!['Remote-MTA'], undefined);
  });

  it('keeps a hostile original header from adding headers to the report', () => {
    const hostile = Buffer.from('From: a@contoso.example\r\nSubject: hi\r\n\tBcc: victim@example.net\r\nMessage-ID: <x@y>\r\n\r\nbody\r\n');
    const ndr = buildNdr({
      tenantDomain: 'contoso.example',
      mailbox: 'relay@contoso.example',
      original: hostile,
      arrivalDate: new Date(),
      recipients: [{ address: 'n@fabrikam.example', reason: 'recipientUnknown' }],
    });
    const head = ndr.raw.toString('latin1').split('\r\n\r\n')[0]!;
    assert.doesNotMatch(head, /^\s*Bcc:/im);
    assert.match(head, /^Subject: Undeliverable: hi Bcc: victim@example\.net$/m);
  });
});
