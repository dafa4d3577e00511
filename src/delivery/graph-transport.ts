import { randomUUID } from 'node:crypto';
import addressparser from 'nodemailer/lib/addressparser';
import { explainConnectionError, explainGraphError, type Explanation } from '../catalogue/index.js';
import { failureOf, tokenFailure, type CloudEndpoints, type HttpsNetworkClient, type TokenProvider } from '../identity/index.js';
import { scrubSecrets, silentLogger, type Logger } from '../observe/index.js';
import { parseHeaderBlock, splitHeaderBody, splitLargeAttachments } from './mime-split.js';
import type { DistributiveOmit, OutgoingMessage, SendFailure, SendResult, Transport } from './types.js';

export interface GraphTransportOptions {
  cloud: CloudEndpoints;
  tokens: TokenProvider;
  /** The HTTPS client with the extra CAs and the proxy (identity's). */
  http: Pick<HttpsNetworkClient, 'send'>;
  logger?: Logger;
  /**
   * Largest message sent in one `sendMail` request. Graph takes at most 4 MB per request and base64
   * grows the MIME by 4/3, so 3,000,000 bytes leave a margin (Microsoft Learn, "Exchange Online limits").
   */
  sendMailMaxBytes?: number;
  /**
   * Bytes per upload-session chunk: at most 4 MB, and a multiple of 320 KiB except the last
   * (Microsoft Learn: "Attach large files to Outlook messages"). Default 3.75 MiB (12 x 320 KiB).
   */
  chunkBytes?: number;
  /** Timeout of each Graph request, in ms. */
  timeoutMs?: number;
}

/** Graph's error body: `{"error":{"code","message","innerError":{...}}}` (Microsoft Learn: "Microsoft Graph error responses"). */
interface GraphErrorBody {
  error?: { code?: string; message?: string };
}

interface GraphAnswer {
  status: number;
  headers: Record<string, string>;
  body: unknown;
}

/** A Graph request that did not get the answer wanted: the send stops with this result. */
class GraphFailure extends Error {
  constructor(readonly result: DistributiveOmit<SendFailure, 'mailbox' | 'messageId'>) {
    super(result.reply ?? 'graph failure');
  }
}

const DEFAULT_SENDMAIL_MAX = 3_000_000;
const DEFAULT_CHUNK = 12 * 320 * 1024;

/** `Retry-After` in seconds or as an HTTP date (RFC 9110 section 10.2.3), in ms; undefined when absent. */
export function retryAfterMs(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** The addresses in the message's To, Cc and Bcc headers, lower case. */
function headerRecipients(raw: Buffer): Set<string> {
  const { head } = splitHeaderBody(raw.subarray(0, Math.min(raw.length, 256 * 1024)).toString('latin1'));
  const headers = parseHeaderBlock(head);
  const out = new Set<string>();
  for (const name of ['to', 'cc', 'bcc'])
    for (const value of headers.get(name) ?? []) for (const a of addressparser(value, { flatten: true })) out.add(a.address.toLowerCase());
  return out;
}

/**
 * Graph sends to the recipients in the MIME headers, not to an SMTP envelope. Envelope recipients the
 * headers do not name (the Bcc of a composed message) are added as a `Bcc:` header, which Exchange
 * strips from the delivered copies; otherwise the MIME goes out byte for byte.
 */
export function withEnvelopeBcc(message: OutgoingMessage): Buffer {
  const named = headerRecipients(message.raw);
  const missing = message.envelope.to.filter((a) => !named.has(a.toLowerCase()));
  if (missing.length === 0) return message.raw;
  return Buffer.concat([Buffer.from(`Bcc: ${missing.join(', ')}\r\n`, 'latin1'), message.raw]);
}

/**
 * Sends through Microsoft Graph: `POST /users/{mailbox}/sendMail` with the MIME as base64 text for
 * messages up to ~3 MB; larger ones as a draft created from the MIME without its big attachments,
 * those attachments uploaded through `createUploadSession` in chunks, then `POST .../send`. Graph's
 * answers are explained from the catalogue; a `401` invalidates the token and the send is tried once
 * more with a fresh one; `429`/`503` carry Graph's `Retry-After` in the result.
 *
 * MIME sends are always saved to the mailbox's Sent Items (Graph's `saveToSentItems` exists only for the
 * JSON form of `sendMail`, which would not keep the message's bytes): see docs/graph.md.
 */
export class GraphTransport implements Transport {
  private readonly logger: Logger;
  private readonly sendMailMaxBytes: number;
  private readonly chunkBytes: number;
  private readonly timeoutMs: number;

  constructor(private readonly options: GraphTransportOptions) {
    this.logger = options.logger ?? silentLogger();
    this.sendMailMaxBytes = options.sendMailMaxBytes ?? DEFAULT_SENDMAIL_MAX;
    this.chunkBytes = Math.min(options.chunkBytes ?? DEFAULT_CHUNK, 4 * 1024 * 1024);
    this.timeoutMs = options.timeoutMs ?? 120_000;
  }

  async send(mailbox: string, message: OutgoingMessage): Promise<SendResult> {
    const first = await this.attempt(mailbox, message);
    if (first.ok || first.errorCode !== 'HTTP_401') return first;
    // An expired or revoked token draws a 401: drop it and try once more with a fresh one.
    this.options.tokens.invalidate(mailbox);
    const second = await this.attempt(mailbox, message);
    return { ...second, retriedWithFreshToken: true };
  }

  async close(): Promise<void> {
    await Promise.resolve();
  }

  private userUrl(mailbox: string, path: string): string {
    return `${this.options.cloud.graphHost.replace(/\/+$/, '')}/v1.0/users/${encodeURIComponent(mailbox)}${path}`;
  }

  private async attempt(mailbox: string, message: OutgoingMessage): Promise<SendResult> {
    const base = { mailbox, messageId: message.messageId };
    let token: string;
    try {
      token = (await this.options.tokens.getToken(mailbox)).accessToken;
    } catch (err) {
      const failure = tokenFailure(err, mailbox);
      return { ...base, ok: false, class: failure.class, reply: undefined, explanation: failure.explanation, stage: 'token', errorCode: failure.code, failure };
    }
    const raw = withEnvelopeBcc(message);
    try {
      if (raw.length <= this.sendMailMaxBytes) {
        const answer = await this.request(mailbox, 'POST', this.userUrl(mailbox, '/sendMail'), token, mimeBody(raw), [202]);
        return { ...base, ok: true, class: 'sent', reply: acceptedReply(answer) };
      }
      return { ...base, ...(await this.sendLarge(mailbox, raw, token)) };
    } catch (err) {
      if (err instanceof GraphFailure) {
        this.logger.info({ mailbox, messageId: message.messageId, reply: err.result.reply, class: err.result.class }, 'graph send failed');
        return { ...base, ...err.result };
      }
      throw err;
    }
  }

  /** Draft from the MIME without its big attachments, one upload session per attachment, then send. */
  private async sendLarge(mailbox: string, raw: Buffer, token: string): Promise<DistributiveOmit<SendResult, 'mailbox' | 'messageId'>> {
    const split = splitLargeAttachments(raw, this.sendMailMaxBytes);
    if (!split) {
      const explanation = explainGraphError(413, 'RequestBodyTooLarge', mailbox);
      return {
        ok: false,
        class: 'permanent',
        reply: `relay365: the message is ${raw.length} bytes and has no top-level base64 attachments to upload separately`,
        explanation: { ...explanation, cause: `${explanation.cause} The message cannot be split: it is not multipart/mixed with base64 attachments.` },
        stage: 'split',
        failure: failureOf('message', explanation),
      };
    }
    const created = await this.request(mailbox, 'POST', this.userUrl(mailbox, '/messages'), token, mimeBody(split.draft), [201]);
    const draftId = (created.body as { id?: unknown }).id;
    if (typeof draftId !== 'string') throw new GraphFailure(unexpected(created, 'the draft has no id'));
    const draftUrl = this.userUrl(mailbox, `/messages/${encodeURIComponent(draftId)}`);
    try {
      for (const attachment of split.attachments) {
        const session = await this.request(
          mailbox,
          'POST',
          `${draftUrl}/attachments/createUploadSession`,
          token,
          {
            contentType: 'application/json',
            body: Buffer.from(
              JSON.stringify({
                AttachmentItem: { attachmentType: 'file', name: attachment.name, size: attachment.content.length, contentType: attachment.contentType },
              }),
            ),
          },
          [201],
        );
        const uploadUrl = (session.body as { uploadUrl?: unknown }).uploadUrl;
        if (typeof uploadUrl !== 'string') throw new GraphFailure(unexpected(session, 'the upload session has no uploadUrl'));
        await this.upload(mailbox, uploadUrl, attachment.content);
      }
      const sent = await this.request(mailbox, 'POST', `${draftUrl}/send`, token, { contentType: undefined, body: Buffer.alloc(0) }, [202]);
      return { ok: true, class: 'sent', reply: acceptedReply(sent) };
    } catch (err) {
      // Best effort: a failed send should not leave a half-built draft in the mailbox.
      await this.request(mailbox, 'DELETE', draftUrl, token, { contentType: undefined, body: undefined }, [204]).catch(() => undefined);
      throw err;
    }
  }

  /** PUTs the content in chunks; the upload URL carries its own credential and must not get the token. */
  private async upload(mailbox: string, uploadUrl: string, content: Buffer): Promise<void> {
    for (let start = 0; start < content.length || (start === 0 && content.length === 0); start += this.chunkBytes) {
      const end = Math.min(content.length, start + this.chunkBytes);
      const last = end >= content.length;
      await this.request(
        mailbox,
        'PUT',
        uploadUrl,
        undefined,
        {
          contentType: 'application/octet-stream',
          body: content.subarray(start, end),
          headers: { 'content-range': `bytes ${start}-${Math.max(start, end - 1)}/${content.length}` },
        },
        last ? [200, 201] : [200],
      );
      if (content.length === 0) break;
    }
  }

  private async request(
    mailbox: string,
    method: string,
    url: string,
    token: string | undefined,
    payload: { contentType: string | undefined; body: Buffer | undefined; headers?: Record<string, string> },
    expected: number[],
  ): Promise<GraphAnswer> {
    const clientRequestId = randomUUID();
    let answer: GraphAnswer;
    try {
      answer = await this.options.http.send(
        method,
        url,
        {
          headers: {
            ...(token ? { authorization: `Bearer ${token}` } : {}),
            ...(payload.contentType ? { 'content-type': payload.contentType } : {}),
            'client-request-id': clientRequestId,
            'return-client-request-id': 'true',
            ...payload.headers,
          },
          ...(payload.body ? { bodyBuffer: payload.body } : {}),
        },
        this.timeoutMs,
      );
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const explanation: Explanation = explainConnectionError(e.code, e.message) ?? {
        id: 'net-unknown',
        class: 'transient',
        cause: scrubSecrets(e.message),
        fix: `Check the network path to ${new URL(url).host}; relay365 retries.`,
      };
      throw new GraphFailure({
        ok: false,
        class: explanation.class,
        reply: undefined,
        explanation,
        stage: stageOf(url, method),
        ...(e.code ? { errorCode: e.code } : {}),
        failure: failureOf('connection', explanation, e.code),
      });
    }
    if (expected.includes(answer.status)) return answer;
    const error = typeof answer.body === 'object' && answer.body !== null ? (answer.body as GraphErrorBody).error : undefined;
    const explanation = explainGraphError(answer.status, error?.code, mailbox, typeof error?.message === 'string' ? error.message : undefined);
    const wait = answer.status === 429 || answer.status === 503 ? retryAfterMs(answer.headers['retry-after']) : undefined;
    throw new GraphFailure({
      ok: false,
      class: explanation.class,
      reply: scrubSecrets(
        `${answer.status} ${error?.code ?? 'HttpError'}: ${error?.message ?? (typeof answer.body === 'string' ? answer.body.slice(0, 200) : '')}`.trim(),
      ),
      explanation,
      stage: stageOf(url, method),
      errorCode: `HTTP_${answer.status}`,
      ...(wait !== undefined ? { retryAfterMs: wait } : {}),
      failure: failureOf('reply', explanation, `HTTP_${answer.status}`),
    });
  }
}

/** `sendMail` and draft creation take the MIME as base64 text (Microsoft Learn: "Send Outlook messages in MIME format"). */
function mimeBody(raw: Buffer): { contentType: string; body: Buffer } {
  return { contentType: 'text/plain', body: Buffer.from(raw.toString('base64'), 'ascii') };
}

function acceptedReply(answer: GraphAnswer): string {
  const id = answer.headers['request-id'];
  return `${answer.status} Accepted${id ? ` request-id=${id}` : ''}`;
}

function stageOf(url: string, method: string): string {
  if (method === 'PUT') return 'upload';
  const path = new URL(url).pathname;
  if (path.endsWith('/sendMail')) return 'sendMail';
  if (path.endsWith('/createUploadSession')) return 'createUploadSession';
  if (path.endsWith('/send')) return 'send';
  return method === 'DELETE' ? 'delete draft' : 'create draft';
}

function unexpected(answer: GraphAnswer, what: string): DistributiveOmit<SendFailure, 'mailbox' | 'messageId'> {
  const catalogued = explainGraphError(500, undefined);
  const explanation = { ...catalogued, class: 'transient' as const, cause: `Graph answered ${answer.status} but ${what}.` };
  return { ok: false, class: 'transient', reply: `${answer.status}: ${what}`, explanation, failure: failureOf('reply', explanation) };
}
