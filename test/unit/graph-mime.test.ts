import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { composeMessage, retryAfterMs } from '../../src/delivery/index.js';
import { splitLargeAttachments } from '../../src/delivery/mime-split.js';
import { addAttachmentsToMime } from '../../src/sandbox/graph-routes.js';

describe('MIME splitting for Graph upload sessions', () => {
  it('takes the big attachment out of a multipart/mixed message and leaves the rest as it was', async () => {
    const big = randomBytes(200_000);
    const m = await composeMessage({
      from: 'a@contoso.example',
      to: 'b@example.net',
      subject: 's',
      text: 'body',
      attachments: [
        { filename: 'big.bin', content: big },
        { filename: 'small.txt', content: 'hi' },
      ],
    });
    const split = splitLargeAttachments(m.raw, 50_000);
    assert.ok(split);
    assert.deepEqual(
      split.attachments.map((a) => [a.name, a.content.equals(big)]),
      [['big.bin', true]],
    );
    assert.ok(split.draft.length < 50_000);
    assert.match(split.draft.toString('latin1'), /small\.txt/);
    // The sandbox puts it back: the same bytes come out of a second split.
    const rebuilt = addAttachmentsToMime(split.draft, split.attachments);
    assert.ok(splitLargeAttachments(rebuilt, 50_000)?.attachments[0]?.content.equals(big));
  });

  it('returns undefined for a single-part message', async () => {
    const m = await composeMessage({ from: 'a@contoso.example', to: 'b@example.net', subject: 's', text: 'x'.repeat(10_000) });
    assert.equal(splitLargeAttachments(m.raw, 1000), undefined);
  });

  it('the sandbox wraps a single-part draft in multipart/mixed to add an attachment', async () => {
    const m = await composeMessage({ from: 'a@contoso.example', to: 'b@example.net', subject: 's', text: 'plain body' });
    const content = randomBytes(5000);
    const rebuilt = addAttachmentsToMime(m.raw, [{ name: 'x.bin', contentType: 'application/octet-stream', content }]);
    const text = rebuilt.toString('latin1');
    assert.match(text, /^Content-Type: multipart\/mixed/im);
    assert.match(text, /plain body/);
    assert.ok(splitLargeAttachments(rebuilt, rebuilt.length - 1000)?.attachments[0]?.content.equals(content));
  });
});

describe('Retry-After', () => {
  it('reads seconds and HTTP dates', () => {
    assert.equal(retryAfterMs('7'), 7000);
    assert.equal(retryAfterMs(undefined), undefined);
    assert.equal(retryAfterMs(new Date(10_000).toUTCString(), 4_000), 6000);
  });
});
