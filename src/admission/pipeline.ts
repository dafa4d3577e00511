import { suppressionMessage, suppressionReply } from '../bounces/suppression.js';
import {
  MAX_LINE_OCTETS,
  checkHeaderSection,
  headerBounds,
  headerValues,
  readHeaders,
  rewriteFrom,
  scanBytes,
  toCrlf,
  traceFields,
  type ByteScan,
  type Envelope,
  type SenderRewrite,
} from '../message/index.js';
import type { MessageSource, NewMessage, OutboxStore, Route, Router, StoredMessage } from '../outbox/index.js';
// By file: the outbox's index loads the SQLite store and the worker, which a CLI command must not pay for.
import { checkLabels } from '../outbox/labels.js';
import { isRelay365Error } from '../errors.js';
import { ADMISSION_REPLIES as R, type Refusal, type RefusalReason } from './refusals.js';
import { SenderPolicy, asciiAddress } from './sender-policy.js';

/** How far ahead a message may be scheduled (`sendAt`), whichever door takes it. */
export const MAX_SCHEDULE_DAYS = 30;

/**
 * Why `sendAt` cannot be kept, or undefined: not a time, or more than {@link MAX_SCHEDULE_DAYS} days
 * ahead. `field` names it in the problem (the HTTP API's batch says `messages[3].sendAt`).
 */
export function scheduleProblem(sendAt: Date, now: number, field = 'sendAt'): string | undefined {
  const at = sendAt.getTime();
  if (Number.isNaN(at)) return `${field} is not a valid time.`;
  if (at > now + MAX_SCHEDULE_DAYS * 86_400_000)
    return `${field} is ${Math.ceil((at - now) / 86_400_000)} days ahead; a message can be scheduled at most ${MAX_SCHEDULE_DAYS} days ahead.`;
  return undefined;
}

/** Who submits a message: an SMTP user or allowlist entry, an API key, the CLI, the library. */
export interface Submitter {
  /** `NewMessage.source`: the door, the client address, the user or key name. */
  source: MessageSource;
  /** How a refusal names the submitter: `alice`, `clients in 10.0.0.0/8`, `The API key billing`. */
  display: string;
  /** The `allowedSenders` (or a key's `--sender`) rules; undefined: every address (the Router still decides). */
  allowedSenders?: readonly string[] | undefined;
  /** Sender rewriting for a fixed-sender device (`rewriteSender`). */
  rewrite?: SenderRewrite | undefined;
  /** `allowedSenders` compiled once, by a door that keeps its submitters (else compiled per message). */
  policy?: SenderPolicy;
}

/** A message read in full, with what the door knows of it. */
export interface Submission {
  /** The message as received: no trace field yet, line ends as the client sent them. */
  raw: Buffer;
  envelope: Envelope;
  /** What the door already measured while reading (the SMTP door's DATA collector); else measured here. */
  scan?: ByteScan;
  /** The start of `raw` holding the whole header section, when the door has it without a copy. */
  head?: Buffer;
  /** The mailbox the caller asked for (HTTP `mailbox`, `relay365 send -m`). */
  mailbox?: string | undefined;
  /** Send to suppressed recipients too: the HTTP API's `ignoreSuppression`. SMTP has no override. */
  ignoreSuppression?: boolean | undefined;
  /** The door already refused too many and suppressed recipients, one by one (SMTP at RCPT TO, with these same checks). */
  recipientsChecked?: boolean;
  /** For the `Received:` field (RFC 5321 4.4); only the SMTP door has a HELO and a transaction. */
  received?: { helo: string; clientAddress: string; protocol: string; id: string };
  /** True when the client left before its answer: nothing is stored, since it will send again. */
  gone?: () => boolean;
  /** Do not send before this time (the HTTP API's `sendAt`, the library's). */
  sendAt?: Date | undefined;
  /** Kept with the message, searchable and echoed in its webhooks (outbox/labels.ts has the limits). */
  tags?: readonly string[] | undefined;
  metadata?: Readonly<Record<string, string>> | undefined;
  /** Run every check and store nothing (the HTTP API's `validateOnly`): an acceptance with `stored` undefined. */
  validateOnly?: boolean | undefined;
}

/** An accepted message: the outbox holds it (`stored`), or, for a door without an outbox, it is ready to send. */
export interface Acceptance {
  ok: true;
  message: NewMessage;
  route: Route;
  /** The committed outbox row; undefined when the pipeline has no `enqueue` (direct sending). */
  stored: StoredMessage | undefined;
  /** True when the sender was rewritten (`rewriteSender`). */
  rewritten: boolean;
}

/** The one answer of the admission pipeline. */
export type Verdict = Acceptance | Refusal;

/** What the pipeline needs; the runtime wires the real ones, a door can take its own limits. */
export interface AdmissionDeps {
  /** Read at each message, so a reload applies at the next one. */
  limits: () => { maxMessageBytes: number; recipientsPerMessage: number };
  router: Pick<Router, 'routeMessage' | 'poolsOf'>;
  /** Configured mailbox addresses, for a `mailbox` the caller asks for. */
  mailboxes: () => readonly string[];
  suppressions?: Pick<OutboxStore, 'suppressed'> | undefined;
  /** The durable enqueue: resolves once committed. Without it the pipeline only decides (the CLI's direct send). */
  enqueue?: ((message: NewMessage) => Promise<StoredMessage>) | undefined;
  /** Name in `Received:` and in the Message-IDs relay365 adds. */
  hostname: string;
}

/** The admission pipeline every front door calls, and the checks SMTP also runs early at MAIL and RCPT. */
export interface Admission {
  /** Decides on a message read in full; when accepted and an outbox is wired, answers only after the commit. */
  admit(submission: Submission, submitter: Submitter): Promise<Verdict>;
  /** MAIL FROM: may this submitter use this envelope sender, and can a mailbox send it? */
  checkSender(sender: string, submitter: Submitter): Refusal | undefined;
  /** RCPT TO: is there room for one more recipient? */
  checkRecipientCount(count: number): Refusal | undefined;
  /** Is any of these recipients suppressed? (rejects when the store cannot be read) */
  checkSuppressed(recipients: readonly string[]): Promise<Refusal | undefined>;
}

const join = (prefix: Buffer, raw: Buffer): Buffer => (prefix.length > 0 ? Buffer.concat([prefix, raw]) : raw);

function refusal(reason: RefusalReason, smtp: string, code: Refusal['code'], status: number, message: string, more: Partial<Refusal> = {}): Refusal {
  return { ok: false, reason, smtp, code, status, message, ...more };
}

/**
 * Builds the admission pipeline: the byte rules (NUL, 1000-octet lines), size, recipients, the header
 * section and its originator fields, sender authorization, sender rewriting, suppression, routing to a
 * mailbox or pool, trace fields, and the durable enqueue. Same input, same {@link Verdict}, whichever door.
 * @example
 * const admission = createAdmission({ limits: () => config.limits, router, mailboxes: () => addresses, suppressions: store, enqueue: (m) => store.enqueue(m), hostname });
 * const verdict = await admission.admit({ raw, envelope }, { source: { kind: 'library' }, display: 'the library' });
 */
export function createAdmission(deps: AdmissionDeps): Admission {
  const policyOf = (s: Submitter): SenderPolicy => s.policy ?? new SenderPolicy(s.allowedSenders);

  const notAllowed = (submitter: Submitter, address: string): Refusal =>
    refusal(
      'sender-not-allowed',
      R.senderNotAllowed(submitter.display, address),
      // The code the HTTP API has always given for it; the same for every door.
      'R365_HTTP_FORBIDDEN',
      403,
      `${submitter.display} may send only as ${(submitter.allowedSenders ?? []).join(', ')}, not as ${address}.`,
      { field: 'from', details: { event: 'sender.refused', sender: address } },
    );

  const noRoute = (who: string, sender: string, envelopeFrom: string): Refusal =>
    refusal(
      'no-route',
      R.noRoute(sender),
      'R365_NO_ROUTE_FOR_SENDER',
      422,
      `${who} may send as ${sender}${sender.toLowerCase() !== envelopeFrom.toLowerCase() ? ` (envelope sender ${envelopeFrom})` : ''}. ` +
        'Send from a configured mailbox address, or add the address to the aliases of a mailbox that holds SendAs on it (Add-RecipientPermission).',
      { field: 'from' },
    );

  const checkRecipientCount = (count: number): Refusal | undefined => {
    const max = deps.limits().recipientsPerMessage;
    if (count <= max) return undefined;
    return refusal(
      'too-many-recipients',
      R.tooManyRecipients(max),
      'R365_MESSAGE_INVALID',
      400,
      `The message has ${count} recipients; Exchange Online accepts at most ${max} per message (limits.recipientsPerMessage). Split it.`,
      { field: 'to' },
    );
  };

  const checkSuppressed = async (recipients: readonly string[]): Promise<Refusal | undefined> => {
    if (!deps.suppressions || recipients.length === 0) return undefined;
    const [entry, ...more] = await deps.suppressions.suppressed([...recipients]);
    if (!entry) return undefined;
    return refusal(
      'suppressed',
      suppressionReply(entry),
      'R365_SUPPRESSED',
      422,
      `${suppressionMessage(entry)}${more.length > 0 ? ` (and ${more.length} more suppressed recipient${more.length > 1 ? 's' : ''})` : ''}.`,
      { field: 'to', details: { event: 'recipient.suppressed', recipient: entry.address } },
    );
  };

  const checkSender = (address: string, submitter: Submitter): Refusal | undefined => {
    if (!address)
      return refusal('no-sender', R.nullSender, 'R365_MESSAGE_INVALID', 400, 'The message has no envelope sender: set envelope.from.', { field: 'from' });
    const sender = asciiAddress(address);
    if (!policyOf(submitter).allows(sender)) return notAllowed(submitter, sender);
    // A rewritten sender goes out as the rewrite's address: that is the one a mailbox must be able to send.
    const target = submitter.rewrite?.to ?? sender;
    if (!deps.router.routeMessage(target, undefined)) return noRoute('No configured mailbox', target, target);
    return undefined;
  };

  /** The mailbox asked for (if it may send as the sender), else the mailbox or pool whose address or alias the sender is. */
  const routeOf = (envelopeFrom: string, froms: readonly string[], mailbox: string | undefined): Route | Refusal => {
    // Exchange checks SendAs on the header From: every From address must be sendable along with MAIL FROM.
    const routes = (froms.length > 0 ? froms : [undefined]).map((from) => ({
      from: from ?? envelopeFrom,
      route: deps.router.routeMessage(envelopeFrom, from),
    }));
    const unroutable = routes.find((r) => !r.route);
    const first = routes[0]!;
    if (mailbox === undefined) return unroutable ? noRoute('No configured mailbox', unroutable.from, envelopeFrom) : first.route!;
    const wanted = mailbox.toLowerCase();
    const configured = deps.mailboxes();
    if (!configured.includes(wanted))
      return refusal(
        'unknown-mailbox',
        R.unknownMailbox(mailbox),
        'R365_UNKNOWN_MAILBOX',
        422,
        `${mailbox} is not a configured mailbox; use one of: ${configured.join(', ')}.`,
        {
          field: 'mailbox',
        },
      );
    if (unroutable) return noRoute(`Neither ${wanted} nor any other configured mailbox`, unroutable.from, envelopeFrom);
    const fits = (r: Route): boolean => r.mailbox === wanted || (r.pool !== undefined && deps.router.poolsOf(wanted).includes(r.pool));
    const misfit = routes.find((r) => !fits(r.route!));
    if (misfit) return noRoute(`The mailbox ${wanted}`, misfit.from, envelopeFrom);
    return { mailbox: wanted };
  };

  async function admit(submission: Submission, submitter: Submitter): Promise<Verdict> {
    const { maxMessageBytes } = deps.limits();
    const scan = submission.scan ?? scanBytes(submission.raw);
    // -- the byte rules ---------------------------------------------------------------------
    if (scan.size > maxMessageBytes)
      return refusal(
        'too-big',
        R.tooBig(maxMessageBytes),
        'R365_MESSAGE_TOO_LARGE',
        413,
        `The message is ${scan.size} bytes once encoded; Exchange Online accepts at most ${maxMessageBytes} (limits.maxMessageBytes). Send smaller attachments or a link.`,
      );
    if (scan.hasNul)
      return refusal(
        'nul-bytes',
        R.nulBytes,
        'R365_MESSAGE_INVALID',
        400,
        'The message holds NUL bytes, which SMTP cannot carry: encode binary content (base64).',
        { field: 'raw' },
      );
    if (scan.longest > MAX_LINE_OCTETS)
      return refusal(
        'line-too-long',
        R.lineTooLong(scan.longest),
        'R365_MESSAGE_INVALID',
        400,
        `The message has a line of ${scan.longest} octets with its CRLF; SMTP allows ${MAX_LINE_OCTETS} (RFC 5321 4.5.3.1.6): encode long lines (quoted-printable or base64).`,
        { field: 'raw' },
      );
    // -- the envelope -----------------------------------------------------------------------
    const envelopeFrom = submission.envelope.from;
    if (!envelopeFrom)
      return refusal('no-sender', R.nullSender, 'R365_MESSAGE_INVALID', 400, 'The message has no envelope sender: set envelope.from.', { field: 'from' });
    const recipients = submission.envelope.to.map(asciiAddress);
    if (recipients.length === 0)
      return refusal('no-recipients', R.noRecipients, 'R365_MESSAGE_INVALID', 400, 'The message has no recipient: set to, cc or bcc.', { field: 'to' });
    if (!submission.recipientsChecked) {
      const tooMany = checkRecipientCount(recipients.length);
      if (tooMany) return tooMany;
    }
    // -- the header section and who it says sent it -----------------------------------------
    const head = submission.head ?? submission.raw.subarray(0, headerBounds(submission.raw).bodyStart);
    const check = checkHeaderSection(head);
    if (!check.ok)
      return check.field
        ? refusal('originator-refused', R.originatorRefused(check.problem), 'R365_MESSAGE_INVALID', 400, `The message cannot be relayed: ${check.problem}.`, {
            field: 'raw',
          })
        : refusal('header-malformed', R.headerMalformed(check.problem), 'R365_MESSAGE_INVALID', 400, `The message cannot be relayed: ${check.problem}.`, {
            field: 'raw',
          });
    let sender = asciiAddress(envelopeFrom);
    // Sender and Resent-* fields name senders to recipients as From does: the same policy applies.
    const policy = policyOf(submitter);
    const refused = [sender, ...check.originators.map(asciiAddress)].find((a) => !policy.allows(a));
    if (refused !== undefined) return notAllowed(submitter, refused);
    let raw = submission.raw;
    let froms = check.from.map(asciiAddress);
    const rewrite = submitter.rewrite;
    if (rewrite) {
      const fromValue = headerValues(readHeaders(head), 'From')[0];
      raw = rewriteFrom(raw, rewrite, { fromValue, address: froms[0] ?? sender });
      sender = asciiAddress(rewrite.to);
      froms = [sender];
    }
    // -- where it goes ----------------------------------------------------------------------
    const route = routeOf(sender, froms, submission.mailbox);
    if ('ok' in route) return route;
    if (!submission.recipientsChecked && !submission.ignoreSuppression) {
      // An address that hard-bounced draws an NDR again.
      const suppressed = await checkSuppressed(recipients);
      if (suppressed) return suppressed;
    }
    // -- labels -------------------------------------------------------------------------------
    let labels: { tags: string[]; metadata: Record<string, string> } | undefined;
    if (submission.tags !== undefined || submission.metadata !== undefined) {
      try {
        labels = checkLabels(submission.tags, submission.metadata);
      } catch (err) {
        if (!isRelay365Error(err)) throw err;
        const field = err.details?.field === 'metadata' ? 'metadata' : 'tags';
        return refusal('labels-invalid', R.labelsInvalid(err.message), 'R365_MESSAGE_INVALID', 400, err.message, { field });
      }
    }
    // -- scheduled time ---------------------------------------------------------------------
    if (submission.sendAt !== undefined) {
      const problem = scheduleProblem(submission.sendAt, Date.now());
      if (problem) return refusal('schedule-invalid', R.scheduleInvalid(problem), 'R365_MESSAGE_INVALID', 400, problem, { field: 'sendAt' });
    }
    // -- trace and identification fields ----------------------------------------------------
    const date = new Date();
    const headers = readHeaders(rewrite ? raw : head);
    const { prefix, messageId } = traceFields(headers, {
      hostname: deps.hostname,
      recipients,
      date,
      sender,
      ...(submission.received ?? {}),
    });
    const message: NewMessage = {
      ...(route.mailbox !== undefined ? { mailbox: route.mailbox } : { pool: route.pool }),
      envelope: { from: sender, to: recipients },
      // SMTP carries CRLF line ends (RFC 5321 2.3.8): the stored bytes are the bytes sent.
      raw: scan.bareLf === false && !rewrite ? join(prefix, raw) : toCrlf(join(prefix, raw)),
      source: submitter.source,
      messageId,
      ...(submission.sendAt !== undefined ? { notBefore: submission.sendAt } : {}),
      ...(labels !== undefined ? { tags: labels.tags, metadata: labels.metadata } : {}),
    };
    if (!deps.enqueue || submission.validateOnly) return { ok: true, message, route, stored: undefined, rewritten: rewrite !== undefined };
    // A client that left before its reply will send again: keeping this copy would only duplicate it.
    if (submission.gone?.()) return refusal('store-unavailable', R.storeUnavailable, 'R365_OUTBOX_UNAVAILABLE', 503, 'The client left before its answer.');
    try {
      const stored = await deps.enqueue(message);
      return { ok: true, message, route, stored, rewritten: rewrite !== undefined };
    } catch (cause) {
      return refusal(
        'store-unavailable',
        R.storeUnavailable,
        'R365_OUTBOX_UNAVAILABLE',
        503,
        `The outbox could not commit the message (${(cause as { code?: string }).code ?? 'error'}); nothing was queued: try again later.`,
        { cause, details: { cause: (cause as { code?: string }).code ?? 'error' } },
      );
    }
  }

  return { admit, checkSender, checkRecipientCount, checkSuppressed };
}
