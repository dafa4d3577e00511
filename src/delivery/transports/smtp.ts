import { SMTP_REPLY_CATALOGUE, SOURCES } from '../../catalogue/index.js';
import { SCOPE_FIX, TRANSPORT_SCOPES } from '../../identity/index.js';
import { SmtpTransport, hveEndpoint } from '../smtp-transport.js';
import type { TransportDescriptor } from './descriptor.js';

/** Audiences Exchange Online accepts for SMTP AUTH (Microsoft Learn, "Authenticate an IMAP, POP or SMTP connection using OAuth"). */
const EXCHANGE_AUDIENCES = [
  'https://outlook.office.com',
  'https://outlook.office365.com',
  '00000002-0000-0ff1-ce00-000000000000',
  'https://outlook.office365.us',
  // US Government DoD's Exchange Online (see identity/clouds.ts).
  'https://outlook-dod.office365.us',
  'https://partner.outlook.cn',
];

/**
 * Exchange Online SMTP AUTH client submission with XOAUTH2 (smtp.office365.com:587, STARTTLS), pooled
 * connections per mailbox. A High Volume Email account (`mailboxes[].hve`) is this transport with another
 * endpoint (smtp-hve.office365.com:587, app-only tokens): the same scopes, replies and checks.
 */
export const smtpTransport: TransportDescriptor = {
  name: 'smtp',
  title: 'Exchange Online SMTP submission',
  scopes: TRANSPORT_SCOPES.smtp,
  permissions: {
    service: 'Exchange Online SMTP',
    resource: 'Exchange Online',
    api: 'Office 365 Exchange Online',
    appOnly: 'SMTP.SendAsApp',
    delegated: 'SMTP.Send',
    audience: (audience) => EXCHANGE_AUDIENCES.includes(audience),
    audienceFix: 'Ask for https://outlook.office365.com/.default (app-only) or https://outlook.office.com/SMTP.Send (delegated).',
    appMailSend: {
      message: 'application Mail.Send (Graph) is not used for SMTP and can send as ANY mailbox in the tenant unless scoped.',
      fix: `Remove Mail.Send if only SMTP is used; otherwise: ${SCOPE_FIX}`,
    },
  },
  doctor: { skips: [], skipDetail: '', configNote: '', exchangeSetupFindings: true },
  catalogue: SMTP_REPLY_CATALOGUE,
  throttling: [
    {
      limit: 'messages per minute, per mailbox',
      value: '30',
      overIt: 'Exchange delays the excess (it does not refuse); the scheduler keeps each mailbox at limits.messagesPerMinute.',
      source: SOURCES.smtpSubmission,
    },
    {
      limit: 'recipients per rolling 24 hours, per mailbox',
      value: '10,000',
      overIt: '554 5.2.0 SubmissionQuotaExceededException: the mailbox is held until its window frees (limits.recipientsPerDay).',
      source: SOURCES.exchangeLimits,
    },
    {
      limit: 'concurrent connections, per mailbox',
      value: '3',
      overIt: '432 4.3.2 Concurrent connections limit exceeded: the mailbox opens one connection fewer for a while (delivery.maxConnections).',
      source: SOURCES.exchangeLimits,
    },
    {
      limit: 'tenant external recipients per rolling 24 hours (TERRL; HVE traffic does not count)',
      value: '500 x licences^0.7 + 9,500',
      overIt: 'Accepted with 250, then bounced by an NDR in the mailbox: read by the NDR reader (docs/bounces.md).',
      source: SOURCES.exchangeLimits,
    },
  ],
  endpoint(config, cloud, mailbox) {
    const hve = hveEndpoint(config);
    if (hve?.mailboxes.has(mailbox.toLowerCase()))
      return { where: `${hve.host}:${hve.port}`, how: 'SMTP AUTH XOAUTH2 over STARTTLS (High Volume Email)', smtp: { host: hve.host, port: hve.port } };
    return { where: `${cloud.smtpHost}:${cloud.smtpPort}`, how: 'SMTP AUTH XOAUTH2 over STARTTLS', smtp: { host: cloud.smtpHost, port: cloud.smtpPort } };
  },
  build: (ctx) =>
    new SmtpTransport({
      cloud: ctx.identity.cloud,
      tokens: ctx.identity.provider,
      delivery: ctx.config.delivery,
      maxConnections: ctx.connectionCaps,
      ca: ctx.ca,
      logger: ctx.logger.child({ component: 'delivery' }),
      ...(ctx.transcript ? { transcript: ctx.transcript } : {}),
      ...(ctx.pool ? {} : { pool: false }),
      hve: hveEndpoint(ctx.config),
    }),
};
