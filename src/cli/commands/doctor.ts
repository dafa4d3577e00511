import { Command } from 'commander';
import type { Config } from '../../config/index.js';
import type { Check, CheckResult, DoctorReport } from '../../doctor/index.js';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { isRelay365Error } from '../../errors.js';
import { cliTokenCache, configOption, configPath } from '../context.js';

const MARK: Record<CheckResult['status'], string> = { pass: 'pass', warn: 'warn', fail: 'FAIL', skip: 'skip' };
/** ANSI colours for a terminal: green, yellow, red, dim. */
const COLOUR: Record<CheckResult['status'], string> = { pass: '\x1b[32m', warn: '\x1b[33m', fail: '\x1b[31m', skip: '\x1b[2m' };
const RESET = '\x1b[0m';

/** The lines of one finished check: `[pass] title: detail`, then `  cause:` / `  fix:` / `  docs:` for warnings and failures. */
function formatResult(check: Check, result: CheckResult, colour: boolean): string[] {
  const mark = colour ? `${COLOUR[result.status]}[${MARK[result.status]}]${RESET}` : `[${MARK[result.status]}]`;
  const lines = [`${mark} ${check.title}: ${result.detail}`];
  if (result.status === 'fail' || result.status === 'warn') {
    if (result.cause) lines.push(`  cause: ${result.cause}`);
    if (result.fix) lines.push(`  fix: ${result.fix}`);
    if (result.doc) lines.push(`  docs: ${result.doc}`);
  }
  return lines;
}

/** Prints each check as it runs: on a terminal a `[ .. ]` line that is replaced by the result; otherwise result lines only. */
function printer(live: boolean): { onStart(check: Check): void; onProgress(check: Check, result: CheckResult): void } {
  return {
    onStart(check) {
      if (live) process.stdout.write(`[ .. ] ${check.title} ...`);
    },
    onProgress(check, result) {
      // \r and erase-line (CSI 2K) replace the "running" line with the result.
      if (live) process.stdout.write('\r\x1b[2K');
      // https://no-color.org: colour only on a terminal, and not when NO_COLOR is set.
      console.log(formatResult(check, result, live && !process.env.NO_COLOR).join('\n'));
    },
  };
}

function summary(report: DoctorReport): string {
  const failed = report.results.filter((r) => r.status === 'fail');
  const warned = report.results.filter((r) => r.status === 'warn');
  if (failed.length > 0) return `\n${failed.length} check(s) failed; the first is "${failed[0]!.title}". Fix it as shown, then run relay365 doctor again.`;
  if (warned.length > 0) return `\nSending works for ${report.mailbox ?? 'the mailbox'}; ${warned.length} warning(s) above are worth fixing.`;
  return `\nEvery check passed: relay365 can send as ${report.mailbox ?? 'the mailbox'}.`;
}

const HELP = `
Checks, in order (a check is skipped when one it needs failed):
  config, dns-authority, dns-smtp, tcp, tls, ehlo, token, claims, auth, mail-from, send-test, send-as, paused

paused reads the outbox: it fails while relay365 holds the mailbox paused (Exchange refused it until an
admin acts, or refused the sign-in), with the cause, the fix, since when, and the resume command.

--json prints one object, whose fields are only ever added to:
  { "ok": boolean, "mailbox": string | null,
    "checks": [ { "id", "title", "status": "pass"|"warn"|"fail"|"skip", "detail", "cause"?, "fix"?, "doc"? } ] }

--send-test sends a real message as the mailbox to ADDR, and one more from each of the mailbox's
aliases (Exchange checks SendAs only after the message is sent).

Exit status: 0 when no check failed (warnings and skipped checks allow 0), 1 when any check failed.
No token or secret is ever printed.`;

/** The paused mailboxes the outbox records (none when there is no outbox yet: the doctor creates no database). */
async function readPauses(config: Readonly<Config>) {
  if (config.queue.url === undefined && !existsSync(resolve(config.dataDir, config.queue.path))) return [];
  const { openOutboxStore } = await import('../../runtime/stores.js');
  const store = await openOutboxStore(config);
  try {
    return await store.mailboxPauses();
  } finally {
    await store.close();
  }
}

async function loadConfigForDoctor(flag: string | undefined): Promise<Readonly<Config>> {
  const path = configPath(flag);
  const { loadConfig } = await import('../../config/load.js');
  return loadConfig(path === undefined ? {} : { path });
}

/** `relay365 doctor`: walks the setup of a mailbox step by step and explains the first step that fails. */
export function doctorCommand(): Command {
  return new Command('doctor')
    .description(
      'Check the Microsoft 365 setup of a mailbox step by step (DNS, TCP, STARTTLS, token, claims, AUTH XOAUTH2, send) and print the fix for what fails.',
    )
    .addOption(configOption())
    .option('-m, --mailbox <address>', 'mailbox to check (default: the only configured one)')
    .option('--send-test <address>', 'also send a real test message to this address')
    .option('--json', 'print the result as JSON (see below)')
    .addHelpText('after', HELP)
    .action(async (flags: { config?: string; mailbox?: string; sendTest?: string; json?: boolean }) => {
      const { doctorReportForConfigError, runDoctor, toDoctorJson } = await import('../../doctor/index.js');
      const options = { mailbox: flags.mailbox, sendTest: flags.sendTest, ...(flags.json ? {} : printer(process.stdout.isTTY === true)) };
      const report = await loadConfigForDoctor(flags.config).then(
        async (config) => {
          // Delegated sign-ins live in the cluster's shared cache when there is one (queue.url).
          const cache = await cliTokenCache(config);
          try {
            return await runDoctor(config, {
              ...options,
              pausedMailboxes: () => readPauses(config),
              ...(cache.cacheStore ? { cacheStore: cache.cacheStore } : {}),
            });
          } finally {
            await cache.close();
          }
        },
        (err: unknown) => {
          // A config that cannot be loaded is the first check failing, not a crash: same output, same exit status.
          if (!isRelay365Error(err, 'R365_CONFIG_INVALID') && !isRelay365Error(err, 'R365_CONFIG_NOT_FOUND')) throw err;
          return doctorReportForConfigError(err, options);
        },
      );
      if (flags.json) console.log(JSON.stringify(toDoctorJson(report), null, 2));
      else console.log(summary(report));
      process.exitCode = report.ok ? 0 : 1;
    });
}
