import type { CloudName, Config, MailboxTransport } from '../config/index.js';

/** Where a cloud's identity platform, Exchange Online and Graph live (Microsoft Learn, "National cloud deployments" and "POP, IMAP, and SMTP settings for Outlook.com"). */
export interface CloudEndpoints {
  name: CloudName;
  /** Authority host; the authority is `${authorityHost}/${tenant}`. */
  authorityHost: string;
  smtpHost: string;
  smtpPort: number;
  graphHost: string;
  /** Resource of Exchange Online for app-only tokens (`${exchangeResource}/.default`). */
  exchangeAppResource: string;
  /** Resource of Exchange Online for delegated scopes (`${exchangeDelegatedResource}/SMTP.Send`). */
  exchangeDelegatedResource: string;
  /** PEM of a CA to trust for this cloud only (the sandbox's); never set for Microsoft's clouds. */
  caFile?: string;
}

/**
 * Microsoft's national clouds. Exchange Online's resource in US Government is outlook.office365.us and in
 * China partner.outlook.cn (Microsoft Learn: "Microsoft 365 national cloud endpoints").
 */
const CLOUDS: Record<Exclude<CloudName, 'sandbox'>, Omit<CloudEndpoints, 'name'>> = {
  global: {
    authorityHost: 'https://login.microsoftonline.com',
    smtpHost: 'smtp.office365.com',
    smtpPort: 587,
    graphHost: 'https://graph.microsoft.com',
    exchangeAppResource: 'https://outlook.office365.com',
    exchangeDelegatedResource: 'https://outlook.office.com',
  },
  usgov: {
    authorityHost: 'https://login.microsoftonline.us',
    smtpHost: 'smtp.office365.us',
    smtpPort: 587,
    graphHost: 'https://graph.microsoft.us',
    exchangeAppResource: 'https://outlook.office365.us',
    exchangeDelegatedResource: 'https://outlook.office365.us',
  },
  // US Government DoD has its own Exchange Online: Microsoft Learn's "Office 365 U.S. Government DoD
  // endpoints" (https://learn.microsoft.com/microsoft-365/enterprise/microsoft-365-u-s-government-dod-endpoints)
  // lists outlook-dod.office365.us (and webmail.apps.mil) for Exchange Online and no smtp.office365.us;
  // its Entra ID is login.microsoftonline.us and its Graph dod-graph.microsoft.us ("Microsoft Graph national
  // cloud deployments", https://learn.microsoft.com/graph/deployments). The token resource is that host too:
  // Microsoft's own Exchange support scripts ask USGovernmentL5 (DoD) tokens for https://outlook-dod.office365.us
  // (microsoft/CSS-Exchange, Shared/AzureFunctions/Get-CloudServiceEndpoint.ps1), not GCC High's outlook.office365.us.
  'usgov-dod': {
    authorityHost: 'https://login.microsoftonline.us',
    smtpHost: 'outlook-dod.office365.us',
    smtpPort: 587,
    graphHost: 'https://dod-graph.microsoft.us',
    exchangeAppResource: 'https://outlook-dod.office365.us',
    exchangeDelegatedResource: 'https://outlook-dod.office365.us',
  },
  china: {
    authorityHost: 'https://login.chinacloudapi.cn',
    smtpHost: 'smtp.partner.outlook.cn',
    smtpPort: 587,
    graphHost: 'https://microsoftgraph.chinacloudapi.cn',
    exchangeAppResource: 'https://partner.outlook.cn',
    exchangeDelegatedResource: 'https://partner.outlook.cn',
  },
};

/** The endpoints of the configured cloud; for the sandbox, the configured local URLs and its CA. */
export function cloudEndpoints(config: Pick<Config, 'cloud' | 'sandbox'>): CloudEndpoints {
  if (config.cloud === 'sandbox') {
    const url = config.sandbox.url.replace(/\/+$/, '');
    return {
      name: 'sandbox',
      authorityHost: url,
      smtpHost: config.sandbox.smtpHost,
      smtpPort: config.sandbox.smtpPort,
      graphHost: url,
      // The sandbox plays the global cloud: same resources, same audiences.
      exchangeAppResource: CLOUDS.global.exchangeAppResource,
      exchangeDelegatedResource: CLOUDS.global.exchangeDelegatedResource,
      caFile: config.sandbox.caFile,
    };
  }
  return { name: config.cloud, ...CLOUDS[config.cloud] };
}

/** The scopes to ask for: app-only `/.default`; delegated `SMTP.Send` plus `offline_access` for a refresh token. */
export function smtpScopes(cloud: CloudEndpoints, appOnly: boolean): string[] {
  return appOnly ? [`${cloud.exchangeAppResource}/.default`] : [`${cloud.exchangeDelegatedResource}/SMTP.Send`, 'offline_access'];
}

/**
 * Graph scopes: app-only `/.default` (the app's `Mail.Send` application permission); delegated `Mail.Send`
 * plus `offline_access` (Microsoft Learn, "Authenticate an IMAP, POP or SMTP connection using OAuth").
 */
export function graphScopes(cloud: CloudEndpoints, appOnly: boolean): string[] {
  const resource = graphResource(cloud);
  return appOnly ? [`${resource}/.default`] : [`${resource}/Mail.Send`, 'offline_access'];
}

/**
 * The delegated scopes of the NDR reader (`mailboxes[].bounces.read` on a device-code or auth-code
 * mailbox): Graph's Mail.ReadWrite, since it reads the Inbox and moves or categorizes each report it
 * processed (Microsoft Learn, "message: move" and "Update message": Mail.ReadWrite, delegated).
 */
export function graphBounceScopes(cloud: CloudEndpoints): string[] {
  return [`${graphResource(cloud)}/Mail.ReadWrite`, 'offline_access'];
}

/**
 * The scopes each transport's tokens are asked with, by its config name (`mailboxes[].transport`). The
 * transport descriptors (src/delivery/transports) point here; the record's type makes a new name in
 * the config's list fail to compile until its scopes are given.
 */
export const TRANSPORT_SCOPES: Readonly<Record<MailboxTransport, (cloud: CloudEndpoints, appOnly: boolean) => string[]>> = {
  smtp: smtpScopes,
  graph: graphScopes,
};

/** The scopes a mailbox's token needs for its transport: Exchange's for SMTP, Graph's for Graph. */
export function scopesFor(cloud: CloudEndpoints, appOnly: boolean, transport: MailboxTransport = 'smtp'): string[] {
  return TRANSPORT_SCOPES[transport](cloud, appOnly);
}

/** Graph's resource (token audience): the cloud's Graph host; the sandbox plays the global cloud's. */
function graphResource(cloud: CloudEndpoints): string {
  return cloud.name === 'sandbox' ? CLOUDS.global.graphHost : cloud.graphHost;
}
