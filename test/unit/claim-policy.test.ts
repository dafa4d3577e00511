import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { candidatesToRead, CONNECTION_RETRY_MS, planClaim, type MailboxTotals } from '../../src/outbox/index.js';

const MINUTE = 60_000;
const limits = { messagesPerMinute: 30, recipientsPerDay: 10_000, maxConnections: 3, minuteMs: MINUTE };
const now = 1_800_000_000_000;
const leaseMs = 5 * MINUTE;
const idle: MailboxTotals = { live: 0, soonestLeaseExpiry: null, minuteSends: 0, minuteOldest: null, dayRecipients: 0 };

/** `n` due messages of `recipients` recipients each, named m0, m1, ... */
function due(n: number, recipients = 1): Array<{ id: string; recipients: number }> {
  return Array.from({ length: n }, (_, i) => ({ id: `m${i}`, recipients }));
}

describe('claim policy (Microsoft 365 limits, one decision for both stores)', () => {
  it('an empty queue is not a limit: nothing claimed, nothing blocked', () => {
    const plan = planClaim({ candidates: [], totals: idle, limits, max: 10, leaseMs, now });
    assert.deepEqual(plan, { claim: [], totals: { minuteSends: 0, dayRecipients: 0 } });
    // The store reads one candidate more than the slots, which is how an empty queue tells from a limit.
    assert.equal(candidatesToRead(idle, limits, 10), 4);
  });

  it('claims the 30th message of the minute and blocks the 31st until the oldest send leaves the window', () => {
    const oldest = now - 45_000;
    const totals = { ...idle, minuteSends: 29, minuteOldest: oldest };
    const wide = { ...limits, maxConnections: 100 };
    assert.equal(candidatesToRead(totals, wide, 10), 2);
    const plan = planClaim({ candidates: due(2), totals, limits: wide, max: 10, leaseMs, now });
    assert.deepEqual(plan.claim.map((m) => m.id), ['m0']);
    assert.equal(plan.totals.minuteSends, 30);
    assert.deepEqual(plan.blocked, { by: 'rate', until: oldest + MINUTE });
  });

  it('at 30 sends in the minute claims nothing, and with no older send the window clears a minute from now', () => {
    const wide = { ...limits, maxConnections: 100 };
    const full = planClaim({ candidates: due(1), totals: { ...idle, minuteSends: 30, minuteOldest: now - 1000 }, limits: wide, max: 10, leaseMs, now });
    assert.deepEqual(full.claim, []);
    assert.deepEqual(full.blocked, { by: 'rate', until: now - 1000 + MINUTE });
    // A claim that fills the window from empty: its own sends, at `now`, are the oldest.
    const fill = planClaim({ candidates: due(31), totals: idle, limits: wide, max: 100, leaseMs, now });
    assert.equal(fill.claim.length, 30);
    assert.deepEqual(fill.blocked, { by: 'rate', until: now + MINUTE });
  });

  it('exactly 30 due messages in an idle minute: all claimed and no block, since the queue ended the claim', () => {
    const wide = { ...limits, maxConnections: 100 };
    const plan = planClaim({ candidates: due(30), totals: idle, limits: wide, max: 100, leaseMs, now });
    assert.equal(plan.claim.length, 30);
    assert.equal(plan.blocked, undefined);
  });

  it('stops at 10,000 recipients a day and says how many recipients must leave the day window', () => {
    const totals = { ...idle, dayRecipients: 9_990 };
    const plan = planClaim({ candidates: [...due(1, 10), ...due(1, 5)], totals, limits, max: 10, leaseMs, now });
    assert.deepEqual(plan.claim.map((m) => m.recipients), [10]);
    assert.equal(plan.totals.dayRecipients, 10_000);
    assert.deepEqual(plan.blocked, { by: 'recipients', recipientsNeeded: 5 });
  });

  it('a message with more recipients than a day allows goes alone into an empty day window', () => {
    const plan = planClaim({ candidates: [...due(1, 12_000), ...due(1, 1)], totals: idle, limits, max: 10, leaseMs, now });
    assert.deepEqual(plan.claim.map((m) => m.recipients), [12_000]);
    assert.deepEqual(plan.blocked, { by: 'recipients', recipientsNeeded: 12_001 - 10_000 });
    const busy = planClaim({ candidates: due(1, 12_000), totals: { ...idle, dayRecipients: 1 }, limits, max: 10, leaseMs, now });
    assert.deepEqual(busy.claim, []);
  });

  it('takes only the free connection slots and retries within a second, or when a lease expires if sooner', () => {
    const totals = { ...idle, live: 2, soonestLeaseExpiry: now + 10 * MINUTE };
    assert.equal(candidatesToRead(totals, limits, 10), 2);
    const plan = planClaim({ candidates: due(2), totals, limits, max: 10, leaseMs, now });
    assert.equal(plan.claim.length, 1);
    assert.deepEqual(plan.blocked, { by: 'connections', until: now + CONNECTION_RETRY_MS });
    const expiring = planClaim({ candidates: due(1), totals: { ...idle, live: 3, soonestLeaseExpiry: now + 200 }, limits, max: 10, leaseMs, now });
    assert.deepEqual(expiring.claim, []);
    assert.deepEqual(expiring.blocked, { by: 'connections', until: now + 201 });
  });

  it('when rate and connections both run out, reports the one that clears last', () => {
    const totals = { ...idle, live: 3, soonestLeaseExpiry: now + 100, minuteSends: 30, minuteOldest: now - 10_000 };
    const plan = planClaim({ candidates: due(1), totals, limits, max: 10, leaseMs, now });
    assert.deepEqual(plan.blocked, { by: 'rate', until: now - 10_000 + MINUTE });
  });

  it('max alone stopping the claim is no block', () => {
    const plan = planClaim({ candidates: due(3), totals: idle, limits, max: 2, leaseMs, now });
    assert.equal(plan.claim.length, 2);
    assert.equal(plan.blocked, undefined);
    assert.equal(candidatesToRead(idle, limits, 2), 3);
  });

  it('counts over the limits (a lowered limit, clock skew) claim nothing and read one candidate', () => {
    const totals = { ...idle, live: 5, minuteSends: 40, minuteOldest: now - 1 };
    assert.equal(candidatesToRead(totals, limits, 10), 1);
    const plan = planClaim({ candidates: due(1), totals, limits, max: 10, leaseMs, now });
    assert.deepEqual(plan.claim, []);
    assert.equal(plan.blocked?.by, 'rate');
  });
});
