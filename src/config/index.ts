export {
  configSchema,
  secretRefSchema,
  parseDuration,
  authSchema,
  mailboxSchema,
  CLOUD_NAMES,
  AUTH_FLOWS,
  MAILBOX_TRANSPORTS,
  defaultGreetingDelayMs,
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
export { loadConfig, applyEnvOverrides, ENV_PREFIX, type LoadConfigOptions } from './load.js';
export { resolveSecret } from './secret.js';
export { toConfigIssues, formatConfigIssues, type ConfigIssue } from './issues.js';
