#!/usr/bin/env node
// The relay365 CLI entry: the only place that calls process.exit.
import { buildProgram } from './program.js';
import { reportError } from './output.js';

// A second SIGINT/SIGTERM while a graceful stop runs exits at once; the outbox keeps what was accepted.
// Without a graceful stop registered (every command but serve and sandbox), the first signal exits.
let signals = 0;
const hurry = (signal: NodeJS.Signals): void => {
  signals += 1;
  if (signals > 1 || process.listenerCount(signal) <= 1) process.exit(130);
};
process.on('SIGINT', hurry);
process.on('SIGTERM', hurry);

const program = buildProgram();
try {
  await program.parseAsync(process.argv);
} catch (err) {
  process.exitCode = reportError(err);
}
