import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { ERROR_CODES, Relay365Error, isRelay365Error } from '../../src/errors.js';

describe('error codes', () => {
  it('documents every code in docs/errors.md and documents no code that does not exist', async () => {
    const doc = await readFile(new URL('../../docs/errors.md', import.meta.url), 'utf8');
    const documented = new Set([...doc.matchAll(/^\| `(R365_[A-Z0-9_]+)` \|/gm)].map((m) => m[1]));
    const defined = new Set(Object.keys(ERROR_CODES));
    assert.deepEqual(
      [...defined].filter((c) => !documented.has(c)),
      [],
      'codes missing from docs/errors.md',
    );
    assert.deepEqual(
      [...documented].filter((c) => !defined.has(c!)),
      [],
      'docs/errors.md lists codes src/errors.ts lacks',
    );
  });

  it('keeps the code, the cause and the retryable flag', () => {
    const cause = new Error('socket hang up');
    const err = new Relay365Error('R365_CONFIG_INVALID', 'bad', { cause, retryable: true });
    assert.equal(err.code, 'R365_CONFIG_INVALID');
    assert.equal(err.cause, cause);
    assert.equal(err.retryable, true);
    assert.ok(isRelay365Error(err, 'R365_CONFIG_INVALID'));
    assert.ok(!isRelay365Error(err, 'R365_CONFIG_NOT_FOUND'));
    assert.ok(!isRelay365Error(new Error('x')));
  });
});
