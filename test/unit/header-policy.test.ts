import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { checkHeaderSection } from '../../src/message/index.js';

const msg = (...headers: string[]): Buffer => Buffer.from(`${headers.join('\r\n')}\r\n\r\nbody\r\n`);

function refused(raw: Buffer): string {
  const check = checkHeaderSection(raw);
  assert.equal(check.ok, false, `expected a refusal for ${JSON.stringify(raw.toString('latin1'))}`);
  return (check as { problem: string }).problem;
}

describe('the header section every door checks (header-policy.ts)', () => {
  it('reads From, Sender and Resent-* addresses of a plain message, folded or not', () => {
    const check = checkHeaderSection(
      msg('From: "Scanner" <noreply@contoso.example>', 'Sender: relay@contoso.example', 'Resent-From: a@contoso.example,', ' b@contoso.example', 'Subject: x'),
    );
    assert.deepEqual(check, {
      ok: true,
      from: ['noreply@contoso.example'],
      originators: ['noreply@contoso.example', 'relay@contoso.example', 'a@contoso.example', 'b@contoso.example'],
    });
    assert.deepEqual(checkHeaderSection(Buffer.from('Subject: no from\n\nbody\n')), { ok: true, from: [], originators: [] }, 'bare LF throughout is one style');
    assert.deepEqual((checkHeaderSection(msg('From : noreply@contoso.example')) as { from: string[] }).from, ['noreply@contoso.example'], 'obsolete space before the colon');
    assert.deepEqual((checkHeaderSection(msg('From: Zoë <zoe@contoso.example>')) as { from: string[] }).from, ['zoe@contoso.example'], 'UTF-8 names');
  });

  it('refuses what the probes got past a device allowed only noreply@', () => {
    assert.match(refused(msg(' Subject: joins the field before it', 'From: noreply@contoso.example')), /first header line starts with white space/);
    assert.match(refused(msg('From: <noreply@contoso.example> <relay@contoso.example>')), /angle brackets/);
    assert.match(refused(msg('From: <noreply> <relay>')), /angle brackets|not an address/);
    assert.match(refused(msg('From: noreply@contoso.example\rX-Injected: relay@contoso.example')), /bare carriage return/);
    assert.match(refused(msg('From: noreply@contoso.example', 'Subject: x\nFrom: relay@contoso.example')), /bare line feed/);
    assert.match(refused(msg('From: noreply@contoso.example', 'From: relay@contoso.example')), /more than one From/);
    assert.match(refused(msg('From: noreply@contoso.example', 'Sender: a@contoso.example, b@contoso.example')), /Sender field must hold exactly one/);
    assert.match(refused(msg('From: undisclosed-senders:;')), /From field is a group/);
    assert.match(refused(msg('From: grp: relay@contoso.example;')), /group/);
    assert.match(refused(msg('From: noreply')), /no address|not an address|without an address/);
    assert.match(refused(msg('From: a@b@contoso.example')), /not an address/);
    assert.match(refused(msg('From: noreply@contoso.example', 'not a field')), /not a field/);
  });

  it('lets through what is legal however it looks', () => {
    for (const raw of [
      msg('From: "relay@contoso.example" <noreply@contoso.example>'),
      msg('From: noreply@contoso.example (the <scanner>)'),
      msg('From: "A, B" <noreply@contoso.example>'),
      msg('From: noreply@contoso.example', 'Subject: folded', '\tover two lines'),
    ]) {
      const check = checkHeaderSection(raw);
      assert.ok(check.ok, `${raw.toString('latin1')}: ${JSON.stringify(check)}`);
      assert.deepEqual(check.from, ['noreply@contoso.example']);
    }
  });
});
