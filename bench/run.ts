/**
 * `npm run bench`: runs every scenario (or only BENCH_ONLY=name[,name]), prints a Markdown table per
 * scenario under the machine line, and writes `bench/results/<date>-<name>.json`.
 */
import { buildBase, comparison, type BaseBuild } from './base.js';
import { CLI, machineLine, machineState, machineStateLine, markdown, useCli, writeResult, type ScenarioResult } from './lib.js';

const scenarios: Record<string, () => Promise<{ run: () => Promise<ScenarioResult> }>> = {
  'relay-throughput': () => import('./relay-throughput.js'),
  'legacy-devices': () => import('./legacy-devices.js'),
  'http-api': () => import('./http-api.js'),
  'outbox-scale': () => import('./outbox-scale.js'),
  'limits-used': () => import('./limits-used.js'),
  'idle-memory': () => import('./idle-memory.js'),
};

/** The scenarios that measure `relay365 serve` as a separate process: with BENCH_BASE they run for both builds. */
const SERVE_SCENARIOS = new Set(['relay-throughput', 'legacy-devices', 'http-api', 'idle-memory']);

function titled(result: ScenarioResult, label: string): ScenarioResult {
  return { ...result, name: `${result.name}-${label.replace(/[^A-Za-z0-9]+/g, '-')}`, title: `${result.title} (${label})` };
}

async function main(): Promise<number> {
  const only = process.env.BENCH_ONLY?.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const unknown = only?.filter((name) => !(name in scenarios)) ?? [];
  if (unknown.length > 0) {
    console.error(`Unknown scenario ${unknown.join(', ')}; choose from ${Object.keys(scenarios).join(', ')}.`);
    return 2;
  }
  console.log(`## relay365 benchmarks\n\nMachine: ${machineLine()}\n`);
  // BENCH_BASE=<revision>: that revision's relay365 is measured in the same run, before this tree's.
  const baseRev = process.env.BENCH_BASE?.trim();
  let base: BaseBuild | undefined;
  if (baseRev) {
    base = await buildBase(baseRev);
    console.log(`Base: ${base.short} (${base.cli}); this tree: HEAD plus any uncommitted change.\n`);
  }
  let failed = 0;
  for (const [name, load] of Object.entries(scenarios)) {
    if (only && !only.includes(name)) continue;
    const started = Date.now();
    try {
      const scenario = await load();
      if (base && SERVE_SCENARIOS.has(name)) {
        const baseLabel = `base ${base.short}`;
        const nowLabel = 'this tree';
        useCli(base.cli);
        const baseState = await machineState();
        const before = titled(await scenario.run(), baseLabel);
        useCli(CLI);
        const state = await machineState();
        const after = titled(await scenario.run(), nowLabel);
        console.log(`At the start of the base's run: ${machineStateLine(baseState)}; of this tree's: ${machineStateLine(state)}.\n`);
        console.log(markdown(before) + '\n');
        console.log(markdown(after) + '\n');
        const compared = comparison(before, after, baseLabel, nowLabel);
        console.log(markdown(compared));
        const paths = [await writeResult(before, baseState), await writeResult(after, state), await writeResult(compared, state)];
        console.log(`\n(${name}: ${((Date.now() - started) / 1000).toFixed(0)} s; ${paths.join(', ')})\n`);
        continue;
      }
      const state = await machineState();
      const result = await scenario.run();
      console.log(`At the start: ${machineStateLine(state)}.\n`);
      console.log(markdown(result));
      if (base) console.log(`\n> ${name} runs in the bench's own process on this tree's code only: BENCH_BASE does not apply to it.`);
      const path = await writeResult(result, state);
      console.log(`\n(${name}: ${((Date.now() - started) / 1000).toFixed(0)} s; ${path})\n`);
    } catch (err) {
      failed += 1;
      console.error(`${name} failed after ${((Date.now() - started) / 1000).toFixed(0)} s:`, err);
    }
  }
  return failed === 0 ? 0 : 1;
}

process.exitCode = await main();
