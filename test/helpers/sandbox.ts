import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSandbox, defaultScenario, parseScenario, type Sandbox, type Scenario, type SandboxOptions } from '../../src/sandbox/index.js';

/** A fresh temporary folder, removed by the returned cleanup. */
export async function tempDir(prefix = 'relay365-test-'): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, cleanup: () => rm(path, { recursive: true, force: true }) };
}

/**
 * The default scenario with changes applied, re-validated: `scenario((s) => { s.limits.timeScale = 30; })`.
 */
export function scenario(change?: (s: Scenario) => void): Scenario {
  const s = structuredClone(defaultScenario());
  change?.(s);
  return parseScenario(s, 'test scenario');
}

/** Starts a sandbox on free loopback ports with its files in a temporary folder. */
export async function startTestSandbox(options: SandboxOptions = {}): Promise<Sandbox & { dir: string }> {
  const dir = await tempDir('relay365-sandbox-');
  const sandbox = await startSandbox({ dataDir: dir.path, ...options });
  return {
    ...sandbox,
    dir: dir.path,
    close: async () => {
      await sandbox.close();
      await dir.cleanup();
    },
  };
}
