/**
 * The Node.js flags `relay365 serve` runs with, and the re-exec that applies them however the relay was
 * started (the unit, the container, the Windows service, `npm start`, a shell). Imported by the entry
 * before anything else: it must stay free of imports beyond Node's own.
 *
 * Why: V8 sizes its young generation for throughput, not for a service that runs for months on a small
 * VM. Under load, Node 24 lets the two semi-spaces grow to 32 MB each, and the buffers that die young
 * (every SMTP chunk) wait for the next scavenge with them. Measured on 2 cores (docs/operations.md,
 * "Memory"): 8 MB semi-spaces took the relay's peak under 8 SMTP clients from about 192 to 172 MB at the
 * same CPU per message, and kept the HTTP API's rate; 2 and 4 MB saved 20 MB more under SMTP load but
 * cost the HTTP API 12 to 18 % of its rate. V8 reads the size once, when the process starts, so it
 * cannot be set from inside (`v8.setFlagsFromString` comes too late): the process replaces itself, with
 * the same pid, arguments and environment, through `process.execve` (Node 22.15 and later, not on
 * Windows), before it has opened a file or a socket.
 */

/** The young generation's semi-space of `relay365 serve`, MB. */
export const SERVE_SEMI_SPACE_MB = 8;

/** Flags that size the young generation: one of them given by the operator wins over ours. */
const YOUNG_GENERATION_FLAGS = ['--max-semi-space-size', '--min-semi-space-size', '--semi-space-growth-factor'];

/**
 * The flags to add for this invocation, or none: only `serve` gets them (the other commands end within
 * seconds), and only when neither the command line nor NODE_OPTIONS sizes the young generation already
 * (which is also what keeps the re-exec from looping).
 */
export function serveNodeFlags(argv: readonly string[], execArgv: readonly string[], nodeOptions: string | undefined): string[] {
  const command = argv.slice(2).find((a) => !a.startsWith('-'));
  if (command !== 'serve') return [];
  const given = [...execArgv, ...(nodeOptions ?? '').split(/\s+/)];
  // V8 takes `--max_semi_space_size` as well as `--max-semi-space-size`.
  if (given.some((flag) => YOUNG_GENERATION_FLAGS.includes(flag.split('=')[0]!.replace(/_/g, '-')))) return [];
  return [`--max-semi-space-size=${SERVE_SEMI_SPACE_MB}`];
}

/**
 * Replaces this process with one that has `serveNodeFlags`, when there are any and the platform can:
 * never returns then. Anywhere it cannot (Windows, a Node without `process.execve`, an execve that
 * fails), the relay runs on as started, with Node's defaults.
 */
export function reexecWithServeFlags(): void {
  const flags = serveNodeFlags(process.argv, process.execArgv, process.env.NODE_OPTIONS);
  // Typed here: the project's @types/node (20) predates process.execve (Node 22.15, 23.11).
  const { execve } = process as { execve?: (file: string, args: string[], env: NodeJS.ProcessEnv) => never };
  if (flags.length === 0 || process.platform === 'win32' || typeof execve !== 'function') return;
  try {
    execve.call(process, process.execPath, [process.execPath, ...process.execArgv, ...flags, ...process.argv.slice(1)], process.env);
  } catch {
    // Runs on with Node's defaults: a larger young generation, nothing else changes.
  }
}
