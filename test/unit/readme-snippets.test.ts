/**
 * The README's library snippets compile under `tsc --strict` against the built package's types, as a
 * user's TypeScript project would see them (`module: nodenext`, `relay365` resolved through its
 * package.json `exports`). Needs `npm run build` first (`npm test` runs it).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ts from 'typescript';

const REPO = new URL('../..', import.meta.url).pathname.replace(/\/$/, '');

interface Snippet {
  /** README line of the snippet's first line of code. */
  line: number;
  code: string;
}

/** The ```js / ```ts blocks of `markdown` that import from relay365. */
export function librarySnippets(markdown: string): Snippet[] {
  const out: Snippet[] = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i += 1) {
    if (!/^```(js|javascript|ts|typescript)\s*$/.test(lines[i]!)) continue;
    const start = i + 1;
    let end = start;
    while (end < lines.length && !lines[end]!.startsWith('```')) end += 1;
    const code = lines.slice(start, end).join('\n');
    if (/from ['"]relay365(\/[a-z]+)?['"]/.test(code)) out.push({ line: start + 1, code });
    i = end;
  }
  return out;
}

describe("the README's library snippets", () => {
  let dir: string;
  let snippets: Snippet[];
  before(async () => {
    assert.ok(existsSync(join(REPO, 'dist', 'index.d.ts')), 'dist/index.d.ts is missing: run `npm run build` first');
    snippets = librarySnippets(await readFile(join(REPO, 'README.md'), 'utf8'));
    // A user's project: relay365 in node_modules (this repository, with its built dist/), and the
    // types a Node project has.
    dir = await mkdtemp(join(tmpdir(), 'relay365-readme-'));
    await mkdir(join(dir, 'node_modules'));
    await symlink(REPO, join(dir, 'node_modules', 'relay365'), 'dir');
    await symlink(join(REPO, 'node_modules', '@types'), join(dir, 'node_modules', '@types'), 'dir');
    await symlink(join(REPO, 'node_modules', 'nodemailer'), join(dir, 'node_modules', 'nodemailer'), 'dir');
    await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'readme-snippets', private: true, type: 'module' }));
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('include the queued and the direct library calls', () => {
    const all = snippets.map((s) => s.code).join('\n');
    assert.match(all, /createRelay\(/);
    assert.match(all, /createMailer\(/);
  });

  it('type-check under --strict with module nodenext against the built .d.ts, each error named by its README line', async () => {
    const files = await Promise.all(
      snippets.map(async (s, n) => {
        const file = join(dir, `snippet-${n + 1}.ts`);
        await writeFile(file, s.code);
        return { file, snippet: s };
      }),
    );
    const program = ts.createProgram(
      files.map((f) => f.file),
      {
        strict: true,
        noEmit: true,
        module: ts.ModuleKind.NodeNext,
        moduleResolution: ts.ModuleResolutionKind.NodeNext,
        target: ts.ScriptTarget.ES2022,
        types: ['node'],
        // The package's own declarations are checked too: a user's project without skipLibCheck sees them.
        skipLibCheck: false,
      },
    );
    const problems = ts.getPreEmitDiagnostics(program).map((d) => {
      const message = ts.flattenDiagnosticMessageText(d.messageText, '\n');
      const own = files.find((f) => f.file === d.file?.fileName);
      if (!own || d.file === undefined || d.start === undefined) return `${d.file?.fileName ?? '(no file)'}: ${message}`;
      const { line } = d.file.getLineAndCharacterOfPosition(d.start);
      return `README.md:${own.snippet.line + line}: ${message}`;
    });
    assert.deepEqual(problems, []);
  });
});
