export {
  configSchema,
  secretRefSchema,
  parseDuration,
  authSchema,
  mailboxSchema,
  smtpIngressSchema,
  CLOUD_NAMES,
  AUTH_FLOWS,
  MAILBOX_TRANSPORTS,
  defaultGreetingDelayMs,
  LISTENER_TLS_MODES,
  type ListenerTls,
  LOG_LEVELS,
  WEBHOOK_EVENT_TYPES,
  type WebhookEventType,
  type MailboxTransport,
  type Config,
  type ConfigInput,
  type CloudName,
  type AuthFlow,
  type AuthSettings,
  type MailboxConfig,
  type LimitsConfig,
  type QueueConfig,
  type SmtpIngressConfig,
  type HttpIngressConfig,
} from './schema.js';
export { loadConfig, parseConfig, applyEnvOverrides, ENV_PREFIX, type LoadConfigOptions } from './load.js';
export { resolveSecret } from './secret.js';
export { toConfigIssues, formatConfigIssues, issuePath, type ConfigIssue } from './issues.js';
export { parseCidr, unmapIPv4, type Cidr } from './cidr.js';
export { parsePasswordHash, type ParsedPasswordHash } from './password-hash.js';
export { GUID, tenantProblem, clientIdProblem } from './entra-ids.js';
export { environmentIssues, SECRET_KEY_ENV } from './environment.js';
