import { isDeepStrictEqual } from 'node:util';
import { resolveSecret, type Config } from '../config/index.js';
import { Relay365Error } from '../errors.js';
import type { MailboxTransports } from '../delivery/index.js';
import type { Identity } from '../identity/index.js';
import type { SmtpIngress } from '../ingress/smtp/index.js';
import { setLogLevel, type Logger, type WebhookDispatcher } from '../observe/index.js';
import type { DeliveryWorker, RetentionSweeper, Router } from '../outbox/index.js';
import type { BounceReaders } from './bounces.js';

/**
 * Reloading the config of a running relay (`SIGHUP`, `systemctl reload`): what may change without a
 * restart, how a new config is checked before anything changes, and how it reaches each part.
 *
 * A reload either applies in full or not at all: every part first prepares what it needs (the SMTP
 * policy and certificate, the token sources, the webhook secrets) and may refuse; only when all have
 * prepared does each switch over. Connections and sends under way are never cut: a session keeps its
 * login, a send in flight finishes under the mailbox settings it started with.
 */

/**
 * What a reload applies, as dotted config paths (a path and everything under it). Anything else that
 * changed needs a restart: the running relay keeps its value and the reload says so.
 */
export const RELOADABLE_PATHS: readonly string[] = [
  'log.level',
  'auth',
  'mailboxes',
  'mailboxes[].bounces',
  'limits',
  'smtp.users',
  'smtp.allowlist',
  'smtp.certFile',
  'smtp.keyFile',
  'smtp.tls',
  'smtp.maxMessageBytes',
  'smtp.maxRecipients',
  'smtp.maxConnectionsPerClient',
  'smtp.maxConnections',
  'smtp.maxCommandsPerConnection',
  'smtp.preAuthTimeoutSeconds',
  'smtp.maxPreAuthConnectionsPerClient',
  'smtp.reservedConnections',
  'smtp.dataTimeoutSeconds',
  'smtp.lockoutFailures',
  'smtp.lockoutWindowSeconds',
  'smtp.lockoutSeconds',
  'http.adminPassword',
  'http.requestTimeoutSeconds',
  'http.maxConcurrentLargeBodies',
  'http.webhooks',
  'queue.retention',
];

/** What a reload did: the paths it applied, and those it kept because they need a restart. */
export interface ReloadReport {
  changed: string[];
  restartRequired: string[];
  /** The config the relay now runs with: the new one, but for the paths in `restartRequired`. */
  config: Config;
  /** App credentials (secret, key, certificate files and references) read again before their next token request. */
  credentialsReread?: number;
}

/**
 * The paths that differ between two configs: a top-level field (`mailboxes`, `auth`, `dataDir`), or a
 * field of a section (`smtp.users`, `queue.url`). Mailboxes whose NDR reading changed are named
 * `mailboxes[].bounces` as well: their readers start or stop.
 */
export function configChanges(prev: Config, next: Config): string[] {
  const changes: string[] = [];
  for (const key of new Set([...Object.keys(prev), ...Object.keys(next)]) as Set<keyof Config>) {
    const a: unknown = prev[key];
    const b: unknown = next[key];
    if (isDeepStrictEqual(a, b)) continue;
    const section = typeof a === 'object' && a !== null && !Array.isArray(a) && typeof b === 'object' && b !== null && !Array.isArray(b);
    if (!section || key === 'auth') {
      changes.push(key);
      continue;
    }
    const x = a as Record<string, unknown>;
    const y = b as Record<string, unknown>;
    for (const field of new Set([...Object.keys(x), ...Object.keys(y)])) if (!isDeepStrictEqual(x[field], y[field])) changes.push(`${key}.${field}`);
  }
  const readers = (c: Config) => new Map(c.mailboxes.map((m) => [m.address.toLowerCase(), m.bounces ?? null]));
  const [before, after] = [readers(prev), readers(next)];
  if ([...new Set([...before.keys(), ...after.keys()])].some((m) => !isDeepStrictEqual(before.get(m) ?? null, after.get(m) ?? null)))
    changes.push('mailboxes[].bounces');
  return changes;
}

const reloadable = (path: string): boolean => RELOADABLE_PATHS.some((p) => path === p || path.startsWith(`${p}.`));

/** `next`, with the running value of every path that needs a restart. */
function keepRestartOnly(prev: Config, next: Config, restartOnly: readonly string[]): Config {
  const out = structuredClone(next) as Record<string, unknown>;
  for (const path of restartOnly) {
    const [section, field] = path.split('.') as [keyof Config, string | undefined];
    if (field === undefined) out[section] = structuredClone(prev[section]);
    else (out[section] as Record<string, unknown>)[field] = structuredClone((prev[section] as Record<string, unknown>)[field]);
  }
  return out as Config;
}

/** The running parts a reload reaches (src/runtime/relay.ts builds them). */
export interface ReloadParts {
  logger: Logger;
  env: NodeJS.ProcessEnv;
  identity: Identity;
  router: Router;
  worker: DeliveryWorker;
  transport: MailboxTransports;
  /** `mailboxes[].maxConnections`, read by the SMTP transport when it opens a mailbox's pool. */
  connectionCaps: Map<string, number>;
  smtp: SmtpIngress | undefined;
  webhooks: WebhookDispatcher | undefined;
  retention: RetentionSweeper;
  /** The NDR readers (`mailboxes[].bounces.read`). */
  bounces?: Pick<BounceReaders, 'prepareReload'>;
  /** The metrics, whose per-mailbox series start at 0 for a mailbox added. */
  metrics?: { addMailboxes(mailboxes: readonly string[]): void };
  /** The dashboard's password (`http.adminPassword`, resolved), when the HTTP door listens; read at each request. */
  adminPassword?: { set(password: string | undefined): void };
}

/**
 * Resolves `http.adminPassword` again, its reference changed or not: a rotated file (or the file a
 * new reference names) is read now, and a reference that cannot be resolved refuses the reload.
 * Returns what sets it, `undefined` (the dashboard off) when the config has none.
 */
async function prepareAdminPassword(target: NonNullable<ReloadParts['adminPassword']>, ref: string | undefined, env: NodeJS.ProcessEnv): Promise<() => void> {
  let password: string | undefined;
  try {
    password = ref === undefined ? undefined : await resolveSecret(ref, env);
  } catch (err) {
    // Its message names the variable or the file, never a secret's value.
    const message = err instanceof Error ? err.message : String(err);
    throw new Relay365Error('R365_SECRET_UNRESOLVED', `http.adminPassword: ${message}`, {
      cause: err,
      details: { issues: [{ path: 'http.adminPassword', message }] },
    });
  }
  return () => target.set(password);
}

/**
 * Applies `next` to the running relay whose config is `prev`, in full or not at all.
 * @throws the first part's refusal (a Relay365Error such as `R365_CONFIG_INVALID`,
 *   `R365_TLS_CERTIFICATE_UNUSABLE`, `R365_SECRET_UNRESOLVED`), with nothing changed.
 */
export async function reloadRelay(parts: ReloadParts, prev: Config, next: Config): Promise<ReloadReport> {
  const changes = configChanges(prev, next);
  const restartRequired = changes.filter((p) => !reloadable(p));
  const config = keepRestartOnly(prev, next, restartRequired);
  const changed = changes.filter((p) => reloadable(p));
  // Before anything changes: a dashboard password that cannot be read refuses the reload whole.
  const applyAdminPassword = parts.adminPassword ? await prepareAdminPassword(parts.adminPassword, config.http.adminPassword, parts.env) : undefined;
  // A rotated secret or certificate file is the commonest reason to reload, with the config unchanged:
  // read every app credential again before its next token request (held tokens stay in use).
  const credentialsReread = parts.identity.reloadCredentials();
  if (changed.length === 0) {
    applyAdminPassword?.();
    return { changed, restartRequired, config, credentialsReread };
  }

  // Prepare: every check and every file read happens here, before anything changes.
  const applySmtp = parts.smtp ? await parts.smtp.prepareReload({ config: config.smtp, limits: config.limits }) : undefined;
  const identityChanged = changed.some((p) => p === 'auth' || p === 'mailboxes');
  const applyIdentity = identityChanged ? await parts.identity.prepareReload(config) : undefined;
  const applyBounces = identityChanged ? await parts.bounces?.prepareReload(config) : undefined;
  const receivers =
    parts.webhooks && changed.includes('http.webhooks')
      ? await Promise.all(config.http.webhooks.map(async (w) => ({ url: w.url, secret: await resolveSecret(w.secret, parts.env), events: w.events })))
      : undefined;

  // Apply: nothing below can fail on the config.
  applyIdentity?.();
  parts.router.replace(config.mailboxes);
  parts.connectionCaps.clear();
  for (const m of config.mailboxes) if (m.maxConnections) parts.connectionCaps.set(m.address.toLowerCase(), m.maxConnections);
  parts.transport.update(config.mailboxes);
  parts.worker.updateMailboxes(config);
  parts.metrics?.addMailboxes(config.mailboxes.map((m) => m.address));
  applySmtp?.();
  if (receivers) parts.webhooks?.updateReceivers(receivers);
  parts.retention.update(config.queue.retention);
  applyAdminPassword?.();
  if (changed.includes('log.level')) setLogLevel(parts.logger, config.log.level);
  // Last: a removed or changed mailbox's reader finishes the report it is applying first.
  await applyBounces?.();
  return { changed, restartRequired, config, credentialsReread };
}

/** The problems of a refused reload, one line each (a config's issues, or the refusal's message). */
function problemsOf(err: unknown): string[] {
  const issues = (err as { details?: { issues?: Array<{ path: string; message: string }> } }).details?.issues;
  if (Array.isArray(issues) && issues.length > 0) return issues.map((i) => `${i.path}: ${i.message}`);
  return [err instanceof Error ? err.message : String(err)];
}

/**
 * Reloads on `SIGHUP` (what `systemctl reload` sends with `ExecReload=kill -HUP $MAINPID`): `load`
 * reads and checks the config file again, the relay applies it. Logs `config.reloaded` with the paths
 * applied, `config.restart_required` with those kept, or `config.reload_refused` with every problem, the
 * running config unchanged. Returns what stops listening.
 */
export function reloadOnSignal(options: {
  relay: { reload(next: Config): Promise<ReloadReport> };
  load: () => Promise<Config>;
  logger: Logger;
  signal?: NodeJS.Signals;
}): () => void {
  const { relay, load, logger } = options;
  const signal = options.signal ?? 'SIGHUP';
  const onSignal = (): void => {
    logger.info({ event: 'config.reloading', signal }, 'reading the config file again');
    load()
      .then((next) => relay.reload(next))
      .then(
        (report) => {
          logger.info(
            { event: 'config.reloaded', changed: report.changed, restartRequired: report.restartRequired, credentialsReread: report.credentialsReread },
            report.changed.length > 0 ? `config reloaded: ${report.changed.join(', ')}` : 'config reloaded: nothing that a reload applies changed',
          );
          if (report.restartRequired.length > 0)
            logger.warn(
              { event: 'config.restart_required', paths: report.restartRequired },
              `these changes need a restart and are not applied (the running values are kept): ${report.restartRequired.join(', ')}`,
            );
        },
        (err: unknown) => {
          const problems = problemsOf(err);
          logger.error(
            { event: 'config.reload_refused', code: (err as { code?: string }).code, problems },
            `config reload refused; still running with the previous config:\n  - ${problems.join('\n  - ')}`,
          );
        },
      );
  };
  process.on(signal, onSignal);
  return () => void process.off(signal, onSignal);
}
