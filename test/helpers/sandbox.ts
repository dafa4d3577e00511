import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_IDS, startSandbox, defaultScenario, parseScenario, type Sandbox, type Scenario, type SandboxOptions } from '../../src/sandbox/index.js';

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

/** An app registration without Application.Read.All, whose secret's end date only the config can give. */
export const UNREADABLE_APP = { clientId: 'c0c0c0c0-1111-4222-8333-444455556699', secret: 'unreadable-app-secret-value' };

/**
 * The default scenario for reading a client secret's end date through Graph (auth.secretExpiresFromGraph):
 * the default app may read app registrations (Application.Read.All) and lists `secrets` (its own secret
 * first, with the end date Entra shows); {@link UNREADABLE_APP} is a copy of it without that permission.
 */
export function secretEndDateScenario(secrets: Array<{ value: string; expiresAt?: string }>): Scenario {
  return scenario((s) => {
    const app = s.tenants[0]!.apps.find((a) => a.clientId === DEFAULT_IDS.appClientId)!;
    const unreadable = structuredClone(app);
    app.roles.graph = [...app.roles.graph, 'Application.Read.All'];
    app.secrets = secrets;
    s.tenants[0]!.apps.push({ ...unreadable, clientId: UNREADABLE_APP.clientId, name: 'cannot read apps', secrets: [{ value: UNREADABLE_APP.secret }] });
  });
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
