import type { CloudName } from '../config/index.js';

/** The setups `relay365 init` writes a config for. */
export const SETUPS = ['app-secret', 'app-certificate', 'federated', 'managed-identity', 'device-code'] as const;
export type Setup = (typeof SETUPS)[number];

/** The auth flow of each setup in the config. */
export const SETUP_FLOWS = {
  'app-secret': 'client-secret',
  'app-certificate': 'client-certificate',
  federated: 'federated',
  'managed-identity': 'managed-identity',
  'device-code': 'device-code',
} as const satisfies Record<Setup, string>;

/** The audience Entra expects in a federated (external) token: the default of every federated credential. */
export const FEDERATED_AUDIENCE = 'api://AzureADTokenExchange';

/** Stand for what only Azure knows once the managed identity exists (the steps say where to read them). */
export const MI_CLIENT_ID = '<managed-identity-client-id>';
export const MI_OBJECT_ID = '<managed-identity-object-id>';

/** What the admin steps are written for; every value appears in the commands as given. */
export interface AdminStepsInput {
  setup: Setup;
  /** Tenant id or domain (managed-identity: unused, Azure knows the host's tenant). */
  tenant: string;
  /** The app registration's client id; managed-identity: the identity's client id ({@link MI_CLIENT_ID} for a system-assigned one). */
  clientId: string;
  mailboxes: readonly string[];
  cloud: CloudName;
  /** The config file, for the relay365 commands at the end. */
  configPath: string;
  /** app-secret: where the config reads the secret from (`env:NAME` or `file:PATH`). */
  secretRef?: string;
  /** app-certificate: the private key and certificate files. */
  keyFile?: string;
  certFile?: string;
  /** federated: where relay365 reads the external token (neither: `$AZURE_FEDERATED_TOKEN_FILE`). */
  assertionFile?: string;
  assertionCommand?: string;
  /** federated: the external identity provider's issuer URL and the workload's subject, as its tokens carry them. */
  issuer?: string;
  subject?: string;
  /** managed-identity: user-assigned (its client id is `clientId`) or the host's system-assigned identity. */
  userAssigned?: boolean;
}

/** A block of commands to type, in PowerShell (Exchange Online, Microsoft Graph) or a POSIX shell (relay365). */
export interface CommandBlock {
  shell: 'powershell' | 'sh';
  lines: string[];
}

/** One thing the admin does, where, and how to check that it took effect. */
export interface AdminStep {
  title: string;
  /** Where it is done: the Entra admin center, Exchange Online PowerShell, or this machine. */
  where: string;
  optional?: boolean;
  /** Paragraphs; `code` in backticks. */
  text: string[];
  commands?: CommandBlock;
  check?: { text: string; commands?: CommandBlock };
}

/** The values `docs/microsoft-365-setup.md` shows in place of a real tenant's. */
export function placeholderInput(setup: Setup): AdminStepsInput {
  return {
    setup,
    tenant: '<tenant>',
    clientId: '<client-id>',
    mailboxes: ['<mailbox>'],
    cloud: 'global',
    configPath: 'relay365.yaml',
    secretRef: 'env:RELAY365_CLIENT_SECRET',
    keyFile: './data/app.key',
    certFile: './data/app.crt',
    ...(setup === 'managed-identity' ? { clientId: MI_CLIENT_ID, userAssigned: true } : {}),
  };
}

/** Stands for the enterprise application's object id, which only the Entra admin center knows. */
export const SP_OBJECT_ID = '<enterprise-app-object-id>';

const SETUP_NAMES: Record<Setup, string> = {
  'app-secret': 'app-only (client credentials) with a client secret',
  'app-certificate': 'app-only (client credentials) with a certificate',
  federated: 'app-only with workload identity federation (a trusted external token, no secret)',
  'managed-identity': 'app-only as the Azure managed identity of the host (no app registration, no secret)',
  'device-code': 'delegated (a user signs in once with a device code)',
};

/** `-ExchangeEnvironmentName` of Connect-ExchangeOnline for the national clouds (ExchangeOnlineManagement module). */
const EXCHANGE_ENVIRONMENTS: Partial<Record<CloudName, string>> = { usgov: 'O365USGovGCCHigh', 'usgov-dod': 'O365USGovDoD', china: 'O365China' };

function entraCenter(cloud: CloudName): string {
  return cloud === 'global' || cloud === 'sandbox'
    ? 'Microsoft Entra admin center (https://entra.microsoft.com)'
    : 'Microsoft Entra admin center of your cloud';
}

function connectExchange(cloud: CloudName): string {
  const env = EXCHANGE_ENVIRONMENTS[cloud];
  return env ? `Connect-ExchangeOnline -ExchangeEnvironmentName ${env}` : 'Connect-ExchangeOnline';
}

/** The one-line summary of a setup, for headings. */
export function setupName(setup: Setup): string {
  return SETUP_NAMES[setup];
}

/**
 * The exact steps a Microsoft 365 admin takes for a setup, with the values filled in: the app
 * registration, its one permission (and the ones not to add), admin consent, the Exchange service
 * principal and mailbox permission (app-only), SMTP AUTH for the mailbox, scoping, and the check with
 * `relay365 doctor` (Microsoft Learn, "Authenticate an IMAP, POP or SMTP connection using OAuth"). `relay365 init` prints them for the
 * user's values; `docs/microsoft-365-setup.md` holds them with placeholders, and a test keeps both equal.
 */
export function adminSteps(input: AdminStepsInput): AdminStep[] {
  const appOnly = input.setup !== 'device-code';
  const { tenant, clientId, mailboxes, cloud, configPath } = input;
  const entra = entraCenter(cloud);
  const exo = 'Exchange Online PowerShell';
  const here = 'this machine';
  const each = <T>(f: (mailbox: string) => T): T[] => mailboxes.map(f);
  const steps: AdminStep[] = [];
  // A managed identity is a service principal of Azure's making: no app registration, and its object id is known from the start.
  const managed = input.setup === 'managed-identity';
  const spId = managed ? MI_OBJECT_ID : SP_OBJECT_ID;

  if (managed) steps.push(managedIdentityStep(input));
  else
    steps.push({
      title: 'Register the app',
      where: entra,
      text: [
        'Identity > Applications > App registrations > New registration. Name: `relay365`; supported account types: accounts in this organizational directory only (single tenant); no redirect URI.',
        `On its Overview page, the Application (client) ID goes into \`auth.clientId\` (now \`${clientId}\`) and the Directory (tenant) ID into \`auth.tenant\` (now \`${tenant}\`).`,
      ],
      check: {
        text: `The Overview page shows Application (client) ID \`${clientId}\`; a wrong id makes the token request fail with AADSTS700016, a wrong tenant with AADSTS90002.`,
      },
    });

  if (input.setup === 'app-secret') {
    const ref = input.secretRef ?? 'env:RELAY365_CLIENT_SECRET';
    const where = ref.startsWith('file:')
      ? `relay365 reads it from the file \`${ref.slice(5)}\` (mode 0600, outside any repository).`
      : `relay365 reads it from the environment variable \`${ref.slice(4)}\`; set it where relay365 runs (a systemd \`EnvironmentFile\` with mode 0600, a container secret), never in the config file.`;
    steps.push({
      title: 'Create a client secret',
      where: entra,
      text: [
        'App registrations > relay365 > Certificates & secrets > Client secrets > New client secret. Copy its Value right away (it is shown once); the Secret ID is not the secret.',
        where,
        'Secrets expire (24 months at most): note the date. relay365 doctor reports AADSTS7000222 once it has passed.',
      ],
      ...(ref.startsWith('env:') ? { commands: { shell: 'sh' as const, lines: [`export ${ref.slice(4)}='<secret value>'`] } } : {}),
      check: { text: 'A wrong value (or the Secret ID) fails the token request with AADSTS7000215.' },
    });
  } else if (input.setup === 'app-certificate') {
    const keyFile = input.keyFile ?? './data/app.key';
    const certFile = input.certFile ?? './data/app.crt';
    steps.push({
      title: 'Upload the app certificate',
      where: entra,
      text: [
        `App registrations > relay365 > Certificates & secrets > Certificates > Upload certificate: upload \`${certFile}\` (the public part). The private key \`${keyFile}\` stays on this machine, readable only by relay365.`,
        'No certificate yet? Make a self-signed one here (valid two years):',
      ],
      commands: {
        shell: 'sh',
        lines: [`openssl req -x509 -newkey rsa:2048 -sha256 -days 730 -nodes -subj "/CN=relay365" -keyout ${keyFile} -out ${certFile}`, `chmod 600 ${keyFile}`],
      },
      check: {
        text: 'The thumbprint Entra lists under Certificates is the SHA-1 fingerprint of the file (without colons); a certificate that is not uploaded fails the token request with AADSTS700027.',
        commands: { shell: 'sh', lines: [`openssl x509 -in ${certFile} -noout -fingerprint -sha1`] },
      },
    });
  } else if (input.setup === 'federated') {
    steps.push(federatedCredentialStep(input));
  } else if (!managed) {
    steps.push({
      title: 'Allow the device code flow',
      where: entra,
      text: [
        'App registrations > relay365 > Authentication > Advanced settings > Allow public client flows: Yes. The device code flow uses no secret; without this switch the sign-in fails with AADSTS7000218.',
      ],
    });
  }

  steps.push(
    managed
      ? managedIdentityPermissionStep()
      : appOnly
        ? {
            title: 'Add the one permission sending needs: SMTP.SendAsApp',
            where: entra,
            text: [
              'App registrations > relay365 > API permissions > Add a permission > APIs my organization uses > Office 365 Exchange Online > Application permissions > SMTP.SendAsApp.',
              'Do not add full_access_as_app, EWS.AccessAsApp, IMAP.AccessAsApp, POP.AccessAsApp, Mail.ReadWrite or Mail.Read: they read or change every mailbox. Do not add Microsoft Graph Mail.Send (application) unless relay365 sends through Graph: it can send as any mailbox in the tenant. `relay365 permissions` flags each of them.',
            ],
          }
        : {
            title: 'Add the one permission sending needs: delegated SMTP.Send',
            where: entra,
            text: [
              "App registrations > relay365 > API permissions > Add a permission > Microsoft Graph > Delegated permissions > SMTP.Send (Exchange Online's permission, which Entra lists under Microsoft Graph), and offline_access so that relay365 keeps a refresh token.",
              'Do not add IMAP.AccessAsUser.All, POP.AccessAsUser.All, EWS.AccessAsUser.All, Mail.ReadWrite or Mail.Read: they read the mailbox. Do not add Microsoft Graph Mail.Send unless relay365 sends through Graph.',
            ],
          },
  );

  // A managed identity's app role assignment is itself the grant: there is no consent to give.
  if (!managed)
    steps.push({
      title: 'Grant admin consent',
      where: entra,
      text: appOnly
        ? [
            `API permissions > Grant admin consent for the tenant (\`${tenant}\`). The Status column of SMTP.SendAsApp must read "Granted". Without consent the app still gets tokens, but without the role, and Exchange refuses them.`,
          ]
        : [
            `API permissions > Grant admin consent for the tenant (\`${tenant}\`), or let the mailbox's user consent at the first sign-in if your tenant allows user consent.`,
          ],
      check: {
        text: `\`relay365 token --config ${configPath}\` shows ${appOnly ? 'roles SMTP.SendAsApp' : 'scopes ... SMTP.Send (after the sign-in below)'}.`,
      },
    });

  if (appOnly && !managed) {
    steps.push({
      title: "Find the enterprise application's object id",
      where: entra,
      text: [
        `Identity > Applications > Enterprise applications, search for \`${clientId}\` and open it: its Overview page shows the Object ID. That is the id of the app's service principal, which Exchange needs. It is not the Object ID on the App registrations page (that one belongs to the application object, and Exchange refuses it).`,
        `Or with Microsoft Graph PowerShell. Below, \`${SP_OBJECT_ID}\` stands for this id.`,
      ],
      commands: {
        shell: 'powershell',
        lines: ['Connect-MgGraph -Scopes Application.Read.All', `(Get-MgServicePrincipal -Filter "appId eq '${clientId}'").Id`],
      },
    });
  }
  if (appOnly) {
    steps.push({
      title: 'Register the service principal in Exchange Online',
      where: exo,
      text: [
        'Install the ExchangeOnlineManagement module once (`Install-Module ExchangeOnlineManagement`), connect as an Exchange administrator, and register the app:',
      ],
      commands: { shell: 'powershell', lines: [connectExchange(cloud), `New-ServicePrincipal -AppId ${clientId} -ObjectId ${spId}`] },
      check: {
        text: 'Exchange lists it, with the same AppId and ObjectId:',
        commands: { shell: 'powershell', lines: [`Get-ServicePrincipal -Identity ${clientId} | Format-List DisplayName,AppId,ObjectId`] },
      },
    });
    steps.push({
      title: mailboxes.length > 1 ? 'Give the app permission on each mailbox' : 'Give the app permission on the mailbox',
      where: exo,
      text: ['SMTP.SendAsApp alone opens no mailbox: this permission is what lets the app send as the mailbox, and only as the mailboxes listed here.'],
      commands: { shell: 'powershell', lines: each((m) => `Add-MailboxPermission -Identity ${m} -User ${spId} -AccessRights FullAccess`) },
      check: {
        text: 'The app is listed with FullAccess:',
        commands: { shell: 'powershell', lines: each((m) => `Get-MailboxPermission -Identity ${m} | Format-Table User,AccessRights,IsInherited`) },
      },
    });
  }

  steps.push({
    title: mailboxes.length > 1 ? 'Turn SMTP AUTH on for each mailbox' : 'Turn SMTP AUTH on for the mailbox',
    where: exo,
    text: ['Client SMTP submission (SMTP AUTH) is off in most tenants. Turn it on for the sending mailbox only:'],
    commands: {
      shell: 'powershell',
      lines: [...(appOnly ? [] : [connectExchange(cloud)]), ...each((m) => `Set-CASMailbox -Identity ${m} -SmtpClientAuthenticationDisabled $false`)],
    },
    check: {
      text: 'It must read False (empty means the mailbox follows the tenant setting of the next step):',
      commands: { shell: 'powershell', lines: each((m) => `Get-CASMailbox -Identity ${m} | fl SmtpClientAuthenticationDisabled`) },
    },
  });

  steps.push({
    title: 'Tenant-wide SMTP AUTH',
    where: exo,
    optional: true,
    text: [
      'Not needed when the step before was done: the mailbox setting overrides the tenant setting, so the tenant can keep SMTP AUTH off for everyone else (recommended). Only to turn it on for the whole tenant:',
    ],
    commands: { shell: 'powershell', lines: ['Set-TransportConfig -SmtpClientAuthenticationDisabled $false'] },
    check: {
      text: "For an OAuth login, Security Defaults and Conditional Access act when relay365 asks for a token (AADSTS530035, 53003, 50076), not at SMTP, and app-only tokens are not subject to users' Conditional Access. A 535 5.7.139 once these settings are right means SMTP AUTH is still off for the mailbox or the tenant, or the change has not reached Exchange yet.",
      commands: { shell: 'powershell', lines: ['Get-TransportConfig | fl SmtpClientAuthenticationDisabled'] },
    },
  });

  if (appOnly) {
    const filter = mailboxes.map((m) => `PrimarySmtpAddress -eq '${m}'`).join(' -or ');
    steps.push({
      title: 'Keep the app scoped (RBAC for Applications)',
      where: exo,
      optional: true,
      text: [
        'For SMTP nothing more is needed: SMTP.SendAsApp with FullAccess per mailbox already limits the app to the mailboxes above. Keep it that way: never add Microsoft Graph Mail.Send (application) just in case.',
        'If relay365 later sends through Graph, grant Mail.Send through RBAC for Applications, scoped to these mailboxes, instead of in Entra:',
      ],
      commands: {
        shell: 'powershell',
        lines: [
          `New-ManagementScope -Name "relay365 senders" -RecipientRestrictionFilter "${filter}"`,
          `New-ManagementRoleAssignment -App ${spId} -Role "Application Mail.Send" -CustomResourceScope "relay365 senders"`,
        ],
      },
      check: {
        text: 'InScope must be True for each sending mailbox, and False for any other:',
        commands: { shell: 'powershell', lines: each((m) => `Test-ServicePrincipalAuthorization -Identity ${spId} -Resource ${m} | Format-Table`) },
      },
    });
  }

  steps.push({
    title: 'Sending as another address',
    where: exo,
    optional: true,
    text: [
      `Only when devices put another address in From (a shared mailbox, \`noreply@...\`): give the sending mailbox SendAs on it, and list it under the mailbox's \`aliases:\` in \`${configPath}\`. Exchange checks this only after the message is sent (SendAsDenied); \`relay365 doctor --send-test\` sends one message from each alias.`,
    ],
    commands: {
      shell: 'powershell',
      lines: [`Add-RecipientPermission -Identity <other-address> -Trustee ${mailboxes[0] ?? '<mailbox>'} -AccessRights SendAs`],
    },
    check: {
      text: 'The mailbox is listed as trustee with SendAs:',
      commands: { shell: 'powershell', lines: ['Get-RecipientPermission -Identity <other-address>'] },
    },
  });

  if (!appOnly) {
    steps.push({
      title: 'Sign in once as the mailbox',
      where: here,
      text: [
        'relay365 prints a URL and a code; open the URL on any device, enter the code, and sign in as the mailbox itself. relay365 keeps the refresh token, encrypted, and renews it by itself.',
      ],
      commands: { shell: 'sh', lines: each((m) => `relay365 login --config ${configPath} --mailbox ${m}`) },
    });
  }

  steps.push({
    title: 'Then run relay365 doctor',
    where: here,
    text: [
      'It checks each step above in order, names the first one that fails, and prints its fix. Exchange can take some minutes to apply new permissions: run it again if AUTH fails right after a change. With `--send-test`, it sends a real message too.',
    ],
    commands: {
      shell: 'sh',
      lines:
        mailboxes.length > 1
          ? each((m) => `relay365 doctor --config ${configPath} --mailbox ${m}`)
          : [`relay365 doctor --config ${configPath}`, `relay365 doctor --config ${configPath} --send-test <your address>`],
    },
  });
  return steps;
}

/**
 * federated: the federated credential on the app registration, in place of a secret. The portal and
 * `az ad app federated-credential create` (Microsoft Learn, "Configure an app to trust an external
 * identity provider"); the three values are matched exactly, and each mismatch has its own AADSTS code.
 */
function federatedCredentialStep(input: AdminStepsInput): AdminStep {
  const issuer = input.issuer ?? '<issuer>';
  const subject = input.subject ?? '<subject>';
  const source = input.assertionCommand
    ? `relay365 runs \`${input.assertionCommand}\` before each token request and sends what it prints as the client assertion.`
    : input.assertionFile
      ? `relay365 reads the token from \`${input.assertionFile}\` before each token request (the issuer rotates the file; the newest token is always the one sent).`
      : 'relay365 reads the token from the file `$AZURE_FEDERATED_TOKEN_FILE` names (AKS workload identity sets it and mounts the token), again before each token request.';
  const credential = JSON.stringify({ name: 'relay365', issuer, subject, audiences: [FEDERATED_AUDIENCE] });
  return {
    title: 'Add a federated credential (instead of a secret)',
    where: 'Microsoft Entra admin center (https://entra.microsoft.com)',
    text: [
      'App registrations > relay365 > Certificates & secrets > Federated credentials > Add credential. Pick the scenario (Kubernetes accessing Azure resources, GitHub Actions deploying Azure resources, or Other issuer) and give the three values the workload\'s token carries; Entra matches them exactly, case included (Microsoft Learn, "Configure an app to trust an external identity provider": https://learn.microsoft.com/entra/workload-id/workload-identity-federation-create-trust).',
      `Issuer \`${issuer}\`; subject \`${subject}\` (a Kubernetes service account: \`system:serviceaccount:<namespace>:<service account>\`); audience \`${FEDERATED_AUDIENCE}\` (a Kubernetes token must be projected with this audience).`,
      source,
      "Or with the Azure CLI, which names the application by its object id (not its client id); Azure PowerShell's New-AzADAppFederatedCredential takes the same values (https://learn.microsoft.com/powershell/module/az.resources/new-azadappfederatedcredential):",
    ],
    commands: {
      shell: 'sh',
      lines: [
        `APP_OBJECT_ID=$(az ad app show --id ${input.clientId} --query id -o tsv)`,
        `az ad app federated-credential create --id "$APP_OBJECT_ID" --parameters '${credential}'`,
      ],
    },
    check: {
      text: 'Entra lists it with these three values. A mismatch fails the token request with AADSTS700211 (issuer), AADSTS700213 (subject) or AADSTS700212 (audience); AADSTS700024 means the token itself has expired (a stale file).',
      commands: { shell: 'sh', lines: ['az ad app federated-credential list --id "$APP_OBJECT_ID" -o table'] },
    },
  };
}

/** managed-identity: turn the host's identity on (or attach a user-assigned one) and read its two ids. */
function managedIdentityStep(input: AdminStepsInput): AdminStep {
  const id = input.clientId;
  return {
    title: input.userAssigned ? 'Make the user-assigned managed identity and attach it' : "Turn on the host's system-assigned managed identity",
    where: 'Azure CLI (or the Azure portal: the resource > Identity)',
    text: [
      input.userAssigned
        ? 'Make a user-assigned identity and attach it to the host that runs relay365 (a VM below; App Service and Functions: `az webapp identity assign --identities <identity resource id>`).'
        : "Turn on the system-assigned identity of the host that runs relay365 (a VM below; App Service and Functions: `az webapp identity assign`). It prints the identity's principal (object) id.",
      id === MI_CLIENT_ID
        ? `A managed identity is a service principal of its own: no app registration, no secret to rotate. Note its client id (appId) and its object id (principalId): below, \`${MI_CLIENT_ID}\` and \`${MI_OBJECT_ID}\` stand for them.`
        : `A managed identity is a service principal of its own: no app registration, no secret to rotate. Its client id (appId) is \`${id}\`; note its object id (principalId): below, \`${MI_OBJECT_ID}\` stands for it.`,
    ],
    commands: {
      shell: 'sh',
      lines: input.userAssigned
        ? [
            'az identity create -g <resource-group> -n relay365',
            'az vm identity assign -g <resource-group> -n <vm> --identities relay365',
            'az identity show -g <resource-group> -n relay365 --query "{clientId:clientId, objectId:principalId}"',
          ]
        : ['az vm identity assign -g <resource-group> -n <vm>', `az ad sp show --id ${MI_OBJECT_ID} --query "{appId:appId, objectId:id}"`],
    },
  };
}

/**
 * managed-identity: the app role assignment of SMTP.SendAsApp through Microsoft Graph, since the
 * portal has no API permissions page for a managed identity (Microsoft Learn, "Assign a managed
 * identity access to an application role").
 */
function managedIdentityPermissionStep(): AdminStep {
  const exo = '00000002-0000-0ff1-ce00-000000000000';
  const uri = `https://graph.microsoft.com/v1.0/servicePrincipals/${MI_OBJECT_ID}/appRoleAssignments`;
  return {
    title: 'Give the managed identity the one permission sending needs: SMTP.SendAsApp',
    where: 'Azure CLI (Microsoft Graph)',
    text: [
      `There is no API permissions page for a managed identity: assign the SMTP.SendAsApp app role of Office 365 Exchange Online (appId ${exo}) to its service principal through Microsoft Graph (Microsoft Learn, "Assign a managed identity access to an application role": https://learn.microsoft.com/azure/active-directory/managed-identities-azure-resources/how-to-assign-app-role-managed-identity-powershell). The assignment is the grant: no admin consent follows.`,
      'Do not assign full_access_as_app, EWS.AccessAsApp, Mail.ReadWrite or Mail.Read, nor Microsoft Graph Mail.Send unless relay365 sends through Graph: they read, change or send as every mailbox.',
    ],
    commands: {
      shell: 'sh',
      lines: [
        `EXO=$(az ad sp show --id ${exo} --query id -o tsv)`,
        `ROLE=$(az ad sp show --id ${exo} --query "appRoles[?value=='SMTP.SendAsApp'].id" -o tsv)`,
        `az rest --method POST --uri ${uri} --body "{\\"principalId\\":\\"${MI_OBJECT_ID}\\",\\"resourceId\\":\\"$EXO\\",\\"appRoleId\\":\\"$ROLE\\"}"`,
      ],
    },
    check: {
      text: 'Office 365 Exchange Online is listed with the role id of SMTP.SendAsApp ($ROLE). Azure caches the tokens of a managed identity, so a new role can take a while to show in them (the page above).',
      commands: { shell: 'sh', lines: [`az rest --method GET --uri ${uri} --query "value[].{resource:resourceDisplayName, role:appRoleId}"`] },
    },
  };
}

/** The steps for a terminal: numbered, commands indented. */
export function renderAdminStepsText(steps: readonly AdminStep[]): string {
  const out: string[] = [];
  steps.forEach((step, i) => {
    out.push(`${String(i + 1).padStart(2)}. ${step.title}${step.optional ? ' (optional)' : ''}  [${step.where}]`);
    for (const p of step.text) out.push(`    ${p}`);
    if (step.commands) for (const line of step.commands.lines) out.push(`      ${step.commands.shell === 'powershell' ? 'PS>' : '$'} ${line}`);
    if (step.check) {
      out.push(`    Check: ${step.check.text}`);
      if (step.check.commands)
        for (const line of step.check.commands.lines) out.push(`      ${step.check.commands.shell === 'powershell' ? 'PS>' : '$'} ${line}`);
    }
    out.push('');
  });
  return out.join('\n');
}

/** The steps as Markdown (the form `docs/microsoft-365-setup.md` holds). */
export function renderAdminStepsMarkdown(steps: readonly AdminStep[]): string {
  const out: string[] = [];
  const block = (commands: CommandBlock): void => {
    out.push('', '```' + commands.shell, ...commands.lines, '```');
  };
  steps.forEach((step, i) => {
    out.push(`### ${i + 1}. ${step.title}${step.optional ? ' (optional)' : ''}`, '', `*${step.where}*`);
    for (const p of step.text) out.push('', p);
    if (step.commands) block(step.commands);
    if (step.check) {
      out.push('', `**Check:** ${step.check.text}`);
      if (step.check.commands) block(step.check.commands);
    }
    out.push('');
  });
  return out.join('\n');
}

/** Markers around each generated block in `docs/microsoft-365-setup.md`. */
export function docMarkers(setup: Setup): { begin: string; end: string } {
  return { begin: `<!-- generated by adminSteps(placeholderInput('${setup}')): do not edit by hand -->`, end: `<!-- end of generated ${setup} steps -->` };
}

/** The generated block of one setup, markers included, as the doc must hold it. */
export function docBlock(setup: Setup): string {
  const { begin, end } = docMarkers(setup);
  return `${begin}\n\n${renderAdminStepsMarkdown(adminSteps(placeholderInput(setup)))}\n${end}`;
}
