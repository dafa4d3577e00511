import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Config } from '../../config/index.js';
import type { NewMessage, OutboxStore, Router, StoredMessage, DeliveryWorker } from '../../outbox/index.js';
import { hostname as osHostname } from 'node:os';
import { createAdmission } from '../../admission/index.js';
import { apiKeyAuth } from './auth.js';
import { apiError, stateChangeRefused } from './errors.js';
import type { ApiKeyScope, IntegrationStore } from '../../store/index.js';
import { idempotent, type HandlerResult } from './idempotency.js';
import { apiRouteOptions, idempotencyKeyHeader, locationHeader, type ApiRouteDoc } from './route-options.js';
import { composeFromFields, composeFromMime, type ComposedRequest, type SendMessageBody, type SendMimeBody } from './message-input.js';
import { batchRoutes } from './batch-routes.js';
import { listQueryOf, submit, type ListQuerystring, type SendOptions } from './submit.js';
import {
  idParams,
  listQuery,
  mailboxListResponse,
  mailboxResumeResponse,
  messageListResponse,
  messageResponse,
  queuedResponse,
  validatedResponse,
  sendMessageBody,
  sendMimeBody,
  stateChangeResponse,
} from './schemas.js';
import { messageDetailView, messageView } from '../../outbox/index.js';
import { mailboxStatuses, type ViewSources } from './views.js';

const mailboxParams = { type: 'object', properties: { mailbox: { type: 'string' } }, required: ['mailbox'] };

/** What the `/v1` routes need from the relay. */
export interface ApiRouteDeps {
  /** The relay's current config, read at each request: a reload (SIGHUP) changes mailboxes and limits. */
  config: () => Pick<Config, 'mailboxes' | 'limits'> & { http?: Pick<Config['http'], 'bodyLimitBytes'>; smtp?: Pick<Config['smtp'], 'hostname'> };
  enqueue: (message: NewMessage) => Promise<StoredMessage>;
  store: OutboxStore;
  router: Pick<Router, 'routeMessage' | 'poolsOf'>;
  worker: Pick<DeliveryWorker, 'status' | 'notify' | 'syncPauses'>;
  tokens: ViewSources['tokens'];
  integrationStore: IntegrationStore;
  /** Runs `relay365 doctor` for a mailbox (injected by the runtime, which owns the doctor). */
  doctor?: ((mailbox: string) => Promise<unknown>) | undefined;
}

/** The JSON API under `/v1`: send, status, list, retry, cancel, mailboxes; every route needs an API key. */
export function apiRoutes(app: FastifyInstance, deps: ApiRouteDeps): void {
  const mailboxes = (): string[] => deps.config().mailboxes.map((m) => m.address.toLowerCase());
  const sources: ViewSources = { config: deps.config, store: deps.store, router: deps.router, worker: deps.worker, tokens: deps.tokens };
  app.addHook('onRequest', apiKeyAuth(deps.integrationStore));

  // The checks every door runs (src/admission), with this API's limits and its outbox.
  const admission = createAdmission({
    limits: () => deps.config().limits,
    router: deps.router,
    mailboxes,
    suppressions: deps.store,
    enqueue: deps.enqueue,
    // The name the SMTP door greets with, so both doors' Message-IDs name the same host (a restart changes it).
    hostname: deps.config().smtp?.hostname ?? osHostname(),
  });

  /** Runs the admission pipeline (limits, headers, senders, suppression, route) and commits the message; answers only after the commit. */
  const queue = (request: FastifyRequest, composed: ComposedRequest, options: SendOptions): Promise<HandlerResult> =>
    submit(admission, request.apiKey, request.ip, composed, options);

  /**
   * A send route: the `send` scope, an optional `Idempotency-Key`, 202 with the message's `Location` once
   * it is committed (200 when the request only validates). `compose` reads the body into MIME and envelope.
   */
  function sendRoute<Body extends SendOptions>(
    path: string,
    doc: Pick<ApiRouteDoc, 'operationId' | 'summary' | 'description' | 'body'>,
    compose: (body: Body) => ComposedRequest | Promise<ComposedRequest>,
  ): void {
    app.post<{ Body: Body }>(
      path,
      apiRouteOptions(
        'send',
        { ...doc, tags: ['messages'], headers: idempotencyKeyHeader },
        { 202: { ...queuedResponse, headers: locationHeader }, 200: validatedResponse },
      ),
      (request, reply) => {
        // Fastify has checked it against doc.body; its types do not narrow a generic Body themselves.
        const body = request.body as Body;
        return idempotent(deps.integrationStore, request, reply, request.apiKey!.id, async () => queue(request, await compose(body), body));
      },
    );
  }

  sendRoute<SendMessageBody>(
    '/messages',
    {
      operationId: 'sendMessage',
      summary: 'Send a message',
      description:
        'Builds the MIME from the fields and stores it in the outbox; answers 202 once it is committed to disk. ' +
        'Send an `Idempotency-Key` header to make a retry safe: the same key within 24 hours answers as the first time and queues nothing.',
      body: sendMessageBody,
    },
    composeFromFields,
  );

  sendRoute<SendMimeBody>(
    '/messages/mime',
    {
      operationId: 'sendMime',
      summary: 'Send raw MIME',
      description:
        'Stores the message with the given envelope after the checks SMTP DATA gets (NUL bytes, 1000-octet lines, header and sender rules): byte for byte, line ends made CRLF, with Message-ID, Date and From (the envelope sender) added when missing; answers 202 once it is committed. Routed by its From header.',
      body: sendMimeBody,
    },
    composeFromMime,
  );

  batchRoutes(app, { admission, integrationStore: deps.integrationStore, bodyLimitBytes: deps.config().http?.bodyLimitBytes ?? 0 });

  app.get<{ Querystring: ListQuerystring }>(
    '/messages',
    apiRouteOptions(
      'read',
      {
        operationId: 'listMessages',
        summary: 'List and search messages, newest first',
        description:
          'Filters combine (AND): `state`, `mailbox`, `recipient` (an envelope recipient, any case), `tag`, and the creation time (`since` inclusive, `until` exclusive). Page with `nextCursor`, keeping the same filters.',
        tags: ['messages'],
        querystring: listQuery,
      },
      { 200: messageListResponse },
    ),
    async (request) => {
      const page = await deps.store.list(listQueryOf(request.query));
      const recipients = await Promise.all(page.items.map((m) => deps.store.recipients(m.id)));
      return { items: page.items.map((m, i) => messageView(m, recipients[i]!)), nextCursor: page.nextCursor ?? null };
    },
  );

  /**
   * A route on one message (`:id`): the message is read first, answering 404 `R365_HTTP_NOT_FOUND`
   * when the outbox has none, and `answer` replies with it.
   */
  function messageRoute(
    method: 'GET' | 'POST' | 'DELETE',
    url: string,
    scope: ApiKeyScope,
    doc: Omit<ApiRouteDoc, 'tags' | 'params'>,
    success: Record<number, object>,
    answer: (message: StoredMessage) => Promise<unknown>,
  ): void {
    app.route<{ Params: { id: string } }>({
      method,
      url,
      ...apiRouteOptions(scope, { ...doc, tags: ['messages'], params: idParams }, success),
      handler: async (request) => {
        const { id } = request.params;
        const message = await deps.store.get(id);
        if (!message) throw apiError('R365_HTTP_NOT_FOUND', `No message ${id} in the outbox. Use the id the send answered with.`, { field: 'id' });
        return answer(message);
      },
    });
  }

  messageRoute(
    'GET',
    '/messages/:id',
    'read',
    { operationId: 'getMessage', summary: 'A message, its state and every attempt with its explanation' },
    { 200: messageResponse },
    async (message) => {
      const [recipients, attempts] = await Promise.all([deps.store.recipients(message.id), deps.store.attempts(message.id)]);
      return messageDetailView(message, recipients, attempts);
    },
  );

  messageRoute(
    'POST',
    '/messages/:id/retry',
    'admin',
    { operationId: 'retryMessage', summary: 'Send a failed or deferred message again now' },
    { 200: stateChangeResponse },
    async (message) => {
      if (!(await deps.store.retry(message.id))) throw await stateChangeRefused(deps.store, message, 'R365_MESSAGE_NOT_RETRYABLE', 'retried');
      deps.worker.notify({ mailbox: message.pool === undefined ? message.mailbox : undefined, pool: message.pool });
      return { id: message.id, state: 'queued' };
    },
  );

  messageRoute(
    'DELETE',
    '/messages/:id',
    'admin',
    {
      operationId: 'cancelMessage',
      summary: 'Cancel a message not yet sent',
      description: 'A queued, deferred or failed message is cancelled; one that is sent or being sent answers 409.',
    },
    { 200: stateChangeResponse },
    async (message) => {
      if (!(await deps.store.cancel(message.id))) throw await stateChangeRefused(deps.store, message, 'R365_MESSAGE_NOT_CANCELLABLE', 'cancelled');
      return { id: message.id, state: 'cancelled' };
    },
  );

  app.get(
    '/mailboxes',
    apiRouteOptions(
      'read',
      { operationId: 'listMailboxes', summary: 'The sending mailboxes: token, quota used and left, pause and last error', tags: ['mailboxes'] },
      { 200: mailboxListResponse },
    ),
    async () => ({ items: await mailboxStatuses(sources) }),
  );

  /** The configured mailbox a path names, lower-cased, or 404. */
  function configured(address: string): string {
    const mailbox = address.toLowerCase();
    if (!mailboxes().includes(mailbox)) throw apiError('R365_UNKNOWN_MAILBOX', `${address} is not a configured mailbox.`, { field: 'mailbox', status: 404 });
    return mailbox;
  }

  app.post<{ Params: { mailbox: string } }>(
    '/mailboxes/:mailbox/resume',
    apiRouteOptions(
      'admin',
      {
        operationId: 'resumeMailbox',
        summary: 'Resume a paused mailbox once its cause is fixed (relay365 queue resume)',
        description:
          "Marks a resume request in the outbox and makes the mailbox's deferred messages due now. This node resumes it at once and every other node within seconds; if the cause is still there, the next send pauses it again with the cause. `paused: false` when it was not paused.",
        tags: ['mailboxes'],
        params: mailboxParams,
      },
      { 200: mailboxResumeResponse },
    ),
    async (request) => {
      const mailbox = configured(request.params.mailbox);
      const asked = await deps.store.requestMailboxResume(mailbox);
      // This node acts now; the others at their next look at the pauses.
      if (asked) await deps.worker.syncPauses();
      return {
        mailbox,
        paused: asked !== undefined,
        resumeRequestedAt: asked?.resumeRequestedAt?.toISOString() ?? null,
        pausedSince: asked?.since.toISOString() ?? null,
        reply: asked?.reply ?? null,
        explanation: asked?.explanation ? { ...asked.explanation } : null,
      };
    },
  );

  const doctor = deps.doctor;
  // Each run asks for a token and opens connections to Exchange (3 allowed per mailbox): one at a
  // time, and at most once a minute per mailbox; a caller in between gets the last report.
  const DOCTOR_SPACING_MS = 60_000;
  const doctorRuns = new Map<string, { at: number; report: Promise<unknown> }>();
  if (doctor) {
    app.get<{ Params: { mailbox: string } }>(
      '/mailboxes/:mailbox/doctor',
      // No scope named: running the doctor is an admin's (auth.ts).
      apiRouteOptions(
        undefined,
        {
          operationId: 'runDoctor',
          summary: "Run the setup checks (relay365 doctor) for a mailbox: each check's status, cause and fix",
          tags: ['mailboxes'],
          params: mailboxParams,
        },
        { 200: { type: 'object', additionalProperties: true } },
      ),
      async (request) => {
        const mailbox = configured(request.params.mailbox);
        const last = doctorRuns.get(mailbox);
        if (last && Date.now() - last.at < DOCTOR_SPACING_MS) return last.report;
        const report = doctor(mailbox);
        doctorRuns.set(mailbox, { at: Date.now(), report });
        // A failed run is not kept: the next call tries again.
        report.catch(() => doctorRuns.delete(mailbox));
        return report;
      },
    );
  }
}
