import type { Config } from '../config/index.js';
import { transportDescriptor } from '../delivery/index.js';
import { isRelay365Error } from '../errors.js';
import { cloudEndpoints } from '../identity/index.js';
import { REDACTED, scrubSecrets, silentLogger } from '../observe/index.js';
import { CHECKS } from './checks.js';
import type { Check, CheckOutcome, CheckResult, DoctorContext, DoctorOptions, DoctorReport } from './types.js';

/** Secrets shorter than this are not searched for in the report: they would match ordinary words. */
const MIN_SECRET_LENGTH = 6;

/** Removes every secret the doctor saw, and anything secret-looking, from a result's texts. */
function scrubResult(result: CheckResult, secrets: ReadonlySet<string>): CheckResult {
  const clean = (text: string): string => {
    let out = text;
    for (const secret of secrets) if (secret.length >= MIN_SECRET_LENGTH) out = out.replaceAll(secret, REDACTED);
    return scrubSecrets(out);
  };
  return {
    ...result,
    detail: clean(result.detail),
    ...(result.cause !== undefined ? { cause: clean(result.cause) } : {}),
    ...(result.fix !== undefined ? { fix: clean(result.fix) } : {}),
  };
}

/** The result of a check that threw: a bug in relay365 or an unforeseen failure, reported rather than crashing the run. */
function unexpected(err: unknown): CheckResult {
  const message = err instanceof Error ? err.message : String(err);
  return {
    status: 'fail',
    detail: `the check stopped with an error${isRelay365Error(err) ? ` (${err.code})` : ''}`,
    cause: message,
    fix: isRelay365Error(err) ? `See docs/errors.md, ${err.code}.` : 'This is unexpected: please report it with the output of relay365 doctor --json.',
  };
}

/** Runs `checks` in order, skipping those whose dependencies failed. */
async function runChecks(checks: readonly Check[], ctx: DoctorContext, options: DoctorOptions): Promise<CheckOutcome[]> {
  const outcomes: CheckOutcome[] = [];
  // Checks that failed, or were skipped because one they need failed.
  const blocked = new Map<string, string>();
  for (const check of checks) {
    options.onStart?.(check);
    const blocker = check.dependsOn?.find((id) => blocked.has(id));
    let result: CheckResult;
    if (blocker !== undefined) {
      result = { status: 'skip', detail: `skipped: "${blocked.get(blocker) ?? blocker}" did not pass` };
      blocked.set(check.id, blocked.get(blocker) ?? blocker);
    } else if (transportDescriptor(ctx.transport).doctor.skips.includes(check.id)) {
      // A step of another transport (an SMTP session for a Graph mailbox): its descriptor says which.
      result = { status: 'skip', detail: transportDescriptor(ctx.transport).doctor.skipDetail };
    } else {
      try {
        result = await check.run(ctx);
      } catch (err) {
        result = unexpected(err);
      }
      if (result.status === 'fail') blocked.set(check.id, check.title);
    }
    result = scrubResult(result, ctx.secrets);
    outcomes.push({ id: check.id, title: check.title, ...result });
    options.onProgress?.(check, result);
  }
  return outcomes;
}

/**
 * Walks the setup of one mailbox step by step, the way a message goes out: config, DNS, TCP,
 * STARTTLS and the certificate, EHLO, the token and its claims, AUTH XOAUTH2, MAIL FROM and, with
 * `sendTest`, real messages. Each failure says why and how to fix it, from the catalogue. Nothing
 * it reports holds a token or a secret.
 *
 * @example
 * ```ts
 * const report = await runDoctor(config, { mailbox: 'relay@contoso.com' });
 * for (const r of report.results) console.log(r.status, r.title, r.detail, r.fix ?? '');
 * ```
 */
export async function runDoctor(config: Readonly<Config>, options: DoctorOptions = {}): Promise<DoctorReport> {
  const ctx: DoctorContext = {
    config,
    mailbox: undefined,
    requestedMailbox: options.mailbox,
    mailboxConfig: undefined,
    auth: undefined,
    cloud: cloudEndpoints(config),
    sendTest: options.sendTest,
    logger: options.logger ?? silentLogger(),
    env: options.env ?? process.env,
    transport: 'smtp',
    cacheStore: options.cacheStore,
    pausedMailboxes: options.pausedMailboxes,
    extraCas: [],
    secrets: new Set(),
  };
  try {
    const results = await runChecks(CHECKS, ctx, options);
    return { ok: results.every((r) => r.status !== 'fail'), mailbox: ctx.mailbox ?? options.mailbox, results };
  } finally {
    await ctx.probe?.close();
    ctx.identity?.close();
    await ctx.mailer?.close();
  }
}

/**
 * The report for a config that could not be loaded at all (missing file, invalid YAML, fields that
 * fail validation): the config check fails with the loader's message, and every other check is
 * skipped, so that the output has the same shape as any other run.
 */
export async function doctorReportForConfigError(error: unknown, options: DoctorOptions = {}): Promise<DoctorReport> {
  const message = error instanceof Error ? error.message : String(error);
  const notFound = isRelay365Error(error, 'R365_CONFIG_NOT_FOUND');
  // The only config in the folder is that of a sandbox demo (serve --sandbox) that has stopped.
  const demoStopped = notFound && error.details?.sandboxDemo === 'stopped';
  const configFailed: Check = {
    id: CHECKS[0]!.id,
    title: CHECKS[0]!.title,
    run: () =>
      Promise.resolve({
        status: 'fail',
        detail: demoStopped ? 'the sandbox demo has stopped' : notFound ? 'the config file cannot be read' : 'the config does not pass validation',
        cause: message,
        fix: demoStopped
          ? 'Start the demo again (npm start, or relay365 serve --sandbox), then run relay365 doctor in a second shell in the same folder.'
          : notFound
            ? 'Pass --config with the right path, or write a config with `relay365 init`.'
            : 'Correct each field listed; docs/configuration.md describes them all.',
        doc: demoStopped ? 'docs/sandbox.md' : 'docs/configuration.md',
      }),
  };
  const ctx = { secrets: new Set<string>() } as unknown as DoctorContext;
  const results = await runChecks([configFailed, ...CHECKS.slice(1)], ctx, options);
  return { ok: false, mailbox: options.mailbox, results };
}

/** One check in {@link DoctorJson}. */
export interface DoctorJsonCheck {
  id: string;
  title: string;
  status: CheckResult['status'];
  detail: string;
  cause?: string;
  fix?: string;
  doc?: string;
}

/**
 * The stable machine-readable form of a report, printed by `relay365 doctor --json`:
 * `{ ok, mailbox, checks: [{ id, title, status, detail, cause?, fix?, doc? }] }`, checks in run order.
 * Fields are only added, never renamed or removed (docs/microsoft-365-setup.md documents them).
 */
export interface DoctorJson {
  ok: boolean;
  mailbox: string | null;
  checks: DoctorJsonCheck[];
}

/** The report as {@link DoctorJson}. */
export function toDoctorJson(report: DoctorReport): DoctorJson {
  return {
    ok: report.ok,
    mailbox: report.mailbox ?? null,
    checks: report.results.map((r) => ({
      id: r.id,
      title: r.title,
      status: r.status,
      detail: r.detail,
      ...(r.cause !== undefined ? { cause: r.cause } : {}),
      ...(r.fix !== undefined ? { fix: r.fix } : {}),
      ...(r.doc !== undefined ? { doc: r.doc } : {}),
    })),
  };
}
