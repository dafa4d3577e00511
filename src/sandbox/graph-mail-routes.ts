import { randomUUID } from 'node:crypto';
import type { FastifyPluginCallback, FastifyReply, FastifyRequest } from 'fastify';
import addressparser from 'nodemailer/lib/addressparser';
import type { MailboxNeed } from './graph-access.js';
import { GraphError, authorizeGraph, sendGraphError } from './graph-http.js';
import type { MailFolder, MailItem } from './mailbox-store.js';
import type { SandboxState } from './state.js';
import type { TokenIssuer } from './tokens.js';

/**
 * Microsoft Graph's mailbox reading, as a bounce reader uses it: a folder's messages (list and delta),
 * a message's MIME (`/$value`), `move`, `PATCH` (isRead, categories), and the mailbox's folders (find
 * one by display name, create one). Response shapes follow Microsoft Learn's pages for each call
 * ("List messages", "message: delta" and "Get incremental changes to messages in a folder", "Get MIME
 * content of a message", "message: move", "Update message", "List mailFolders", "Create mailFolder");
 * every call passes the same permission checks Graph applies (graph-access.ts: Mail.Read /
 * Mail.ReadWrite application or delegated permissions, RBAC for Applications scopes).
 */

export interface GraphMailRoutesOptions {
  state: SandboxState;
  issuer: TokenIssuer;
  /** `https://localhost:PORT`, known once the server listens. */
  baseUrl: () => string;
}

/**
 * Default page of a delta round: "the default page size is 10 messages", changed with `Prefer:
 * odata.maxpagesize` (MS Learn "Get incremental changes to messages in a folder"); list calls default
 * to 10 as well (MS Learn "List messages": "$top ... The default value is 10").
 */
const DEFAULT_PAGE = 10;
/** Graph's largest page for message lists (MS Learn "List messages": $top "maximum 1000"). */
const MAX_PAGE = 1000;

const NOT_FOUND = { code: 'ErrorItemNotFound', message: 'The specified object was not found in the store.' };

/** A delta round's state, carried in `$skiptoken` (mid-round) and `$deltatoken` (next round). */
interface DeltaState {
  /** Folder id. */
  f: string;
  /** Changes after this number are in the round. */
  s: number;
  /** ... up to this one (fixed when the round started, so pages do not shift). */
  u: number;
  /** Items of the round already returned. */
  o: number;
  /** Page size the round started with. */
  p: number;
  /** `$select` of the first request (Graph encodes the query options of the first call in the links). */
  sel?: string;
  /** The round's snapshot (mid-round only). */
  r?: string;
  /** `changeType` of the first request. */
  ct?: 'created' | 'updated' | 'deleted';
}

function encodeToken(state: DeltaState): string {
  return Buffer.from(JSON.stringify(state)).toString('base64url');
}

function decodeToken(token: string): DeltaState | undefined {
  try {
    const v = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as Partial<DeltaState>;
    if (typeof v.f !== 'string' || typeof v.s !== 'number' || typeof v.u !== 'number' || typeof v.o !== 'number' || typeof v.p !== 'number') return undefined;
    return {
      f: v.f,
      s: v.s,
      u: v.u,
      o: v.o,
      p: v.p,
      ...(typeof v.sel === 'string' ? { sel: v.sel } : {}),
      ...(typeof v.r === 'string' ? { r: v.r } : {}),
      ...(v.ct === 'created' || v.ct === 'updated' || v.ct === 'deleted' ? { ct: v.ct } : {}),
    };
  } catch {
    return undefined;
  }
}

function headerOf(raw: Buffer, name: string): string | undefined {
  const text = raw.subarray(0, Math.min(raw.length, 256 * 1024)).toString('latin1');
  const end = text.search(/\r?\n\r?\n/);
  const block = (end < 0 ? text : text.slice(0, end)).replace(/\r?\n[ \t]+/g, ' ');
  return new RegExp(`^${name}:[ \\t]*(.*)$`, 'im').exec(block)?.[1]?.trim();
}

function recipients(raw: Buffer, name: string): Array<{ emailAddress: { name: string; address: string } }> {
  return addressparser(headerOf(raw, name) ?? '', { flatten: true }).map((a) => ({ emailAddress: { name: a.name || a.address, address: a.address } }));
}

/** The properties of Graph's `message` resource that the sandbox fills in. */
function messageResource(item: MailItem): Record<string, unknown> {
  const at = item.receivedAt.toISOString().replace(/\.\d+Z$/, 'Z');
  const from = { emailAddress: { name: item.from.name || item.from.address, address: item.from.address } };
  return {
    '@odata.etag': `W/"${item.changeKey}"`,
    id: item.id,
    createdDateTime: at,
    lastModifiedDateTime: at,
    changeKey: item.changeKey,
    categories: item.categories,
    receivedDateTime: at,
    sentDateTime: at,
    hasAttachments: false,
    internetMessageId: item.internetMessageId,
    subject: item.subject,
    importance: 'normal',
    parentFolderId: item.folderId,
    isRead: item.isRead,
    isDraft: false,
    sender: from,
    from,
    toRecipients: recipients(item.raw, 'To'),
    ccRecipients: recipients(item.raw, 'Cc'),
  };
}

/** `$select=a,b`: those properties only; `id` (and the etag) always (MS Learn "Use the $select query parameter"). */
function pick(resource: Record<string, unknown>, select: string | undefined): Record<string, unknown> {
  if (!select) return resource;
  const wanted = new Set(select.split(',').map((s) => s.trim().toLowerCase()));
  return Object.fromEntries(Object.entries(resource).filter(([k]) => k === 'id' || k === '@odata.etag' || wanted.has(k.toLowerCase())));
}

function folderResource(state: SandboxState, mailbox: string, folder: MailFolder): Record<string, unknown> {
  const items = state.mail.items(mailbox, folder.id);
  return {
    id: folder.id,
    displayName: folder.displayName,
    parentFolderId: folder.parentFolderId,
    childFolderCount: state.mail.folders(mailbox).filter((f) => f.parentFolderId === folder.id).length,
    unreadItemCount: items.filter((i) => !i.isRead).length,
    totalItemCount: items.length,
    isHidden: false,
  };
}

/** `Prefer: odata.maxpagesize=N` (RFC 8040 style preference Graph reads), if present. */
function preferredPageSize(request: FastifyRequest): number | undefined {
  const prefer = request.headers.prefer;
  const text = Array.isArray(prefer) ? prefer.join(',') : (prefer ?? '');
  const m = /odata\.maxpagesize\s*=\s*(\d+)/i.exec(text);
  return m ? Math.max(1, Math.min(Number(m[1]), MAX_PAGE)) : undefined;
}

export const graphMailRoutes: FastifyPluginCallback<GraphMailRoutesOptions> = (app, opts, done) => {
  const { state, issuer, baseUrl } = opts;
  /**
   * Each delta round's entries, fixed when it starts: a reader that moves or flags the messages of a
   * page before asking for the next must not shift the pages (each item comes once per round).
   */
  const rounds = new Map<string, Array<{ id: string; removed: boolean }>>();

  type Handler = (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>;
  function route(handler: Handler): Handler {
    return async (request, reply) => {
      state.counters.graphRequests += 1;
      try {
        return await handler(request, reply);
      } catch (err) {
        if (err instanceof GraphError) return sendGraphError(request, reply, err);
        throw err;
      }
    };
  }

  /** Graph's token and mailbox checks (graph-http.ts); returns the mailbox's UPN. */
  async function authorize(request: FastifyRequest, userRef: string, need: MailboxNeed): Promise<string> {
    return (await authorizeGraph(issuer, state.scenario, request, userRef, need)).user.upn;
  }

  function folderOf(mailbox: string, ref: string): MailFolder {
    const folder = state.mail.folder(mailbox, ref);
    if (!folder) throw new GraphError(404, NOT_FOUND.code, NOT_FOUND.message);
    return folder;
  }

  /** The folder a `/mailFolders/{id}` path names, once the token may read the mailbox (`Mail.Read`); with the path's and the query's values. */
  async function folderToRead(request: FastifyRequest): Promise<{ params: P; query: Q; mailbox: string; folder: MailFolder }> {
    const params = request.params as P;
    const mailbox = await authorize(request, params.user!, 'Mail.Read');
    return { params, query: request.query as Q, mailbox, folder: folderOf(mailbox, params.folder!) };
  }

  /** The message a `/messages/{id}` path names (404 when the mailbox has none), once the token has `need` on the mailbox. */
  async function messageOf(request: FastifyRequest, need: MailboxNeed): Promise<{ params: P; mailbox: string; item: MailItem }> {
    const params = request.params as P;
    const mailbox = await authorize(request, params.user!, need);
    return { params, mailbox, item: itemOf(mailbox, params.id!) };
  }

  function itemOf(mailbox: string, id: string): MailItem {
    const item = state.mail.item(mailbox, id);
    if (!item) throw new GraphError(404, NOT_FOUND.code, NOT_FOUND.message);
    return item;
  }

  function jsonBody(request: FastifyRequest): Record<string, unknown> {
    const body = request.body;
    if (body && typeof body === 'object' && !Array.isArray(body) && !Buffer.isBuffer(body)) return body as Record<string, unknown>;
    throw new GraphError(400, 'RequestBodyRead', 'The request body must be a JSON object.');
  }

  type Q = Record<string, string | undefined>;
  type P = Record<string, string>;
  const url = (path: string): string => `${baseUrl()}/v1.0/users/${path}`;

  // GET /users/{id}/mailFolders[/{id}/childFolders]: with `$filter=displayName eq '...'` to find a folder by name.
  const listFolders = (parentRef: string | undefined): Handler =>
    route(async (request, reply) => {
      const params = request.params as P;
      const query = request.query as Q;
      const mailbox = await authorize(request, params.user!, 'Mail.Read');
      const all = state.mail.folders(mailbox);
      const parentId = parentRef === undefined ? undefined : folderOf(mailbox, params[parentRef]!).id;
      let list = parentId === undefined ? all.filter((f) => f.parentFolderId === all[0]!.parentFolderId) : all.filter((f) => f.parentFolderId === parentId);
      const filter = /^\s*displayName\s+eq\s+'((?:[^']|'')*)'\s*$/i.exec(query.$filter ?? '');
      if (query.$filter !== undefined && !filter)
        throw new GraphError(400, 'ErrorInvalidUrlQueryFilter', 'The query filter contains one or more invalid nodes.');
      if (filter) list = list.filter((f) => f.displayName === filter[1]!.replace(/''/g, "'"));
      const top = Math.max(1, Math.min(Number(query.$top ?? DEFAULT_PAGE) || DEFAULT_PAGE, MAX_PAGE));
      return reply.send({
        '@odata.context': `${baseUrl()}/v1.0/$metadata#users('${mailbox}')/mailFolders`,
        value: list.slice(0, top).map((f) => folderResource(state, mailbox, f)),
      });
    });

  // POST /users/{id}/mailFolders[/{id}/childFolders] { displayName }: 201 with the folder (MS Learn "Create mailFolder").
  const createFolder = (parentRef: string | undefined): Handler =>
    route(async (request, reply) => {
      const params = request.params as P;
      const mailbox = await authorize(request, params.user!, 'Mail.ReadWrite');
      const body = jsonBody(request);
      if (typeof body.displayName !== 'string' || body.displayName.trim() === '') {
        throw new GraphError(400, 'ErrorInvalidRequest', 'displayName is required.');
      }
      const parentId = parentRef === undefined ? undefined : folderOf(mailbox, params[parentRef]!).id;
      const folder = state.mail.createFolder(mailbox, body.displayName, parentId);
      // Graph's answer to a name taken under the same parent.
      if (!folder) throw new GraphError(409, 'ErrorFolderExists', 'A folder with the specified name already exists.');
      return reply
        .code(201)
        .send({ '@odata.context': `${baseUrl()}/v1.0/$metadata#users('${mailbox}')/mailFolders/$entity`, ...folderResource(state, mailbox, folder) });
    });

  app.get('/v1.0/users/:user/mailFolders', listFolders(undefined));
  app.post('/v1.0/users/:user/mailFolders', createFolder(undefined));
  app.get('/v1.0/users/:user/mailFolders/:folder/childFolders', listFolders('folder'));
  app.post('/v1.0/users/:user/mailFolders/:folder/childFolders', createFolder('folder'));
  app.get(
    '/v1.0/users/:user/mailFolders/:folder',
    route(async (request, reply) => {
      const { mailbox, folder } = await folderToRead(request);
      return reply.send(folderResource(state, mailbox, folder));
    }),
  );

  // GET /users/{id}/mailFolders/{id}/messages: newest first, `$top`, `$skip`, `$select`, `@odata.nextLink` (MS Learn "List messages").
  app.get(
    '/v1.0/users/:user/mailFolders/:folder/messages',
    route(async (request, reply) => {
      const { params, query, mailbox, folder } = await folderToRead(request);
      const top = Math.max(1, Math.min(Number(query.$top ?? DEFAULT_PAGE) || DEFAULT_PAGE, MAX_PAGE));
      const skip = Math.max(0, Number(query.$skip ?? 0) || 0);
      const items = state.mail.items(mailbox, folder.id);
      const page = items.slice(skip, skip + top);
      const next = new URLSearchParams({ ...(query.$select ? { $select: query.$select } : {}), $top: String(top), $skip: String(skip + top) });
      return reply.send({
        '@odata.context': `${baseUrl()}/v1.0/$metadata#users('${mailbox}')/mailFolders('${params.folder!}')/messages`,
        value: page.map((i) => pick(messageResource(i), query.$select)),
        ...(skip + top < items.length
          ? { '@odata.nextLink': `${url(encodeURIComponent(params.user!))}/mailFolders/${encodeURIComponent(params.folder!)}/messages?${next.toString()}` }
          : {}),
      });
    }),
  );

  /**
   * GET /users/{id}/mailFolders/{id}/messages/delta (MS Learn "message: delta", "Get incremental
   * changes to messages in a folder"): the first call starts a round of every message in the folder;
   * each page but the last ends with `@odata.nextLink` (`$skiptoken`), the last with
   * `@odata.deltaLink` (`$deltatoken`), which a later call uses to get only what changed since:
   * new or changed messages, and `{"@odata.type":"#microsoft.graph.message","id":...,"@removed":{"reason":"deleted"}}`
   * for those that left the folder. Pages follow `Prefer: odata.maxpagesize` (answered by
   * `Preference-Applied`); a round's end is fixed when it starts, so each item comes once per round.
   */
  app.get(
    '/v1.0/users/:user/mailFolders/:folder/messages/delta',
    route(async (request, reply) => {
      const { params, query, mailbox, folder } = await folderToRead(request);
      const token = query.$skiptoken ?? query.$deltatoken;
      let round: DeltaState;
      const preferred = preferredPageSize(request);
      if (token !== undefined) {
        const decoded = decodeToken(token);
        // An unusable state token: Graph answers 410 Gone and the client starts over (io-msgraph's
        // description of Graph's delta, docs.rs/io-msgraph; the sandbox's code name is its own).
        if (!decoded || decoded.f !== folder.id)
          throw new GraphError(410, 'SyncStateNotFound', 'The sync state is not valid for this folder. Start a new round without a token.');
        round =
          query.$deltatoken !== undefined
            ? { ...decoded, s: decoded.u, u: state.mail.changeNumber, o: 0, p: preferred ?? decoded.p }
            : { ...decoded, p: preferred ?? decoded.p };
      } else {
        const top = query.$top !== undefined ? Math.max(1, Math.min(Number(query.$top) || DEFAULT_PAGE, MAX_PAGE)) : undefined;
        const ct = query.changeType;
        if (ct !== undefined && ct !== 'created' && ct !== 'updated' && ct !== 'deleted') {
          throw new GraphError(400, 'ErrorInvalidUrlQuery', `The value '${ct}' of changeType is not valid: use created, updated or deleted.`);
        }
        round = {
          f: folder.id,
          s: 0,
          u: state.mail.changeNumber,
          o: 0,
          p: preferred ?? top ?? DEFAULT_PAGE,
          ...(query.$select ? { sel: query.$select } : {}),
          ...(ct ? { ct } : {}),
        };
      }
      let snapshot = round.r !== undefined && query.$skiptoken !== undefined ? rounds.get(round.r) : undefined;
      if (!snapshot) {
        const { items, removed } = state.mail.changesIn(mailbox, folder.id, round.s, round.u, round.ct);
        snapshot = [...items.map((i) => ({ id: i.id, removed: false })), ...removed.map((id) => ({ id, removed: true }))];
        round = { ...round, o: query.$skiptoken !== undefined ? round.o : 0, r: randomUUID() };
        rounds.set(round.r!, snapshot);
      }
      const entries = snapshot;
      const page = entries.slice(round.o, round.o + round.p).flatMap((e): Array<Record<string, unknown>> => {
        if (e.removed) return [{ '@odata.type': '#microsoft.graph.message', id: e.id, '@removed': { reason: 'deleted' } }];
        // A message moved away since the round started comes as removed in the next round.
        const item = state.mail.item(mailbox, e.id);
        return item ? [{ '@odata.type': '#microsoft.graph.message', ...pick(messageResource(item), round.sel) }] : [];
      });
      const base = `${url(encodeURIComponent(params.user!))}/mailFolders/${encodeURIComponent(params.folder!)}/messages/delta`;
      const more = round.o + round.p < entries.length;
      if (!more) rounds.delete(round.r!);
      const { r: _r, ...next } = round;
      const link = more
        ? { '@odata.nextLink': `${base}?$skiptoken=${encodeToken({ ...round, o: round.o + round.p })}` }
        : { '@odata.deltaLink': `${base}?$deltatoken=${encodeToken({ ...next, o: 0 })}` };
      if (preferred !== undefined) void reply.header('preference-applied', `odata.maxpagesize=${preferred}`);
      return reply.send({ '@odata.context': `${baseUrl()}/v1.0/$metadata#Collection(message)`, ...link, value: page });
    }),
  );

  // GET /users/{id}/messages/{id}: the message resource.
  app.get(
    '/v1.0/users/:user/messages/:id',
    route(async (request, reply) => {
      const { item } = await messageOf(request, 'Mail.Read');
      return reply.send(pick(messageResource(item), (request.query as Q).$select));
    }),
  );

  // GET /users/{id}/messages/{id}/$value: the MIME, as received (MS Learn "Get MIME content of a message": 200, text/plain).
  app.get(
    '/v1.0/users/:user/messages/:id/$value',
    route(async (request, reply) => {
      const { item } = await messageOf(request, 'Mail.Read');
      return reply.code(200).type('text/plain').send(item.raw);
    }),
  );

  // PATCH /users/{id}/messages/{id} { isRead, categories }: 200 with the message (MS Learn "Update message").
  app.patch(
    '/v1.0/users/:user/messages/:id',
    route(async (request, reply) => {
      const { params, mailbox } = await messageOf(request, 'Mail.ReadWrite');
      const body = jsonBody(request);
      const change: { isRead?: boolean; categories?: string[] } = {};
      if (body.isRead !== undefined) {
        if (typeof body.isRead !== 'boolean') throw new GraphError(400, 'ErrorInvalidRequest', 'isRead must be a boolean.');
        change.isRead = body.isRead;
      }
      if (body.categories !== undefined) {
        if (!Array.isArray(body.categories) || !body.categories.every((c) => typeof c === 'string')) {
          throw new GraphError(400, 'ErrorInvalidRequest', 'categories must be an array of strings.');
        }
        change.categories = body.categories;
      }
      return reply.send(messageResource(state.mail.update(mailbox, params.id!, change)!));
    }),
  );

  // POST /users/{id}/messages/{id}/move { destinationId }: 201 with the moved message, which has a new id (MS Learn "message: move").
  app.post(
    '/v1.0/users/:user/messages/:id/move',
    route(async (request, reply) => {
      const { params, mailbox } = await messageOf(request, 'Mail.ReadWrite');
      const body = jsonBody(request);
      if (typeof body.destinationId !== 'string') throw new GraphError(400, 'ErrorInvalidRequest', 'destinationId is required.');
      const destination = folderOf(mailbox, body.destinationId);
      const moved = state.mail.move(mailbox, params.id!, destination.id)!;
      return reply.code(201).send(messageResource(moved));
    }),
  );

  done();
};
