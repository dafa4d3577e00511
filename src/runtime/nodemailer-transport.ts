/**
 * relay365 as a nodemailer transport: an app that already calls `transporter.sendMail()` switches by
 * one line, `nodemailer.createTransport(relay365Transport({ config: './relay365.yaml' }))`. The
 * transport takes nodemailer's compiled message (`mail.message.createReadStream()` and
 * `getEnvelope()`, the public transport API: nodemailer's docs, "Transports") and hands the bytes to
 * the queued library (`createRelay`, the default) or to the direct mailer (`createMailer`).
 *
 * Per-message options ride in sendMail's own options under one `relay365` key, read back from
 * `mail.data` (the object given to `sendMail`): the way nodemailer's own SES transport takes its
 * per-message `ses` object, so they never collide with nodemailer's fields or another plugin's.
 */
import { readFileSync } from 'node:fs';
import { buffer } from 'node:stream/consumers';
import type { MailMessage, Transport } from 'nodemailer';
import { loadConfig, type Config, type ConfigInput } from '../config/index.js';
import { createMailer, type Mailer, type MailerResult } from '../delivery/index.js';
import { Relay365Error } from '../errors.js';
import type { Logger } from '../observe/index.js';
import type { MessageState, RecipientRecord, RecipientState } from '../outbox/index.js';
import { createRelay, type MessageStatus, type QueueOptions, type QueuedRelay } from './library.js';

/**
 * relay365's options for one message, given in sendMail's options as `relay365` (queued mode): they
 * reach the outbox as `createRelay(...).send()`'s options do, and are checked there (tags and metadata
 * against outbox/labels.ts's limits), so a value the library refuses is refused here with the same
 * code and message.
 * @example
 * ```ts
 * await transporter.sendMail({
 *   from: 'relay@contoso.com', to: 'you@example.net', subject: 'Reminder', text: 'Tomorrow at 9',
 *   relay365: { sendAt: new Date('2026-12-24T08:00:00Z'), tags: ['reminder'], metadata: { orderId: '42' } },
 * });
 * ```
 */
export interface Relay365MessageOptions {
  /**
   * Do not send before this time (a scheduled send); a `Date`, or a string `new Date()` reads (as
   * nodemailer's own `date` option). A time past sends at once. Queued mode only.
   */
  sendAt?: Date | string;
  /** Up to 10 labels to find the message by (`relay365 queue list --tag`, `GET /v1/messages?tag=`), echoed in its webhooks. Queued mode only. */
  tags?: string[];
  /** Your own data (up to 20 keys to strings of at most 500 characters), stored and echoed in its webhooks. Queued mode only. */
  metadata?: Record<string, string>;
  /** Send to suppressed recipients too (docs/bounces.md). Direct mode keeps no suppression list, so there it changes nothing. */
  ignoreSuppression?: boolean;
}

declare module 'nodemailer/lib/mailer' {
  interface Options {
    /** relay365's options for this message (relay365Transport): `sendAt`, `tags`, `metadata`, `ignoreSuppression`. */
    relay365?: Relay365MessageOptions | undefined;
  }
}

/** Options of {@link relay365Transport}. */
export interface Relay365TransportOptions {
  /** The relay config: the path of a relay365.yaml, or a config object (as `createRelay` takes). */
  config: string | Config | ConfigInput;
  /**
   * `queued` (default): through the outbox in this process (`createRelay`): limits, retries, and the
   * message on disk before `sendMail` resolves. `direct`: sent at once by `createMailer`, no outbox.
   */
  mode?: 'queued' | 'direct';
  /**
   * Queued mode: resolve `sendMail` only once Exchange answered (`relay.outcome(id)`), with
   * `accepted` / `rejected` from each recipient's outcome; reject when no recipient was taken.
   * Default false: resolve once the message is on disk.
   */
  waitForOutcome?: boolean;
  /** How long `waitForOutcome` waits before `sendMail` rejects with `R365_OUTCOME_TIMEOUT` (default 10 minutes); the message stays queued. */
  outcomeTimeoutMs?: number;
  /** Send from this configured mailbox (default: the mailbox whose address or alias is the envelope sender). */
  mailbox?: string;
  logger?: Logger;
  env?: NodeJS.ProcessEnv;
}

/** One recipient's outcome, when it is known (`waitForOutcome`, direct mode). */
export interface Relay365RecipientOutcome {
  address: string;
  state: RecipientState;
  /** Exchange's reply for it (a refusal at RCPT, or the NDR's diagnostic). */
  reply?: string;
  /** What the reply means and how to fix it (relay365's reply catalogue). */
  explanation?: RecipientRecord['explanation'];
}

/** relay365's own account of a send, beside nodemailer's fields. */
export interface Relay365SendDetails {
  /** The outbox id (queued mode): `relay365 queue show <id>`, `GET /v1/messages/<id>`, `relay.status(id)`. Undefined in direct mode. */
  id: string | undefined;
  /** `queued` when `sendMail` resolved at admission; the message's final state with `waitForOutcome`; `sent` or `failed` in direct mode. */
  state: MessageState;
  /** The mailbox that sent it, when known. */
  mailbox: string | undefined;
  /** Each recipient's outcome, when one is known (`waitForOutcome`, direct mode). */
  recipients?: Relay365RecipientOutcome[];
}

/** What `sendMail` resolves with: nodemailer's fields (as its SMTP transport fills them) and `relay365`. */
export interface Relay365SentMessageInfo {
  envelope: { from: string | false; to: string[] };
  /** The Message-ID header of the message sent (nodemailer's, or the one the message carried). */
  messageId: string;
  /** Queued: the recipients admitted to the outbox; with an outcome: those Exchange took. */
  accepted: string[];
  /** Recipients Exchange refused, or that bounced by an NDR read back (with an outcome); `[]` when queued. */
  rejected: string[];
  /** Recipients nothing was decided for yet (a delay notification, or a send that may be tried again). */
  pending: string[];
  /** One error per rejected recipient, with its reply and explanation (as nodemailer's SMTP transport gives). */
  rejectedErrors: Relay365TransportError[];
  /** Queued: `250 2.0.0 OK queued as <id>`, the SMTP door's reply for a message on disk (nothing sent yet); with an outcome or direct: Exchange's reply. */
  response: string;
  relay365: Relay365SendDetails;
}

/** Fields of {@link Relay365TransportError} besides its message. */
interface TransportErrorFields {
  code: string;
  response?: string | undefined;
  command?: string | undefined;
  recipient?: string | undefined;
  rejected?: string[];
  rejectedErrors?: Relay365TransportError[];
  relay365?: Relay365SendDetails | undefined;
}

/**
 * A refused send, shaped as nodemailer's own SMTP errors are (`err.code`, `err.response`,
 * `err.responseCode`, `err.rejected`), so code written for nodemailer's SMTP transport reads it.
 * `code` is relay365's `R365_*` for a refusal before anything was queued (docs/errors.md), and
 * nodemailer's `EENVELOPE` (every recipient refused) or `EMESSAGE` (the message refused) when Exchange
 * refused it; in direct mode, the failure's own code (`R365_TOKEN_REJECTED`, `EAUTH`, `HTTP_403`, ...).
 */
export class Relay365TransportError extends Error {
  readonly code: string;
  /** The SMTP reply line: relay365's own for an admission refusal, Exchange's otherwise. */
  readonly response: string | undefined;
  /** The reply's basic code (550, 421, ...). */
  readonly responseCode: number | undefined;
  /** The stage that failed in direct mode (`RCPT TO`, `DATA`, `token`, ...), as nodemailer's `err.command`. */
  readonly command: string | undefined;
  /** On a per-recipient error (`rejectedErrors`): the recipient. */
  readonly recipient: string | undefined;
  /** Recipients the message did not reach: every one for an admission refusal (nothing was queued). */
  readonly rejected: string[];
  readonly rejectedErrors: Relay365TransportError[];
  /** The outbox id and outcome, when the message was queued before it failed. */
  readonly relay365: Relay365SendDetails | undefined;

  constructor(message: string, fields: TransportErrorFields) {
    super(message);
    this.name = 'Relay365TransportError';
    this.code = fields.code;
    this.response = fields.response;
    this.responseCode = basicCode(fields.response);
    this.command = fields.command;
    this.recipient = fields.recipient;
    this.rejected = fields.rejected ?? [];
    this.rejectedErrors = fields.rejectedErrors ?? [];
    this.relay365 = fields.relay365;
  }
}

function basicCode(reply: string | undefined): number | undefined {
  const m = reply === undefined ? null : /^([2-5]\d\d)[ -]/.exec(reply);
  return m ? Number(m[1]) : undefined;
}

/** Recipient states by what nodemailer calls them: a bounce after the 250 is a rejection too. */
const REJECTED: ReadonlySet<RecipientState> = new Set(['refused', 'bounced']);
const PENDING: ReadonlySet<RecipientState> = new Set(['pending', 'delayed']);

function outcomeOf(r: {
  address: string;
  state: RecipientState;
  reply?: string | undefined;
  explanation?: RecipientRecord['explanation'];
}): Relay365RecipientOutcome {
  return { address: r.address, state: r.state, ...(r.reply !== undefined ? { reply: r.reply } : {}), ...(r.explanation ? { explanation: r.explanation } : {}) };
}

/** "<reply>. <cause> <fix>": what Exchange said, what it means, what to do. */
function explained(reply: string | undefined, explanation: RecipientRecord['explanation'] | undefined): string {
  const said = reply ?? 'no reply';
  return explanation ? `${said}. ${explanation.cause} Fix: ${explanation.fix}` : said;
}

function recipientError(r: Relay365RecipientOutcome): Relay365TransportError {
  const what = r.state === 'bounced' ? 'bounced' : 'was refused';
  return new Relay365TransportError(`${r.address} ${what}: ${explained(r.reply, r.explanation)}`, {
    code: 'EENVELOPE',
    response: r.reply,
    recipient: r.address,
    rejected: [r.address],
  });
}

/** nodemailer's three recipient lists and the errors of the rejected ones. */
function split(recipients: Relay365RecipientOutcome[]): Pick<Relay365SentMessageInfo, 'accepted' | 'rejected' | 'pending' | 'rejectedErrors'> {
  const rejected = recipients.filter((r) => REJECTED.has(r.state));
  return {
    accepted: recipients.filter((r) => r.state === 'accepted').map((r) => r.address),
    rejected: rejected.map((r) => r.address),
    pending: recipients.filter((r) => PENDING.has(r.state)).map((r) => r.address),
    rejectedErrors: rejected.map(recipientError),
  };
}

type Envelope = Relay365SentMessageInfo['envelope'];

/** A message's `relay365` options as `createRelay`'s send takes them (without `mailbox`, the transport's own). */
type PerMessage = Omit<QueueOptions, 'mailbox'>;

const MESSAGE_OPTIONS: ReadonlySet<string> = new Set(['sendAt', 'tags', 'metadata', 'ignoreSuppression']);
/** What only the outbox can do: a direct send has no row to schedule or label. */
const NEEDS_OUTBOX = ['sendAt', 'tags', 'metadata'] as const;

/**
 * sendMail's `relay365` object as createRelay's send options. Only its shape is checked here, since
 * nodemailer passes whatever the caller wrote (a string where an array belongs would be read letter
 * by letter); the limits on tags and metadata are the outbox's own, checked at admission.
 */
function perMessageOptions(value: unknown, to: string[]): PerMessage {
  if (value === undefined) return {};
  const refuse = (problem: string): Relay365TransportError =>
    new Relay365TransportError(`sendMail's relay365 option ${problem}; nothing was sent (docs/nodemailer.md, "Per-message options").`, {
      code: 'R365_MESSAGE_INVALID',
      rejected: [...to],
    });
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw refuse('is not an object of sendAt, tags, metadata and ignoreSuppression');
  const given = value as Record<string, unknown>;
  // A misspelt key (sendat) would otherwise send at once with no word said.
  const unknown = Object.keys(given).filter((k) => !MESSAGE_OPTIONS.has(k));
  if (unknown.length > 0)
    throw refuse(
      `has ${unknown.map((k) => JSON.stringify(k)).join(', ')}, which relay365 does not know: it takes sendAt, tags, metadata and ignoreSuppression`,
    );
  const options: PerMessage = {};
  if (given.sendAt !== undefined) {
    const at = given.sendAt instanceof Date ? given.sendAt : typeof given.sendAt === 'string' ? new Date(given.sendAt) : undefined;
    if (!at || Number.isNaN(at.getTime()))
      throw refuse(`sendAt ${JSON.stringify(given.sendAt)} is not a time: give a Date or a string such as 2026-12-24T08:00:00Z`);
    options.sendAt = at;
  }
  if (given.tags !== undefined) {
    if (!Array.isArray(given.tags)) throw refuse('tags is not an array of strings');
    options.tags = given.tags as string[];
  }
  if (given.metadata !== undefined) {
    if (given.metadata === null || typeof given.metadata !== 'object' || Array.isArray(given.metadata)) throw refuse('metadata is not an object of strings');
    options.metadata = given.metadata as Record<string, string>;
  }
  if (given.ignoreSuppression !== undefined) {
    if (typeof given.ignoreSuppression !== 'boolean') throw refuse('ignoreSuppression is not true or false');
    options.ignoreSuppression = given.ignoreSuppression;
  }
  return options;
}

/** One way out: the queued relay or the direct mailer, behind the same two calls. */
interface Backend {
  send(raw: Buffer, envelope: Envelope, messageId: string, perMessage: PerMessage): Promise<Relay365SentMessageInfo>;
  close(): Promise<void>;
}

/** The queued relay's final status as nodemailer's result, or the error when no recipient was taken. */
function fromOutcome(done: MessageStatus, envelope: Envelope, messageId: string): Relay365SentMessageInfo {
  const recipients = done.recipients.map(outcomeOf);
  const details: Relay365SendDetails = { id: done.id, state: done.state, mailbox: done.mailbox, recipients };
  const lists = split(recipients);
  if (done.state === 'sent') return { envelope, messageId: done.messageId ?? messageId, ...lists, response: done.lastReply ?? '', relay365: details };
  const everyoneRefused = lists.rejected.length === recipients.length && recipients.length > 0;
  const explanation = recipients.find((r) => r.explanation)?.explanation;
  const why =
    done.state === 'cancelled'
      ? `Message ${done.id} was cancelled before it was sent (relay365 queue cancel, or the API).`
      : `Message ${done.id} failed after ${done.attempts} attempt(s): ${explained(done.lastReply, explanation)}`;
  throw new Relay365TransportError(why, {
    code: everyoneRefused ? 'EENVELOPE' : 'EMESSAGE',
    response: done.lastReply,
    rejected: lists.rejected,
    rejectedErrors: lists.rejectedErrors,
    relay365: details,
  });
}

async function queuedBackend(options: Relay365TransportOptions): Promise<Backend> {
  const relay: QueuedRelay = await createRelay(options.config, {
    ...(options.logger ? { logger: options.logger } : {}),
    ...(options.env ? { env: options.env } : {}),
  });
  return {
    async send(raw, envelope, messageId, perMessage) {
      const queued = await relay.send(
        { raw, envelope: { from: envelope.from || '', to: envelope.to } },
        { ...perMessage, ...(options.mailbox ? { mailbox: options.mailbox } : {}) },
      );
      if (!queued.ok) {
        // Refused before anything was queued: no recipient was taken.
        throw new Relay365TransportError(queued.message, { code: queued.code, response: queued.reply, rejected: [...envelope.to] });
      }
      if (options.waitForOutcome) {
        const timeout = options.outcomeTimeoutMs !== undefined ? { timeoutMs: options.outcomeTimeoutMs } : {};
        return fromOutcome(await relay.outcome(queued.id, timeout), envelope, queued.messageId ?? messageId);
      }
      return {
        envelope,
        messageId: queued.messageId ?? messageId,
        accepted: [...envelope.to],
        rejected: [],
        pending: [],
        rejectedErrors: [],
        // The SMTP door's reply for a message committed to the outbox (ingress/smtp/replies.ts `queued`).
        response: `250 2.0.0 OK queued as ${queued.id}`,
        relay365: { id: queued.id, state: 'queued', mailbox: queued.mailbox },
      };
    },
    close: () => relay.close(),
  };
}

/** The direct mailer's result as nodemailer's, or the error when Microsoft took the message for no one. */
function fromMailer(result: MailerResult, envelope: Envelope, messageId: string): Relay365SentMessageInfo {
  const recipients = result.recipients.map(outcomeOf);
  const details: Relay365SendDetails = { id: undefined, state: result.ok ? 'sent' : 'failed', mailbox: result.mailbox, recipients };
  const lists = split(recipients);
  if (result.ok) return { envelope, messageId: result.messageId ?? messageId, ...lists, response: result.reply ?? '', relay365: details };
  const everyoneRefused = lists.rejected.length === recipients.length && recipients.length > 0;
  throw new Relay365TransportError(
    `Sending as ${result.mailbox} failed${result.stage ? ` at ${result.stage}` : ''}: ${explained(result.reply, result.explanation)}`,
    {
      code: result.errorCode ?? (everyoneRefused ? 'EENVELOPE' : 'EMESSAGE'),
      response: result.reply,
      command: result.stage,
      rejected: lists.rejected,
      rejectedErrors: lists.rejectedErrors,
      relay365: details,
    },
  );
}

async function directBackend(options: Relay365TransportOptions): Promise<Backend> {
  const env = options.env ? { env: options.env } : {};
  const config = typeof options.config === 'string' ? await loadConfig({ path: options.config, ...env }) : options.config;
  const mailer: Mailer = await createMailer(config, { ...(options.logger ? { logger: options.logger } : {}), ...env });
  return {
    async send(raw, envelope, messageId, perMessage) {
      // No outbox: a scheduled time or a label would have nowhere to be kept, so it is refused rather than dropped.
      const needsOutbox = NEEDS_OUTBOX.filter((k) => perMessage[k] !== undefined);
      if (needsOutbox.length > 0) {
        const named = needsOutbox.map((k) => `relay365.${k}`);
        const names = named.length === 1 ? named[0] : `${named.slice(0, -1).join(', ')} and ${named.at(-1)}`;
        throw new Relay365TransportError(
          `${names} need${needsOutbox.length === 1 ? 's' : ''} the outbox, and this transport is in direct mode (mode: 'direct'), which sends at once and keeps nothing; nothing was sent. Use the default queued mode, or leave ${needsOutbox.length === 1 ? 'it' : 'them'} out.`,
          { code: 'R365_MESSAGE_INVALID', rejected: [...envelope.to] },
        );
      }
      const result = await mailer.send({ raw, envelope: { from: envelope.from || '', to: envelope.to } }, options.mailbox ? { mailbox: options.mailbox } : {});
      return fromMailer(result, envelope, messageId);
    },
    close: () => mailer.close(),
  };
}

/** relay365's version, which nodemailer logs beside the transport's name; from package.json two folders up (src/runtime, dist/runtime). */
function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/** The nodemailer transport {@link relay365Transport} returns. */
export interface Relay365Transport extends Transport<Relay365SentMessageInfo> {
  /** Loads the config and starts the relay (queued: opens the outbox; direct: the identity) without sending; nodemailer's `transporter.verify()`. */
  verify(callback?: (err: Error | null, success?: true) => void): Promise<true> | undefined;
  /** Closes the relay: queued messages stay on disk for the next start, sends in flight finish. `transporter.close()` returns this promise. */
  close(): Promise<void>;
}

/**
 * A nodemailer transport that sends through relay365: queued through the outbox in this process by
 * default (`createRelay`), or directly (`mode: 'direct'`, `createMailer`). The relay starts at the
 * first `sendMail` (or `verify`); `close()` closes it (nodemailer's `transporter.close()` returns its promise).
 * @example
 * ```ts
 * import nodemailer from 'nodemailer';
 * import { relay365Transport } from 'relay365';
 * // was: nodemailer.createTransport({ host: 'smtp.office365.com', port: 587, auth: { user, pass } })
 * const transport = relay365Transport({ config: './relay365.yaml' });
 * const transporter = nodemailer.createTransport(transport);
 * const info = await transporter.sendMail({ from: 'relay@contoso.com', to: 'you@example.net', subject: 'Hi', text: 'Hello' });
 * console.log(info.messageId, info.response); // 250 2.0.0 OK queued as <outbox id>
 * await transport.close(); // or transporter.close(), which nodemailer types as void
 * ```
 */
export function relay365Transport(options: Relay365TransportOptions): Relay365Transport {
  const start = options.mode === 'direct' ? directBackend : queuedBackend;
  let backend: Promise<Backend> | undefined;
  let closed = false;

  const started = (): Promise<Backend> => {
    if (closed) return Promise.reject(new Relay365Error('R365_RELAY_CLOSED', 'This transport is closed: create a new one with relay365Transport().'));
    // One relay for every send; a failed start (an outbox not reachable yet) is tried again at the next.
    backend ??= start(options).catch((err: unknown) => {
      backend = undefined;
      throw err;
    });
    return backend;
  };

  const send = async (mail: MailMessage<Relay365SentMessageInfo>): Promise<Relay365SentMessageInfo> => {
    const { from, to } = mail.message.getEnvelope();
    const envelope: Envelope = { from, to: [...to] };
    // Read as the caller wrote it (untyped in JavaScript), before the relay starts.
    const perMessage = perMessageOptions((mail.data as { relay365?: unknown }).relay365, envelope.to);
    const relay = await started();
    // Read before the stream is built, so the header written is the id reported (nodemailer's own transports do the same).
    const messageId = mail.message.messageId();
    // The Bcc header is left out of the bytes (nodemailer's default) and its addresses kept in the envelope.
    const raw = await buffer(mail.message.createReadStream());
    return relay.send(raw, envelope, messageId, perMessage);
  };

  return {
    name: 'relay365',
    version: packageVersion(),
    send(mail, callback) {
      send(mail).then(
        (info) => callback(null, info),
        (err: unknown) => callback(err instanceof Error ? err : new Error(String(err))),
      );
    },
    verify(callback) {
      const checked = started().then((): true => true);
      if (!callback) return checked;
      checked.then(
        (ok) => callback(null, ok),
        (err: unknown) => callback(err instanceof Error ? err : new Error(String(err))),
      );
      return undefined;
    },
    async close() {
      closed = true;
      const running = backend;
      backend = undefined;
      if (!running) return;
      const relay = await running.catch(() => undefined);
      await relay?.close();
    },
  };
}
