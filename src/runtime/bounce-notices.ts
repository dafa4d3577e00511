/**
 * With `queue.bounces` on, the envelope sender of a message is told when it fails, by a delivery
 * status notification (RFC 3464) from its mailbox. The worker sends one for a message Exchange
 * refused; this sends one for a recipient that a non-delivery report read back later (src/bounces)
 * bounced, after Exchange had answered 250: a device that cannot read its own mailbox learns of it.
 */
import type { EventBus, Logger, RelayEvent } from '../observe/index.js';
import { composeBounce, headerBlock, isAutomatic } from '../outbox/bounce.js';
import type { NewMessage, OutboxStore, StoredMessage } from '../outbox/index.js';

type Bounced = Extract<RelayEvent, { type: 'message.bounced' }>;

/** The tag that marks the notice of one NDR entry, so the entry read again after a restart sends none twice. */
export const noticeTag = (eventId: string): string => `dsn:${eventId}`;

export interface BounceNoticeDeps {
  events: EventBus;
  store: Pick<OutboxStore, 'get' | 'getRaw' | 'list'>;
  /** Commits a message, announces it and wakes the worker (the relay's enqueue). */
  enqueue: (message: NewMessage) => Promise<StoredMessage>;
  /** Read at each event, so a reload of `queue.bounces` applies at the next. */
  enabled: () => boolean;
  logger: Logger;
  reportingHost: string;
}

/**
 * Follows `message.bounced` events and queues the notice for each, once per NDR entry: the reader
 * waits for it (`publishAndWait`, which fails with it, so the report is read again) before it marks
 * the report, and an entry raised again (`replay`, after a stop) queues one only if the first raising
 * did not get to (its notice carries the entry's tag). Returns the unsubscribe.
 */
export function followBounceNotices(deps: BounceNoticeDeps): () => void {
  const { logger } = deps;
  async function notice(event: Bounced): Promise<void> {
    const tag = noticeTag(event.eventId);
    if (event.replay && (await deps.store.list({ tag, limit: 1 })).items.length > 0) return;
    const original = await deps.store.get(event.id);
    if (!original || !original.envelope.from || original.source.kind === 'bounce') return;
    const raw = await deps.store.getRaw(event.id);
    // Retention may have deleted the content: the notice then goes without the original's headers.
    const headers = raw ? headerBlock(raw) : `Message-ID: ${event.messageId}\r\n`;
    if (isAutomatic(headers)) return;
    const dsn = await composeBounce({
      mailbox: event.mailbox,
      original: { id: original.id, envelope: original.envelope, headers, messageId: original.messageId },
      reply: undefined,
      explanation: undefined,
      reportingHost: deps.reportingHost,
      failed: [{ address: event.recipient, status: event.dsnStatus, diagnostic: event.diagnostic, remoteMta: event.remoteMta }],
    });
    const stored = await deps.enqueue({ mailbox: event.mailbox, envelope: dsn.envelope, raw: dsn.raw, source: { kind: 'bounce' }, tags: [tag] });
    logger.info({ id: stored.id, for: original.id, recipient: event.recipient, to: original.envelope.from }, 'bounce notice queued for an NDR');
  }
  return deps.events.subscribe((event, waitFor) => {
    if (event.type !== 'message.bounced' || !deps.enabled()) return;
    const work = notice(event);
    // A failure fails the reader's publish: it leaves the report unmarked and reads it again later.
    if (waitFor) waitFor(work);
    else work.catch((err: unknown) => logger.error({ err, id: event.id, recipient: event.recipient }, 'could not queue the bounce notice for an NDR'));
  });
}
