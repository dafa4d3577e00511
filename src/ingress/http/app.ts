import swagger from '@fastify/swagger';
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import type { Config } from '../../config/index.js';
import { isRelay365Error } from '../../errors.js';
import { silentLogger, type Logger, type RelayMetrics } from '../../observe/index.js';
import type { DeliveryWorker, NewMessage, OutboxStore, Router, StoredMessage } from '../../outbox/index.js';
import { dashboardRoutes, type DashboardDeps } from './dashboard.js';
import { errorResponseSchema, installErrorHandling } from './errors.js';
import type { IntegrationStore } from '../../store/index.js';
import { installHttpLimits } from './limits.js';
import { apiRoutes } from './message-routes.js';
import { idempotencyKeyParameter, withIdempotencyKeyRefs, type OpenApiObject } from './route-options.js';
import { suppressionRoutes } from './suppression-routes.js';
import { queueSnapshot, type ViewSources } from './views.js';

/** The JSON answer of `/healthz` and `/readyz`: `{ "status": ... }`. */
const statusResponse = (statuses: string[]) => ({ type: 'object', properties: { status: { type: 'string', enum: statuses } }, required: ['status'] }) as const;

/** What {@link buildHttpApp} is built from: the relay's parts, passed in (composition happens only in src/runtime). */
export interface HttpAppDeps {
  /**
   * The relay's current config (`() => relay.config`): mailboxes, limits and, of the `http` section,
   * `requestTimeoutSeconds` and `maxConcurrentLargeBodies` are read at each request, so a reload applies
   * to the next one; the listener's settings (`host`, `port`, `bodyLimitBytes`, `maxConnections`) need
   * a restart and are read once, here.
   */
  config: () => Pick<Config, 'http' | 'limits' | 'mailboxes'>;
  relay: {
    /** The relay's one way in: commit to the outbox, announce, wake the sender. */
    enqueue: (message: NewMessage) => Promise<StoredMessage>;
    store: OutboxStore;
    router: Pick<Router, 'routeMessage' | 'poolsOf'>;
    worker: Pick<DeliveryWorker, 'status' | 'notify' | 'syncPauses'>;
    /** The token provider's read-only view (`identity.provider`). */
    tokens?: ViewSources['tokens'];
    /** Runs the setup checks for a mailbox (`GET /v1/mailboxes/:mailbox/doctor`). */
    doctor?: (mailbox: string) => Promise<unknown>;
    /** The app credentials' end dates, for the dashboard's banner (the relay's CredentialExpiryMonitor). */
    credentials?: DashboardDeps['credentials'];
  };
  integrationStore: IntegrationStore;
  metrics: RelayMetrics;
  logger?: Logger;
  /**
   * Secrets of the `http` section, already resolved (`resolveSecret`): the admin password is read at
   * each dashboard request, so a reload's (a rotated file, or none: the dashboard off) applies to the next one.
   */
  secrets?: { adminPassword?: () => string | undefined };
  /** Version reported in the OpenAPI document. */
  version?: string;
}

/**
 * Builds the HTTP front door: the JSON API under `/v1` (API keys, idempotency keys), `/openapi.json`
 * generated from the route schemas, `/metrics`, `/healthz`, `/readyz`, and the dashboard at `/`.
 * The app has not listened; the caller calls `listen` (or `inject` in a test) and `close`.
 *
 * @example
 * ```ts
 * const app = await buildHttpApp({ config: () => config, relay, integrationStore, metrics, secrets: { adminPassword: () => adminPassword } });
 * await app.listen({ host: config.http.host, port: config.http.port });
 * ```
 */
export async function buildHttpApp(deps: HttpAppDeps): Promise<FastifyInstance> {
  const { config, relay } = deps;
  const http = config().http;
  const bodyLimitBytes = http.bodyLimitBytes;
  const app = Fastify({
    loggerInstance: deps.logger ?? silentLogger(),
    // One line per request is the access log's job; errors are logged by the error handler.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: bodyLimitBytes,
    // Fastify's default is no deadline at all: a body sent a byte at a time would hold its socket for ever.
    // The values at start: installHttpLimits keeps them in step with a reload's.
    requestTimeout: http.requestTimeoutSeconds * 1000,
    // An idle keep-alive connection is closed after this; a client reconnects for its next request.
    connectionTimeout: http.requestTimeoutSeconds * 1000,
    // A message id is a UUID; nothing legitimate needs a longer path segment.
    routerOptions: { maxParamLength: 200 },
    ajv: {
      customOptions: {
        // Strict: a wrong type or an unknown field is refused, never coerced or silently dropped
        // (an attachment's `path` must be an error, not a quietly ignored field).
        coerceTypes: false,
        removeAdditional: false,
        useDefaults: true,
        allErrors: false,
      },
    },
  }) as unknown as FastifyInstance;

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'relay365 HTTP API',
        description: 'Send mail through Microsoft 365 with OAuth2, and follow each message. See docs/http-api.md.',
        version: deps.version ?? '1',
        license: { name: 'MIT', identifier: 'MIT' },
      },
      // Relative: the document is served by the relay it describes, at whatever address the client reached it.
      servers: [{ url: '/', description: 'This relay365 (the address /openapi.json was fetched from).' }],
      components: {
        securitySchemes: { apiKey: { type: 'http', scheme: 'bearer', description: 'An API key from `relay365 apikey create` (r365_...).' } },
        parameters: { IdempotencyKey: idempotencyKeyParameter },
      },
    },
    // A schema added with an $id is the component of that name (`Error`), not `def-0`.
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
    transformObject: (document) => {
      if (!('openapiObject' in document)) return document.swaggerObject;
      withIdempotencyKeyRefs(document.openapiObject as OpenApiObject);
      return document.openapiObject;
    },
  });
  // components/schemas/Error: @fastify/swagger makes a component of every schema added with an $id.
  app.addSchema(errorResponseSchema);
  installErrorHandling(app, bodyLimitBytes);
  installHttpLimits(app, () => config().http);
  // Before any route is registered, so that every route (and a request that matched none) is counted.
  // The label is the route's pattern (`/v1/messages/:id`), never the path, which would grow without bound.
  app.addHook('onResponse', (request, reply, done) => {
    deps.metrics.httpRequest(request.method, request.routeOptions.url, reply.statusCode);
    done();
  });

  const sources: ViewSources = { config, store: relay.store, router: relay.router, worker: relay.worker, tokens: relay.tokens };

  await app.register(
    (v1, _options, done) => {
      apiRoutes(v1, {
        config,
        enqueue: relay.enqueue,
        store: relay.store,
        router: relay.router,
        worker: relay.worker,
        tokens: relay.tokens,
        integrationStore: deps.integrationStore,
        doctor: relay.doctor,
      });
      // After apiRoutes, whose API key hook then covers these routes too.
      suppressionRoutes(v1, { store: relay.store });
      done();
    },
    { prefix: '/v1' },
  );

  app.get(
    '/openapi.json',
    {
      schema: {
        operationId: 'getOpenApiDocument',
        summary: 'This OpenAPI document',
        tags: ['operations'],
        security: [],
        response: { 200: { type: 'object', additionalProperties: true } },
      },
    },
    () => app.swagger(),
  );

  app.get(
    '/healthz',
    { schema: { operationId: 'getHealth', summary: 'The process is up', tags: ['operations'], security: [], response: { 200: statusResponse(['ok']) } } },
    () => ({ status: 'ok' }),
  );

  const readyzSchema = {
    operationId: 'getReadiness',
    summary: 'The outbox can be read (200) or not (503)',
    tags: ['operations'],
    security: [],
    response: {
      200: statusResponse(['ready']),
      503: {
        ...statusResponse(['unavailable']),
        description: 'The outbox or the integration store cannot be read; `code` says why, the log has the details.',
        properties: { ...statusResponse(['unavailable']).properties, code: { type: 'string', example: 'R365_OUTBOX_UNAVAILABLE' } },
        required: ['status', 'code'],
      },
    },
  };
  app.get('/readyz', { schema: readyzSchema }, async (request, reply) => {
    try {
      await Promise.all([relay.store.oldestWaiting(), deps.integrationStore.ping()]);
      return { status: 'ready' };
    } catch (err) {
      request.log.warn({ err }, 'readiness check failed');
      // The code only: this route is unauthenticated, and the message names files. The log has it all.
      return reply.code(503).send({ status: 'unavailable', code: isRelay365Error(err) ? err.code : 'R365_HTTP_INTERNAL_ERROR' });
    }
  });

  const metricsSchema = {
    operationId: 'getMetrics',
    summary: 'Prometheus metrics (text format 0.0.4)',
    tags: ['operations'],
    security: [],
    produces: ['text/plain'],
    response: { 200: { type: 'string', description: 'The metrics in the Prometheus text format 0.0.4.' } },
  };
  app.get('/metrics', { schema: metricsSchema }, async (_request, reply) => {
    const text = await deps.metrics.render(await queueSnapshot(sources));
    return reply.type(deps.metrics.contentType).send(text);
  });

  dashboardRoutes(app, {
    ...sources,
    worker: relay.worker,
    adminPassword: deps.secrets?.adminPassword ?? (() => undefined),
    bodyLimitBytes,
    credentials: relay.credentials,
  });
  return app;
}
