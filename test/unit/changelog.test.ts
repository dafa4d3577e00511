import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';

const read = (file: string): Promise<string> => readFile(new URL(`../../${file}`, import.meta.url), 'utf8');

/** `[x.y.z]` as numbers, for ordering. */
const parts = (v: string): number[] => v.split('.').map(Number);
const newer = (a: string, b: string): boolean => {
  const [x, y] = [parts(a), parts(b)];
  for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return x[i]! > y[i]!;
  return false;
};

describe('CHANGELOG.md (docs/releasing.md)', () => {
  it("opens with [Unreleased], then released versions newest first, each with its date; the newest is package.json's version", async () => {
    const changelog = await read('CHANGELOG.md');
    const { version } = JSON.parse(await read('package.json')) as { version: string };
    const headings = [...changelog.matchAll(/^## (.*)$/gm)].map((m) => m[1]!);
    assert.equal(headings[0], '[Unreleased]', 'the first section collects what is not released yet');
    const released = headings.slice(1).map((h) => {
      const m = /^\[(\d+\.\d+\.\d+)\] - (\d{4}-\d{2}-\d{2})$/.exec(h);
      assert.ok(m, `a released section is "## [x.y.z] - YYYY-MM-DD", not "## ${h}"`);
      assert.ok(!Number.isNaN(Date.parse(`${m[2]!}T00:00:00Z`)), `${h}: a real date`);
      return { version: m[1]!, date: m[2]! };
    });
    assert.ok(released.length > 0, 'at least one release');
    assert.equal(released[0]!.version, version, 'the newest release is the version package.json (and relay365 --version) gives');
    for (let i = 1; i < released.length; i++) {
      assert.ok(newer(released[i - 1]!.version, released[i]!.version), `${released[i - 1]!.version} comes before the older ${released[i]!.version}`);
      assert.ok(released[i - 1]!.date >= released[i]!.date, `${released[i - 1]!.version} is not dated before ${released[i]!.version}`);
    }
  });
});
