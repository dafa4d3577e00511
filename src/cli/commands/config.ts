import { Command } from 'commander';
import type { ConfigIssue } from '../../config/index.js';
import { isRelay365Error } from '../../errors.js';
import { configOption, configPath } from '../context.js';

const HELP = `
config check loads the config exactly as serve does, at start and on SIGHUP (the same file lookup:
--config, $RELAY365_CONFIG, ./relay365.yaml; the same RELAY365_* overrides), and so runs exactly the
checks serve runs on it: every field's type, range and format (CIDR ranges, password hashes, tenant and
client ids, durations), the rules across fields (each mailbox's sign-in settings, duplicate users and
mailboxes, retention) and those that read the environment (queue.encryptBodies with queue.url needs
RELAY365_SECRET_KEY). Every problem is printed, each with its path (smtp.allowlist[0].cidr).
It reads no secret, key or certificate file and reaches no network: relay365 doctor does that.

--json prints one object: { "ok": boolean, "config": string | null, "problems": [ { "path", "message" } ] }

Exit status: 0 when the config passes, 78 (EX_CONFIG, as serve exits on it) when it has problems,
1 when the file cannot be read.`;

/** The problems of a refused config: its issues, or the refusal itself (a file that is not YAML). */
function problemsOf(err: { message: string; details?: Record<string, unknown> | undefined }): ConfigIssue[] {
  const issues = err.details?.issues;
  if (Array.isArray(issues) && issues.length > 0) return issues as ConfigIssue[];
  return [{ path: '(root)', message: err.message }];
}

/** `relay365 config check`: the verdict serve would give on the config, without starting anything. */
export function configCommand(): Command {
  const config = new Command('config').description('The config file: config check runs the checks serve runs on it, without starting anything.');
  config
    .command('check')
    .description('Check the config as serve does (every problem, with its path) without starting the relay; exit 0 when serve would accept it.')
    .addOption(configOption({ sandboxDemo: false }))
    .option('--json', 'print the result as JSON (see below)')
    .addHelpText('after', HELP)
    .action(async (flags: { config?: string; json?: boolean }) => {
      // The lookup serve uses: never the config a sandbox demo wrote, which serve does not read either.
      const path = configPath(flags.config, process.env, { sandboxDemo: false });
      const { loadConfig } = await import('../../config/load.js');
      const shown = path ?? '(no config file: defaults and RELAY365_* overrides)';
      let problems: ConfigIssue[] = [];
      let summary = '';
      try {
        const loaded = await loadConfig(path === undefined ? {} : { path });
        const mailboxes = loaded.mailboxes.map((m) => m.address).join(', ') || 'no mailbox';
        summary = `${loaded.mailboxes.length} mailbox(es): ${mailboxes}`;
      } catch (err) {
        if (!isRelay365Error(err, 'R365_CONFIG_INVALID')) throw err;
        problems = problemsOf(err);
      }
      if (flags.json) {
        console.log(JSON.stringify({ ok: problems.length === 0, config: path ?? null, problems }, null, 2));
      } else if (problems.length === 0) {
        console.log(`${shown}: passes every check serve runs on a config (${summary}).`);
      } else {
        console.log(`${shown}: ${problems.length} problem(s); serve would refuse to start with it, and a SIGHUP reload would keep the running config:`);
        for (const p of problems) console.log(`  - ${p.path}: ${p.message}`);
      }
      // 78: EX_CONFIG (sysexits.h), the status serve exits with on the same config.
      process.exitCode = problems.length === 0 ? 0 : 78;
    });
  return config;
}
