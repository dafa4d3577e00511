import { hostname } from 'node:os';
import { createHash, randomUUID } from 'node:crypto';
import type { MailboxConfig } from '../config/index.js';
import { silentLogger, type EventBus, type Logger } from '../observe/index.js';
import type { OutboxStore } from '../outbox/index.js';
import { bounceClass, hardReason } from './classify.js';
import { GraphMailError, type DeltaMessage, type GraphMailClient } from './graph-mail.js';
import { oneLine, parseNdr } from './ndr-parse.js';

export type BounceSettings = NonNullable<MailboxConfig['bounces']>;

/** The store calls the reader makes. */
export type BounceStore = Pick<OutboxStore, 'recordBounce' | 'bounceCursor' | 'saveBounceCursor' | 'leaseBounceReader'>;

export interface BounceReaderOptions {
  /** The sending mailbox whose Inbox is read, as configured. */
  mailbox: string;
  settings: BounceSettings;
  store: BounceStore;
  graph: Pick<GraphMailClient, 'delta' | 'mime' | 'childFolder' | 'move' | 'categorize'>;
  events: EventBus;
  logger?: Logger;
  /** This node's name in the lease (default host, pid and a random part). */
  owner?: string;
  /**
   * How long the mailbox's lease lasts unrenewed (default 15 s): a started reader renews it every
   * third of that, between reads too, and at every read and page; so when a node stops (a SIGKILL
   * too), another one, or the same node restarted, reads the mailbox within this time.
   */
  leaseMs?: number;
  /** Pages read in one run at most: a large first sync goes on at the next run (default 20). */
  maxPagesPerRun?: number;
}

/** What one run did, for logs and tests. */
export interface BounceRunSummary {
  /** False when another node holds the mailbox's lease: nothing was read. */
  leased: boolean;
  pages: number;
  /** Messages that looked like reports and whose MIME was read. */
  candidates: number;
  /** Recipient entries applied for the first time to a message of this mailbox. */
  applied: number;
  /** Entries read before (a restart, or a report seen twice). */
  duplicates: number;
  /** Entries naming no message this mailbox sent. */
  unmatched: number;
  /** Candidates that could not be used (not a report, no Message-ID, unreadable). */
  skipped: number;
  suppressed: number;
}

/** How long a mailbox's reader lease lasts unrenewed; a started reader renews it every third of that. */
const DEFAULT_LEASE_MS = 15_000;

/** Who sends reports: postmaster (Exchange Online's "Microsoft Outlook <postmaster@domain>"), MAILER-DAEMON (Postfix, Sendmail), Exchange's system mailbox. */
const REPORT_SENDER = /^(postmaster|mailer-daemon|microsoftexchange[0-9a-f]*)@/i;
/** Subjects reports carry (Exchange: "Undeliverable:", "Delivery delayed:"; Postfix: "Undelivered Mail Returned to Sender"; Gmail: "Delivery Status Notification"). */
const REPORT_SUBJECT =
  /^\s*(undeliverable|undelivered mail|delivery (has )?failed|delivery delayed|delivery status notification|returned mail|mail delivery failed|failure notice)/i;

/**
 * The webhook event id of one report entry: `evt_` and a UUID-shaped digest (version 8, RFC 9562
 * section 5.8) of mailbox, report and recipient, so the event an entry raises keeps its id when the
 * report is read again, and the webhook outbox stores it once.
 */
export function bounceEventId(mailbox: string, reportId: string, recipient: string): string {
  const hex = createHash('sha256').update(`relay365 bounce\0${mailbox.toLowerCase()}\0${reportId}\0${recipient.toLowerCase()}`).digest('hex');
  const variant = ((parseInt(hex[16]!, 16) & 0x3) | 0x8).toString(16);
  return `evt_${hex.slice(0, 8)}-${hex.slice(8, 12)}-8${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/** Whether an Inbox message may be a report: only those have their MIME fetched; the parser decides. */
export function looksLikeReport(message: DeltaMessage): boolean {
  const from = message.from?.emailAddress?.address ?? '';
  return REPORT_SENDER.test(from) || REPORT_SUBJECT.test(message.subject ?? '');
}

/**
 * Reads one mailbox's non-delivery reports back: a Graph delta query on the Inbox, the MIME of each
 * message that looks like a report, parsed; each recipient entry is applied once through
 * `recordBounce` (keyed by mailbox, report and recipient; a hard bounce suppresses the address in the
 * same transaction), and raises `message.bounced` / `message.delayed` under an id derived from that
 * key. Per report, in this order: its entries applied, their events' webhooks stored
 * (`publishAndWait`), the report marked; per page, then, the delta cursor saved. A stop anywhere
 * leaves the report unmarked and the cursor before it, so the next read finds its entries applied
 * and raises their events again under the same ids (`replay`): the webhook outbox keeps one of each,
 * none is lost. A lease in the store lets one node at a time read a mailbox. A report that cannot be
 * read is logged and left where it is; one that was applied is moved to `settings.folder` or
 * categorized.
 */
export class BounceReader {
  readonly owner: string;
  private readonly logger: Logger;
  private readonly leaseMs: number;
  private readonly maxPages: number;
  private timer: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private renewing = false;
  private running: Promise<unknown> | undefined;
  private stopped = false;
  private folderId: string | undefined;

  constructor(private readonly options: BounceReaderOptions) {
    this.owner = options.owner ?? `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`;
    this.logger = (options.logger ?? silentLogger()).child({ mailbox: options.mailbox });
    this.leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
    this.maxPages = options.maxPagesPerRun ?? 20;
  }

  /** Reads now, then every `settings.everySeconds`; holds the lease while it runs. */
  start(): void {
    this.stopped = false;
    // A lease renewed on its own clock, not only by the reads: it can be short (a node killed is
    // taken over within leaseMs) and still outlast a slow page or a long interval between reads.
    clearInterval(this.heartbeat);
    this.heartbeat = setInterval(() => void this.renewLease(), Math.max(1000, Math.floor(this.leaseMs / 3)));
    const tick = (): void => {
      if (this.stopped) return;
      this.running = this.runOnce()
        .catch((err: unknown) => {
          this.logger.warn(
            { event: 'bounces.read_failed', err: describe(err) },
            `reading the NDRs of ${this.options.mailbox} failed; trying again in ${this.options.settings.everySeconds} s`,
          );
        })
        .finally(() => {
          this.running = undefined;
          if (!this.stopped) this.timer = setTimeout(tick, this.options.settings.everySeconds * 1000);
        });
    };
    tick();
  }

  /** Stops the timers and waits for a read in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    clearInterval(this.heartbeat);
    await this.running;
  }

  /** Takes or renews the lease between reads; a failure is the next read's to report. */
  private async renewLease(): Promise<void> {
    if (this.renewing || this.stopped) return;
    this.renewing = true;
    try {
      await this.options.store.leaseBounceReader(this.options.mailbox, this.owner, this.leaseMs);
    } catch (err) {
      this.logger.debug({ event: 'bounces.lease_renew_failed', err: describe(err) }, 'could not renew the lease on reading this mailbox');
    } finally {
      this.renewing = false;
    }
  }

  /** One read: as many delta pages as there are (up to `maxPagesPerRun`), each applied, then its cursor saved. */
  async runOnce(): Promise<BounceRunSummary> {
    const { mailbox, store, graph } = this.options;
    const summary: BounceRunSummary = { leased: false, pages: 0, candidates: 0, applied: 0, duplicates: 0, unmatched: 0, skipped: 0, suppressed: 0 };
    if (!(await store.leaseBounceReader(mailbox, this.owner, this.leaseMs))) return summary;
    summary.leased = true;
    let cursor = await store.bounceCursor(mailbox);
    let restarted = false;
    while (summary.pages < this.maxPages && !this.stopped) {
      let page;
      try {
        page = await graph.delta(mailbox, cursor);
      } catch (err) {
        // An expired state token: Graph answers 410 and the sync starts over (recordBounce skips what was applied).
        if (err instanceof GraphMailError && err.status === 410 && !restarted) {
          this.logger.info({ event: 'bounces.cursor_expired' }, 'the delta cursor expired; reading the Inbox from the start');
          cursor = undefined;
          restarted = true;
          continue;
        }
        throw err;
      }
      summary.pages += 1;
      for (const message of page.messages) {
        if (this.stopped) break;
        if (message['@removed'] !== undefined || !looksLikeReport(message)) continue;
        if (message.categories?.includes(this.options.settings.category) && this.options.settings.mark === 'category') continue;
        summary.candidates += 1;
        await this.process(message, summary);
      }
      if (this.stopped) break;
      const next = page.nextLink ?? page.deltaLink;
      if (next === undefined) break;
      // After the page's reports are applied: a crash before this line reads the page again, and
      // recordBounce finds what it had applied; after it, the page is never read again.
      await store.saveBounceCursor(mailbox, next);
      cursor = next;
      if (page.deltaLink !== undefined) break;
      if (!(await store.leaseBounceReader(mailbox, this.owner, this.leaseMs))) {
        this.logger.warn({ event: 'bounces.lease_lost' }, 'another node took the lease on reading this mailbox; stopping this read');
        break;
      }
    }
    if (summary.candidates > 0) this.logger.info({ event: 'bounces.read', ...summary }, 'NDRs read');
    return summary;
  }

  private async process(message: DeltaMessage, summary: BounceRunSummary): Promise<void> {
    const { mailbox, store, events } = this.options;
    const log = this.logger.child({ reportId: message.id });
    let mime: string;
    try {
      mime = await this.options.graph.mime(mailbox, message.id);
    } catch (err) {
      summary.skipped += 1;
      log.warn({ event: 'bounces.report_skipped', err: describe(err) }, 'cannot fetch the report; it is left in the Inbox');
      return;
    }
    // relay365's own notices (queue.bounces) name the original by Message-ID too: a mailbox that is its
    // own envelope sender gets them in its Inbox, and reading them back would bounce what Exchange never did.
    if (/^X-Relay365-Message-Id:/im.test(mime.slice(0, 200_000))) {
      summary.skipped += 1;
      log.info({ event: 'bounces.report_skipped', reason: "relay365's own delivery notice" }, "skipped: relay365's own delivery notice, not Exchange's");
      return;
    }
    const parsed = parseNdr(mime);
    if (!parsed.ok) {
      summary.skipped += 1;
      log.info({ event: 'bounces.report_skipped', reason: parsed.reason }, `skipped: ${parsed.reason}`);
      return;
    }
    const { originalMessageId, recipients } = parsed.report;
    if (originalMessageId === undefined) {
      summary.skipped += 1;
      log.warn(
        { event: 'bounces.report_skipped', reason: 'no Message-ID', recipients: recipients.length },
        'skipped: the report names no original Message-ID, so it cannot be matched to a message',
      );
      return;
    }
    const receivedAt = parseDate(message.receivedDateTime) ?? new Date();
    let ours = false;
    for (const entry of recipients) {
      const cls = bounceClass(entry.action, entry.status);
      const result = await store.recordBounce({
        mailbox,
        reportId: message.id,
        originalMessageId,
        recipient: entry.recipient,
        action: entry.action,
        status: entry.status,
        ...(entry.diagnostic !== undefined ? { diagnostic: entry.diagnostic } : {}),
        ...(entry.remoteMta !== undefined ? { remoteMta: entry.remoteMta } : {}),
        receivedAt,
        ...(cls === 'hard' ? { suppress: { reason: suppressionReason(entry.status, entry.diagnostic) } } : {}),
      });
      if (result.matched === undefined) {
        if (result.duplicate) {
          summary.duplicates += 1;
          continue;
        }
        summary.unmatched += 1;
        log.info(
          { event: 'bounces.report_unmatched', originalMessageId, recipient: entry.recipient, status: entry.status },
          `the report names ${originalMessageId} and ${entry.recipient}, which this mailbox did not send; nothing changed`,
        );
        continue;
      }
      ours = true;
      if (result.duplicate) summary.duplicates += 1;
      else summary.applied += 1;
      if (cls === 'hard' && !result.duplicate) summary.suppressed += 1;
      const base = {
        id: result.matched,
        mailbox,
        recipient: entry.recipient,
        dsnStatus: entry.status,
        diagnostic: entry.diagnostic,
        remoteMta: entry.remoteMta,
        messageId: originalMessageId,
        reportId: message.id,
        eventId: bounceEventId(mailbox, message.id, entry.recipient),
        replay: result.duplicate,
        at: new Date(),
      };
      // Stored before the report is marked and the cursor moves past it: a stop before this resolves
      // reads the report again, and the replay is stored under the same event id.
      await events.publishAndWait(
        cls === 'delayed' ? { type: 'message.delayed', ...base } : { type: 'message.bounced', ...base, bounceClass: cls, suppressed: cls === 'hard' },
      );
    }
    // Only a report about this mailbox's own mail is moved or categorized: any other message stays as it is.
    if (ours) await this.mark(message, log);
  }

  private async mark(message: DeltaMessage, log: Logger): Promise<void> {
    const { mailbox, settings, graph } = this.options;
    try {
      if (settings.mark === 'category') {
        const categories = [...new Set([...(message.categories ?? []), settings.category])];
        await graph.categorize(mailbox, message.id, categories);
      } else {
        this.folderId ??= await graph.childFolder(mailbox, settings.folder);
        await graph.move(mailbox, message.id, this.folderId);
      }
    } catch (err) {
      // Applied already: the report only stays in the Inbox (a later read skips it as a duplicate and tries again).
      if (err instanceof GraphMailError && err.status === 404) this.folderId = undefined;
      log.warn(
        { event: 'bounces.mark_failed', err: describe(err) },
        `the report was applied but could not be ${settings.mark === 'move' ? `moved to "${settings.folder}"` : 'categorized'}`,
      );
    }
  }
}

/** Why a hard bounce suppressed its address, as the suppression list shows it. */
function suppressionReason(status: string, diagnostic: string | undefined): string {
  const why = hardReason(status) ?? 'address does not exist';
  return oneLine(`a hard bounce ${status} (${why})${diagnostic ? `: ${diagnostic}` : ''}`, 300);
}

function parseDate(value: string | undefined): Date | undefined {
  if (value === undefined) return undefined;
  const t = Date.parse(value);
  return Number.isNaN(t) ? undefined : new Date(t);
}

function describe(err: unknown): { message: string; status?: number; code?: string } {
  if (err instanceof GraphMailError) return { message: err.message, status: err.status, ...(err.graphCode ? { code: err.graphCode } : {}) };
  const e = err as { message?: unknown; code?: unknown };
  return { message: typeof e?.message === 'string' ? e.message : String(err), ...(typeof e?.code === 'string' ? { code: e.code } : {}) };
}
