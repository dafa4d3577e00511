export { createLogger, silentLogger, type Logger, type CreateLoggerOptions } from './logger.js';
export { scrubSecrets, SECRET_KEYS, REDACT_PATHS, REDACTED } from './redact.js';
export { EventBus, type RelayEvent, type RelayEventType } from './events.js';
