import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { sandboxCommand } from './commands/sandbox.js';
import { serveCommand } from './commands/serve.js';
import { queueCommand } from './commands/queue.js';
import { loginCommand } from './commands/login.js';
import { tokenCommand } from './commands/token.js';
import { permissionsCommand } from './commands/permissions.js';
import { sendCommand } from './commands/send.js';
import { testCommand } from './commands/test-send.js';
import { apikeyCommand } from './commands/apikey.js';
import { doctorCommand } from './commands/doctor.js';
import { configCommand } from './commands/config.js';
import { initCommand } from './commands/init.js';
import { userCommand } from './commands/user.js';
import { dbCommand } from './commands/db.js';
import { serviceCommand } from './commands/service.js';
import { suppressionCommand } from './commands/suppression.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

/** Builds the `relay365` command tree; parsing and exiting are the entry's business. */
export function buildProgram(): Command {
  const program = new Command('relay365')
    .description('Send mail through Microsoft 365 with OAuth2 (SMTP XOAUTH2 or Graph) from anything that speaks SMTP or HTTP.')
    .version(pkg.version)
    .showHelpAfterError('(run with --help for usage)');
  program.addCommand(serveCommand());
  program.addCommand(queueCommand());
  program.addCommand(loginCommand());
  program.addCommand(tokenCommand());
  program.addCommand(permissionsCommand());
  program.addCommand(sendCommand());
  program.addCommand(testCommand());
  program.addCommand(sandboxCommand());
  program.addCommand(apikeyCommand());
  program.addCommand(initCommand());
  program.addCommand(doctorCommand());
  program.addCommand(configCommand());
  program.addCommand(userCommand());
  program.addCommand(dbCommand());
  program.addCommand(serviceCommand());
  program.addCommand(suppressionCommand());
  reportUsageErrors(program);
  return program;
}

/**
 * Commander's own errors (unknown option, missing argument, a value outside `choices`) carry the
 * code `R365_CLI_USAGE` like every other mistake: marked in the text, and as the JSON error with
 * `--json` (printed by the entry's `reportError`). `exitOverride` makes commander throw instead of
 * exiting, so that only the entry calls `process.exit`; commands added with `addCommand` do not
 * inherit it, hence the walk.
 */
function reportUsageErrors(command: Command): void {
  command.exitOverride().configureOutput({
    outputError: (text, write) => {
      if (!process.argv.includes('--json')) write(`${text.trimEnd()} [R365_CLI_USAGE]\n`);
    },
  });
  for (const sub of command.commands) reportUsageErrors(sub);
}
