import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { configSchema } from '../../src/config/index.js';
import { Router, backoffDelay } from '../../src/outbox/index.js';

const mailboxes = configSchema.parse({
  auth: { flow: 'token-command', command: 'true' },
  mailboxes: [
    { address: 'Relay@contoso.com', aliases: ['noreply@contoso.com', 'billing@contoso.com'] },
    { address: 'relay2@contoso.com', aliases: ['noreply@contoso.com'] },
    { address: 'hr@contoso.com' },
  ],
}).mailboxes;

describe('Router', () => {
  const router = new Router(mailboxes);

  it("routes a mailbox's own address and its aliases to it, case-insensitively", () => {
    assert.deepEqual(router.route('RELAY@contoso.com'), { mailbox: 'relay@contoso.com' });
    assert.deepEqual(router.route('billing@contoso.com'), { mailbox: 'relay@contoso.com' });
    assert.equal(router.route('ceo@contoso.com'), undefined);
  });

  it('makes an alias several mailboxes share a pool, and tells each member its pools', () => {
    assert.deepEqual(router.route('noreply@contoso.com'), { pool: 'noreply@contoso.com' });
    assert.deepEqual(router.poolsOf('relay2@contoso.com'), ['noreply@contoso.com']);
    assert.deepEqual(router.poolsOf('hr@contoso.com'), []);
  });

  it('requires the envelope sender and the header From to be sendable by one mailbox', () => {
    assert.deepEqual(router.routeMessage('billing@contoso.com', 'relay@contoso.com'), { mailbox: 'relay@contoso.com' });
    assert.deepEqual(router.routeMessage('noreply@contoso.com', 'billing@contoso.com'), { mailbox: 'relay@contoso.com' });
    assert.equal(router.routeMessage('hr@contoso.com', 'relay@contoso.com'), undefined);
    assert.equal(router.routeMessage('relay@contoso.com', 'ceo@contoso.com'), undefined);
    assert.deepEqual(router.routeMessage('noreply@contoso.com', undefined), { pool: 'noreply@contoso.com' });
  });
});

describe('backoffDelay', () => {
  it('doubles from the base, stays under the ceiling, and is jittered between half and all of it', () => {
    assert.equal(
      backoffDelay(1, 1000, 60_000, () => 0),
      500,
    );
    assert.equal(
      backoffDelay(1, 1000, 60_000, () => 1),
      1000,
    );
    assert.equal(
      backoffDelay(3, 1000, 60_000, () => 1),
      4000,
    );
    assert.equal(
      backoffDelay(20, 1000, 60_000, () => 1),
      60_000,
    );
    assert.equal(
      backoffDelay(20, 1000, 60_000, () => 0),
      30_000,
    );
  });
});
