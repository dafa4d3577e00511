import { GRAPH_ERROR_CATALOGUE, SOURCES } from '../../catalogue/index.js';
import { SCOPE_FIX, TRANSPORT_SCOPES } from '../../identity/index.js';
import { GraphTransport } from '../graph-transport.js';
import type { TransportDescriptor } from './descriptor.js';

/** Checks of an SMTP session, which a Graph mailbox never opens. */
const SMTP_SESSION_CHECKS = ['dns-smtp', 'tcp', 'tls', 'ehlo', 'auth', 'mail-from'];

/** Microsoft Graph `sendMail` with the MIME (HTTPS on 443): docs/graph.md. */
export const graphTransport: TransportDescriptor = {
  name: 'graph',
  title: 'Microsoft Graph sendMail',
  scopes: TRANSPORT_SCOPES.graph,
  permissions: {
    service: 'Microsoft Graph',
    resource: 'Microsoft Graph',
    api: 'Microsoft Graph',
    appOnly: 'Mail.Send',
    delegated: 'Mail.Send',
    audience: (audience) => /graph\.microsoft|00000003-0000-0000-c000-000000000000|microsoftgraph/.test(audience),
    audienceFix: 'Ask for https://graph.microsoft.com/.default.',
    appMailSend: { message: 'application Mail.Send can send as ANY mailbox in the tenant unless scoped.', fix: SCOPE_FIX },
  },
  doctor: {
    skips: SMTP_SESSION_CHECKS,
    skipDetail: 'the mailbox sends through Microsoft Graph (transport: graph), not SMTP',
    configNote: ', sending through Microsoft Graph',
    exchangeSetupFindings: false,
  },
  catalogue: GRAPH_ERROR_CATALOGUE,
  throttling: [
    {
      limit: 'requests per 10 minutes, per app and mailbox',
      value: '10,000',
      overIt: '429 with Retry-After: the message waits at least that long and the mailbox slows down.',
      source: SOURCES.graphThrottling,
    },
    { limit: 'concurrent requests, per mailbox', value: '4', overIt: '429 with Retry-After, as above.', source: SOURCES.graphThrottling },
    {
      limit: 'upload per 5 minutes, per mailbox',
      value: '150 MB',
      overIt: '429 with Retry-After, as above.',
      source: SOURCES.graphThrottling,
    },
    {
      limit: 'sendMail request body',
      value: '4 MB',
      overIt: 'Larger messages go as a draft with upload sessions for their big attachments (docs/graph.md).',
      source: SOURCES.graphLargeAttachments,
    },
    {
      limit: 'recipients per rolling 24 hours, per mailbox',
      value: '10,000',
      overIt: 'The same Exchange Online limit as SMTP submission: the scheduler keeps within limits.recipientsPerDay.',
      source: SOURCES.exchangeLimits,
    },
  ],
  endpoint: (_config, cloud) => ({ where: cloud.graphHost, how: 'Microsoft Graph sendMail (MIME) over HTTPS' }),
  build: (ctx) =>
    new GraphTransport({
      cloud: ctx.identity.cloud,
      tokens: ctx.identity.provider,
      http: ctx.identity.networkClient,
      logger: ctx.logger.child({ component: 'graph' }),
    }),
};
