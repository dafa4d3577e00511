export { createMailer, pickSendingMailbox, type Mailer, type MailerOptions } from './mailer.js';
export { recipientResults, type MailerResult, type RecipientResult } from './recipients.js';
export { composeMessage, messageIdOf, type MessageInput, type MessageFields, type RawMessage } from './compose.js';
export { SmtpTransport, hveEndpoint, type SmtpTransportOptions } from './smtp-transport.js';
export type { Envelope, OutgoingMessage, SendFailure, SendResult, SendSuccess, Transport } from './types.js';
export { GraphTransport, retryAfterMs, type GraphTransportOptions } from './graph-transport.js';
export {
  TRANSPORTS,
  MailboxTransports,
  buildTransports,
  reviewTransportPermissions,
  transportDescriptor,
  type TransportContext,
  type TransportDescriptor,
  type TransportDoctor,
  type TransportLimit,
} from './transports/index.js';
