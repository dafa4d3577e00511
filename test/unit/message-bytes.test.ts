import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MessageCollector, headerBounds, messageIdOf, rewriteFrom, scanBytes, splitHeaderBody, toCrlf } from '../../src/message/index.js';

describe('the header section boundary (one reader for every part)', () => {
  it('ends at the first empty line, CRLF or bare LF, whichever comes first', () => {
    assert.deepEqual(headerBounds(Buffer.from('A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore')), { end: 10, bodyStart: 14 });
    assert.deepEqual(headerBounds(Buffer.from('A: 1\nB: 2\n\nbody')), { end: 9, bodyStart: 11 });
    assert.deepEqual(headerBounds('A: 1\n\nx\r\n\r\ny'), { end: 4, bodyStart: 6 });
  });

  it('gives an empty section to a message that starts with an empty line, and the whole message to one without', () => {
    assert.deepEqual(headerBounds(Buffer.from('\r\nbody')), { end: 0, bodyStart: 2 });
    assert.deepEqual(headerBounds(Buffer.from('\nbody')), { end: 0, bodyStart: 1 });
    assert.deepEqual(headerBounds(Buffer.from('A: 1\r\nB: 2')), { end: 10, bodyStart: 10 });
    assert.deepEqual(splitHeaderBody('A: 1\r\n\r\nbody'), { head: 'A: 1', body: 'body' });
  });

  it('reads a Message-ID from the header section only, not from a body that quotes one', () => {
    assert.equal(messageIdOf(Buffer.from('Subject: x\r\nMessage-ID: <a@b.example>\r\n\r\n')), '<a@b.example>');
    assert.equal(messageIdOf(Buffer.from('Subject: x\r\n\r\nMessage-ID: <quoted@b.example>\r\n')), undefined);
  });
});

describe('the byte rules', () => {
  it('counts a line with the CRLF it is sent with, so a bare-LF line of 999 octets is over the limit as a CRLF one is', () => {
    const crlf = scanBytes(Buffer.from(`S: x\r\n\r\n${'a'.repeat(998)}\r\n`));
    assert.equal(crlf.longest, 1000);
    assert.equal(scanBytes(Buffer.from(`S: x\n\n${'a'.repeat(998)}\n`)).longest, 1000);
    assert.equal(scanBytes(Buffer.from(`S: x\n\n${'a'.repeat(999)}\n`)).longest, 1001);
  });

  it('sees a CR at the end of one chunk and its LF at the start of the next as one line end', () => {
    const collector = new MessageCollector(10_000);
    collector.push(Buffer.from(`S: x\r\n\r\n${'a'.repeat(998)}\r`));
    collector.push(Buffer.from('\nnext\r\n'));
    assert.equal(collector.longest, 1000);
  });

  it('notices a NUL byte', () => {
    assert.equal(scanBytes(Buffer.from('S: x\r\n\r\na\u0000b\r\n')).hasNul, true);
    assert.equal(scanBytes(Buffer.from('S: x\r\n\r\nab\r\n')).hasNul, false);
  });

  it('makes bare LFs CRLF and leaves a CRLF message as the same buffer', () => {
    const good = Buffer.from('A: 1\r\n\r\nb\r\n');
    assert.equal(toCrlf(good), good);
    assert.equal(toCrlf(Buffer.from('A: 1\n\nb\r\nc\n')).toString(), 'A: 1\r\n\r\nb\r\nc\r\n');
  });
});

describe('sender rewriting (rewriteFrom)', () => {
  const rewrite = { to: 'relay@contoso.example', keep: 'replyTo' as const };

  it('replaces a folded From and a Sender, keeps the From as Reply-To and every other byte', () => {
    const raw = Buffer.from('Subject: scan\r\nFrom: "Scanner"\r\n <scanner@printer.local>\r\nSender: scanner@printer.local\r\nX-A: 1\r\n\r\nbody\r\n');
    const out = rewriteFrom(raw, rewrite, { fromValue: '"Scanner" <scanner@printer.local>', address: 'scanner@printer.local' }).toString();
    assert.equal(out, 'From: <relay@contoso.example>\r\nReply-To: "Scanner" <scanner@printer.local>\r\nSubject: scan\r\nX-A: 1\r\n\r\nbody\r\n');
  });

  it('keeps a Reply-To already there, and keeps bare-LF line ends for a message that uses them', () => {
    const raw = Buffer.from('From: scanner@printer.local\nReply-To: desk@printer.local\n\nbody\n');
    const out = rewriteFrom(raw, rewrite, { fromValue: 'scanner@printer.local', address: 'scanner@printer.local' }).toString();
    assert.equal(out, 'From: <relay@contoso.example>\nReply-To: desk@printer.local\n\nbody\n');
  });

  it('puts the device address in a quoted display name, escaping what a quoted-string must', () => {
    const out = rewriteFrom(
      Buffer.from('From: a"b\\c@x.example\r\n\r\nb'),
      { to: 'relay@contoso.example', keep: 'displayName' },
      { fromValue: undefined, address: 'a"b\\c@x.example' },
    );
    assert.equal(out.toString(), 'From: "a\\"b\\\\c@x.example" <relay@contoso.example>\r\n\r\nb');
  });

  it('drops the device address with keep: none, and gives a message without header section a From', () => {
    const out = rewriteFrom(Buffer.from('\r\nbody'), { to: 'relay@contoso.example', keep: 'none' }, { fromValue: undefined, address: 'scanner@printer.local' });
    assert.equal(out.toString(), 'From: <relay@contoso.example>\r\n\r\nbody');
  });
});
