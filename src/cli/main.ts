#!/usr/bin/env node
// The relay365 CLI entry: the only place that calls process.exit.
import { reexecWithServeFlags } from './node-flags.js';

// First, before the rest of the CLI is even loaded: `serve` replaces itself with a process whose young
// generation is sized for a long-running service (node-flags.ts), and does not come back here.
reexecWithServeFlags();
const { buildProgram } = await import('./program.js');
const { reportError } = await import('./output.js');

// A second SIGINT/SIGTERM while a graceful stop runs exits at once; the outbox keeps what was accepted.
// Without a graceful stop registered (every command but serve and sandbox), the first signal exits.
let signals = 0;
const hurry = (signal: NodeJS.Signals): void => {
  signals += 1;
  if (signals > 1 || process.listenerCount(signal) <= 1) process.exit(130);
};
process.on('SIGINT', hurry);
process.on('SIGTERM', hurry);

// Last resort: a promise some part forgot to handle must not take down a relay that holds open
// sessions and sends in flight (Node's default ends the process). Written as one JSON line on stderr,
// redacted like every log line; a bug to report, never a reason to drop the service.
process.on('unhandledRejection', (reason) => {
  void import('../observe/logger.js').then(({ createLogger }) =>
    createLogger({ destination: process.stderr }).error({ err: reason }, 'unhandled promise rejection (a bug: please report it); relay365 keeps running'),
  );
});

const program = buildProgram();
try {
  await program.parseAsync(process.argv);
} catch (err) {
  process.exitCode = reportError(err);
}
