/**
 * The running demo (`relay365 serve --sandbox`, which `npm start` runs) and the other commands run
 * beside it. The demo's sandbox listens on ports picked at start, with a CA made for the run, so no
 * fixed config can reach it: the demo writes the config it runs with to `<dataDir>/sandbox/relay365.yaml`,
 * and `configPath()` falls back to that file while the demo that wrote it runs.
 *
 * The file's first line says which process wrote it and whether it still runs; once it does not, a
 * command that would read it stops with a message saying so, instead of reaching a sandbox that is gone.
 *
 * Only node built-ins are imported here: `configPath()` runs at the start of every command.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import type { Config } from '../config/index.js';
import { Relay365Error } from '../errors.js';

/** The file name under `<dataDir>/sandbox/`. */
const CONFIG_FILE = 'relay365.yaml';
/** The dashboard's generated password, under `<dataDir>/sandbox/`. */
const PASSWORD_FILE = 'admin-password';
/** The sandbox app's client secret, under `<dataDir>/sandbox/`. */
const APP_SECRET_FILE = 'app-secret';

/** First line of the file: `# relay365 serve --sandbox, pid 123, running since ...` or `..., stopped at ...`. */
const HEADER = /^# relay365 serve --sandbox, pid (\d+), (running|stopped)\b/;

/** Where `serve --sandbox` writes its config for a data folder. */
export function sandboxDemoConfigPath(dataDir: string): string {
  return join(dataDir, 'sandbox', CONFIG_FILE);
}

/** Where the generated dashboard password of the demo is kept. */
export function sandboxDemoPasswordPath(dataDir: string): string {
  return join(dataDir, 'sandbox', PASSWORD_FILE);
}

/** True while a process with that id exists (EPERM: it does, as another user). */
function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** What the file at a path is: absent, not written by a demo, or a demo's, with its process and whether that runs. */
type DemoFileState = { kind: 'none' } | { kind: 'other' } | { kind: 'demo'; pid: number; running: boolean };

/**
 * Reads the header of the file. A process id can be reused after a `kill -9`, so a file left by a
 * killed demo may pass for a live one until the next demo overwrites it.
 * @throws Relay365Error `R365_CONFIG_NOT_FOUND` when the file exists and cannot be read
 */
function demoFileState(path: string): DemoFileState {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'none' };
    throw new Relay365Error(
      'R365_CONFIG_NOT_FOUND',
      `Cannot read ${path}, the config of the sandbox demo: ${(err as NodeJS.ErrnoException).code ?? String(err)}.`,
      {
        cause: err,
      },
    );
  }
  const header = HEADER.exec(text.split('\n', 1)[0] ?? '');
  // Not written by serve --sandbox (edited or copied there by hand): a config like any other.
  if (!header) return { kind: 'other' };
  const pid = Number(header[1]);
  return { kind: 'demo', pid, running: header[2] === 'running' && processRuns(pid) };
}

/**
 * The demo's config file at `path` when the demo that wrote it still runs (or when it is a config not
 * written by a demo); undefined when there is none.
 * @throws Relay365Error `R365_CONFIG_NOT_FOUND` when the demo that wrote the file has stopped
 */
export function runningSandboxDemoConfig(path: string): string | undefined {
  const state = demoFileState(path);
  if (state.kind === 'none') return undefined;
  if (state.kind === 'other' || state.running) return path;
  const shown = relative(process.cwd(), path) || path;
  throw new Relay365Error(
    'R365_CONFIG_NOT_FOUND',
    `The sandbox demo that wrote ${shown} (relay365 serve --sandbox, pid ${state.pid}) has stopped, and no other config is given ` +
      '(--config, RELAY365_CONFIG, ./relay365.yaml). Start the demo again (npm start) and run this command in a second shell ' +
      `in this folder, pass --config ${shown} to use its config anyway (to read its queue, say), or write a config for your ` +
      'tenant with relay365 init.',
    { details: { path, pid: state.pid, sandboxDemo: 'stopped' } },
  );
}

/**
 * Refuses to start a second demo on the same data folder: it would replace the sandbox CA and the
 * config file that the running demo's commands read, and then fail on the ports the first one holds.
 * @throws Relay365Error `R365_SANDBOX_START_FAILED`
 */
export function assertNoRunningSandboxDemo(dataDir: string): void {
  const path = sandboxDemoConfigPath(dataDir);
  const state = demoFileState(path);
  if (state.kind !== 'demo' || !state.running || state.pid === process.pid) return;
  throw new Relay365Error(
    'R365_SANDBOX_START_FAILED',
    `A sandbox demo already runs on this data folder (relay365 serve --sandbox, pid ${state.pid}, ${relative(process.cwd(), path) || path}). ` +
      'Use it from a second shell (relay365 doctor, relay365 test --to ...), or stop it first (Ctrl-C in its shell).',
    { details: { path, pid: state.pid } },
  );
}

/** The header lines of the file for a state of the demo. */
function header(state: 'running' | 'stopped'): string {
  const when = new Date().toISOString();
  return [
    `# relay365 serve --sandbox, pid ${process.pid}, ${state === 'running' ? `running since ${when}` : `stopped at ${when}`}.`,
    '# The config the demo runs with (its sandbox: URL, ports, CA, the sandbox app and mailbox), written for the',
    '# other commands: relay365 doctor, test, token, queue and apikey read it while the demo runs, when they are',
    '# run in the same folder without --config, RELAY365_CONFIG or ./relay365.yaml. The next demo overwrites it.',
    '',
  ].join('\n');
}

/** Writes with mode 0600 through a new file renamed into place, so no reader sees half a file. */
function writePrivate(path: string, text: string): void {
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, text, { mode: 0o600 });
  renameSync(temporary, path);
}

/** The demo's config file, written while the demo runs and marked stopped when it ends. */
export interface SandboxDemoConfigFile {
  path: string;
  /** Marks the file stopped (synchronous: also runs from an `exit` handler); later calls do nothing. */
  markStopped(): void;
}

/**
 * Writes `config` (the one the demo runs with) to `<dataDir>/sandbox/relay365.yaml`, mode 0600: the demo's
 * own secrets are `file:` references, but a config given to `serve --sandbox` may hold some. `dataDir` is written as an absolute path, so the outbox the file points at is
 * the demo's whatever folder the command is run from; other relative paths of a given config stay as they are.
 */
export async function writeSandboxDemoConfig(config: Readonly<Config>): Promise<SandboxDemoConfigFile> {
  const { stringify } = await import('yaml');
  const dataDir = resolve(config.dataDir);
  const path = sandboxDemoConfigPath(dataDir);
  const body = stringify({ ...config, dataDir });
  try {
    writePrivate(path, header('running') + body);
  } catch (cause) {
    throw new Relay365Error(
      'R365_SANDBOX_START_FAILED',
      `Cannot write the demo's config to ${path} (${(cause as NodeJS.ErrnoException).code ?? 'error'}): make the data folder writable.`,
      { cause },
    );
  }
  let stopped = false;
  return {
    path,
    markStopped() {
      if (stopped) return;
      stopped = true;
      try {
        writePrivate(path, header('stopped') + body);
      } catch {
        // The data folder is gone or read-only: readers then find no file, or one whose process has ended.
      }
    },
  };
}

/**
 * Writes the sandbox app's client secret to `<dataDir>/sandbox/app-secret` (0600) and returns the path,
 * so the demo's config refers to it as `file:` the way a real config should (and `relay365 doctor` has
 * no secret written in the config to warn about).
 * @throws Relay365Error `R365_SANDBOX_START_FAILED`
 */
export function writeSandboxDemoAppSecret(dataDir: string, secret: string): string {
  const path = resolve(dataDir, 'sandbox', APP_SECRET_FILE);
  try {
    writePrivate(path, `${secret}\n`);
  } catch (cause) {
    throw new Relay365Error(
      'R365_SANDBOX_START_FAILED',
      `Cannot write the sandbox app's secret to ${path} (${(cause as NodeJS.ErrnoException).code ?? 'error'}): make the data folder writable.`,
      { cause },
    );
  }
  return path;
}

/**
 * The demo dashboard's admin password: the one kept in `<dataDir>/sandbox/admin-password` (0600) by an
 * earlier demo, so a browser that saved it keeps working, else a new random one written there.
 */
export function sandboxDemoAdminPassword(dataDir: string): { path: string; password: string } {
  const path = resolve(sandboxDemoPasswordPath(dataDir));
  try {
    try {
      const kept = readFileSync(path, 'utf8').trim();
      if (kept.length >= 16) {
        chmodSync(path, 0o600);
        return { path, password: kept };
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    // 18 random bytes: 144 bits, 24 characters of base64url, nothing a shell or a URL must escape.
    const password = randomBytes(18).toString('base64url');
    writePrivate(path, `${password}\n`);
    return { path, password };
  } catch (cause) {
    throw new Relay365Error(
      'R365_SANDBOX_START_FAILED',
      `Cannot read or write the demo dashboard's password at ${path} (${(cause as NodeJS.ErrnoException).code ?? 'error'}): make the data folder writable, or set http.adminPassword.`,
      { cause },
    );
  }
}
