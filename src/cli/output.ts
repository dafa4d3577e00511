import { CommanderError } from 'commander';
import { isRelay365Error } from '../errors.js';
import { scrubSecrets } from '../observe/redact.js';

/** Prints an error for a person (or as JSON with `--json`) and returns the exit code to use. */
export function reportError(err: unknown, json = process.argv.includes('--json')): number {
  if (err instanceof CommanderError) {
    // Help and --version end with exit code 0; a usage error was printed by commander (see program.ts).
    if (err.exitCode !== 0 && json) {
      const message = err.code === 'commander.help' ? 'This command needs a subcommand; run it with --help for the list.' : err.message.replace(/^error: /, '');
      console.log(JSON.stringify({ ok: false, error: { code: 'R365_CLI_USAGE', message } }));
    }
    return err.exitCode;
  }
  const code = isRelay365Error(err) ? err.code : 'R365_UNEXPECTED';
  const message = scrubSecrets(err instanceof Error ? err.message : String(err));
  if (json) console.log(JSON.stringify({ ok: false, error: { code, message } }));
  else {
    console.error(`relay365: ${message} [${code}]`);
    // Every mistake a user can make has a code of its own (docs/errors.md); anything else is a bug.
    if (!isRelay365Error(err)) console.error('This is unexpected (a bug in relay365): please report it with the command and its output with --json.');
  }
  return isRelay365Error(err) && err.code === 'R365_CONFIG_INVALID' ? 78 : 1; // 78: EX_CONFIG (sysexits.h)
}

/** Waits for SIGINT or SIGTERM, then runs `stop` once. */
export function onShutdown(stop: () => Promise<void>): Promise<void> {
  return new Promise((resolve) => {
    const handler = (): void => {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
      void stop().finally(resolve);
    };
    process.on('SIGINT', handler);
    process.on('SIGTERM', handler);
  });
}
