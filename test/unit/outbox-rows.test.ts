import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isRelay365Error } from '../../src/errors.js';
import { pageOf, pageRead } from '../../src/outbox/cursor.js';
import { newMessageRow, rowReader, stateCounts, type MessageRow } from '../../src/outbox/rows.js';
import type { NewMessage } from '../../src/outbox/index.js';

/** The two dialects: SQLite returns JSON columns as text, pg returns jsonb parsed. */
const sqlite = rowReader((text: string): unknown => JSON.parse(text));
const pg = rowReader((value: unknown) => value);

const message: NewMessage = {
  mailbox: 'relay@contoso.com',
  envelope: { from: 'app@contoso.com', to: ['a@fabrikam.com', 'b@fabrikam.com'] },
  raw: Buffer.from('Subject: hi\r\n\r\nbody\r\n'),
  source: { kind: 'smtp', client: '10.0.0.7', user: 'scanner' },
  messageId: '<m1@contoso.com>',
};
const explanation = { id: 'smtp-451-4.7.500', class: 'transient', cause: 'Exchange is busy.', fix: 'Nothing: relay365 retries.' };

describe('outbox rows (one description of the rows both stores read)', () => {
  it("builds a new message's row as queued, due at once, with its JSON columns as text", () => {
    const now = 1_800_000_000_000;
    const row = newMessageRow(message, now);
    assert.match(row.id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'a UUIDv7');
    assert.deepEqual(
      { ...row, id: undefined },
      {
        id: undefined,
        mailbox: 'relay@contoso.com',
        pool: null,
        envelope_from: 'app@contoso.com',
        envelope_to: '["a@fabrikam.com","b@fabrikam.com"]',
        recipients: 2,
        size: message.raw.length,
        message_id: '<m1@contoso.com>',
        source: '{"kind":"smtp","client":"10.0.0.7","user":"scanner"}',
        state: 'queued',
        attempts: 0,
        created_at: now,
        updated_at: now,
        next_attempt_at: now,
        lease_owner: null,
        lease_until: null,
        last_reply: null,
        last_class: null,
        last_explanation: null,
        send_at: null,
        labels: null,
      },
    );
    const scheduled = newMessageRow({ ...message, notBefore: new Date(now + 60_000), tags: ['invoice'], metadata: { order: '42' } }, now);
    assert.equal(scheduled.next_attempt_at, now + 60_000);
    assert.equal(scheduled.send_at, now + 60_000);
    assert.deepEqual(JSON.parse(String(scheduled.labels)), { tags: ['invoice'], metadata: { order: '42' } });
  });

  it('refuses a message with both a mailbox and a pool, with neither, or without a recipient', () => {
    const invalid = (err: unknown): boolean => isRelay365Error(err, 'R365_MESSAGE_INVALID');
    assert.throws(() => newMessageRow({ ...message, pool: 'team@contoso.com' }, 1), invalid);
    assert.throws(() => newMessageRow({ ...message, mailbox: undefined }, 1), invalid);
    assert.throws(() => newMessageRow({ ...message, envelope: { from: 'app@contoso.com', to: [] } }, 1), invalid);
    assert.equal(newMessageRow({ ...message, mailbox: undefined, pool: 'team@contoso.com' }, 1).pool, 'team@contoso.com');
  });

  it('maps the same row to the same records whether its JSON came as text (SQLite) or parsed (PostgreSQL)', () => {
    const text: MessageRow<string> = {
      ...newMessageRow(message, 1_800_000_000_000),
      state: 'deferred',
      attempts: 1,
      lease_until: null,
      last_reply: '451 4.7.500 Server busy',
      last_class: 'transient',
      last_explanation: JSON.stringify(explanation),
    };
    const parsed: MessageRow<unknown> = {
      ...text,
      envelope_to: JSON.parse(text.envelope_to),
      source: JSON.parse(text.source),
      last_explanation: explanation,
    };
    const stored = sqlite.toStoredMessage(text);
    assert.deepEqual(pg.toStoredMessage(parsed), stored);
    assert.deepEqual(stored.envelope, message.envelope);
    assert.deepEqual(stored.source, message.source);
    assert.deepEqual(stored.lastExplanation, explanation);
    assert.equal(stored.leaseUntil, undefined);
    assert.equal(sqlite.toStoredMessage({ ...text, last_explanation: null }).lastExplanation, undefined, 'NULL is no explanation, for either dialect');
    assert.equal(pg.toStoredMessage({ ...parsed, last_explanation: null }).lastExplanation, undefined);

    const attempt = { at: 5, mailbox: 'relay@contoso.com', reply: null, class: 'transient', duration_ms: 120, owner: 'node-1' };
    assert.deepEqual(pg.toAttempt({ ...attempt, explanation }), sqlite.toAttempt({ ...attempt, explanation: JSON.stringify(explanation) }));
    assert.equal(sqlite.toAttempt({ ...attempt, explanation: null }).explanation, undefined);

    const pause = { mailbox: 'relay@contoso.com', class: 'auth', reply: '535 5.7.3', since: 1, updated_at: 2, owner: 'node-1', resume_requested_at: null };
    assert.deepEqual(pg.toMailboxPause({ ...pause, explanation }), sqlite.toMailboxPause({ ...pause, explanation: JSON.stringify(explanation) }));
  });

  it('leaves the optional fields of recipients and suppressions out when their column is NULL', () => {
    const recipient = {
      position: 0,
      address: 'a@fabrikam.com',
      state: 'pending',
      reply: null,
      explanation: null,
      dsn_status: null,
      remote_mta: null,
      report_id: null,
      updated_at: 9,
    };
    assert.deepEqual(Object.keys(sqlite.toRecipient(recipient)), ['address', 'state', 'updatedAt']);
    const bounced = { ...recipient, state: 'bounced', reply: '550 5.1.1 unknown', dsn_status: '5.1.1', remote_mta: 'mx.fabrikam.com', report_id: 'r1' };
    assert.deepEqual(pg.toRecipient({ ...bounced, explanation }), sqlite.toRecipient({ ...bounced, explanation: JSON.stringify(explanation) }));
    assert.deepEqual(sqlite.toRecipient(bounced), {
      address: 'a@fabrikam.com',
      state: 'bounced',
      updatedAt: new Date(9),
      reply: '550 5.1.1 unknown',
      dsnStatus: '5.1.1',
      remoteMta: 'mx.fabrikam.com',
      reportId: 'r1',
    });

    const suppression = {
      address_key: 'a@fabrikam.com',
      address: 'A@fabrikam.com',
      reason: 'hard bounce',
      dsn_status: null,
      message_id: null,
      source: 'manual',
      created_at: 3,
    };
    assert.deepEqual(sqlite.toSuppression(suppression), { address: 'A@fabrikam.com', reason: 'hard bounce', createdAt: new Date(3), source: 'manual' });
  });

  it('counts every state, 0 where the database has no row for it', () => {
    assert.deepEqual(
      stateCounts([
        { state: 'queued', n: 3 },
        { state: 'failed', n: 1 },
      ]),
      { queued: 3, sending: 0, sent: 0, deferred: 0, failed: 1, cancelled: 0 },
    );
  });

  it('pages newest first: 50 by default, held to 1..500, one row read past the page, a cursor only when more follow', () => {
    assert.deepEqual(pageRead({}), { after: { createdAt: Number.MAX_SAFE_INTEGER, id: '' }, limit: 50, rows: 51 });
    assert.equal(pageRead({ limit: 0 }).limit, 1);
    assert.equal(pageRead({ limit: 2.9 }).limit, 2);
    assert.equal(pageRead({ limit: 10_000 }).limit, 500);
    assert.throws(
      () => pageRead({ cursor: 'not-a-cursor' }),
      (err: unknown) => isRelay365Error(err, 'R365_LIST_CURSOR_INVALID'),
    );

    const rows = [
      { t: 30, key: 'c' },
      { t: 20, key: 'b' },
      { t: 10, key: 'a' },
    ];
    const read = pageRead({ limit: 2 });
    const first = pageOf(
      rows,
      read,
      (r) => r.key,
      (r) => [r.t, r.key],
    );
    assert.deepEqual(first.items, ['c', 'b']);
    assert.deepEqual(pageRead({ cursor: first.nextCursor }).after, { createdAt: 20, id: 'b' }, 'the next page starts below the last row shown');
    assert.equal(
      pageOf(
        rows.slice(0, 2),
        read,
        (r) => r.key,
        (r) => [r.t, r.key],
      ).nextCursor,
      undefined,
      'a page that ends at the last row has no cursor',
    );
  });
});
