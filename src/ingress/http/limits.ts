import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { HttpIngressConfig } from '../../config/index.js';
import { LoginLockout } from '../smtp/login-lockout.js';
import { apiError } from './errors.js';

/** A body this large (or of unknown length, chunked) is "large": it is read into memory whole before it is parsed. */
export const LARGE_BODY_BYTES = 1024 * 1024;

/**
 * What the HTTP front door allows strangers and slow clients, set on the server before it listens:
 * a cap on open connections (Node drops the excess at accept, `server.maxConnections`), a deadline for
 * the headers and for the whole request, so a client trickling its body a byte at a time cannot
 * hold a socket (Fastify's `requestTimeout` defaults to none), and a cap on large bodies being read
 * at once, so that a few clients sending 45 MB each cannot take the relay's memory: the rest get
 * `503` with `Retry-After` before their body is read.
 *
 * `config` is read at each request: a reload's deadline and large-body cap apply from the next one
 * (a request under way keeps the deadline it started with); the connection cap is read once.
 */
export function installHttpLimits(app: FastifyInstance, config: () => HttpIngressConfig): void {
  app.server.maxConnections = config().maxConnections;
  // Node's own header deadline (RFC 9110 leaves it to the server).
  app.server.headersTimeout = 20_000;
  let large = 0;
  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    const http = config();
    const deadlineMs = http.requestTimeoutSeconds * 1000;
    // Node's checks follow a reload too. Its request deadline (408) is only a backstop here, raised
    // and never lowered, so it never ends a request before the deadline that request began with; the
    // idle timeout is given to each connection as it is accepted, so it reaches the connections to come.
    if (deadlineMs > app.server.requestTimeout) app.server.requestTimeout = deadlineMs;
    if (app.server.timeout !== deadlineMs) app.server.timeout = deadlineMs;
    // The body must be in by the deadline. Node's own requestTimeout is checked only every 30 s
    // (connectionsCheckingInterval), and a byte now and then keeps the idle timeout from firing.
    const raw = request.raw;
    if (!raw.complete) {
      const timer = setTimeout(() => {
        if (!raw.complete) raw.socket.destroy();
      }, deadlineMs);
      timer.unref();
      raw.once('end', () => clearTimeout(timer));
      reply.raw.once('close', () => clearTimeout(timer));
    }
    const length = request.headers['content-length'];
    const hasBody = length !== undefined || request.headers['transfer-encoding'] !== undefined;
    if (!hasBody || (length !== undefined && Number(length) < LARGE_BODY_BYTES)) return;
    if (large >= http.maxConcurrentLargeBodies) {
      // The error handler adds Retry-After to every 503.
      void reply.header('connection', 'close');
      throw apiError(
        'R365_HTTP_BUSY',
        `${large} large requests (over ${LARGE_BODY_BYTES} bytes) are being received already (http.maxConcurrentLargeBodies): try again in a few seconds.`,
      );
    }
    large += 1;
    let released = false;
    const release = (): void => {
      if (!released) {
        released = true;
        large -= 1;
      }
    };
    reply.raw.once('finish', release);
    reply.raw.once('close', release);
  });
}

/**
 * Wrong dashboard passwords per client address: after `failures` within the window the address gets
 * `429` for the lock time, with the right password too, so the admin password cannot be guessed at
 * network speed (about 900 tries a second were measured without it).
 */
export class AdminLoginLimit {
  private readonly lockout: LoginLockout;

  constructor(settings = { failures: 10, windowMs: 10 * 60_000, lockMs: 15 * 60_000 }) {
    this.lockout = new LoginLockout(settings);
  }

  /**
   * Checks the password with `matches` unless the address is locked; returns 'locked' with the
   * lock's end, or the verdict.
   */
  check(address: string, matches: () => boolean): { locked: Date } | boolean {
    const attempt = this.lockout.begin(address, 'admin');
    if ('lockedUntil' in attempt) return { locked: attempt.lockedUntil };
    const ok = matches();
    attempt.settle(ok);
    return ok;
  }
}
