import { Command, Option } from 'commander';
import { portNumber } from '../options.js';
import { DEFAULT_IDS } from '../../sandbox/default-ids.js';
import { onShutdown } from '../output.js';

interface SandboxFlags {
  scenario?: string;
  host: string;
  port: number;
  smtpPort: number;
  hveSmtpPort?: number;
  dataDir: string;
  emlDir?: string;
  json?: boolean;
  logLevel: string;
}

/** Default ports, chosen so that nothing privileged or common is taken. */
export const SANDBOX_DEFAULT_PORTS = { https: 10443, smtp: 10587, hve: 10588 } as const;

export function sandboxCommand(): Command {
  return new Command('sandbox')
    .description(
      'Run the Microsoft 365 sandbox: a local identity platform (OAuth2 tokens) and Exchange Online SMTP submission ' +
        "(STARTTLS + AUTH XOAUTH2) with Microsoft's limits and error replies, for trying relay365 and for tests.",
    )
    .option('--scenario <file>', 'YAML scenario: tenants, apps, mailboxes, limits, faults (default: the built-in one; see docs/sandbox.md)')
    .option('--host <address>', 'address to listen on', '127.0.0.1')
    .option('--port <port>', 'HTTPS port of the identity platform and /sandbox API (0 = any free port)', portNumber('--port'), SANDBOX_DEFAULT_PORTS.https)
    .option(
      '--smtp-port <port>',
      'SMTP submission port, STARTTLS (Microsoft uses 587; 0 = any free port)',
      portNumber('--smtp-port'),
      SANDBOX_DEFAULT_PORTS.smtp,
    )
    .option(
      '--hve-smtp-port <port>',
      `High Volume Email SMTP port, its smtp-hve.office365.com (Microsoft uses 587; default ${SANDBOX_DEFAULT_PORTS.hve}, or any free port with --smtp-port 0)`,
      portNumber('--hve-smtp-port'),
    )
    .option('--data-dir <dir>', 'where the sandbox CA (ca.pem) is written', './data/sandbox')
    .option('--eml-dir <dir>', 'also write every accepted message there as an .eml file')
    .option('--json', 'print the endpoints as one JSON line (for scripts) instead of text')
    .addOption(
      new Option('--log-level <level>', 'log level of the sandbox (logs go to stderr)').choices(['silent', 'error', 'warn', 'info', 'debug']).default('warn'),
    )
    .addHelpText(
      'after',
      `
The built-in scenario has tenant ${DEFAULT_IDS.tenantDomain} (${DEFAULT_IDS.tenantId}) with:
  - an app-only app ${DEFAULT_IDS.appClientId}, secret "${DEFAULT_IDS.appSecret}", roles SMTP.SendAsApp and Mail.Send
  - a public client ${DEFAULT_IDS.publicClientId} with delegated SMTP.Send (device code, auth code + PKCE)
  - mailbox ${DEFAULT_IDS.mailbox} (SMTP AUTH on, FullAccess for the app, SendAs noreply@${DEFAULT_IDS.tenantDomain})
  - user ${DEFAULT_IDS.user}, password "${DEFAULT_IDS.userPassword}" for the device-login page

What arrived: GET https://localhost:PORT/sandbox/messages (JSON), /sandbox/messages/ID/raw (the MIME),
/sandbox/counters (every reply given, throttling included). Example:
  relay365 sandbox --eml-dir ./data/sandbox/mail`,
    )
    .action(async (flags: SandboxFlags) => {
      const [{ createLogger }, { defaultScenario, loadScenario, startSandbox }] = await Promise.all([
        import('../../observe/logger.js'),
        import('../../sandbox/index.js'),
      ]);
      const logger = createLogger({ level: flags.logLevel as 'warn', destination: process.stderr, base: { component: 'sandbox' } });
      const scenario = flags.scenario ? await loadScenario(flags.scenario) : defaultScenario();
      const sandbox = await startSandbox({
        scenario,
        host: flags.host,
        httpsPort: flags.port,
        smtpPort: flags.smtpPort,
        // Scripts that ask for any free SMTP port (tests running side by side) get a free HVE port too.
        hveSmtpPort: flags.hveSmtpPort ?? (flags.smtpPort === 0 ? 0 : SANDBOX_DEFAULT_PORTS.hve),
        dataDir: flags.dataDir,
        ...(flags.emlDir ? { emlDir: flags.emlDir } : {}),
        logger,
      });
      const tenants = scenario.tenants.map((t) => ({ id: t.id, domain: t.domain, authority: sandbox.authority(t.id) }));
      if (flags.json) {
        console.log(
          JSON.stringify({
            baseUrl: sandbox.baseUrl,
            smtp: { host: sandbox.smtpHost, port: sandbox.smtpPort },
            hveSmtp: { host: sandbox.smtpHost, port: sandbox.hveSmtpPort },
            caPath: sandbox.caPath,
            tenants,
            messagesUrl: `${sandbox.baseUrl}/sandbox/messages`,
          }),
        );
      } else {
        const t = tenants[0]!;
        console.log(`relay365 sandbox: Microsoft 365 simulator running
  identity platform  ${t.authority}  (token: ${t.authority}/oauth2/v2.0/token)
  SMTP submission    ${sandbox.smtpHost}:${sandbox.smtpPort}  (STARTTLS, then AUTH XOAUTH2)
  High Volume Email  ${sandbox.smtpHost}:${sandbox.hveSmtpPort}  (HVE accounts of the scenario only)
  trust this CA      ${sandbox.caPath}
  what arrived       ${sandbox.baseUrl}/sandbox/messages
${flags.scenario ? `  scenario           ${flags.scenario}` : `  built-in scenario  tenant ${DEFAULT_IDS.tenantDomain}, mailbox ${DEFAULT_IDS.mailbox}, app ${DEFAULT_IDS.appClientId}`}

Get a token with curl:
  curl --cacert ${sandbox.caPath} ${t.authority}/oauth2/v2.0/token \\
    -d grant_type=client_credentials -d client_id=${DEFAULT_IDS.appClientId} \\
    -d client_secret=${DEFAULT_IDS.appSecret} --data-urlencode scope=https://outlook.office365.com/.default
Press Ctrl-C to stop.`);
      }
      await onShutdown(() => sandbox.close());
    });
}
