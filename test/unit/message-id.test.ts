import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { messageIdDomain, readHeaders, traceFields } from '../../src/message/index.js';

const headers = (from: string): ReturnType<typeof readHeaders> => readHeaders(Buffer.from(`From: ${from}\r\nSubject: x\r\n\r\nbody\r\n`));

describe('the domain of a Message-ID relay365 adds', () => {
  it('is the relay name when it is fully qualified (smtp.hostname: relay.contoso.com)', () => {
    assert.equal(messageIdDomain('relay.contoso.com', headers('scanner@fabrikam.example')), 'relay.contoso.com');
    assert.equal(messageIdDomain('relay.contoso.com.', headers('scanner@fabrikam.example')), 'relay.contoso.com');
  });

  it("is the From's domain when the name is a bare label, localhost or an address", () => {
    for (const name of ['vm', 'localhost', 'vm.localdomain', '127.0.0.1', '::1', '[192.0.2.1]']) {
      assert.equal(messageIdDomain(name, headers('"Scanner" <scanner@contoso.example>')), 'contoso.example', name);
    }
  });

  it('keeps the name when the From has no usable domain', () => {
    assert.equal(messageIdDomain('vm', readHeaders(Buffer.from('Subject: no from\r\n\r\nx\r\n'))), 'vm');
    assert.equal(messageIdDomain('vm', headers('root@localhost')), 'vm');
  });

  it('is what traceFields writes, and an existing Message-ID is kept', () => {
    const info = {
      helo: 'printer.lan',
      clientAddress: '192.0.2.7',
      hostname: 'vm',
      protocol: 'ESMTP',
      id: 'a.1',
      recipients: ['x@example.net'],
      date: new Date(),
    };
    const added = traceFields(headers('alerts@contoso.example'), info);
    assert.match(added.messageId, /^<[0-9a-f-]{36}@contoso\.example>$/);
    assert.match(added.prefix.toString(), new RegExp(`\r\nMessage-ID: ${added.messageId}\r\n`));
    const kept = traceFields(readHeaders(Buffer.from('From: a@contoso.example\r\nMessage-ID: <m1@vm>\r\n\r\nx\r\n')), info);
    assert.equal(kept.messageId, '<m1@vm>');
  });
});
