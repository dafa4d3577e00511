/**
 * What the benchmarks share: the machine line, a `relay365 serve` child process whose peak RSS is read
 * from /proc, a sandbox in the bench process, percentiles, results as Markdown and JSON.
 * Everything listens and connects on 127.0.0.1 only.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { DEFAULT_IDS, defaultScenario, parseScenario, startSandbox, type Sandbox, type Scenario } from '../src/sandbox/index.js';

/** The built CLI (`npm run bench` builds it first). */
export const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));

/** The CLI `startServe` runs: this tree's, or a base build's (`BENCH_BASE`, run.ts). */
let serveCli = CLI;
export function useCli(path: string): void {
  serveCli = path;
}
/** The CLI `startServe` runs now (for a scenario that also uses that build's modules, such as its outbox). */
export function currentCli(): string {
  return serveCli;
}
export const RESULTS_DIR = fileURLToPath(new URL('./results/', import.meta.url));
export const MAILBOX = DEFAULT_IDS.mailbox;

/** One row of a result table: column name to value. */
export type Row = Record<string, string | number>;

/** What a scenario reports; `run.ts` prints it as Markdown and writes it as JSON. */
export interface ScenarioResult {
  name: string;
  title: string;
  columns: string[];
  rows: Row[];
  /** Targets from the issue, each with whether this run met it. */
  targets: Array<{ what: string; value: string; met: boolean }>;
  /**
   * Targets against the base build (`BENCH_BASE`): this tree's value of `column` in the row whose first
   * column is `row`, divided by the base's, must be at most `maxRatio` ("at most half of today's": 0.5)
   * and at least `minRatio` ("8× today's": 8).
   */
  relativeTargets?: Array<{ what: string; row: string; column: string; maxRatio?: number; minRatio?: number }>;
  notes: string[];
}

export interface Machine {
  cpu: string;
  cores: number;
  node: string;
  ramGb: number;
}

export function machine(): Machine {
  let cpu = cpus()[0]?.model ?? 'unknown';
  try {
    cpu = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpu;
  } catch {
    // Not Linux: os.cpus() already gave the model.
  }
  return { cpu, cores: cpus().length, node: process.version, ramGb: Math.round((totalmem() / 2 ** 30) * 10) / 10 };
}

export function machineLine(m: Machine = machine()): string {
  return `${m.cpu}, ${m.cores} cores, ${m.ramGb} GB RAM, Node ${m.node}, ${process.platform}`;
}

/** How the machine was doing when a run started: every latency figure depends on it. */
export interface MachineState {
  /** 1-minute load average. */
  load1: number;
  /** How late a 10 ms timer fires on this idle process, ms (p50 and max of 50): a virtual machine whose vCPUs wake late shows it here. */
  timerLateP50Ms: number;
  timerLateMaxMs: number;
}

export async function machineState(): Promise<MachineState> {
  const late: number[] = [];
  for (let i = 0; i < 50; i++) {
    const t = performance.now();
    await sleep(10);
    late.push(performance.now() - t - 10);
  }
  return { load1: round(loadavg()[0] ?? NaN, 2), timerLateP50Ms: round(percentile(late, 50)), timerLateMaxMs: round(Math.max(...late)) };
}

export function machineStateLine(s: MachineState): string {
  return `load average ${s.load1}; a 10 ms timer fires ${s.timerLateP50Ms} ms late (p50), ${s.timerLateMaxMs} ms at worst`;
}

/** A whole-number setting from the environment, or the default. */
export function envInt(name: string, fallback: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name}=${v} is not a positive whole number`);
  return n;
}

export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export async function tempDir(prefix: string): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, cleanup: () => rm(path, { recursive: true, force: true }) };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Waits until `check` holds; false when `timeoutMs` passed first. */
export async function until(check: () => boolean, timeoutMs: number, pollMs = 5): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) return false;
    await sleep(pollMs);
  }
  return true;
}

/** The p-th percentile (0..100) by nearest rank; NaN for no samples. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export const round = (n: number, digits = 1): number => Math.round(n * 10 ** digits) / 10 ** digits;

/** Resident set size of a process from /proc/<pid>/status: `VmHWM` is its peak, `VmRSS` its current. */
export function rssMb(pid: number, field: 'VmHWM' | 'VmRSS' = 'VmHWM'): number {
  try {
    const m = new RegExp(`^${field}:\\s*(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? round(Number(m[1]) / 1024) : NaN;
  } catch {
    return NaN;
  }
}

/**
 * CPU time (user + system) a process has used so far, in ms, from /proc/<pid>/stat (fields 14 and 15,
 * in clock ticks of 1/100 s on Linux); NaN where /proc is missing.
 */
export function cpuMs(pid: number): number {
  try {
    // The command name (field 2) is in parentheses and may hold spaces: count fields after it.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return NaN;
  }
}

/**
 * Bytes a process has caused to be written to storage so far, from `write_bytes` of /proc/<pid>/io
 * (for the relay: its outbox's write-ahead log and the checkpoints that copy it into the database file;
 * a page dirtied again before it reaches the disk counts once); NaN where /proc is missing.
 */
export function diskWriteBytes(pid: number): number {
  try {
    const m = /^write_bytes:\s*(\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'));
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

/** A sandbox in this process, files in a temporary folder, with the scenario changed by `change`. */
export async function benchSandbox(change?: (s: Scenario) => void): Promise<Sandbox> {
  const dir = await tempDir('relay365-bench-sandbox-');
  const s = structuredClone(defaultScenario());
  change?.(s);
  const sandbox = await startSandbox({ dataDir: dir.path, scenario: parseScenario(s, 'bench scenario') });
  return {
    ...sandbox,
    close: async () => {
      await sandbox.close();
      await dir.cleanup();
    },
  };
}

/** The config of a relay that sends through `sandbox` as its default app-only mailbox; `extra` is merged on top. */
export function relayConfig(sandbox: Sandbox, dataDir: string, extra: Record<string, unknown>): Record<string, unknown> {
  return {
    dataDir,
    log: { level: 'warn' },
    cloud: 'sandbox',
    sandbox: { url: sandbox.baseUrl, smtpHost: sandbox.smtpHost, smtpPort: sandbox.smtpPort, caFile: sandbox.caPath },
    auth: { flow: 'client-secret', tenant: DEFAULT_IDS.tenantId, clientId: DEFAULT_IDS.appClientId, clientSecret: DEFAULT_IDS.appSecret },
    mailboxes: [{ address: MAILBOX }],
    http: { enabled: false },
    ...extra,
  };
}

/** A running `relay365 serve` child process. */
export interface ServeProcess {
  child: ChildProcess;
  pid: number;
  /** Peak RSS so far (VmHWM), MB. */
  peakRssMb(): number;
  /** Current RSS (VmRSS), MB. */
  rssMb(): number;
  /** CPU time used so far (user + system), ms. */
  cpuMs(): number;
  /** Bytes written to storage so far (see {@link diskWriteBytes}). */
  diskWriteBytes(): number;
  alive(): boolean;
  stderr(): string;
  /** SIGTERM (graceful), SIGKILL after 15 s. */
  stop(): Promise<void>;
}

/**
 * Writes `config` as YAML into `dir` and starts `relay365 serve` on it; resolves once it prints that
 * it is serving. With BENCH_CPU_PROF=<folder>, the relay writes a V8 CPU profile there when it stops.
 */
export async function startServe(dir: string, config: Record<string, unknown>): Promise<ServeProcess> {
  const file = join(dir, 'relay365.yaml');
  await writeFile(file, stringify(config));
  const profDir = process.env.BENCH_CPU_PROF;
  if (profDir) await mkdir(profDir, { recursive: true });
  const args = [...(profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : []), serveCli, 'serve', '--config', file];
  const nodeOptions = process.env.BENCH_SERVE_NODE_OPTIONS;
  const env = nodeOptions === undefined ? process.env : { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} ${nodeOptions}`.trim() };
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  let stderr = '';
  let exited = false;
  child.stderr.on('data', (d: Buffer) => {
    // Keep the tail only: a long run must not grow the bench's own memory.
    stderr = (stderr + d.toString()).slice(-20_000);
  });
  child.once('exit', () => (exited = true));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`relay365 serve did not start within 20 s: ${stderr}`)), 20_000);
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (line.startsWith('relay365 serving')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`relay365 serve exited (${code ?? signal}) before serving: ${stderr}`));
    });
  });
  const pid = child.pid!;
  return {
    child,
    pid,
    peakRssMb: () => rssMb(pid, 'VmHWM'),
    rssMb: () => rssMb(pid, 'VmRSS'),
    cpuMs: () => cpuMs(pid),
    diskWriteBytes: () => diskWriteBytes(pid),
    alive: () => !exited,
    stderr: () => stderr,
    stop: async () => {
      if (exited) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await gone;
      clearTimeout(timer);
    },
  };
}

/**
 * A raw RFC 5322 message of about `bytes` bytes (headers plus base64-like body lines of 76
 * characters), so that clients spend nothing on MIME building while measured.
 */
export function rawMessage(bytes: number, tag: string, to = 'bench@example.net', from: string = MAILBOX): Buffer {
  const head = `From: <${from}>\r\nTo: <${to}>\r\nSubject: bench ${tag}\r\nMessage-ID: <${tag}@bench.example>\r\nDate: ${new Date().toUTCString()}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n`;
  const line = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/ABCDEFGHIJKL\r\n';
  const lines = Math.max(1, Math.ceil((bytes - head.length) / line.length));
  return Buffer.from(head + line.repeat(lines));
}

/** Runs `total` jobs on `workers` concurrent loops; stops taking new jobs once `deadline` (ms epoch) passes. */
export async function runPool(total: number, workers: number, deadline: number, job: (i: number, worker: number) => Promise<void>): Promise<number> {
  let next = 0;
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      for (let i = next++; i < total && Date.now() < deadline; i = next++) await job(i, w);
    }),
  );
  return Math.min(next, total);
}

export function markdown(result: ScenarioResult): string {
  const lines = [`### ${result.title}`, '', `| ${result.columns.join(' | ')} |`, `|${result.columns.map(() => '---').join('|')}|`];
  for (const row of result.rows) lines.push(`| ${result.columns.map((c) => String(row[c] ?? '')).join(' | ')} |`);
  if (result.targets.length > 0) {
    lines.push('', 'Targets:');
    for (const t of result.targets) lines.push(`- ${t.met ? 'met' : '**MISSED**'}: ${t.what} (${t.value})`);
  }
  for (const n of result.notes) lines.push('', `> ${n}`);
  return lines.join('\n');
}

/** Writes `bench/results/<date>-<name>.json` with the machine and the result. */
export async function writeResult(result: ScenarioResult, state?: MachineState): Promise<string> {
  await mkdir(RESULTS_DIR, { recursive: true });
  const date = new Date().toISOString().slice(0, 19).replace(/:/g, '-');
  const path = join(RESULTS_DIR, `${date}-${result.name}.json`);
  await writeFile(
    path,
    JSON.stringify({ date: new Date().toISOString(), machine: machine(), ...(state ? { machineState: state } : {}), ...result }, null, 2) + '\n',
  );
  return path;
}
