/**
 * `npm run bench`: runs every scenario (or only BENCH_ONLY=name[,name]), prints a Markdown table per
 * scenario under the machine line, and writes `bench/results/<date>-<name>.json`.
 */
import { machineLine, machineState, machineStateLine, markdown, writeResult, type ScenarioResult } from './lib.js';

const scenarios: Record<string, () => Promise<{ run: () => Promise<ScenarioResult> }>> = {
  'relay-throughput': () => import('./relay-throughput.js'),
  'legacy-devices': () => import('./legacy-devices.js'),
  'http-api': () => import('./http-api.js'),
  'outbox-scale': () => import('./outbox-scale.js'),
  'limits-used': () => import('./limits-used.js'),
  'idle-memory': () => import('./idle-memory.js'),
};

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
  let failed = 0;
  for (const [name, load] of Object.entries(scenarios)) {
    if (only && !only.includes(name)) continue;
    const started = Date.now();
    try {
      const state = await machineState();
      const result = await (await load()).run();
      console.log(`At the start: ${machineStateLine(state)}.\n`);
      console.log(markdown(result));
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
