// Keeps docs/microsoft-365-setup.md in step with adminSteps(): the doc holds, between markers, the steps
// generated with placeholder values for each setup. `node --import tsx test/helpers/setup-doc.ts`
// rewrites those blocks; test/unit/setup-docs.test.ts fails when they drift.
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { SETUPS, docBlock, docMarkers } from '../../src/doctor/index.js';

export const SETUP_DOC = fileURLToPath(new URL('../../docs/microsoft-365-setup.md', import.meta.url));

/** The doc with each generated block replaced by the current one; throws when a block's markers are missing. */
export function regenerate(doc: string): string {
  let out = doc;
  for (const setup of SETUPS) {
    const { begin, end } = docMarkers(setup);
    const from = out.indexOf(begin);
    const to = out.indexOf(end, from);
    if (from === -1 || to === -1) throw new Error(`docs/microsoft-365-setup.md lacks the markers of the ${setup} steps:\n${begin}\n${end}`);
    out = out.slice(0, from) + docBlock(setup) + out.slice(to + end.length);
  }
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const doc = await readFile(SETUP_DOC, 'utf8');
  await writeFile(SETUP_DOC, regenerate(doc));
  console.log(`updated ${SETUP_DOC}`);
}
