#!/usr/bin/env node
// The relay365 CLI entry: the only place that calls process.exit.
import { buildProgram } from './program.js';
import { reportError } from './output.js';

const program = buildProgram();
try {
  await program.parseAsync(process.argv);
} catch (err) {
  process.exitCode = reportError(err);
}
