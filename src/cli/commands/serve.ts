import { join, relative, resolve } from 'node:path';
import { Command } from 'commander';
import type { Config } from '../../config/index.js';
import { DEFAULT_IDS } from '../../sandbox/default-ids.js';
import type { Sandbox } from '../../sandbox/index.js';
import { cliContext, configOption, configPath } from '../context.js';
import { onShutdown } from '../output.js';
import {
  assertNoRunningSandboxDemo,
  sandboxDemoAdminPassword,
  writeSandboxDemoAppSecret,
  writeSandboxDemoConfig,
  type SandboxDemoConfigFile,
} from '../sandbox-demo.js';

/**
 * The demo's next steps, printed at start-up: the dashboard with its password, and the commands to run
 * in a second shell against this demo. Written as the command that works where it was started: `npx
 * relay365` under `npm start` (a clone has no relay365 on its PATH), `relay365` otherwise.
 */
function demoNextSteps(
  config: Config,
  httpAddress: string | undefined,
  configFile: string,
  password: { path: string; password: string } | undefined,
): string[] {
  const cli = process.env.npm_lifecycle_event ? 'npx relay365' : 'relay365';
  const shown = (path: string): string => relative(process.cwd(), path) || path;
  // The commands find the file themselves unless something comes first (RELAY365_CONFIG, ./relay365.yaml)
  // or it is not where they look (serve --config with another dataDir).
  let found: boolean;
  try {
    found = resolve(configPath(undefined) ?? '') === configFile;
  } catch {
    found = false;
  }
  const flag = found ? '' : ` --config ${shown(configFile)}`;
  const lines = [''];
  if (httpAddress && config.http.adminPassword !== undefined) {
    lines.push(`Dashboard: ${httpAddress}/`);
    lines.push(
      password
        ? `  user admin, password ${password.password}  (kept in ${shown(password.path)}, mode 0600)`
        : '  user admin, password: the one http.adminPassword names',
      '',
    );
  }
  lines.push(`In a second shell${found ? ', in this folder' : ''} (the commands read ${shown(configFile)}, the config this demo runs with):`);
  const to = 'you@example.net';
  const steps: Array<[string, string]> = [
    [`${cli} doctor${flag}`, 'check each setup step against the sandbox'],
    [`${cli} test${flag} --to ${to}`, 'send a test message and show the SMTP conversation'],
    [`${cli} token${flag}`, 'get a token and show its claims'],
  ];
  if (httpAddress) steps.push([`${cli} apikey create${flag} --name my-app`, `an API key for POST ${httpAddress}/v1/messages (docs/http-api.md)`]);
  steps.push([`${cli} queue list${flag}`, 'what the relay accepted and sent']);
  const width = Math.max(...steps.map(([command]) => command.length));
  for (const [command, what] of steps) lines.push(`  ${command.padEnd(width)}  ${what}`);
  return lines;
}

/**
 * The config `serve --sandbox` runs with: the given one pointed at an in-process sandbox; with no
 * mailbox configured, the sandbox's app-only mailbox; with no way in configured, loopback clients
 * may relay without AUTH (the sandbox is a try-out on this machine); with no admin password and an
 * `adminPasswordFile`, the dashboard on with the password in that file.
 */
export async function sandboxedConfig(config: Config, sandbox: Sandbox, options: { adminPasswordFile?: string; appSecretFile?: string } = {}): Promise<Config> {
  const { configSchema } = await import('../../config/schema.js');
  const noMailbox = config.mailboxes.length === 0;
  const noWayIn = config.smtp.users.length === 0 && config.smtp.allowlist.length === 0;
  const noDashboard = config.http.adminPassword === undefined && options.adminPasswordFile !== undefined;
  return configSchema.parse({
    ...config,
    cloud: 'sandbox',
    sandbox: { url: sandbox.baseUrl, smtpHost: sandbox.smtpHost, smtpPort: sandbox.smtpPort, hveSmtpPort: sandbox.hveSmtpPort, caFile: sandbox.caPath },
    ...(noMailbox
      ? {
          auth: {
            ...config.auth,
            flow: 'client-secret',
            tenant: DEFAULT_IDS.tenantId,
            clientId: DEFAULT_IDS.appClientId,
            clientSecret: options.appSecretFile ? `file:${options.appSecretFile}` : DEFAULT_IDS.appSecret,
          },
          mailboxes: [{ address: DEFAULT_IDS.mailbox, aliases: [`noreply@${DEFAULT_IDS.tenantDomain}`] }],
        }
      : {}),
    smtp: noWayIn ? { ...config.smtp, allowlist: [{ cidr: '127.0.0.0/8' }, { cidr: '::1/128' }] } : config.smtp,
    ...(noDashboard ? { http: { ...config.http, adminPassword: `file:${options.adminPasswordFile}` } } : {}),
  });
}

export function serveCommand(): Command {
  return new Command('serve')
    .description('Run the relay: the SMTP front door for devices and apps, and the delivery worker that sends through Microsoft 365.')
    .addOption(configOption({ sandboxDemo: false }))
    .option('--sandbox', 'start the Microsoft 365 sandbox in this process and send there (try relay365 without a tenant)')
    .addHelpText(
      'after',
      `
With --sandbox and no config, relay365 serves SMTP on 127.0.0.1:2525 for loopback clients without AUTH
and the HTTP API on http://127.0.0.1:8025 with the dashboard at / (user admin, a password generated into
./data/sandbox/admin-password, mode 0600, and printed at start), sends as ${DEFAULT_IDS.mailbox} through
the sandbox, and writes what "Microsoft" received to ./data/sandbox/mail/*.eml. Try:
  swaks --server 127.0.0.1:2525 --tls --from ${DEFAULT_IDS.mailbox} --to you@example.net

In a second shell, in the same folder, the other commands work against the running demo: --sandbox
writes the config it runs with (the sandbox's URL, ports and CA, its app and mailbox) to
./data/sandbox/relay365.yaml (mode 0600), which they read when no --config, RELAY365_CONFIG or
./relay365.yaml is given; once the demo stops, they say so instead of reaching a sandbox that is gone.
  relay365 doctor                         check each setup step against the sandbox
  relay365 test --to you@example.net      send a test message and show the SMTP conversation
  relay365 token                          get a token and show its claims
  relay365 apikey create --name my-app    an API key for POST /v1/messages (docs/http-api.md)
  relay365 queue list                     what the relay accepted and sent
(In a clone without relay365 on the PATH, npx relay365 ...)

SIGTERM or Ctrl-C stops gracefully (finishes transactions and sends in flight); a second one stops at once.
SIGHUP (systemctl reload) reads the config file again and applies mailboxes, auth, SMTP users, allowlist,
limits, certificate, webhooks, retention and log level without dropping a connection; a config that fails
its checks is refused (config.reload_refused, every problem logged) and the running one kept.
relay365 config check runs the same checks on a file without starting anything (at start, a config with
a problem makes serve exit with status 78, every problem listed). Listeners,
queue.url, dataDir and the other settings that need a restart are named in a warning and kept.
Accepted messages are on disk before the 250 reply and are sent after a restart.`,
    )
    .action(async (flags: { config?: string; sandbox?: boolean }) => {
      // Never the config a running (or stopped) demo wrote: this command is the one that writes it.
      const context = await cliContext(flags, { sandboxDemo: false, daemon: true });
      const logger = context.logger;
      let config = context.config;
      let sandbox: Sandbox | undefined;
      // The demo's dashboard password, generated when the config sets none (sandbox mode only).
      let demoPassword: { path: string; password: string } | undefined;
      if (flags.sandbox) {
        assertNoRunningSandboxDemo(config.dataDir);
        const dir = resolve(config.dataDir, 'sandbox');
        const { startSandbox } = await import('../../sandbox/index.js');
        sandbox = await startSandbox({ dataDir: dir, emlDir: join(dir, 'mail'), logger: logger.child({ component: 'sandbox' }) });
        try {
          if (config.http.enabled && config.http.adminPassword === undefined) demoPassword = sandboxDemoAdminPassword(config.dataDir);
          const appSecretFile = config.mailboxes.length === 0 ? writeSandboxDemoAppSecret(config.dataDir, DEFAULT_IDS.appSecret) : undefined;
          config = await sandboxedConfig(config, sandbox, {
            ...(demoPassword ? { adminPasswordFile: demoPassword.path } : {}),
            ...(appSecretFile ? { appSecretFile } : {}),
          });
        } catch (err) {
          await sandbox.close();
          throw err;
        }
      }
      let relay;
      let demoConfig: SandboxDemoConfigFile | undefined;
      try {
        const { startRelay } = await import('../../runtime/relay.js');
        relay = await startRelay(config, { logger });
      } catch (err) {
        await sandbox?.close();
        throw err;
      }
      if (sandbox) {
        try {
          demoConfig = await writeSandboxDemoConfig(config);
        } catch (err) {
          await relay.close();
          await sandbox.close();
          throw err;
        }
        // Also when a second Ctrl-C ends the process at once (process.exit runs 'exit' handlers).
        process.once('exit', () => demoConfig?.markStopped());
      }
      // SIGHUP (systemctl reload): the file again, checked as at start; applied in full or refused. Listened
      // for before the start-up lines: a SIGHUP with no listener ends the process (its default action), and a
      // supervisor may reload as soon as the relay says it is serving.
      const { reloadOnSignal } = await import('../../runtime/reload.js');
      const stopReloading = reloadOnSignal({
        relay,
        logger,
        load: async () => {
          const { loadConfig } = await import('../../config/load.js');
          const path = configPath(flags.config, process.env, { sandboxDemo: false });
          const next = await loadConfig(path === undefined ? {} : { path });
          return sandbox ? sandboxedConfig(next, sandbox, demoPassword ? { adminPasswordFile: demoPassword.path } : {}) : next;
        },
      });
      const storeName = config.queue.url ? `PostgreSQL schema ${config.queue.schema}` : resolve(config.dataDir, config.queue.path);
      console.log(`relay365 serving (store ${storeName}; worker ${relay.worker.owner})`);
      for (const l of relay.listeners)
        console.log(`  SMTP  ${l.host}:${l.port} (${l.tls === 'implicit' ? 'implicit TLS' : l.tls === 'starttls' ? 'STARTTLS' : 'no TLS'})`);
      // What a client is given to trust, and what to compare it with (docs/devices.md, "TLS certificate").
      const cert = relay.smtp?.certificate();
      if (cert) {
        console.log(`  TLS   certificate ${cert.path} (${cert.origin === 'configured' ? 'smtp.certFile' : `self-signed, ${cert.origin}`})`);
        console.log(`        SHA-256 ${cert.sha256}`);
        console.log(`        names ${cert.names.join(', ')}`);
        if (cert.replacedPath) console.log(`        the names changed: the previous certificate is kept as ${cert.replacedPath}`);
      }
      if (relay.httpAddress) console.log(`  HTTP  ${relay.httpAddress} (API /v1, /metrics, /healthz${config.http.adminPassword ? ', dashboard /' : ''})`);
      console.log(
        `  sending as ${config.mailboxes.map((m) => m.address).join(', ') || '(no mailbox configured)'} via ${relay.identity.cloud.smtpHost}:${relay.identity.cloud.smtpPort}`,
      );
      if (sandbox) {
        console.log(`  sandbox: what arrived  ${sandbox.baseUrl}/sandbox/messages  (CA ${sandbox.caPath})`);
        console.log(`           and as files ${join(resolve(config.dataDir, 'sandbox'), 'mail')}/*.eml`);
        const l = relay.listeners[0];
        if (l)
          console.log(`  try:  swaks --server ${l.host}:${l.port} --tls --from ${config.mailboxes[0]?.address ?? DEFAULT_IDS.mailbox} --to you@example.net`);
        if (demoConfig) for (const line of demoNextSteps(config, relay.httpAddress, demoConfig.path, demoPassword)) console.log(line);
      }
      await onShutdown(async () => {
        stopReloading();
        logger.info({ event: 'relay.stopping' }, 'shutting down: finishing transactions and sends in flight');
        // First, so that a command started now is told the demo has stopped rather than reaching a closing sandbox.
        demoConfig?.markStopped();
        await relay.close();
        await sandbox?.close();
        logger.info({ event: 'relay.stopped' }, 'relay365 stopped');
      });
    });
}
