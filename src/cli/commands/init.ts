import { Command, Option } from 'commander';
import { CLOUD_NAMES } from '../../config/cloud-names.js';
import { SETUPS } from '../../doctor/admin-steps.js';
import type { InitAddFlags } from './init-add.js';
import type { InitFlags } from './init-run.js';

// The command's definition only: what it does is in init-run.ts, loaded when it runs, so that the
// rest of the CLI does not load zod and yaml for it.

/** Where the config tells relay365 to read the client secret from, unless --store-secret. */
export const SECRET_ENV = 'RELAY365_CLIENT_SECRET';

const HELP = `
Setups:
  app-secret       app-only (client credentials) with a client secret: printers, scanners, servers
  app-certificate  app-only with a certificate (no secret that expires every two years)
  federated        app-only with workload identity federation: a token from a trusted issuer (AKS workload
                   identity's $AZURE_FEDERATED_TOKEN_FILE, --assertion-file, --assertion-command) stands in for a secret
  managed-identity app-only as the managed identity of the Azure host relay365 runs on: no app registration,
                   no secret (system-assigned, or user-assigned with --managed-identity-client-id)
  device-code      delegated: a user signs in once (relay365 login), relay365 keeps the refresh token

The client secret is never written into the config: it is read from $${SECRET_ENV}
(clientSecret: env:${SECRET_ENV}), or with --store-secret from <dataDir>/client-secret (mode 0600).

With --non-interactive every answer is a flag, and stdin gives, one per line: the client secret
(with --store-secret), then the password of each --relay-user in order.

Afterwards init prints the admin steps for your values (docs/microsoft-365-setup.md has them with
placeholders), ending with relay365 doctor.

Adding to an existing config (the file --output names): --add-mailbox ADDRESS (repeatable) and
--add-user NAME (its password asked twice, or the first line of stdin with --password-stdin) edit it
in place, keeping its comments and order; a mailbox or user it has already is refused, and a config
that would not pass relay365 config check is not written. Then: systemctl reload relay365 (or
kill -HUP <pid>) applies it without a restart.
  relay365 init --add-mailbox scanner@contoso.com -o /etc/relay365/relay365.yaml`;

/** `relay365 init`: asks for the tenant, app, setup and mailboxes, writes the config, prints the admin steps. */
export function initCommand(): Command {
  const collect = (value: string, previous: string[] = []): string[] => [...previous, value];
  return new Command('init')
    .description('Write relay365.yaml for your tenant (asking, or from flags) and print the exact Microsoft 365 admin steps for it.')
    .option('-o, --output <file>', 'where to write the config', 'relay365.yaml')
    .option('--force', 'replace an existing config (and secret file)')
    .option('--non-interactive', 'ask nothing: take every answer from the flags (and stdin)')
    .option('--tenant <id-or-domain>', 'Directory (tenant) ID or domain, e.g. contoso.onmicrosoft.com')
    .option('--client-id <guid>', 'Application (client) ID of the app registration')
    .addOption(new Option('--setup <setup>', 'how relay365 signs in').choices(SETUPS))
    .option('--mailbox <address>', 'mailbox to send as (repeatable)', collect)
    .addOption(new Option('--cloud <cloud>', 'Microsoft cloud (sandbox: the local simulator)').choices(CLOUD_NAMES))
    .option('--data-dir <dir>', 'dataDir of the config (tokens, keys, the stored secret)', './data')
    .option('--store-secret', `app-secret: take the client secret now and store it in <dataDir>/client-secret (0600) instead of $${SECRET_ENV}`)
    .option('--cert-key <file>', 'app-certificate: private key file (PEM)')
    .option('--cert-file <file>', 'app-certificate: certificate file (PEM)')
    .option('--assertion-file <file>', 'federated: the file holding the external token (default: $AZURE_FEDERATED_TOKEN_FILE)')
    .option('--assertion-command <command>', 'federated: or a command that prints it')
    .option('--issuer <url>', "federated: the issuer URL of the workload's tokens, for the admin steps")
    .option('--subject <subject>', 'federated: the subject of its tokens, e.g. system:serviceaccount:<namespace>:<service account>')
    .option('--managed-identity-client-id <guid>', 'managed-identity: client id of a user-assigned identity (default: the system-assigned one)')
    .option('--relay-user <name>', 'local SMTP user for devices (repeatable; its password is asked, or read from stdin)', collect)
    .option('--sandbox-url <url>', 'cloud sandbox: the sandbox identity platform URL')
    .option('--sandbox-smtp-host <host>', 'cloud sandbox: its SMTP host')
    .option('--sandbox-smtp-port <port>', 'cloud sandbox: its SMTP port')
    .option('--sandbox-ca <file>', "cloud sandbox: the sandbox's ca.pem")
    .option('--add-mailbox <address>', 'add this mailbox to the existing config at --output (repeatable)', collect)
    .option('--add-user <name>', 'add this SMTP user to the existing config at --output (its password is asked)', collect)
    .option('--password-stdin', '--add-user: read the password from the first line of stdin')
    .addHelpText('after', HELP)
    .action(async (flags: InitFlags & InitAddFlags) => {
      if (flags.addMailbox !== undefined || flags.addUser !== undefined) return (await import('./init-add.js')).runInitAdd(flags);
      const { runInit } = await import('./init-run.js');
      await runInit(flags);
    });
}
