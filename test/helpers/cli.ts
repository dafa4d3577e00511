import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { createServer, type AddressInfo } from 'node:net';

/** Path of the built CLI (the package's `bin`); `npm test` builds it first. */
export const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

/** Runs the built CLI to completion and returns its exit code and output. */
export function runCli(
  args: string[],
  options: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number; cwd?: string } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: { ...process.env, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
      ...(options.cwd ? { cwd: options.cwd } : {}),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(options.input ?? '');
  });
}

/**
 * Runs the built CLI on a pseudo-terminal (util-linux `script`, which relays stdin to it) and answers
 * each prompt as it appears: `answers` in order, each a pattern the output must show (after the last
 * answer's) and the line typed in reply. Resolves with the exit code, the output and how many prompts
 * were answered; the process is killed after `timeoutMs`.
 */
export async function runCliOnTerminal(
  args: string[],
  answers: ReadonlyArray<readonly [RegExp, string]>,
  timeoutMs = 30_000,
): Promise<{ code: number | null; output: string; answered: number }> {
  const quote = (v: string): string => `'${v.replaceAll("'", "'\\''")}'`;
  const command = [process.execPath, CLI, ...args].map(quote).join(' ');
  const child = spawn('script', ['-qfec', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  let from = 0;
  let answered = 0;
  const done = new Promise<number | null>((resolve) => child.on('close', resolve));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
    for (;;) {
      const step = answers[answered];
      const m = step ? step[0].exec(output.slice(from)) : null;
      if (!step || !m) break;
      from += m.index + m[0].length;
      answered += 1;
      child.stdin.write(`${step[1]}\r`);
    }
  });
  const code = await done;
  clearTimeout(timer);
  child.stdin.end();
  return { code, output, answered };
}

/** Starts a long-running CLI command and resolves with the process and its first stdout line. */
export function startCli(
  args: string[],
  options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<{ child: ChildProcess; firstLine: string; stderr: () => string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`relay365 ${args.join(' ')} printed nothing in time; stderr: ${stderr}`));
    }, options.timeoutMs ?? 20_000);
    const lines = createInterface({ input: child.stdout });
    lines.once('line', (line) => {
      clearTimeout(timer);
      resolve({ child, firstLine: line, stderr: () => stderr });
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`relay365 ${args.join(' ')} exited with ${code}: ${stderr}`));
    });
  });
}

/** Sends a signal and waits for the process to exit; returns its exit code. */
export function stop(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  return new Promise((resolve) => {
    // A process a signal ended has no exit code, only a signalCode: it has exited all the same.
    if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode);
    child.once('exit', (code) => resolve(code));
    child.kill(signal);
  });
}

/** A free TCP port on 127.0.0.1: nothing listens on it (for a child process that must be told its port in advance, or a refused connection). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/**
 * Starts `relay365 serve --config FILE` and resolves once it prints that it is serving, with its
 * worker (lease owner) id. Rejects if it exits first or prints nothing within 30 s.
 */
export function startServe(config: string, env: NodeJS.ProcessEnv = {}): Promise<{ child: ChildProcess; owner: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'serve', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-10_000)));
    const timer = setTimeout(() => reject(new Error(`serve did not start: ${stderr}`)), 30_000);
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = /^relay365 serving .*worker (\S+)\)/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve({ child, owner: m[1]! });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`serve exited ${code}: ${stderr}`));
    });
  });
}

/** A running `relay365 serve` whose JSON log lines (stderr) are kept as they come. */
export interface LoggedServe {
  child: ChildProcess;
  /** Every log line so far: parsed JSON, or `{ text }` for a line that is not. */
  lines: Array<Record<string, unknown>>;
  /** The first log line that passes `test`; rejects naming `what` when serve exits first or `ms` pass. */
  waitFor: (test: (line: Record<string, unknown>) => boolean, what: string, ms?: number) => Promise<Record<string, unknown>>;
}

/** `relay365 serve --config FILE` (the built CLI); resolves once it prints that it is serving. */
export function serveWithLogs(file: string): Promise<LoggedServe> {
  const child = spawn(process.execPath, [CLI, 'serve', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Array<Record<string, unknown>> = [];
  createInterface({ input: child.stderr }).on('line', (l) => {
    try {
      lines.push(JSON.parse(l) as Record<string, unknown>);
    } catch {
      lines.push({ text: l });
    }
  });
  const waitFor: LoggedServe['waitFor'] = async (test, what, ms = 20_000) => {
    const end = Date.now() + ms;
    for (;;) {
      const found = lines.find(test);
      if (found) return found;
      if (child.exitCode !== null) throw new Error(`serve exited (${child.exitCode}) before ${what}: ${JSON.stringify(lines.slice(-5))}`);
      if (Date.now() > end) throw new Error(`no ${what} within ${ms} ms: ${JSON.stringify(lines.slice(-5))}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (line.startsWith('relay365 serving')) resolve({ child, lines, waitFor });
    });
    child.once('exit', (code) => reject(new Error(`serve exited ${code}: ${JSON.stringify(lines.slice(-5))}`)));
  });
}

/** What the demo printed at start-up, and the running process. */
export interface SandboxDemo {
  child: ChildProcess;
  /** Everything it printed on stdout up to its last start-up line. */
  stdout: string;
  stderr: () => string;
}

/**
 * Starts the demo as `npm start` runs it: `node dist/cli/main.js serve --sandbox` in `cwd`, with npm's
 * `npm_lifecycle_event=start`. Resolves once it has printed its start-up text (its last line is the
 * `queue list` step); rejects if it exits first or prints nothing of the kind within 30 s. `env` can move
 * its ports off the defaults (RELAY365_SMTP__LISTENERS, RELAY365_HTTP__PORT) when tests run side by side.
 */
export function startSandboxDemo(cwd: string, env: NodeJS.ProcessEnv = {}): Promise<SandboxDemo> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'serve', '--sandbox'], {
      cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, npm_lifecycle_event: 'start', ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-20_000)));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`serve --sandbox printed no start-up text in 30 s; stdout: ${stdout}; stderr: ${stderr}`));
    }, 30_000);
    const lines = createInterface({ input: child.stdout });
    const onLine = (line: string): void => {
      stdout += `${line}\n`;
      if (!/^ +\S.* queue list\b/.test(line)) return;
      clearTimeout(timer);
      lines.off('line', onLine);
      child.off('exit', onExit);
      resolve({ child, stdout, stderr: () => stderr });
    };
    const onExit = (code: number | null): void => {
      clearTimeout(timer);
      reject(new Error(`serve --sandbox exited with ${code}; stdout: ${stdout}; stderr: ${stderr}`));
    };
    lines.on('line', onLine);
    child.once('exit', onExit);
  });
}
