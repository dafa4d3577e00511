import type { EventBus, RelayEvent } from './events.js';
import type { Logger } from './logger.js';

/**
 * Writes one JSON log line per event (every state change of a message or a mailbox), with the
 * message id and the reply, so `grep <id>` over the logs tells a message's story. Returns the unsubscribe.
 */
export function logEvents(events: EventBus, logger: Logger): () => void {
  return events.subscribe((event: RelayEvent) => {
    const { type, at: _at, ...fields } = event;
    const level = type === 'message.failed' || type === 'mailbox.paused' || type === 'mailbox.needs_login' ? 'warn' : 'info';
    // The catalogue row's id (what `docs/errors.md`, the dashboard and a bug report name it by), its cause
    // and fix for people; not its class (the event has it) nor its handling.
    const explanation =
      'explanation' in fields && fields.explanation ? { id: fields.explanation.id, cause: fields.explanation.cause, fix: fields.explanation.fix } : undefined;
    logger[level]({ event: type, ...fields, ...(explanation ? { explanation } : {}) }, type);
  });
}
