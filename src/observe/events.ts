import { EventEmitter } from 'node:events';
import type { Explanation, ReplyClass } from '../catalogue/index.js';

/** Every state change that operators, webhooks, metrics and the dashboard follow. */
export type RelayEvent =
  | { type: 'message.queued'; id: string; mailbox: string | undefined; pool: string | undefined; source: string; at: Date }
  | { type: 'message.sent'; id: string; mailbox: string; reply: string | undefined; attempts: number; durationMs: number; at: Date }
  | {
      type: 'message.deferred';
      id: string;
      mailbox: string;
      reply: string | undefined;
      class: ReplyClass;
      explanation: Explanation | undefined;
      nextAttemptAt: Date;
      attempts: number;
      at: Date;
    }
  | {
      type: 'message.failed';
      id: string;
      mailbox: string;
      reply: string | undefined;
      class: ReplyClass;
      explanation: Explanation | undefined;
      attempts: number;
      at: Date;
    }
  | { type: 'mailbox.paused'; mailbox: string; reason: string; explanation: Explanation | undefined; until: Date; at: Date }
  | { type: 'mailbox.resumed'; mailbox: string; at: Date }
  | { type: 'mailbox.throttled'; mailbox: string; reply: string | undefined; until: Date; at: Date };

export type RelayEventType = RelayEvent['type'];

/** In-process event bus: parts publish, observers (logs, metrics, webhooks) subscribe. */
export class EventBus {
  private readonly emitter = new EventEmitter();

  constructor() {
    // Several observers per run (logger, metrics, webhooks, tests) are expected.
    this.emitter.setMaxListeners(50);
  }

  publish(event: RelayEvent): void {
    this.emitter.emit('event', event);
  }

  subscribe(listener: (event: RelayEvent) => void): () => void {
    this.emitter.on('event', listener);
    return () => this.emitter.off('event', listener);
  }
}
