/**
 * The house rule of docs/architecture.md, enforced: each part (a folder, or a file, directly under
 * src/) imports only the parts its row of the "Parts" table names. The table is read from the doc,
 * so the doc and this test cannot disagree: a new part or a new arrow is a change to the doc.
 */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const src = join(root, 'src');

/** The rows of the "Parts" table: part name -> the parts it may import. */
function allowedArrows(): Map<string, Set<string>> {
  const doc = readFileSync(join(root, 'docs/architecture.md'), 'utf8');
  const section = doc.split(/^## /m).find((s) => s.startsWith('Parts'));
  assert.ok(section, 'docs/architecture.md has a "## Parts" section');
  const rows = new Map<string, Set<string>>();
  for (const line of section.split('\n')) {
    // | `part` | what it owns | `a`, `b` or - |
    const cells = line.split('|').map((c) => c.trim());
    if (cells.length < 4) continue;
    const part = /^`([\w.-]+)`$/.exec(cells[1]!)?.[1];
    if (!part) continue;
    const may = [...cells[cells.length - 2]!.matchAll(/`([\w.-]+)`/g)].map((m) => m[1]!);
    rows.set(part, new Set(may));
  }
  assert.ok(rows.size > 5, `the Parts table has rows (read ${rows.size})`);
  return rows;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return name.endsWith('.ts') ? [path] : [];
  });
}

/** The part a path under src/ belongs to: its first folder, or the file's name without `.ts`. */
function partOf(path: string): string {
  const first = relative(src, path).split(sep)[0]!;
  return first.replace(/\.(ts|js)$/, '');
}

/** Every relative module a file imports or re-exports, statically or with `import()`. */
function relativeImports(text: string): string[] {
  const specs: string[] = [];
  // Comments may quote import lines; strip block and line comments first.
  const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  for (const m of code.matchAll(/(?:^|[\s;])(?:import|export)\s[^'"`]*?from\s*['"]([^'"]+)['"]/g)) specs.push(m[1]!);
  for (const m of code.matchAll(/(?:^|[\s;])import\s*['"]([^'"]+)['"]/g)) specs.push(m[1]!);
  for (const m of code.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)) specs.push(m[1]!);
  return specs.filter((s) => s.startsWith('.'));
}

interface Arrow {
  from: string;
  to: string;
  file: string;
  spec: string;
}

function arrows(): Arrow[] {
  return sourceFiles(src).flatMap((file) => {
    const from = partOf(file);
    return relativeImports(readFileSync(file, 'utf8'))
      .map((spec) => ({ from, to: partOf(resolve(dirname(file), spec)), file: relative(root, file), spec }))
      .filter((a) => a.to !== a.from);
  });
}

describe('part boundaries (docs/architecture.md)', () => {
  const allowed = allowedArrows();
  const seen = arrows();

  it('reads real arrows from the source', () => {
    // A parser that found nothing would let every rule pass.
    assert.ok(seen.length > 100, `found ${seen.length} cross-part imports`);
    assert.ok(
      seen.some((a) => a.from === 'cli' && a.to === 'runtime'),
      'the cli -> runtime arrow is seen',
    );
  });

  it('every folder and file directly under src/ is a row of the table', () => {
    const parts = new Set(sourceFiles(src).map(partOf));
    const missing = [...parts].filter((p) => !allowed.has(p));
    assert.deepEqual(missing, [], `parts without a row in docs/architecture.md: ${missing.join(', ')}`);
    const stale = [...allowed.keys()].filter((p) => !parts.has(p));
    assert.deepEqual(stale, [], `rows in docs/architecture.md for parts that do not exist: ${stale.join(', ')}`);
  });

  it('every import follows an allowed arrow', () => {
    const bad = seen.filter((a) => !allowed.get(a.from)?.has(a.to));
    assert.deepEqual(
      bad.map((a) => `${a.file}: ${a.from} -> ${a.to} (${a.spec})`),
      [],
      'imports the Parts table does not allow: move the code, or change the table and say why',
    );
  });

  it('nothing imports cli, and only cli imports sandbox', () => {
    assert.deepEqual(
      seen.filter((a) => a.to === 'cli').map((a) => a.file),
      [],
    );
    assert.deepEqual(
      seen.filter((a) => a.to === 'sandbox' && a.from !== 'cli').map((a) => a.file),
      [],
    );
  });

  it('the allowed arrows have no circle', () => {
    const state = new Map<string, 'open' | 'done'>();
    const visit = (part: string, path: string[]): void => {
      if (state.get(part) === 'done') return;
      assert.notEqual(state.get(part), 'open', `circle among allowed arrows: ${[...path, part].join(' -> ')}`);
      state.set(part, 'open');
      for (const next of allowed.get(part) ?? []) visit(next, [...path, part]);
      state.set(part, 'done');
    };
    for (const part of allowed.keys()) visit(part, []);
  });

  it('the rule can fail: an arrow the table forbids is caught', () => {
    // config sits at the bottom: it may not import outbox.
    assert.equal(allowed.get('config')?.has('outbox'), false);
    const fake: Arrow = { from: 'config', to: 'outbox', file: 'src/config/x.ts', spec: '../outbox/index.js' };
    assert.equal(allowed.get(fake.from)?.has(fake.to) ?? false, false);
    assert.deepEqual(relativeImports("import { a } from '../outbox/index.js';\nexport * from './b.js';\nconst m = await import('../c.js');"), [
      '../outbox/index.js',
      './b.js',
      '../c.js',
    ]);
  });
});
