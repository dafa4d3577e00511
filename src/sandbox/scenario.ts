import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { parse as parseYaml } from 'yaml';
import { Relay365Error } from '../errors.js';
import { formatConfigIssues, toConfigIssues } from '../config/issues.js';
import { DEFAULT_IDS } from './default-ids.js';

export { DEFAULT_IDS };

/**
 * The sandbox scenario: the tenants, apps, mailboxes, limits and faults that the simulated
 * Microsoft 365 serves. Defaults are Microsoft's (shared/M365.md); every one can be overridden so a
 * test can stage any setup, right or wrong. `docs/sandbox.md` documents the format.
 */

/** A whole number above zero, `fallback` when the scenario leaves it out: the sandbox's limits and lifetimes. */
const positiveInt = (fallback: number) => z.number().int().positive().default(fallback);
const guid = z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i, 'must be a GUID');

/** Which API a permission belongs to: Office 365 Exchange Online or Microsoft Graph. */
export const RESOURCES = {
  exchange: { appId: '00000002-0000-0ff1-ce00-000000000000', delegatedAudience: 'https://outlook.office.com', appAudience: 'https://outlook.office365.com' },
  graph: { appId: '00000003-0000-0000-c000-000000000000', delegatedAudience: 'https://graph.microsoft.com', appAudience: 'https://graph.microsoft.com' },
} as const;
export type ResourceName = keyof typeof RESOURCES;

const permissionsSchema = z
  .object({
    exchange: z.array(z.string()).default([]),
    graph: z.array(z.string()).default([]),
  })
  .strict();

/**
 * A Conditional Access policy as the sandbox applies it, at the token endpoint to delegated sign-ins
 * only (app-only client credentials are not subject to user policies). Microsoft Learn "Conditional
 * Access: Grant" (block, require MFA) and "Configure adaptive session lifetime policies" (sign-in frequency).
 */
const conditionalAccessSchema = z
  .object({
    /** Block access: AADSTS53003. */
    block: z.boolean().default(false),
    /** Require multifactor authentication: a sign-in without it gets AADSTS50076. */
    requireMfa: z.boolean().default(false),
    /** Sign-in frequency: a refresh token from a sign-in older than this gets AADSTS70043. */
    signInFrequencySeconds: z.number().int().positive().nullable().default(null),
  })
  .strict();

/**
 * Security Defaults (Microsoft Learn "Security defaults in Microsoft Entra ID"): `on` requires MFA at
 * sign-in (as `requireMfa`); `block` stands for a sign-in Security Defaults deem unsafe: AADSTS530035.
 */
const securityDefaultsSchema = z.enum(['off', 'on', 'block']);

const appSchema = z
  .object({
    clientId: guid,
    name: z.string().default('relay365'),
    /** Object id of the app's service principal (enterprise application); app-only tokens carry it as `oid`. */
    servicePrincipalId: guid.optional(),
    secrets: z
      .array(
        z
          .object({
            value: z.string().min(1),
            /** The secret's own id, which users sometimes paste instead of the value (AADSTS7000215). */
            id: guid.optional(),
            /** ISO date after which the secret is expired (AADSTS7000222). */
            expiresAt: z.string().datetime().optional(),
          })
          .strict(),
      )
      .default([]),
    /** Public certificates (PEM) whose private keys may sign client assertions. */
    certificates: z.array(z.object({ pem: z.string().includes('BEGIN CERTIFICATE') }).strict()).default([]),
    /**
     * Federated identity credentials (workload identity federation, Microsoft Learn "Workload identity
     * federation"): an external token from `issuer` with this `subject` and audience stands in for a
     * secret. Entra fetches the issuer's signing keys from its OIDC discovery document; the sandbox
     * takes the issuer's public key (PEM) here instead, so everything stays on loopback.
     */
    federatedCredentials: z
      .array(
        z
          .object({
            issuer: z.string().min(1),
            subject: z.string().min(1),
            audiences: z.array(z.string().min(1)).default(['api://AzureADTokenExchange']),
            publicKeyPem: z.string().includes('BEGIN PUBLIC KEY'),
          })
          .strict(),
      )
      .default([]),
    /** Application permissions (app roles) the app asks for, per resource. */
    roles: permissionsSchema.default({ exchange: [], graph: [] }),
    /** Delegated permissions (scopes) the app asks for, per resource. */
    delegatedScopes: permissionsSchema.default({ exchange: [], graph: [] }),
    /** Admin consent granted: without it app-only tokens carry no roles and users must consent themselves. */
    adminConsent: z.boolean().default(true),
    /** `New-ServicePrincipal` was run in Exchange Online for this app (needed for app-only SMTP). */
    exchangeServicePrincipal: z.boolean().default(true),
    /** Public client flows (device code) allowed ("Allow public client flows" in Entra). */
    publicClient: z.boolean().default(true),
    /** Registered redirect URIs; `http://localhost` allows any loopback port, as Entra does for native apps. */
    redirectUris: z.array(z.string().url()).default(['http://localhost']),
    /**
     * RBAC for Applications in Exchange Online (`New-ManagementScope` + `New-ManagementRoleAssignment
     * -App ... -CustomResourceScope`): the mailboxes (UPN or alias) this app's Graph application
     * permissions reach. null: unscoped, every mailbox of the tenant. Outside the scope Graph answers
     * 403 ErrorAccessDenied "[RAOP]" (see graph-access.ts).
     */
    mailboxScope: z.array(z.string().email()).nullable().default(null),
    /** The service principal is enabled ("Enabled for users to sign in"); false: AADSTS7000112. */
    enabled: z.boolean().default(true),
  })
  .strict();

const userSchema = z
  .object({
    upn: z.string().email(),
    id: guid,
    displayName: z.string().optional(),
    /** Password for the sandbox's sign-in page (a person trying the device code flow by hand). */
    password: z.string().optional(),
    /** The user has an Exchange Online mailbox. */
    mailbox: z.boolean().default(true),
    /** `Set-CASMailbox -SmtpClientAuthenticationDisabled`: null follows the tenant setting. */
    smtpAuthEnabled: z.boolean().nullable().default(null),
    /** Apps (client ids) holding `Add-MailboxPermission -AccessRights FullAccess` on this mailbox. */
    fullAccessApps: z.array(guid).default([]),
    /** Addresses this mailbox may send as (`Add-RecipientPermission -AccessRights SendAs`). */
    sendAs: z.array(z.string().email()).default([]),
    /**
     * Delegates of this mailbox (a shared mailbox, usually), by UPN: `Add-MailboxPermission -User <upn>
     * -AccessRights FullAccess` (read it, and log in to it over SMTP with their own token),
     * `Add-RecipientPermission -Trustee <upn> -AccessRights SendAs`, `Set-Mailbox -GrantSendOnBehalfTo <upn>`.
     */
    fullAccessUsers: z.array(z.string().email()).default([]),
    sendAsUsers: z.array(z.string().email()).default([]),
    sendOnBehalfUsers: z.array(z.string().email()).default([]),
    /** The mailbox's own proxy addresses, which it may always send as. */
    aliases: z.array(z.string().email()).default([]),
    /** Apps the user consented to for delegated scopes (besides admin consent). */
    consentedApps: z.array(guid).default([]),
    /** Device code and authorize requests for this user are approved without a person. */
    autoApprove: z.boolean().default(false),
    /**
     * A Conditional Access policy (or Security Defaults) blocks this user's sign-in: delegated token
     * requests get AADSTS53003 at the token endpoint; app-only tokens are not subject to it.
     */
    blockedByConditionalAccess: z.boolean().default(false),
    /** Conditional Access policies that include this user (added to the tenant's). */
    conditionalAccess: conditionalAccessSchema.optional(),
    /** Security Defaults as they act on this user; null follows the tenant. */
    securityDefaults: securityDefaultsSchema.nullable().default(null),
    /** The one-time code the sign-in pages ask for when MFA is required; an `autoApprove` user with one passes MFA unattended. */
    mfaCode: z.string().min(1).optional(),
    /** `accountEnabled`: false answers the user's sign-ins and refreshes with AADSTS50057. */
    accountEnabled: z.boolean().default(true),
    /** The password expired: sign-ins get AADSTS50055 (refresh tokens keep working). */
    passwordExpired: z.boolean().default(false),
    /**
     * The user's TokensValidFrom (ISO): a password change or `Revoke-MgUserSignInSession` sets it, and
     * refresh tokens issued before it get AADSTS50173. null: none revoked.
     */
    tokensValidFrom: z.string().datetime().nullable().default(null),
    /**
     * The mailbox's storage quota (ProhibitSendQuota); null: never full. Every message sent by SMTP
     * AUTH or Graph is kept in Sent Items and counts toward it (shared/M365.md "mailbox storage").
     */
    mailboxQuotaBytes: z.number().int().positive().nullable().default(null),
    /** What the mailbox holds besides the copies the sandbox saved to Sent Items. */
    mailboxUsedBytes: z.number().int().nonnegative().default(0),
    /**
     * `Set-Mailbox -MaxSendSize`; null: `limits.maxMessageBytes` (Exchange Online's default, 35 MB). A
     * message over it is accepted with `250` and then bounced by a 5.2.3 NDR (ndr.ts), as Exchange does.
     */
    maxSendSizeBytes: z.number().int().positive().nullable().default(null),
    /**
     * A High Volume Email account (a mail user, `New-MailUser -HVEAccount`): it submits through the
     * sandbox's HVE listener (smtp-hve.office365.com), with its password or an app-only token of an app
     * on its Allowed Apps list (MS Learn "High volume email for Microsoft 365", "OAuth authentication for
     * high volume emails"). Its mail does not count toward the tenant external recipient rate limit.
     */
    hve: z.boolean().default(false),
    /** `Add-HVEAppAccess -AppIds`: the apps (client ids) that may send as this HVE account with OAuth. */
    hveApps: z.array(guid).default([]),
  })
  .strict();

const tenantSchema = z
  .object({
    id: guid,
    domain: z.string().min(1),
    /** `Set-TransportConfig -SmtpClientAuthenticationDisabled $false` (true here means enabled). */
    smtpAuthEnabled: z.boolean().default(true),
    /** Security Defaults for the tenant (see the user's `securityDefaults`); unset: off. */
    securityDefaults: securityDefaultsSchema.optional(),
    /** Conditional Access policies for every user of the tenant. */
    conditionalAccess: conditionalAccessSchema.optional(),
    apps: z.array(appSchema).default([]),
    users: z.array(userSchema).default([]),
    /** Accepted domains besides `domain`: recipients there are internal for the external recipient limit. */
    acceptedDomains: z.array(z.string().min(1)).optional(),
    /**
     * Non-trial email licences (unset: 1): the tenant external recipient rate limit (TERRL) is 500 x licences^0.7 +
     * 9,500 external recipients per rolling 24 hours (Exchange Team blog "Introducing Exchange Online
     * Tenant Outbound Email Limits", 2025-02-24; MS Learn "Exchange Online limits").
     */
    licenses: z.number().int().nonnegative().optional(),
    /** A trial tenant: 5,000 external recipients a day, and NDR 5.7.232 instead of 5.7.233. */
    trial: z.boolean().optional(),
    /** Replaces the computed TERRL (so a test need not send 10,000 recipients). */
    externalRecipientsPerDay: z.number().int().positive().optional(),
  })
  .strict();

/**
 * What happens to mail after Exchange accepted it (the sandbox has no internet): which recipients do
 * not exist or have a full mailbox, which domains cannot be reached, and how soon the NDRs come.
 */
export const mailFlowSchema = z
  .object({
    /**
     * Addresses that do not exist. At another domain Exchange accepts them and bounces them by an NDR
     * (5.1.1, the remote server's reply); at an accepted domain of the tenant it refuses them at RCPT
     * with 550 5.1.10 (Directory Based Edge Blocking).
     */
    unknownRecipients: z.array(z.string().email()).default([]),
    /** Addresses whose mailbox is full: NDR 5.2.2. */
    fullMailboxes: z.array(z.string().email()).default([]),
    /** Domains whose servers never answer: a delay notification (4.4.7, Action: delayed), then an NDR when the message expires. */
    unreachableDomains: z.array(z.string().min(1)).default([]),
    /** Time between the 250 and the NDR in the sender's Inbox (Exchange: seconds to minutes). */
    ndrDelayMs: z.number().int().nonnegative().default(200),
    /** Time until the delay notification for an unreachable domain (Exchange's default: 4 hours). */
    delayNotificationMs: z.number().int().nonnegative().default(500),
    /** Time until the message expires and its NDR comes (Exchange Online retries for 24 hours). */
    expirationMs: z.number().int().nonnegative().default(2000),
  })
  .strict();

/** Per-mailbox Exchange Online limits; defaults from shared/M365.md. */
export const limitsSchema = z
  .object({
    messagesPerMinute: positiveInt(30),
    recipientsPerDay: positiveInt(10_000),
    recipientsPerMessage: positiveInt(500),
    connectionsPerMailbox: positiveInt(3),
    /** 35 MB: Exchange Online's default maximum send size. */
    maxMessageBytes: positiveInt(35 * 1024 * 1024),
    /** Speeds up every rate window: 30 makes a "minute" last 2 s and a "day" 48 min. */
    timeScale: z.number().positive().default(1),
    /** Turns every limit off (benchmarks measure the relay, not the quota). */
    unlimited: z.boolean().default(false),
    /** Graph requests per mailbox per 10 minutes (scaled by `timeScale`); more draw `429` with `Retry-After`. */
    graphRequestsPer10Minutes: positiveInt(10_000),
    /** Concurrent Graph requests per mailbox; more draw `429` (MailboxConcurrency). */
    graphConcurrentRequests: positiveInt(4),
    /**
     * Continuous-error throttling (MS Learn "Continuous error throttling for SMTP AUTH submissions",
     * via shared/M365.md): this many refusals of one kind in a row block the mailbox's submissions
     * with 550 5.2.25x. Microsoft publishes neither the count nor the block's length: both are settable.
     */
    continuousErrorThreshold: positiveInt(10),
    /** How long that block lasts (scaled by `timeScale`). */
    continuousErrorBlockSeconds: z.number().positive().default(3600),
  })
  .strict();

export const tokenSettingsSchema = z
  .object({
    /** Access token lifetime; Microsoft's are 60 to 90 minutes. */
    lifetimeSeconds: positiveInt(3600),
    refreshTokenLifetimeSeconds: positiveInt(90 * 24 * 3600),
    deviceCodeLifetimeSeconds: positiveInt(900),
    deviceCodeIntervalSeconds: z.number().int().nonnegative().default(5),
  })
  .strict();

const tokenFaultSchema = z
  .object({
    /** Answer with this HTTP status (e.g. 500, 503) instead of a token. */
    status: z.number().int().min(400).max(599).optional(),
    /** Or answer with this AADSTS error (e.g. `AADSTS7000222`). */
    aadsts: z
      .string()
      .regex(/^AADSTS\d+$/)
      .optional(),
    /** Delay before answering, in ms. */
    latencyMs: z.number().int().nonnegative().default(0),
    /** Only requests from this app. */
    clientId: guid.optional(),
    /** How many requests the fault applies to (unset: until removed). */
    count: z.number().int().positive().optional(),
  })
  .strict();

const smtpFaultSchema = z
  .object({
    /** The command after which the fault fires. */
    stage: z.enum(['connect', 'auth', 'mail', 'rcpt', 'data']),
    /** The reply to give, e.g. `451 4.7.500 Server busy. Please try again later.` */
    reply: z
      .string()
      .regex(/^[245]\d\d [245]\.\d{1,3}\.\d{1,3} .+/, 'must be "<code> <enhanced code> <text>"')
      .optional(),
    /** Close the connection instead of replying. */
    drop: z.boolean().default(false),
    /** Only sessions authenticated as this mailbox (not for `connect`). */
    mailbox: z.string().email().optional(),
    count: z.number().int().positive().optional(),
  })
  .strict()
  .refine((f) => f.drop || f.reply !== undefined, { message: 'a fault needs a reply or drop: true' });

const graphFaultSchema = z
  .object({
    /** Answer Graph requests with this status instead: 429 (throttled) or 503 (busy). */
    status: z.union([z.literal(429), z.literal(503)]),
    /** The `Retry-After` header to send, in seconds (none when unset). */
    retryAfterSeconds: z.number().int().nonnegative().optional(),
    /** Only requests for this mailbox. */
    mailbox: z.string().email().optional(),
    count: z.number().int().positive().optional(),
  })
  .strict();

export const faultsSchema = z
  .object({
    token: z.array(tokenFaultSchema).default([]),
    smtp: z.array(smtpFaultSchema).default([]),
    graph: z.array(graphFaultSchema).default([]),
  })
  .strict();

export const scenarioSchema = z
  .object({
    tenants: z.array(tenantSchema).min(1),
    /**
     * The managed identity endpoint of an Azure App Service host (src/sandbox/managed-identity.ts):
     * the `IDENTITY_HEADER` value it requires, and the identities it serves, each an app of the first
     * tenant by client id (a managed identity is a service principal: its roles are the app's).
     */
    managedIdentity: z
      .object({
        header: z.string().min(8),
        systemAssigned: guid.optional(),
        userAssigned: z.array(guid).default([]),
      })
      .strict()
      .nullable()
      .default(null),
    limits: limitsSchema.default(limitsSchema.parse({})),
    token: tokenSettingsSchema.default(tokenSettingsSchema.parse({})),
    faults: faultsSchema.default({ token: [], smtp: [], graph: [] }),
    mailFlow: mailFlowSchema.default(mailFlowSchema.parse({})),
  })
  .strict()
  .superRefine((s, ctx) => {
    const seen = new Set<string>();
    s.tenants.forEach((t, ti) => {
      t.users.forEach((u, ui) => {
        const key = u.upn.toLowerCase();
        if (seen.has(key)) ctx.addIssue({ code: 'custom', path: ['tenants', ti, 'users', ui, 'upn'], message: `${u.upn} appears twice` });
        seen.add(key);
      });
    });
  });

export type Scenario = z.infer<typeof scenarioSchema>;
export type ScenarioInput = z.input<typeof scenarioSchema>;
export type Tenant = Scenario['tenants'][number];
export type App = Tenant['apps'][number];
export type User = Tenant['users'][number];
export type Limits = Scenario['limits'];
export type TokenFault = Scenario['faults']['token'][number];
export type SmtpFault = Scenario['faults']['smtp'][number];
export type GraphFault = Scenario['faults']['graph'][number];
export type MailFlow = Scenario['mailFlow'];

/**
 * Validates a scenario, reporting every problem at once.
 * @throws Relay365Error `R365_SCENARIO_INVALID`
 */
export function parseScenario(input: unknown, source = 'scenario'): Scenario {
  const result = scenarioSchema.safeParse(input);
  if (!result.success) {
    const issues = toConfigIssues(result.error);
    throw new Relay365Error('R365_SCENARIO_INVALID', `${source} has ${issues.length} problem(s):\n${formatConfigIssues(issues)}`, {
      details: { issues },
    });
  }
  return result.data;
}

/** Reads a YAML (or JSON) scenario file. */
export async function loadScenario(path: string): Promise<Scenario> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw new Relay365Error('R365_SCENARIO_INVALID', `Cannot read scenario file ${path}.`, { cause });
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (cause) {
    throw new Relay365Error('R365_SCENARIO_INVALID', `${path} is not valid YAML: ${(cause as Error).message}`, { cause });
  }
  return parseScenario(raw, path);
}

/** The scenario `relay365 sandbox` serves without `--scenario`: one tenant, an app-only app and a public client. */
export function defaultScenario(): Scenario {
  const d = DEFAULT_IDS;
  return parseScenario({
    tenants: [
      {
        id: d.tenantId,
        domain: d.tenantDomain,
        apps: [
          {
            clientId: d.appClientId,
            name: 'relay365 (app-only)',
            servicePrincipalId: d.appServicePrincipalId,
            secrets: [{ value: d.appSecret }],
            roles: { exchange: ['SMTP.SendAsApp'], graph: ['Mail.Send'] },
            publicClient: false,
          },
          {
            clientId: d.publicClientId,
            name: 'relay365 (delegated)',
            delegatedScopes: { exchange: ['SMTP.Send'], graph: ['Mail.Send'] },
            publicClient: true,
          },
        ],
        users: [
          {
            upn: d.mailbox,
            id: d.mailboxId,
            displayName: 'Relay mailbox',
            fullAccessApps: [d.appClientId],
            sendAs: [`noreply@${d.tenantDomain}`],
            autoApprove: true,
          },
          { upn: d.user, id: d.userId, displayName: 'Alice', password: d.userPassword, fullAccessApps: [] },
        ],
      },
    ],
  });
}
