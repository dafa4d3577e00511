import { randomBytes, randomUUID } from 'node:crypto';
import type { FastifyPluginCallback, FastifyReply, FastifyRequest } from 'fastify';
import addressparser from 'nodemailer/lib/addressparser';
import { GraphError, authorizeGraph, sendGraphError } from './graph-http.js';
import type { Tenant, User } from './scenario.js';
import type { SandboxState } from './state.js';
import type { AccessTokenClaims, TokenIssuer } from './tokens.js';

export interface GraphRoutesOptions {
  state: SandboxState;
  issuer: TokenIssuer;
  /** `https://localhost:PORT`, known once the server listens. */
  baseUrl: () => string;
}

/** Graph's request limit for sendMail and draft creation (shared/M365.md, Limits). */
const MAX_REQUEST_BYTES = 4 * 1024 * 1024;
/** Upload-session chunks must be at most 4 MB (Microsoft Learn: "Attach large files to Outlook messages"). */
const MAX_CHUNK_BYTES = 4 * 1024 * 1024;
const CRLF = '\r\n';

/** A draft created from MIME, waiting for its uploads and `send`. */
interface Draft {
  id: string;
  mailbox: string;
  tenantId: string;
  appId: string;
  mime: Buffer;
  attachments: Array<{ name: string; contentType: string; content: Buffer }>;
}

interface UploadSession {
  id: string;
  draft: Draft;
  name: string;
  contentType: string;
  size: number;
  received: Buffer[];
  next: number;
  expires: Date;
}

/** Who is calling, once the token and the mailbox passed Graph's checks. */
interface Caller {
  tenant: Tenant;
  user: User;
  claims: AccessTokenClaims;
}

/** The header block of a MIME message (latin1, unfolded), names in lower case. */
function headersOf(mime: Buffer): Map<string, string[]> {
  const text = mime.subarray(0, Math.min(mime.length, 256 * 1024)).toString('latin1');
  const end = text.search(/\r?\n\r?\n/);
  const block = end < 0 ? text : text.slice(0, end);
  const out = new Map<string, string[]>();
  for (const line of block.replace(/\r?\n[ \t]+/g, ' ').split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    out.set(name, [...(out.get(name) ?? []), line.slice(colon + 1).trim()]);
  }
  return out;
}

function addresses(values: string[] | undefined): string[] {
  return (values ?? []).flatMap((v) => addressparser(v, { flatten: true }).map((a) => a.address));
}

const ADDRESS = /^[^@\s<>(),;:"[\]]+@[^@\s<>(),;:"[\]]+\.[^@\s<>(),;:"[\]]+$/;

/**
 * Adds uploaded attachments to a draft's MIME. When the draft is `multipart/mixed`, the parts go in
 * before its closing delimiter; otherwise the draft's body is wrapped in a new `multipart/mixed`. Not
 * byte-identical to what the client composed (Exchange does not keep it either): the attachments come
 * back as new base64 parts with the name and type given to `createUploadSession`.
 */
export function addAttachmentsToMime(mime: Buffer, attachments: Draft['attachments']): Buffer {
  if (attachments.length === 0) return mime;
  const parts = attachments.map((a) => {
    const name = a.name.replace(/["\\\r\n]/g, '_');
    const b64 = a.content.toString('base64').replace(/.{76}/g, `$&${CRLF}`);
    return `Content-Type: ${a.contentType}; name="${name}"${CRLF}Content-Transfer-Encoding: base64${CRLF}Content-Disposition: attachment; filename="${name}"${CRLF}${CRLF}${b64}${b64.endsWith(CRLF) ? '' : CRLF}`;
  });
  const text = mime.toString('latin1');
  const contentType = headersOf(mime).get('content-type')?.[0] ?? '';
  const boundary = /boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  const b = boundary ? (boundary[1] ?? boundary[2])! : undefined;
  const close = b ? text.lastIndexOf(`--${b}--`) : -1;
  if (b && /^multipart\/mixed/i.test(contentType) && close >= 0) {
    const insert = parts.map((p) => `--${b}${CRLF}${p}`).join('');
    return Buffer.from(`${text.slice(0, close)}${insert}${text.slice(close)}`, 'latin1');
  }
  const end = text.indexOf(`${CRLF}${CRLF}`);
  const head = end < 0 ? text : text.slice(0, end);
  const body = end < 0 ? '' : text.slice(end + 4);
  const content: string[] = [];
  const top: string[] = [];
  // Split into fields, each with its folded continuation lines (RFC 5322 section 2.2.3).
  for (const field of head.split(/\r\n(?![ \t])/)) (/^(content-|mime-version)/i.test(field) ? content : top).push(field);
  const nb = `----sandbox-${randomUUID()}`;
  const first = `${content.filter((l) => !/^mime-version/i.test(l)).join(CRLF) || 'Content-Type: text/plain'}${CRLF}${CRLF}${body}${CRLF}`;
  const out = `${top.join(CRLF)}${CRLF}MIME-Version: 1.0${CRLF}Content-Type: multipart/mixed; boundary="${nb}"${CRLF}${CRLF}--${nb}${CRLF}${first}${parts.map((p) => `--${nb}${CRLF}${p}`).join('')}--${nb}--${CRLF}`;
  return Buffer.from(out, 'latin1');
}

/**
 * Microsoft Graph's mail sending, as relay365 uses it: `sendMail` with a base64 MIME body, drafts from
 * MIME, `createUploadSession` + chunked `PUT` for large attachments, and `send`. Tokens, mailboxes,
 * SendAs, sizes, recipients and throttling (10,000 requests per 10 minutes and 4 concurrent requests
 * per mailbox, scenario faults) are checked as Graph does; errors have Graph's JSON shape.
 */
export const graphRoutes: FastifyPluginCallback<GraphRoutesOptions> = (app, opts, done) => {
  const { state, issuer, baseUrl } = opts;
  const drafts = new Map<string, Draft>();
  const sessions = new Map<string, UploadSession>();
  const inflight = new Map<string, number>();
  const windows = new Map<string, number[]>();

  // Bodies are base64 text, JSON or raw chunks: take them as bytes and read each as its route needs.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: 200 * 1024 * 1024 }, (_request, body, parsed) => parsed(null, body));

  /** Runs a Graph handler: counts it, answers its GraphError in Graph's shape. */
  function route(handler: (request: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply>) {
    return async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
      state.counters.graphRequests += 1;
      try {
        return await handler(request, reply);
      } catch (err) {
        if (err instanceof GraphError) {
          if (err.status === 429) state.recordThrottle();
          return sendGraphError(request, reply, err);
        }
        throw err;
      }
    };
  }

  /** Graph's token checks, then the user and mailbox, then throttling; returns the caller and a release. */
  async function authorize(request: FastifyRequest, userRef: string): Promise<Caller & { release: () => void }> {
    // Token checks, then scopes, roles, shared-mailbox rights and RBAC for Applications scopes: one decision for every Graph route.
    const found = await authorizeGraph(issuer, state.scenario, request, userRef, 'Mail.Send');
    const mailbox = found.user.upn.toLowerCase();
    const fault = state.takeGraphFault(mailbox);
    if (fault) {
      const headers: Record<string, string> = fault.retryAfterSeconds !== undefined ? { 'retry-after': String(fault.retryAfterSeconds) } : {};
      throw fault.status === 429
        ? new GraphError(429, 'ApplicationThrottled', 'Application is over its MailboxConcurrency limit.', headers)
        : new GraphError(503, 'ServiceUnavailable', 'Service Unavailable', headers);
    }
    const limits = state.scenario.limits;
    if (!limits.unlimited) {
      const now = Date.now();
      const windowMs = 600_000 / limits.timeScale;
      const recent = (windows.get(mailbox) ?? []).filter((t) => t > now - windowMs);
      windows.set(mailbox, recent);
      if (recent.length >= limits.graphRequestsPer10Minutes) {
        const wait = Math.max(1, Math.ceil((recent[0]! + windowMs - now) / 1000));
        throw new GraphError(429, 'ApplicationThrottled', 'Application is over its MailboxRequestRate limit.', { 'retry-after': String(wait) });
      }
      if ((inflight.get(mailbox) ?? 0) >= limits.graphConcurrentRequests) {
        throw new GraphError(429, 'ApplicationThrottled', 'Application is over its MailboxConcurrency limit.', { 'retry-after': '1' });
      }
      recent.push(now);
    }
    inflight.set(mailbox, (inflight.get(mailbox) ?? 0) + 1);
    let released = false;
    return {
      ...found,
      release: () => {
        if (released) return;
        released = true;
        const n = (inflight.get(mailbox) ?? 1) - 1;
        if (n <= 0) inflight.delete(mailbox);
        else inflight.set(mailbox, n);
      },
    };
  }

  /** A MIME body as Graph takes it: `Content-Type: text/plain`, base64, at most 4 MB. */
  function readMime(request: FastifyRequest): Buffer {
    const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
    if (body.length > MAX_REQUEST_BYTES) throw new GraphError(413, 'RequestBodyTooLarge', 'The maximum request length supported is 4MB.');
    const type = (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== 'text/plain') throw new GraphError(400, 'ErrorInvalidRequest', 'MIME content must be sent with Content-Type: text/plain as a base64 string.');
    const text = body.toString('ascii').replace(/\s+/g, '');
    if (text.length === 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 === 1) {
      throw new GraphError(400, 'ErrorMimeContentInvalidBase64String', 'Invalid base64 string for MIME content.');
    }
    return Buffer.from(text, 'base64');
  }

  /** SendAs and recipients, as Exchange checks them on submission; returns the envelope. */
  function checkMessage(caller: Caller, mime: Buffer): { mailFrom: string; rcptTo: string[] } {
    const headers = headersOf(mime);
    const rcptTo = [...addresses(headers.get('to')), ...addresses(headers.get('cc')), ...addresses(headers.get('bcc'))];
    const raw = [...(headers.get('to') ?? []), ...(headers.get('cc') ?? []), ...(headers.get('bcc') ?? [])];
    if (rcptTo.length === 0 || rcptTo.some((a) => !ADDRESS.test(a)) || (raw.length > 0 && rcptTo.length === 0)) {
      throw new GraphError(400, 'ErrorInvalidRecipients', 'At least one recipient is not valid., Recipient is not valid.');
    }
    const from = addresses(headers.get('from'))[0] ?? caller.user.upn;
    const allowed = new Set([caller.user.upn, ...caller.user.aliases, ...caller.user.sendAs].map((a) => a.toLowerCase()));
    if (!allowed.has(from.toLowerCase())) {
      throw new GraphError(
        403,
        'ErrorSendAsDenied',
        'The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account., Cannot submit message.',
      );
    }
    if (mime.length > state.scenario.limits.maxMessageBytes)
      throw new GraphError(400, 'ErrorMessageSizeExceeded', 'The message exceeds the maximum supported size.');
    return { mailFrom: from, rcptTo };
  }

  async function store(caller: Caller, mime: Buffer): Promise<void> {
    const envelope = checkMessage(caller, mime);
    // sendMail keeps a copy in Sent Items, which counts toward the mailbox's quota (Microsoft Learn
    // "user: sendMail": saveToSentItems defaults to true); a full mailbox refuses the send with
    // ErrorQuotaExceeded (on sendMail: https://github.com/microsoftgraph/microsoft-graph-docs/issues/3935;
    // the message as Graph words it: https://github.com/microsoftgraph/microsoft-graph-docs/issues/2927;
    // HTTP 403, as public Graph clients' tests record the reply).
    if (state.mailboxFull(caller.user, mime.length)) throw new GraphError(403, 'ErrorQuotaExceeded', 'Mailbox has exceeded maximum mailbox size.');
    await state.addMessage({
      via: 'graph',
      tenantId: caller.tenant.id,
      mailbox: caller.user.upn,
      appId: caller.claims.appid,
      envelope,
      size: mime.length,
      raw: mime,
      reply: '202 Accepted',
    });
    state.saveSentItem(caller.user.upn, mime.length);
  }

  /** Runs a route's work as its authorized caller, and gives back the caller's concurrency slot however the work ends. */
  async function asCaller<T>(request: FastifyRequest, userRef: string, work: (caller: Caller) => Promise<T>): Promise<T> {
    const caller = await authorize(request, userRef);
    try {
      return await work(caller);
    } finally {
      caller.release();
    }
  }

  type UserParams = { Params: { user: string } };
  type MessageParams = { Params: { user: string; id: string } };

  app.post<UserParams>(
    '/v1.0/users/:user/sendMail',
    route(async (request, reply) => {
      await asCaller(request, (request.params as UserParams['Params']).user, (caller) => store(caller, readMime(request)));
      return reply.code(202).header('request-id', randomUUID()).send();
    }),
  );

  app.post<UserParams>(
    '/v1.0/users/:user/messages',
    route(async (request, reply) => {
      return asCaller(request, (request.params as UserParams['Params']).user, async (caller) => {
        const mime = readMime(request);
        const id = randomBytes(24).toString('base64url');
        drafts.set(id, { id, mailbox: caller.user.upn.toLowerCase(), tenantId: caller.tenant.id, appId: caller.claims.appid, mime, attachments: [] });
        return await reply.code(201).send({ id, isDraft: true, hasAttachments: false });
      });
    }),
  );

  function draftOf(caller: Caller, id: string): Draft {
    const draft = drafts.get(id);
    if (!draft || draft.mailbox !== caller.user.upn.toLowerCase())
      throw new GraphError(404, 'ErrorItemNotFound', 'The specified object was not found in the store.');
    return draft;
  }

  /** Runs a route's work on the draft a `/messages/{id}` path names, as its caller (404 for an unknown draft or another mailbox's). */
  function onDraft<T>(request: FastifyRequest, work: (caller: Caller, draft: Draft) => Promise<T>): Promise<T> {
    const params = request.params as MessageParams['Params'];
    return asCaller(request, params.user, (caller) => work(caller, draftOf(caller, params.id)));
  }

  app.delete<MessageParams>(
    '/v1.0/users/:user/messages/:id',
    route(async (request, reply) => {
      return onDraft(request, async (_caller, draft) => {
        drafts.delete(draft.id);
        return await reply.code(204).send();
      });
    }),
  );

  app.post<MessageParams>(
    '/v1.0/users/:user/messages/:id/attachments/createUploadSession',
    route(async (request, reply) => {
      return onDraft(request, async (_caller, draft) => {
        let item: { attachmentType?: unknown; name?: unknown; size?: unknown; contentType?: unknown } | undefined;
        try {
          item = (JSON.parse(Buffer.isBuffer(request.body) ? request.body.toString('utf8') : '{}') as { AttachmentItem?: typeof item }).AttachmentItem;
        } catch {
          item = undefined;
        }
        if (!item || item.attachmentType !== 'file' || typeof item.name !== 'string' || typeof item.size !== 'number' || item.size < 0) {
          throw new GraphError(400, 'ErrorInvalidRequest', 'AttachmentItem with attachmentType "file", name and size is required.');
        }
        const id = randomBytes(24).toString('base64url');
        const expires = new Date(Date.now() + 15 * 60_000);
        sessions.set(id, {
          id,
          draft,
          name: item.name,
          contentType: typeof item.contentType === 'string' ? item.contentType : 'application/octet-stream',
          size: item.size,
          received: [],
          next: 0,
          expires,
        });
        // Like Graph's, the URL carries its own credential: the PUTs go without the bearer token.
        const uploadUrl = `${baseUrl()}/graph-upload/${id}?authtoken=${randomBytes(32).toString('base64url')}`;
        return await reply.code(201).send({ uploadUrl, expirationDateTime: expires.toISOString(), nextExpectedRanges: ['0-'] });
      });
    }),
  );

  app.put<{ Params: { session: string } }>(
    '/graph-upload/:session',
    route(async (request, reply) => {
      const session = sessions.get((request.params as { session: string }).session);
      if (!session || session.expires.getTime() < Date.now())
        throw new GraphError(404, 'ErrorItemNotFound', 'The upload session was not found or has expired.');
      const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
      if (body.length > MAX_CHUNK_BYTES) throw new GraphError(413, 'RequestBodyTooLarge', 'An upload chunk must not be larger than 4MB.');
      const range = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(String(request.headers['content-range'] ?? ''));
      const [start, end, total] = range ? [Number(range[1]), Number(range[2]), Number(range[3])] : [NaN, NaN, NaN];
      const empty = session.size === 0 && body.length === 0;
      if (!empty && (!range || start !== session.next || total !== session.size || end - start + 1 !== body.length || end >= total)) {
        throw new GraphError(416, 'InvalidRange', `The Content-Range does not match the next expected range ${session.next}-.`);
      }
      session.received.push(body);
      session.next += body.length;
      if (session.next < session.size) {
        return reply.code(200).send({ expirationDateTime: session.expires.toISOString(), nextExpectedRanges: [`${session.next}-`] });
      }
      sessions.delete(session.id);
      session.draft.attachments.push({ name: session.name, contentType: session.contentType, content: Buffer.concat(session.received) });
      return reply
        .code(201)
        .header('location', `${baseUrl()}/v1.0/users/${session.draft.mailbox}/messages/${session.draft.id}/attachments/${randomUUID()}`)
        .send();
    }),
  );

  app.post<MessageParams>(
    '/v1.0/users/:user/messages/:id/send',
    route(async (request, reply) => {
      await onDraft(request, async (caller, draft) => {
        await store(caller, addAttachmentsToMime(draft.mime, draft.attachments));
        drafts.delete(draft.id);
      });
      return reply.code(202).header('request-id', randomUUID()).send();
    }),
  );

  done();
};
