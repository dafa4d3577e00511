import type { FastifyPluginCallback } from 'fastify';
import { Relay365Error } from '../errors.js';
import { parseScenario } from './scenario.js';
import type { ReceivedMessage, SandboxState } from './state.js';

/** A received message as listed over HTTP: everything but the raw bytes, plus the headers people look for. */
export interface MessageSummary extends Omit<ReceivedMessage, 'raw'> {
  subject: string | undefined;
  from: string | undefined;
  messageId: string | undefined;
}

/** Reads one header (unfolded) from the header block of a raw message. */
function header(raw: Buffer, name: string): string | undefined {
  const end = raw.indexOf('\r\n\r\n');
  const head = raw
    .subarray(0, end === -1 ? Math.min(raw.length, 65_536) : end)
    .toString('utf8')
    .replace(/\r?\n[ \t]+/g, ' ');
  const m = new RegExp(`^${name}:[ \\t]*(.*)$`, 'im').exec(head);
  return m?.[1]?.trim();
}

export function summarize(m: ReceivedMessage): MessageSummary {
  const { raw, ...rest } = m;
  return { ...rest, subject: header(raw, 'Subject'), from: header(raw, 'From'), messageId: header(raw, 'Message-ID') };
}

/**
 * `/sandbox/*`: what arrived (as Microsoft would have received it), the counters of every reply
 * given, and run-time changes to the scenario (so a test can, say, disable SMTP AUTH mid-run).
 */
export const adminRoutes: FastifyPluginCallback<{ state: SandboxState }> = (app, { state }, done) => {
  app.get<{ Querystring: { mailbox?: string; via?: string; limit?: string } }>('/sandbox/messages', (req) => {
    const { mailbox, via } = req.query;
    const limit = Math.max(1, Math.min(Number(req.query.limit ?? 1000) || 1000, 100_000));
    const list = state.messages
      .filter((m) => (mailbox === undefined || m.mailbox.toLowerCase() === mailbox.toLowerCase()) && (via === undefined || m.via === via))
      .slice(-limit)
      .map(summarize);
    return { count: list.length, messages: list };
  });

  app.get<{ Params: { id: string } }>('/sandbox/messages/:id', (req, reply) => {
    const m = state.messages.find((x) => x.id === req.params.id);
    if (!m) return reply.code(404).send({ error: 'not_found', message: `No message ${req.params.id} in the sandbox.` });
    return { ...summarize(m), raw: m.raw.toString('base64') };
  });

  app.get<{ Params: { id: string } }>('/sandbox/messages/:id/raw', (req, reply) => {
    const m = state.messages.find((x) => x.id === req.params.id);
    if (!m) return reply.code(404).send({ error: 'not_found', message: `No message ${req.params.id} in the sandbox.` });
    return reply.type('message/rfc822').send(m.raw);
  });

  app.delete('/sandbox/messages', () => {
    const removed = state.messages.length;
    state.messages.length = 0;
    return { removed };
  });

  // What a mailbox holds (the NDRs Exchange placed in its Inbox, and where a reader moved them), without a Graph token.
  app.get<{ Params: { mailbox: string } }>('/sandbox/mailboxes/:mailbox', (req, reply) => {
    const mailbox = req.params.mailbox;
    if (!state.findUser(mailbox)) return reply.code(404).send({ error: 'not_found', message: `No mailbox ${mailbox} in the scenario.` });
    return {
      mailbox,
      usedBytes: state.mail.usedBytes(mailbox),
      folders: state.mail.folders(mailbox).map((f) => ({
        id: f.id,
        displayName: f.displayName,
        wellKnownName: f.wellKnownName ?? null,
        messages: state.mail.items(mailbox, f.id).map((i) => ({
          id: i.id,
          receivedAt: i.receivedAt.toISOString(),
          subject: i.subject,
          internetMessageId: i.internetMessageId,
          isRead: i.isRead,
          categories: i.categories,
          size: i.raw.length,
        })),
      })),
    };
  });

  app.get('/sandbox/counters', () => state.counters);

  app.post('/sandbox/reset', () => {
    state.reset();
    return { ok: true };
  });

  app.get('/sandbox/scenario', () => state.scenario);

  app.put('/sandbox/scenario', (req, reply) => {
    try {
      state.setScenario(parseScenario(req.body, 'PUT /sandbox/scenario'));
      return { ok: true };
    } catch (err) {
      if (err instanceof Relay365Error) return reply.code(400).send({ error: err.code, message: err.message, details: err.details });
      throw err;
    }
  });

  done();
};
