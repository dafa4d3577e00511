/**
 * `BENCH_BASE=<git revision>`: the relay365 of that revision, built once into a folder of its own, so
 * that every scenario that runs `relay365 serve` measures the base and this tree in the same run, with
 * the same load generator and sandbox (this tree's bench code drives both). Figures measured in one
 * run are what the issues' targets compare ("at most half of today's, in the same run").
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { round, type Row, type ScenarioResult } from './lib.js';

const REPO = fileURLToPath(new URL('../', import.meta.url));

function git(args: string[]): string {
  return execFileSync('git', args, { cwd: REPO, encoding: 'utf8' }).trim();
}

/** A base build: its revision, and the path of its CLI. */
export interface BaseBuild {
  rev: string;
  short: string;
  cli: string;
}

/**
 * Exports `rev` (git archive, no worktree left in the repository) into the temp folder and builds it
 * with its own tsconfig.build.json. Its dependencies are this checkout's node_modules when its
 * package-lock.json is the same, else its own `npm ci`. Kept between runs (one folder per commit).
 */
export async function buildBase(revision: string): Promise<BaseBuild> {
  const rev = git(['rev-parse', '--verify', `${revision}^{commit}`]);
  const short = rev.slice(0, 7);
  const dir = join(tmpdir(), `relay365-bench-base-${short}`);
  const cli = join(dir, 'dist', 'cli', 'main.js');
  if (existsSync(cli)) return { rev, short, cli };
  await mkdir(dir, { recursive: true });
  execFileSync('sh', ['-c', `git -C "$1" archive "$2" | tar -x -C "$3"`, 'sh', REPO, rev, dir], { stdio: 'inherit' });
  let sameLock = true;
  try {
    execFileSync('git', ['diff', '--quiet', rev, 'HEAD', '--', 'package-lock.json'], { cwd: REPO });
  } catch {
    sameLock = false;
  }
  if (!existsSync(join(dir, 'node_modules'))) {
    if (sameLock) await symlink(join(REPO, 'node_modules'), join(dir, 'node_modules'), 'dir');
    else execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: dir, stdio: 'inherit' });
  }
  execFileSync(process.execPath, [join(dir, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], { cwd: dir, stdio: 'inherit' });
  return { rev, short, cli };
}

/**
 * The base's and this tree's figures of one scenario side by side: for every numeric column of each
 * row (rows matched by position, labelled by their first column), `base → now (×ratio)`.
 */
export function comparison(base: ScenarioResult, now: ScenarioResult, baseLabel: string, nowLabel: string): ScenarioResult {
  const [key, ...rest] = now.columns;
  const numeric = rest.filter((c) => now.rows.some((r) => typeof r[c] === 'number') && base.rows.some((r) => typeof r[c] === 'number'));
  const rows: Row[] = now.rows.map((row, i) => {
    const before = base.rows[i] ?? {};
    const out: Row = { [key!]: row[key!] ?? '' };
    for (const c of numeric) {
      const a = before[c];
      const b = row[c];
      out[c] = typeof a === 'number' && typeof b === 'number' ? `${a} → ${b}${a !== 0 ? ` (×${round(b / a, 2)})` : ''}` : `${a ?? '-'} → ${b ?? '-'}`;
    }
    return out;
  });
  const targets = now.targets.map((t, i) => ({ ...t, what: `${t.what}: ${baseLabel} ${base.targets[i]?.value ?? '-'}, ${nowLabel}`, value: t.value }));
  for (const r of now.relativeTargets ?? []) {
    const a = base.rows.find((row) => String(row[key!]) === r.row)?.[r.column];
    const b = now.rows.find((row) => String(row[key!]) === r.row)?.[r.column];
    if (typeof a !== 'number' || typeof b !== 'number' || a === 0) continue;
    const ratio = b / a;
    const met = (r.maxRatio === undefined || ratio <= r.maxRatio) && (r.minRatio === undefined || ratio >= r.minRatio);
    targets.push({ what: `${r.what} (${r.column}, ${key} ${r.row}): ${baseLabel} ${a}, ${nowLabel}`, value: `${b} (×${round(ratio, 2)})`, met });
  }
  return {
    name: `${now.name}-compare`,
    title: `${now.title}: ${baseLabel} → ${nowLabel}, same run`,
    columns: [key!, ...numeric],
    rows,
    targets,
    notes: ['Each cell: the base build → this tree (×ratio), measured in this run with the same bench code, sandbox and machine.'],
  };
}
