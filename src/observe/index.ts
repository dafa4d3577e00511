export { createLogger, setLogLevel, silentLogger, type Logger, type CreateLoggerOptions } from './logger.js';
export { scrubSecrets, SECRET_KEYS, REDACT_PATHS, REDACTED } from './redact.js';
export { EventBus, type RelayEvent, type RelayEventType, type FrontDoorEvent, type FrontDoorObserver } from './events.js';
export { logEvents } from './event-log.js';
export { RelayMetrics, type RelayMetricsOptions, type QueueSnapshot } from './metrics.js';
export {
  WebhookDispatcher,
  signWebhook,
  webhookBody,
  WEBHOOK_EVENT_TYPES,
  SIGNATURE_HEADER,
  type WebhookDispatcherOptions,
  type WebhookReceiver,
  type WebhookEventType,
  type WebhookOutbox,
  type WebhookDelivery,
  type NewWebhookDelivery,
  type WebhookDeliveryOutcome,
} from './webhooks.js';
