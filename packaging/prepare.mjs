// npm's `prepare` script: runs after `npm install` / `npm ci` in a clone, before `npm pack`, and when npm
// installs the package from git. It builds dist/ with TypeScript, a devDependency. A production install
// (`npm ci --omit=dev`, the container's runtime stage) has no TypeScript: it then keeps the dist/ that is
// there (copied from a build stage) instead of failing, and says what to do when there is none.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
let tsc;
try {
  tsc = require.resolve('typescript/bin/tsc');
} catch {
  tsc = undefined;
}
if (tsc !== undefined) {
  const build = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
  process.exit(build.status ?? 1);
}
if (existsSync('dist/cli/main.js')) {
  process.stderr.write('relay365 prepare: TypeScript is not installed (devDependencies omitted): using the dist/ already built.\n');
} else {
  process.stderr.write(
    'relay365 prepare: TypeScript is not installed (devDependencies omitted) and there is no dist/: nothing to run.\n' +
      '  Build it where the devDependencies are (npm ci && npm run build) and copy dist/ here, or install the packed\n' +
      '  package instead (npm pack, then npm install -g ./relay365-<version>.tgz), which ships dist/.\n',
  );
}
