import type { EventBus, RelayEvent } from './events.js';
import type { Logger } from './logger.js';

/**
 * Writes one JSON log line per event (every state change of a message or a mailbox), with the
 * message id and the reply, so `grep <id>` over the logs tells a message's story. Returns the unsubscribe.
 */
export function logEvents(events: EventBus, logger: Logger): () => void {
  return events.subscribe((event: RelayEvent) => {
    const { type, at: _at, ...fields } = event;
    const level = type === 'message.failed' || type === 'mailbox.paused' ? 'warn' : 'info';
    // The explanation is for people: its cause and fix, not the catalogue row's id and class.
    const explanation = 'explanation' in fields && fields.explanation ? { cause: fields.explanation.cause, fix: fields.explanation.fix } : undefined;
    logger[level]({ event: type, ...fields, ...(explanation ? { explanation } : {}) }, type);
  });
}
