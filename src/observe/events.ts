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
  /**
   * Exchange refused one recipient of a message: at RCPT while it took the others, or by refusing the
   * whole message. Nothing was delivered to that address.
   */
  | {
      type: 'message.recipient.refused';
      id: string;
      mailbox: string;
      recipient: string;
      reply: string | undefined;
      explanation: Explanation | undefined;
      /** The message's own outcome: `sent` when Exchange took it for other recipients. */
      messageState: 'sent' | 'failed';
      at: Date;
    }
  | { type: 'mailbox.paused'; mailbox: string; reason: string; explanation: Explanation | undefined; until: Date; at: Date }
  | { type: 'mailbox.resumed'; mailbox: string; at: Date }
  /** A delegated mailbox's sign-in ended (refresh token expired, revoked, sign-in frequency): paused until `relay365 login`. */
  | { type: 'mailbox.needs_login'; mailbox: string; cause: string; fix: string; at: Date }
  | { type: 'mailbox.throttled'; mailbox: string; reply: string | undefined; until: Date; at: Date }
  /**
   * A non-delivery report for one recipient of a sent message (src/bounces): applied for the first
   * time, or (`replay`) read again after a restart with its entry applied before.
   */
  | {
      type: 'message.bounced';
      /** The relay365 message id. */
      id: string;
      mailbox: string;
      recipient: string;
      /** DSN status, e.g. `5.1.10`. */
      dsnStatus: string;
      /** `hard`: the address does not exist and is now suppressed; `soft`: failed for another reason. */
      bounceClass: 'hard' | 'soft';
      diagnostic: string | undefined;
      remoteMta: string | undefined;
      /** The original's Message-ID header. */
      messageId: string;
      /** The report's Graph message id in the mailbox. */
      reportId: string;
      suppressed: boolean;
      /** The webhook event id, derived from (mailbox, report, recipient): the same each time the entry is raised. */
      eventId: string;
      /**
       * The entry was applied before (a relay stopped between applying it and storing its webhook reads
       * the report again): raised again under its first `eventId`, so a webhook stored already is not
       * stored twice; metrics do not count it again.
       */
      replay: boolean;
      at: Date;
    }
  /**
   * A mailbox's app credential (client secret or certificate) ends within the warning threshold (30
   * days) or has ended: told once a day while it lasts (src/identity/credential-expiry.ts).
   */
  | {
      type: 'credential.expiring';
      mailbox: string;
      kind: 'client-secret' | 'certificate';
      expiresAt: Date;
      /** Whole days left, 0 or less once expired. */
      daysLeft: number;
      expired: boolean;
      /** The steps to make a new credential and switch relay365 to it. */
      fix: string;
      /**
       * The webhook event id, derived from (mailbox, kind, end date, UTC day): every node and every
       * restart on that day raise the same one, so the webhook outbox stores it once a day.
       */
      eventId: string;
      at: Date;
    }
  /** A delay notification for one recipient (Exchange keeps trying; a later report may bounce it). */
  | {
      type: 'message.delayed';
      id: string;
      mailbox: string;
      recipient: string;
      dsnStatus: string;
      diagnostic: string | undefined;
      remoteMta: string | undefined;
      messageId: string;
      reportId: string;
      /** As `message.bounced`'s. */
      eventId: string;
      /** As `message.bounced`'s. */
      replay: boolean;
      at: Date;
    };

export type RelayEventType = RelayEvent['type'];

/**
 * What a front door reports as it happens, for the metrics (the runtime wires them to
 * {@link RelayMetrics.frontDoor}); the front door's own log lines tell the details.
 */
export type FrontDoorEvent =
  /** An SMTP connection was let in, or refused at once (too many connections, shutting down). */
  | { type: 'smtp.connection'; outcome: 'accepted' | 'refused' }
  /** AUTH refused: wrong name or password (`invalid`), or the client is locked out (`locked`). */
  | { type: 'smtp.auth_failed'; reason: 'invalid' | 'locked' }
  /** A failed login started a lockout of the client's address or of the user. */
  | { type: 'smtp.lockout' }
  /** A sender (MAIL FROM, From, Sender or Resent-*) the login or allowlist entry may not use. */
  | { type: 'smtp.sender_refused' }
  /** A message committed to the outbox (its 250 follows). */
  | { type: 'smtp.message_accepted' };

/** Takes a front door's {@link FrontDoorEvent}s. */
export type FrontDoorObserver = (event: FrontDoorEvent) => void;

/**
 * An observer of the bus. `waitFor` is given only by {@link EventBus.publishAndWait}: the listener
 * hands it the work the event started that must be done before the publisher goes on (the webhook
 * deliveries written to their outbox).
 */
export type EventListener = (event: RelayEvent, waitFor?: (work: Promise<unknown>) => void) => void;

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

  /**
   * Publishes, then resolves once the work the listeners handed to `waitFor` is done, or rejects with
   * its first failure: for a publisher that must not record the event as raised (mark an NDR
   * processed, move a delta cursor past it) before its webhooks are stored, so a crash in between
   * raises it again rather than lose it.
   */
  async publishAndWait(event: RelayEvent): Promise<void> {
    const work: Array<Promise<unknown>> = [];
    this.emitter.emit('event', event, (p: Promise<unknown>) => work.push(p));
    await Promise.all(work);
  }

  subscribe(listener: EventListener): () => void {
    this.emitter.on('event', listener);
    return () => this.emitter.off('event', listener);
  }
}
