import { join, resolve } from 'node:path';
import { Command } from 'commander';
import type { Config } from '../../config/index.js';
import { DEFAULT_IDS } from '../../sandbox/default-ids.js';
import type { Sandbox } from '../../sandbox/index.js';
import { cliContext, configOption } from '../context.js';
import { onShutdown } from '../output.js';

/**
 * The config `serve --sandbox` runs with: the given one pointed at an in-process sandbox; with no
 * mailbox configured, the sandbox's app-only mailbox; with no way in configured, loopback clients
 * may relay without AUTH (the sandbox is a try-out on this machine).
 */
export async function sandboxedConfig(config: Config, sandbox: Sandbox): Promise<Config> {
  const { configSchema } = await import('../../config/schema.js');
  const noMailbox = config.mailboxes.length === 0;
  const noWayIn = config.smtp.users.length === 0 && config.smtp.allowlist.length === 0;
  return configSchema.parse({
    ...config,
    cloud: 'sandbox',
    sandbox: { url: sandbox.baseUrl, smtpHost: sandbox.smtpHost, smtpPort: sandbox.smtpPort, caFile: sandbox.caPath },
    ...(noMailbox
      ? {
          auth: { ...config.auth, flow: 'client-secret', tenant: DEFAULT_IDS.tenantId, clientId: DEFAULT_IDS.appClientId, clientSecret: DEFAULT_IDS.appSecret },
          mailboxes: [{ address: DEFAULT_IDS.mailbox, aliases: [`noreply@${DEFAULT_IDS.tenantDomain}`] }],
        }
      : {}),
    smtp: noWayIn ? { ...config.smtp, allowlist: [{ cidr: '127.0.0.0/8' }, { cidr: '::1/128' }] } : config.smtp,
  });
}

export function serveCommand(): Command {
  return new Command('serve')
    .description('Run the relay: the SMTP front door for devices and apps, and the delivery worker that sends through Microsoft 365.')
    .addOption(configOption())
    .option('--sandbox', 'start the Microsoft 365 sandbox in this process and send there (try relay365 without a tenant)')
    .addHelpText(
      'after',
      `
With --sandbox and no config, relay365 serves SMTP on 127.0.0.1:2525 for loopback clients without AUTH,
sends as ${DEFAULT_IDS.mailbox} through the sandbox, and writes what "Microsoft" received to
./data/sandbox/mail/*.eml. Try:
  swaks --server 127.0.0.1:2525 --tls --from ${DEFAULT_IDS.mailbox} --to you@example.net

SIGTERM or Ctrl-C stops gracefully (finishes transactions and sends in flight); a second one stops at once.
Accepted messages are on disk before the 250 reply and are sent after a restart.`,
    )
    .action(async (flags: { config?: string; sandbox?: boolean }) => {
      const context = await cliContext(flags);
      const logger = context.logger;
      let config = context.config;
      let sandbox: Sandbox | undefined;
      if (flags.sandbox) {
        const dir = resolve(config.dataDir, 'sandbox');
        const { startSandbox } = await import('../../sandbox/index.js');
        sandbox = await startSandbox({ dataDir: dir, emlDir: join(dir, 'mail'), logger: logger.child({ component: 'sandbox' }) });
        config = await sandboxedConfig(config, sandbox);
      }
      let relay;
      try {
        const { startRelay } = await import('../../runtime/relay.js');
        relay = await startRelay(config, { logger });
      } catch (err) {
        await sandbox?.close();
        throw err;
      }
      const storeName = config.queue.url ? `PostgreSQL schema ${config.queue.schema}` : resolve(config.dataDir, config.queue.path);
      console.log(`relay365 serving (store ${storeName}; worker ${relay.worker.owner})`);
      for (const l of relay.listeners)
        console.log(`  SMTP  ${l.host}:${l.port} (${l.tls === 'implicit' ? 'implicit TLS' : l.tls === 'starttls' ? 'STARTTLS' : 'no TLS'})`);
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
      }
      await onShutdown(async () => {
        logger.info('shutting down: finishing transactions and sends in flight');
        await relay.close();
        await sandbox?.close();
      });
    });
}
