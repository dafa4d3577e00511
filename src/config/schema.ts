import { isIP } from 'node:net';
import { z } from 'zod';
import { CLOUD_NAMES, type CloudName } from './cloud-names.js';
import { parseCidr } from './cidr.js';
import { clientIdProblem, tenantProblem } from './entra-ids.js';
import { parsePasswordHash } from './password-hash.js';

/**
 * A secret is never written inline unless the user insists: `env:NAME` reads an environment
 * variable, `file:PATH` reads a file (keep it mode 0600). A plain string is taken as the secret itself.
 */
export const secretRefSchema = z.string().min(1, 'must not be empty');

/**
 * A string field checked by a rule that explains itself (`problem` returns why the value is refused, or
 * undefined): the rules live beside the schema (cidr.ts, password-hash.ts, entra-ids.ts) so that every
 * caller that validates a config (serve, reload, doctor, init, the library) refuses the same values.
 */
function checkedString(problem: (value: string) => string | undefined) {
  return z
    .string()
    .min(1, 'must not be empty')
    .superRefine((value, ctx) => {
      const why = problem(value);
      if (why !== undefined) ctx.addIssue({ code: 'custom', message: why });
    });
}

/** A string field a parser reads (cidr.ts, password-hash.ts): refused with the `problem` the parser finds. */
function parsedString(parse: (value: string) => object | { problem: string }) {
  return checkedString((value) => {
    const parsed = parse(value);
    return 'problem' in parsed ? parsed.problem : undefined;
  });
}

/** A whole number above zero, `fallback` when the config leaves it out: the counts, sizes and timeouts below. */
function positiveInt(fallback: number) {
  return z.number().int().positive().default(fallback);
}

/** pino's levels, and `silent`. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export const logSchema = z
  .object({
    level: z.enum(LOG_LEVELS).default('info'),
  })
  .strict();

export { CLOUD_NAMES, type CloudName };

/** How relay365 gets a token for a mailbox. */
export const AUTH_FLOWS = ['client-secret', 'client-certificate', 'federated', 'managed-identity', 'device-code', 'auth-code', 'token-command'] as const;
export type AuthFlow = (typeof AUTH_FLOWS)[number];

/**
 * Authentication settings. Set once at the top level (`auth:`) and override per mailbox; the
 * merged result must satisfy the flow's requirements (checked in `configSchema`'s refinement).
 */
export const authSchema = z
  .object({
    flow: z.enum(AUTH_FLOWS).optional(),
    /** Tenant id (GUID) or verified domain, e.g. `contoso.onmicrosoft.com` (not `common` or `organizations`). */
    tenant: checkedString(tenantProblem).optional(),
    /** Application (client) id of the app registration: a GUID. */
    clientId: checkedString(clientIdProblem).optional(),
    /** client-secret flow: the secret's value (an `env:` or `file:` reference, please). */
    clientSecret: secretRefSchema.optional(),
    /**
     * client-secret flow: when the secret expires (the "Expires" column of the app's Certificates &
     * secrets page), an ISO date such as `2027-03-31`; doctor, the metric and the webhook warn ahead of it.
     */
    secretExpires: z
      .string()
      .refine((s) => /^\d{4}-\d{2}-\d{2}([T ][0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(s) && !Number.isNaN(Date.parse(s)), {
        message: 'must be an ISO date such as 2027-03-31 or 2027-03-31T12:00:00Z',
      })
      .optional(),
    /**
     * client-secret flow: read the secret's end date from the app registration through Microsoft Graph
     * (`passwordCredentials`, matched by the secret's first three characters), which needs the
     * application permission Application.Read.All; `secretExpires` is used when Graph refuses.
     */
    secretExpiresFromGraph: z.boolean().optional(),
    /** client-certificate flow: the PEM private key and the certificate (for its thumbprint). */
    certificate: z
      .object({
        keyFile: z.string().min(1),
        certFile: z.string().min(1).optional(),
        /** SHA-256 (or legacy SHA-1) thumbprint in hex, when certFile is not given. */
        thumbprint: z
          .string()
          .regex(/^[0-9a-fA-F]{40}$|^[0-9a-fA-F]{64}$/, 'must be a 40 or 64 digit hex thumbprint')
          .optional(),
        /** Passphrase of an encrypted private key (`-----BEGIN ENCRYPTED PRIVATE KEY-----`): a secret reference. */
        passphrase: secretRefSchema.optional(),
      })
      .strict()
      .refine((c) => c.certFile !== undefined || c.thumbprint !== undefined, { message: 'give certFile or thumbprint' })
      .optional(),
    /**
     * federated flow (workload identity federation): the file holding the external OIDC token that
     * stands in for a secret, read again before each token request (Kubernetes rotates it). Default:
     * the `AZURE_FEDERATED_TOKEN_FILE` environment variable, as AKS workload identity sets it.
     */
    assertionFile: z.string().min(1).optional(),
    /**
     * managed-identity flow: the client id of a user-assigned managed identity; without it the host's
     * system-assigned identity is used.
     */
    managedIdentityClientId: z.string().min(1).optional(),
    /** federated flow: or a command that prints the external token (e.g. a GitHub Actions OIDC request). */
    assertionCommand: z.string().min(1).optional(),
    /** token-command flow: a shell command that prints an access token on stdout. */
    command: z.string().min(1).optional(),
    /** token-command flow: how long to wait for the command. */
    commandTimeoutMs: positiveInt(30_000),
    /** auth-code flow: loopback port for the redirect (0: any free port). */
    redirectPort: z.number().int().min(0).max(65535).default(0),
  })
  .strict();
export type AuthSettings = z.infer<typeof authSchema>;

/** How a mailbox's messages leave: SMTP AUTH client submission, or Microsoft Graph `sendMail`. */
export const MAILBOX_TRANSPORTS = ['smtp', 'graph'] as const;
export type MailboxTransport = (typeof MAILBOX_TRANSPORTS)[number];

/**
 * Reading a mailbox's non-delivery reports (NDRs) back: Exchange accepts a message with `250` and later
 * bounces it by an NDR in the sender's Inbox. Needs the `Mail.Read` application permission, scoped to the
 * mailbox by RBAC for Applications, or for a delegated mailbox Graph's delegated `Mail.ReadWrite`
 * (docs/bounces.md).
 */
export const mailboxBouncesSchema = z
  .object({
    /** Read the Inbox's NDRs (Graph delta query), apply them per recipient, suppress hard-bounced addresses. */
    read: z.boolean().default(false),
    /** Seconds between two reads of the Inbox. */
    everySeconds: z.number().positive().default(60),
    /** What is done with a report once applied: moved to `folder`, or given the category `category`. */
    mark: z.enum(['move', 'category']).default('move'),
    /** The Inbox's child folder processed reports are moved to (created when missing). */
    folder: z.string().min(1).max(255).default('relay365 reports'),
    /** The category given to processed reports with `mark: category`. */
    category: z.string().min(1).max(255).default('relay365 report'),
  })
  .strict();
export type MailboxBouncesConfig = z.infer<typeof mailboxBouncesSchema>;

export const mailboxSchema = z
  .object({
    /** The mailbox relay365 signs in as (XOAUTH2 `user=`). */
    address: z.string().email(),
    auth: authSchema.partial().optional(),
    /** Concurrent SMTP connections for this mailbox; default `delivery.maxConnections`. */
    maxConnections: z.number().int().min(1).max(3, 'Exchange Online allows at most 3 concurrent connections per mailbox').optional(),
    /**
     * Other addresses this mailbox may send as (shared mailboxes or distribution groups it holds SendAs
     * on: Add-RecipientPermission). Mailboxes that list the same alias form a pool that shares its load.
     */
    aliases: z.array(z.string().email()).default([]),
    /**
     * Delegated flows (device-code, auth-code): the user who signs in for this mailbox when it is not
     * their own, e.g. a shared mailbox. Exchange takes that user's token for it when they have FullAccess
     * on it (Add-MailboxPermission) and SendAs to send as its address (docs/microsoft-365-setup.md).
     */
    signInAs: z.string().email().optional(),
    /** Messages per minute; default Microsoft's 30 (`limits.messagesPerMinute`). */
    messagesPerMinute: z.number().int().positive().optional(),
    /** Recipients per rolling 24 hours; default Microsoft's 10,000 (`limits.recipientsPerDay`). */
    recipientsPerDay: z.number().int().positive().optional(),
    /** The way out: SMTP submission with XOAUTH2, or Microsoft Graph `sendMail` (docs/graph.md). */
    transport: z.enum(MAILBOX_TRANSPORTS).default('smtp'),
    /** Reading the mailbox's non-delivery reports back through Graph (docs/bounces.md). */
    bounces: mailboxBouncesSchema.optional(),
    /**
     * A High Volume Email account: its mail goes through the HVE endpoint (smtp-hve.office365.com:587)
     * with an app-only token (MS Learn "OAuth authentication for high volume emails for Microsoft 365").
     */
    hve: z.boolean().default(false),
  })
  .strict();

/** Exchange Online's per-mailbox limits (Microsoft Learn, "Exchange Online limits"): the scheduler keeps every mailbox within them. */
export const limitsSchema = z
  .object({
    messagesPerMinute: positiveInt(30),
    recipientsPerDay: positiveInt(10_000),
    /** 500 by default; a tenant may raise it to 1,000. */
    recipientsPerMessage: z.number().int().positive().max(1000).default(500),
    /** 35 MB: Exchange Online's default maximum send size. */
    maxMessageBytes: positiveInt(35 * 1024 * 1024),
    /** Length of the rate window ("a minute") in ms; only tests and the scaled sandbox change it. */
    minuteMs: positiveInt(60_000),
    /** Length of the recipient window ("24 hours") in ms. */
    dayMs: positiveInt(86_400_000),
    /**
     * Added to each window: relay365 counts a message when it starts sending it, Exchange when it has
     * received it, so two sends a window apart can land closer together at Exchange. The margin absorbs that.
     */
    windowMarginMs: z.number().int().nonnegative().default(1_000),
  })
  .strict();

/**
 * A length of time as people write it: a number and a unit (`30s`, `15m`, `12h`, `7d`), or `off` for
 * never. Kept as written (so a parsed config parses again unchanged); `parseDuration` reads it.
 */
export const durationSchema = z.string().regex(/^(off|\d+(\.\d+)?(s|m|h|d))$/, 'must be a number with s, m, h or d (e.g. 7d, 12h), or off');

/** `7d` in milliseconds; undefined for `off`. */
export function parseDuration(text: string): number | undefined {
  if (text === 'off') return undefined;
  const match = /^(\d+(?:\.\d+)?)(s|m|h|d)$/.exec(text);
  if (!match) throw new Error(`not a duration: ${text}`);
  const unit = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] as 's' | 'm' | 'h' | 'd'];
  return Number(match[1]) * unit;
}

/** What is kept of a finished message (sent, failed or cancelled), and for how long after it finished. */
export const retentionSchema = z
  .object({
    /** Its content (the raw MIME): deleted this long after the message finished; its metadata stays. */
    bodies: durationSchema.default('7d'),
    /** The message itself, its attempts and its recipients' outcomes. */
    records: durationSchema.default('90d'),
  })
  .strict();

/** The durable outbox and its retry policy. */
export const queueSchema = z
  .object({
    /** SQLite database file (the embedded default). */
    path: z.string().min(1).default('relay365.db'),
    /** PostgreSQL URL; when set, the outbox, the HTTP front door's tables and the token cache live there and several nodes may share them. */
    url: z
      .string()
      .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL')
      .optional(),
    /** PostgreSQL schema holding relay365's tables (with `url`); a plain lower-case name, created by `relay365 db migrate`. */
    schema: z
      .string()
      .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'must be lower-case letters, digits and _, not starting with a digit, at most 63')
      .default('relay365'),
    /** How long a worker holds a message it is sending before another may take it (crash recovery). */
    leaseSeconds: positiveInt(120),
    /** First retry delay after a transient failure; doubles each attempt, with jitter. */
    retryBaseSeconds: z.number().positive().default(30),
    retryMaxSeconds: z.number().positive().default(3600),
    /** A message still failing transiently after this long is failed for good. */
    maxAgeHours: z.number().positive().default(48),
    /** Pause of a mailbox after an auth failure before its token is tried again. */
    authPauseSeconds: z.number().positive().default(60),
    /**
     * Send a delivery status notification (RFC 3464) to the envelope sender of a message that failed,
     * and of a recipient a non-delivery report read back (`mailboxes[].bounces.read`) bounced.
     */
    bounces: z.boolean().default(false),
    /** How long finished messages' content and records are kept (a sweep deletes them; src/outbox/retention.ts). */
    retention: retentionSchema.prefault({}),
    /** Encrypt the content of new messages in the store (AES-256-GCM, with the token cache's key). */
    encryptBodies: z.boolean().default(false),
  })
  .strict()
  .superRefine((queue, ctx) => {
    const bodies = parseDuration(queue.retention.bodies) ?? Infinity;
    const records = parseDuration(queue.retention.records) ?? Infinity;
    if (records < bodies)
      ctx.addIssue({
        code: 'custom',
        path: ['retention', 'records'],
        message: `must be at least retention.bodies (${queue.retention.bodies}): deleting a message deletes its content`,
      });
  });

/** SMTP delivery to Exchange Online. */
export const deliverySchema = z
  .object({
    /** Concurrent connections per mailbox: Exchange Online allows 3 (more draw `432 4.3.2`). */
    maxConnections: z.number().int().min(1).max(3, 'Exchange Online allows at most 3 concurrent connections per mailbox').default(3),
    connectionTimeoutMs: positiveInt(30_000),
    greetingTimeoutMs: positiveInt(30_000),
    /** Inactivity timeout of each command and of the DATA transfer. */
    socketTimeoutMs: positiveInt(120_000),
    /** Messages sent over one connection before it is replaced. */
    maxMessagesPerConnection: positiveInt(100),
    /**
     * Keep connections open between messages. Default: yes on one node; no with `queue.url`, because
     * Exchange counts open connections per mailbox and the nodes' idle connections would add up past 3.
     */
    reuseConnections: z.boolean().optional(),
  })
  .strict();

/** A sender rule: an exact address or `@domain`; a user or address may only use senders its rules allow. */
const senderRule = z.string().regex(/^([^@\s]+@[^@\s]+|@[^@\s]+)$/, 'must be an address or @domain');

/**
 * Sender rewriting for a device with a fixed sender it cannot change (a scanner that sends as
 * `scanner@printer.local`): the envelope sender and the header From become `to` (a configured mailbox
 * or alias), and the device's address is kept where `keep` says (docs/devices.md).
 */
const rewriteSender = z
  .object({
    /** The address messages go out From: a mailbox's address or one of its aliases. */
    to: z.string().regex(/^[^@\s<>]+@[^@\s<>]+$/, 'must be an address (a mailbox or alias)'),
    /** `replyTo`: the device's From becomes Reply-To (unless one is there); `displayName`: its address becomes From's display name; `none`: dropped. */
    keep: z.enum(['replyTo', 'displayName', 'none']).default('replyTo'),
  })
  .strict();

/** A listener's TLS: `starttls` (offered; required before AUTH), `implicit` (465-style), or `none`. */
export const LISTENER_TLS_MODES = ['starttls', 'implicit', 'none'] as const;
export type ListenerTls = (typeof LISTENER_TLS_MODES)[number];

/**
 * The greeting delay of a listener without `greetingDelayMs`. Submission listeners (`starttls`,
 * `implicit`) greet at once: their clients log in, and smtp-server's 100 ms wait before every greeting
 * capped devices that connect per message. A plain listener (`none`, port-25 style, for LAN devices on
 * the allowlist that cannot do TLS) keeps smtp-server's 100 ms early-talker check.
 */
export function defaultGreetingDelayMs(tls: ListenerTls): number {
  return tls === 'none' ? 100 : 0;
}

/** The local SMTP relay (`relay365 serve`) for printers, scanners and legacy apps. */
export const smtpIngressSchema = z
  .object({
    enabled: z.boolean().default(true),
    listeners: z
      .array(
        z
          .object({
            /** Address to bind; 127.0.0.1 by default, 0.0.0.0 to serve the LAN. */
            host: z.string().default('127.0.0.1'),
            port: z.number().int().min(0).max(65535),
            /** `starttls` (offered; required before AUTH), `implicit` (465-style TLS from the first byte), or `none`. */
            tls: z.enum(LISTENER_TLS_MODES).default('starttls'),
            /**
             * Allow AUTH without TLS on this listener: only for trusted devices on a trusted network that
             * cannot do TLS (old printers). Passwords then cross the network in clear.
             */
            allowPlainAuth: z.boolean().default(false),
            /**
             * How long the greeting waits after the connection is accepted; a client that sends a command
             * before it is refused (`421 You talk too soon`, smtp-server's early-talker check). Default
             * {@link defaultGreetingDelayMs}: none where clients log in over TLS, 100 ms on `tls: none`.
             */
            greetingDelayMs: z.number().int().min(0).max(30_000).optional(),
          })
          .strict()
          .transform((listener) => ({ ...listener, greetingDelayMs: listener.greetingDelayMs ?? defaultGreetingDelayMs(listener.tls) })),
      )
      // Parsed like a listener that is written down, so its defaults (and greetingDelayMs) are the fields' own.
      .prefault([{ port: 2525 }]),
    /** PEM certificate and key for TLS; without them relay365 makes a self-signed pair in `<dataDir>/tls`. */
    certFile: z.string().optional(),
    keyFile: z.string().optional(),
    /** Name in the greeting and `Received:` headers and in the generated certificate (default: the machine's host name). */
    hostname: z.string().optional(),
    /** The generated certificate (no `certFile`). */
    tls: z
      .object({
        /**
         * More names clients reach the relay by (DNS names or IP addresses), put in the generated
         * certificate beside `hostname`, the machine's name, the listeners' addresses and loopback.
         */
        names: z
          .array(
            z
              .string()
              .refine(
                (n) => isIP(n) !== 0 || /^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/.test(n),
                'must be a host name (relay.contoso.lan, *.contoso.lan) or an IP address',
              ),
          )
          .default([]),
      })
      .strict()
      .prefault({}),
    /** Local users: `relay365 user add NAME` prints the line to paste. */
    users: z
      .array(
        z
          .object({
            name: z.string().min(1),
            /** `scrypt$N$r$p$salt$hash` (base64); never the password itself. */
            passwordHash: parsedString(parsePasswordHash),
            /** Senders this user may use (From and MAIL FROM); default: every configured mailbox and alias. */
            allowedSenders: z.array(senderRule).optional(),
            /** Rewrite this user's sender to a mailbox (fixed-sender devices); default off. */
            rewriteSender: rewriteSender.optional(),
          })
          .strict(),
      )
      .superRefine((users, ctx) => {
        // A login names one user: a second entry of the same name could never log in.
        const seen = new Set<string>();
        users.forEach((user, i) => {
          if (seen.has(user.name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `${user.name} is listed twice` });
          seen.add(user.name);
        });
      })
      .default([]),
    /** Addresses that may relay without AUTH (devices that cannot log in), as CIDRs. */
    allowlist: z
      .array(
        z
          .object({
            cidr: parsedString(parseCidr),
            allowedSenders: z.array(senderRule).optional(),
            /** Rewrite these clients' sender to a mailbox (fixed-sender devices); default off. */
            rewriteSender: rewriteSender.optional(),
          })
          .strict(),
      )
      .default([]),
    /** Default: Microsoft's 35 MB (`limits.maxMessageBytes`). */
    maxMessageBytes: z.number().int().positive().optional(),
    /** Default: Microsoft's 500 (`limits.recipientsPerMessage`). */
    maxRecipients: z.number().int().positive().optional(),
    maxConnectionsPerClient: positiveInt(20),
    maxConnections: positiveInt(500),
    /** Commands allowed on one connection before it is closed (defence against endless sessions). */
    maxCommandsPerConnection: positiveInt(10_000),
    idleTimeoutSeconds: positiveInt(120),
    /** A client neither allowlisted nor logged in is closed after this long (a NOOP now and then does not keep it). */
    preAuthTimeoutSeconds: positiveInt(30),
    /** Connections of one client address (IPv6: its /64) not yet logged in, at most. */
    maxPreAuthConnectionsPerClient: positiveInt(10),
    /** Of `maxConnections`, slots only allowlisted and logged-in clients may use (default a fifth): strangers cannot fill the relay. */
    reservedConnections: z.number().int().nonnegative().optional(),
    /** DATA must end this long after it began, however slowly the bytes come. */
    dataTimeoutSeconds: positiveInt(600),
    /**
     * After `lockoutFailures` wrong passwords for one user from one address (IPv6: its /64) within
     * `lockoutWindowSeconds`, refuse that user's AUTH from there for `lockoutSeconds`; an address failing
     * five times as often across names is refused for every user (ingress/smtp/login-lockout.ts).
     */
    lockoutFailures: positiveInt(10),
    lockoutWindowSeconds: positiveInt(600),
    lockoutSeconds: positiveInt(900),
  })
  .strict()
  .superRefine((smtp, ctx) => {
    // Strangers must keep at least one slot, or the door would refuse every client not yet logged in.
    if (smtp.reservedConnections !== undefined && smtp.reservedConnections >= smtp.maxConnections)
      ctx.addIssue({
        code: 'custom',
        path: ['reservedConnections'],
        message: `must be less than maxConnections (${smtp.maxConnections}): clients not yet logged in need at least one slot`,
      });
  });

/**
 * The events a webhook receiver may subscribe to (`http.webhooks[].events`); observe/webhooks.ts sends
 * them and checks that each is one of its event types.
 */
export const WEBHOOK_EVENT_TYPES = [
  'message.sent',
  'message.deferred',
  'message.failed',
  'message.recipient.refused',
  'mailbox.paused',
  'mailbox.resumed',
  'mailbox.needs_login',
  'message.bounced',
  'message.delayed',
  'credential.expiring',
] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/** The HTTP send API, metrics, health and the dashboard (`relay365 serve`). */
export const httpIngressSchema = z
  .object({
    enabled: z.boolean().default(true),
    /** Address to bind; 127.0.0.1 by default. */
    host: z.string().default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).default(8025),
    /** Largest request body (JSON with base64 attachments grows by a third over the message). */
    bodyLimitBytes: positiveInt(50 * 1024 * 1024),
    /** Open HTTP connections at most; more are dropped as they are accepted. */
    maxConnections: positiveInt(1024),
    /** Deadline for a whole request, body included: a client trickling its body cannot hold a socket longer. */
    requestTimeoutSeconds: positiveInt(120),
    /** Request bodies over 1 MiB (or of unknown length) read at once; more get 503 with Retry-After before their body is read. */
    maxConcurrentLargeBodies: positiveInt(4),
    /** Admin password for the dashboard (an `env:` or `file:` reference); without it the dashboard is off. */
    adminPassword: secretRefSchema.optional(),
    /** Webhook receivers of message and mailbox events, signed with HMAC-SHA256. */
    webhooks: z
      .array(
        z
          .object({
            url: z.string().url(),
            /** Signing secret (an `env:` or `file:` reference). */
            secret: secretRefSchema,
            /** Only these event types (default: all). */
            events: z.array(z.enum(WEBHOOK_EVENT_TYPES)).optional(),
          })
          .strict(),
      )
      .default([]),
  })
  .strict();

/** The relay365 config file (`relay365.yaml`). Later parts add their sections here. */
export const configSchema = z
  .object({
    /** Where relay365 keeps its database, keys, token cache and generated certificates. */
    dataDir: z.string().min(1).default('./data'),
    log: logSchema.prefault({}),
    /** Which Microsoft cloud to talk to. `sandbox` is the local simulator (`relay365 sandbox`). */
    cloud: z.enum(CLOUD_NAMES).default('global'),
    /** Where the sandbox listens, when `cloud: sandbox`. */
    sandbox: z
      .object({
        url: z.string().url().default('https://localhost:10443'),
        smtpHost: z.string().default('127.0.0.1'),
        smtpPort: z.number().int().min(1).max(65535).default(10587),
        /** The sandbox's High Volume Email port (its smtp-hve.office365.com), on `smtpHost`. */
        hveSmtpPort: z.number().int().min(1).max(65535).default(10588),
        /** The sandbox's CA, trusted for the sandbox only. */
        caFile: z.string().default('./data/sandbox/ca.pem'),
      })
      .strict()
      .prefault({}),
    network: z
      .object({
        /** An extra CA to trust (a TLS-inspecting proxy's), on top of the system's. */
        caFile: z.string().min(1).optional(),
        /** HTTPS proxy for the identity platform and Graph; default from HTTPS_PROXY. */
        httpsProxy: z.string().url().optional(),
        /** Timeout of each identity platform request. */
        timeoutMs: positiveInt(15_000),
      })
      .strict()
      .prefault({}),
    auth: authSchema.prefault({}),
    delivery: deliverySchema.prefault({}),
    mailboxes: z.array(mailboxSchema).default([]),
    // prefault: a missing section is parsed as `{}`, so each default is written once, beside its field.
    limits: limitsSchema.prefault({}),
    queue: queueSchema.prefault({}),
    smtp: smtpIngressSchema.prefault({}),
    http: httpIngressSchema.prefault({}),
  })
  .strict()
  .superRefine((config, ctx) => {
    const seen = new Set<string>();
    config.mailboxes.forEach((mailbox, i) => {
      const key = mailbox.address.toLowerCase();
      if (seen.has(key)) ctx.addIssue({ code: 'custom', path: ['mailboxes', i, 'address'], message: `${mailbox.address} is listed twice` });
      seen.add(key);
      const auth = { ...config.auth, ...mailbox.auth };
      const at = (field: string): Array<string | number> => (mailbox.auth && field in mailbox.auth ? ['mailboxes', i, 'auth', field] : ['auth', field]);
      const need = (field: keyof AuthSettings, why: string): void => {
        if (auth[field] === undefined) ctx.addIssue({ code: 'custom', path: at(field), message: `required for ${mailbox.address}: ${why}` });
      };
      if (auth.flow === undefined) {
        ctx.addIssue({ code: 'custom', path: at('flow'), message: `required for ${mailbox.address}: one of ${AUTH_FLOWS.join(', ')}` });
        return;
      }
      // A managed identity needs no app registration of relay365's: Azure knows the host's identity.
      if (auth.flow !== 'token-command' && auth.flow !== 'managed-identity') {
        need('tenant', 'the tenant id or domain of the app registration');
        need('clientId', 'the application (client) id of the app registration');
      }
      if (auth.flow === 'client-secret') need('clientSecret', 'the client secret (e.g. env:RELAY365_CLIENT_SECRET)');
      if (auth.flow === 'client-certificate') need('certificate', 'keyFile and certFile (or thumbprint) of the app certificate');
      if (auth.flow === 'token-command') need('command', 'a command that prints an access token');
      if (auth.flow === 'federated' && auth.assertionFile !== undefined && auth.assertionCommand !== undefined)
        ctx.addIssue({ code: 'custom', path: at('assertionCommand'), message: `${mailbox.address}: give assertionFile or assertionCommand, not both` });
      // HVE takes app-only tokens over SMTP, in the worldwide cloud (MS Learn "High volume email for Microsoft 365").
      if (mailbox.hve) {
        const why =
          mailbox.transport !== 'smtp'
            ? 'High Volume Email is SMTP only: set transport: smtp'
            : config.cloud !== 'global' && config.cloud !== 'sandbox'
              ? `High Volume Email is offered in the global cloud only, not ${config.cloud}`
              : auth.flow === 'device-code' || auth.flow === 'auth-code'
                ? 'High Volume Email takes app-only tokens: use client-secret, client-certificate or federated'
                : undefined;
        if (why) ctx.addIssue({ code: 'custom', path: ['mailboxes', i, 'hve'], message: `${mailbox.address}: ${why}` });
      }
      // The reader asks Graph for its own token: app-only (Mail.Read / Mail.ReadWrite), or delegated with
      // the user's sign-in (Mail.ReadWrite on their own mailbox; identity/clouds.ts graphBounceScopes).
      const noReading =
        auth.flow === 'token-command'
          ? "the token command's token is the one it prints, for SMTP; reading NDRs needs a Microsoft Graph token: use an app-only flow or device-code/auth-code"
          : mailbox.signInAs !== undefined
            ? `reading NDRs with a delegate's sign-in (signInAs ${mailbox.signInAs}) is not supported: read them with an app-only flow (Mail.Read scoped to the mailbox)`
            : undefined;
      if (mailbox.bounces?.read === true && noReading)
        ctx.addIssue({ code: 'custom', path: ['mailboxes', i, 'bounces', 'read'], message: `${mailbox.address}: ${noReading} (docs/bounces.md)` });
      if (mailbox.signInAs !== undefined && auth.flow !== 'device-code' && auth.flow !== 'auth-code')
        ctx.addIssue({
          code: 'custom',
          path: ['mailboxes', i, 'signInAs'],
          message: `${mailbox.address}: signInAs names the user who signs in for a delegated flow (device-code or auth-code); ${auth.flow} signs in no user`,
        });
    });
    // A rewritten sender must be one relay365 sends as: a mailbox's address or one of its aliases.
    const senders = new Set(config.mailboxes.flatMap((m) => [m.address, ...m.aliases].map((a) => a.toLowerCase())));
    const rewrites = [
      ...config.smtp.users.map((u, i) => ['users', i, u.rewriteSender] as const),
      ...config.smtp.allowlist.map((e, i) => ['allowlist', i, e.rewriteSender] as const),
    ];
    for (const [list, i, rewrite] of rewrites)
      if (rewrite && !senders.has(rewrite.to.toLowerCase()))
        ctx.addIssue({
          code: 'custom',
          path: ['smtp', list, i, 'rewriteSender', 'to'],
          message: `${rewrite.to} is neither a configured mailbox nor one of their aliases`,
        });
  });

export type Config = z.infer<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
export type MailboxConfig = Config['mailboxes'][number];
export type LimitsConfig = Config['limits'];
export type QueueConfig = Config['queue'];
export type SmtpIngressConfig = Config['smtp'];
export type HttpIngressConfig = Config['http'];
