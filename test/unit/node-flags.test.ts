import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SERVE_SEMI_SPACE_MB, serveNodeFlags } from '../../src/cli/node-flags.js';

const node = ['/usr/bin/node', '/opt/relay365/dist/cli/main.js'];

describe('serve node flags', () => {
  it('sizes the young generation of serve, and of no other command', () => {
    assert.deepEqual(serveNodeFlags([...node, 'serve', '--config', '/etc/relay365/relay365.yaml'], [], undefined), [
      `--max-semi-space-size=${SERVE_SEMI_SPACE_MB}`,
    ]);
    assert.deepEqual(serveNodeFlags([...node, 'serve', '--sandbox'], ['--import', 'tsx'], ''), [`--max-semi-space-size=${SERVE_SEMI_SPACE_MB}`]);
    for (const command of [['queue', 'list'], ['doctor'], ['sandbox'], ['--help'], []])
      assert.deepEqual(serveNodeFlags([...node, ...command], [], undefined), [], command.join(' '));
    // `serve` as an option's value is not the command.
    assert.deepEqual(serveNodeFlags([...node, 'send', '--subject', 'serve'], [], undefined), []);
  });

  it('leaves the young generation to the operator who sized it, on the command line or in NODE_OPTIONS', () => {
    assert.deepEqual(serveNodeFlags([...node, 'serve'], ['--max-semi-space-size=16'], undefined), []);
    assert.deepEqual(serveNodeFlags([...node, 'serve'], ['--max_semi_space_size=16'], undefined), []);
    assert.deepEqual(serveNodeFlags([...node, 'serve'], [], '--enable-source-maps --max-semi-space-size=16'), []);
    assert.deepEqual(serveNodeFlags([...node, 'serve'], [], '--semi-space-growth-factor=4'), []);
    // Other flags do not count.
    assert.deepEqual(serveNodeFlags([...node, 'serve'], ['--max-old-space-size=256'], '--enable-source-maps'), [
      `--max-semi-space-size=${SERVE_SEMI_SPACE_MB}`,
    ]);
  });
});
