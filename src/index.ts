/**
 * relay365 as a library: send mail through Microsoft 365 with OAuth2 from a Node app.
 * @packageDocumentation
 */
export {
  createMailer,
  composeMessage,
  type Mailer,
  type MailerOptions,
  type MailerResult,
  type RecipientResult,
  type MessageInput,
  type SendResult,
  type SendSuccess,
  type SendFailure,
  type Envelope,
  // The least-privilege review against what the transport's descriptor says sending needs.
  reviewTransportPermissions as reviewPermissions,
} from './delivery/index.js';
// createRelay and the nodemailer transport, with their types: the list is runtime/library-api.ts.
export * from './runtime/library-api.js';
export { loadConfig, configSchema, type Config, type ConfigInput } from './config/index.js';
export { createIdentity, summarizeToken, type Failure, type FailureKind, type Identity, type TokenSummary, type PermissionFinding } from './identity/index.js';
export { explainSmtpReply, explainAadsts, type Explanation, type ReplyClass } from './catalogue/index.js';
export { Relay365Error, isRelay365Error, ERROR_CODES, type Relay365ErrorCode } from './errors.js';
