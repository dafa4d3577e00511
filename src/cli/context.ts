import { existsSync } from 'node:fs';
import { Option } from 'commander';
import type { Config } from '../config/index.js';
import { Relay365Error } from '../errors.js';
import type { Logger } from '../observe/index.js';
import type { TokenCacheStore } from '../identity/index.js';
import { runningSandboxDemoConfig, sandboxDemoConfigPath } from './sandbox-demo.js';

// Every module a command needs beyond commander is imported when the command runs, not when the CLI
// starts: `relay365 --help` or `relay365 user add` must not load the relay, MSAL, fastify and pg first.

/** `--config FILE`, shared by every command that reads the config; `sandboxDemo: false` as for {@link configPath}. */
export function configOption(options: { sandboxDemo?: boolean } = {}): Option {
  const demo = options.sandboxDemo === false ? '' : ', else the config of the sandbox demo running in this folder';
  return new Option('-c, --config <file>', `config file (default: $RELAY365_CONFIG, else ./relay365.yaml when present${demo})`);
}

/**
 * Where the config comes from: the flag, then RELAY365_CONFIG, then ./relay365.yaml if it exists, then
 * (unless `sandboxDemo: false`) the config a running `serve --sandbox` wrote under the data folder
 * (`./data`, or RELAY365_DATA_DIR), so commands in a second shell reach the demo's sandbox.
 * @throws Relay365Error `R365_CONFIG_NOT_FOUND` when only a stopped demo's config is there
 */
export function configPath(flag: string | undefined, env: NodeJS.ProcessEnv = process.env, options: { sandboxDemo?: boolean } = {}): string | undefined {
  if (flag) return flag;
  if (env.RELAY365_CONFIG) return env.RELAY365_CONFIG;
  if (existsSync('relay365.yaml')) return 'relay365.yaml';
  if (options.sandboxDemo === false) return undefined;
  return runningSandboxDemoConfig(sandboxDemoConfigPath(env.RELAY365_DATA_DIR || './data'));
}

/**
 * Loads the config and a logger writing to stderr (stdout is for the command's own output).
 *
 * `daemon: true` (serve) logs at `log.level` as configured, default `info`: a relay's log is its record
 * of what it accepted, refused and sent. A one-shot command (doctor, token, test, queue...) prints its own
 * result, so at the default `info` it logs only warnings and errors, unless the level was set explicitly
 * (`log.level` in the file, or `RELAY365_LOG__LEVEL`): then it logs at that level too.
 */
export async function cliContext(
  flags: { config?: string },
  options: { sandboxDemo?: boolean; daemon?: boolean } = {},
): Promise<{ config: Readonly<Config>; logger: Logger }> {
  const path = configPath(flags.config, process.env, options);
  const [{ loadConfig }, { createLogger }] = await Promise.all([import('../config/load.js'), import('../observe/logger.js')]);
  const config = await loadConfig(path === undefined ? {} : { path });
  const quiet = options.daemon !== true && config.log.level === 'info' && !(await logLevelSet(path, process.env));
  const logger = createLogger({ level: quiet ? 'warn' : config.log.level, destination: process.stderr });
  return { config, logger };
}

/** Whether the user chose `log.level` (the environment override, or a `log.level` key in the config file). */
async function logLevelSet(path: string | undefined, env: NodeJS.ProcessEnv): Promise<boolean> {
  if (env.RELAY365_LOG__LEVEL) return true;
  if (path === undefined) return false;
  const [{ readFile }, { parse }] = await Promise.all([import('node:fs/promises'), import('yaml')]);
  // loadConfig has just read and validated this file: it exists and is a mapping.
  const raw = parse(await readFile(path, 'utf8')) as { log?: { level?: unknown } } | null;
  return raw?.log?.level !== undefined;
}

/** The mailbox a command acts on: the flag, or the only configured one. */
export function pickMailbox(config: Config, flag: string | undefined): string {
  if (flag) return flag;
  const first = config.mailboxes[0];
  if (config.mailboxes.length === 1 && first) return first.address;
  if (config.mailboxes.length === 0) {
    throw new Relay365Error(
      'R365_NO_MAILBOX_CONFIGURED',
      'No mailbox is configured: add one under mailboxes: in the config (relay365 init writes one), or point --config at the file the relay runs with.',
    );
  }
  const addresses = config.mailboxes.map((m) => m.address);
  throw new Relay365Error('R365_MAILBOX_NOT_CHOSEN', `Several mailboxes are configured: choose one with --mailbox (${addresses.join(', ')}).`, {
    details: { mailboxes: addresses },
  });
}

/**
 * The token cache a command should use: with `queue.url` the one the cluster shares (so `relay365 login`
 * on one node serves every node), else the encrypted files under `dataDir`. `close` releases it.
 */
export async function cliTokenCache(config: Config): Promise<{ cacheStore?: TokenCacheStore; close: () => Promise<void> }> {
  const { openSharedTokenCache } = await import('../runtime/stores.js');
  const shared = await openSharedTokenCache(config);
  return shared ? { cacheStore: shared, close: () => shared.close() } : { close: () => Promise.resolve() };
}
