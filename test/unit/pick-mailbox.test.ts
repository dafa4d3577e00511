/** Which mailbox `createMailer` (the direct library) sends a message from: the one `serve` would route it to. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isRelay365Error } from '../../src/errors.js';
import { pickSendingMailbox } from '../../src/delivery/index.js';

const MAILBOXES = [
  { address: 'billing@contoso.example', aliases: ['invoices@contoso.example', 'noreply@contoso.example'] },
  { address: 'support@contoso.example', aliases: ['noreply@contoso.example'] },
];

describe('pickSendingMailbox', () => {
  it('routes an alias to its mailbox with several mailboxes, as serve does', () => {
    assert.equal(pickSendingMailbox(MAILBOXES, undefined, 'Invoices@Contoso.example'), 'billing@contoso.example');
    assert.equal(pickSendingMailbox(MAILBOXES, undefined, 'support@contoso.example'), 'support@contoso.example');
    assert.equal(pickSendingMailbox(MAILBOXES, undefined, 'noreply@contoso.example'), 'billing@contoso.example', 'a shared alias: the first listed');
    assert.equal(pickSendingMailbox(MAILBOXES, 'SUPPORT@contoso.example', 'noreply@contoso.example'), 'support@contoso.example', 'the mailbox asked for');
  });

  it('refuses a sender no mailbox has, naming the mailboxes, and an unknown mailbox asked for', () => {
    assert.throws(
      () => pickSendingMailbox(MAILBOXES, undefined, 'stranger@fabrikam.example'),
      (err) =>
        isRelay365Error(err, 'R365_UNKNOWN_MAILBOX') &&
        /alias stranger@fabrikam\.example/.test(err.message) &&
        /billing@contoso\.example, support@contoso\.example/.test(err.message),
    );
    assert.throws(
      () => pickSendingMailbox(MAILBOXES, 'nobody@contoso.example', 'billing@contoso.example'),
      (err) => isRelay365Error(err, 'R365_UNKNOWN_MAILBOX'),
    );
    assert.equal(pickSendingMailbox([MAILBOXES[0]!], undefined, 'stranger@fabrikam.example'), 'billing@contoso.example', 'one mailbox sends everything');
  });
});
