/**
 * The operator's dashboard at `/`: server-rendered HTML, no external resources (it works on an
 * offline LAN), a small inline script that reloads the panel every 2 s and posts retries.
 */
import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { MESSAGE_STATES, type MessageState, type RecipientRecord, type StoredMessage } from '../../outbox/index.js';
import { adminPasswordMatches, challengeAdmin } from './auth.js';
import { AdminLoginLimit } from './limits.js';
import { apiError, sendApiError } from './errors.js';
import { mailboxStatuses, type MailboxStatusView, type ViewSources } from './views.js';

export interface DashboardDeps extends ViewSources {
  /** The admin password; undefined turns the dashboard off. */
  adminPassword: string | undefined;
  worker: ViewSources['worker'] & { notify(target: { mailbox?: string | undefined; pool?: string | undefined }): void; syncPauses(): Promise<void> };
  bodyLimitBytes: number;
}

/** Sent by the dashboard's own script: a cross-site form or image cannot add it, so it stops CSRF. */
const DASHBOARD_HEADER = 'x-relay365-dashboard';
const REFRESH_MS = 2000;
const RECENT = 30;

const HOW_TO_ENABLE = 'The dashboard is off: set http.adminPassword in the config (e.g. adminPassword: env:RELAY365_ADMIN_PASSWORD) and restart relay365.';

function escapeHtml(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

function ago(date: Date, now: number): string {
  const s = Math.round((now - date.getTime()) / 1000);
  if (s < 60) return `${Math.max(0, s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86_400) return `${Math.round(s / 3600)} h ago`;
  return date.toISOString().slice(0, 16).replace('T', ' ');
}

function until(iso: string | null, now: number): string {
  if (iso === null) return '';
  const s = Math.round((Date.parse(iso) - now) / 1000);
  if (s <= 0) return 'expired';
  return s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`;
}

function gauge(label: string, used: number, limit: number): string {
  return `<div class="gauge"><span>${escapeHtml(label)}</span><meter min="0" max="${limit}" low="${Math.floor(limit * 0.7)}" high="${Math.floor(limit * 0.9)}" optimum="0" value="${used}"></meter><span class="num">${used} / ${limit}</span></div>`;
}

function mailboxCard(m: MailboxStatusView, now: number): string {
  const token = m.token.lastError
    ? `<span class="bad">failing</span> <code>${escapeHtml(m.token.lastError.code)}</code> ${escapeHtml(m.token.lastError.message)}`
    : m.token.cached
      ? `<span class="good">valid</span>, expires in ${escapeHtml(until(m.token.expiresAt, now))}`
      : m.token.refreshing
        ? 'requesting…'
        : '<span class="muted">none yet (fetched at the first send)</span>';
  const state = m.paused
    ? `<div class="paused"><strong>Paused</strong>${m.pausedSince ? ` since ${escapeHtml(m.pausedSince.slice(0, 19).replace('T', ' '))} UTC` : ''}${
        m.pausedUntil ? `, next try ${escapeHtml(m.pausedUntil.slice(11, 19))} UTC` : ''
      }${m.pauseReason ? `<p>${escapeHtml(m.pauseReason.cause)}</p><p class="fix">Fix: ${escapeHtml(m.pauseReason.fix)}</p>` : ''}<p><button type="button" class="retry" data-resume="${escapeHtml(m.address)}">Resume now</button> <span class="muted small">once the cause is fixed; a send that meets it again pauses the mailbox again</span></p></div>`
    : '<div class="active">Sending</div>';
  const lastError =
    m.lastError && m.lastError.source === 'message'
      ? `<p class="muted small">Last failure${m.lastError.reply ? `: <code>${escapeHtml(m.lastError.reply.slice(0, 120))}</code>` : ''}</p>`
      : '';
  return `<section class="card mailbox" data-mailbox="${escapeHtml(m.address)}">
  <h3>${escapeHtml(m.address)}</h3>
  ${m.aliases.length ? `<p class="muted small">also sends as ${m.aliases.map(escapeHtml).join(', ')}</p>` : ''}
  ${state}
  <p>Token: ${token}</p>
  ${gauge('messages this minute', m.quota.messagesPerMinute.used, m.quota.messagesPerMinute.limit)}
  ${gauge('recipients today', m.quota.recipientsPerDay.used, m.quota.recipientsPerDay.limit)}
  ${gauge('connections', m.quota.connections.inUse, m.quota.connections.limit)}
  ${lastError}
</section>`;
}

/** Recipients shown in a row; the API and `relay365 queue show` list them all. */
const RECIPIENTS_SHOWN = 5;

/** Each recipient with its state and, unless Exchange simply took it, the reply that says why. */
function recipientList(recipients: readonly RecipientRecord[]): string {
  const items = recipients.slice(0, RECIPIENTS_SHOWN).map((r) => {
    const why = r.state !== 'accepted' && r.state !== 'pending' && r.reply ? ` <code>${escapeHtml(r.reply.slice(0, 140))}</code>` : '';
    return `<li data-recipient="${escapeHtml(r.address)}" data-state="${r.state}"><span class="rstate rstate-${r.state}">${r.state}</span> ${escapeHtml(r.address)}${why}</li>`;
  });
  const more = recipients.length > RECIPIENTS_SHOWN ? `<li class="muted small">+${recipients.length - RECIPIENTS_SHOWN} more</li>` : '';
  return `<ul class="recipients">${items.join('')}${more}</ul>`;
}

function messageRow(m: StoredMessage, recipients: readonly RecipientRecord[], now: number): string {
  const explanation =
    m.state !== 'sent' && m.lastExplanation
      ? `<div class="explain"><p>${escapeHtml(m.lastExplanation.cause)}</p><p class="fix">Fix: ${escapeHtml(m.lastExplanation.fix)}</p></div>`
      : '';
  const reply = m.lastReply ? `<code>${escapeHtml(m.lastReply.slice(0, 140))}</code>` : '';
  const canRetry = m.state === 'failed' || m.state === 'deferred';
  return `<tr data-id="${escapeHtml(m.id)}" data-state="${m.state}">
  <td title="${escapeHtml(m.createdAt.toISOString())}">${escapeHtml(ago(m.createdAt, now))}</td>
  <td><code title="${escapeHtml(m.id)}">${escapeHtml(m.id.slice(-12))}</code></td>
  <td>${escapeHtml(m.envelope.from)} →${recipientList(recipients)}</td>
  <td>${escapeHtml(m.mailbox ?? m.pool ?? '')}</td>
  <td><span class="state state-${m.state}">${m.state}</span>${m.attempts > 1 ? ` <span class="muted small">${m.attempts} attempts</span>` : ''}</td>
  <td>${reply}${explanation}</td>
  <td>${canRetry ? `<button type="button" class="retry" data-retry="${escapeHtml(m.id)}">Retry</button>` : ''}</td>
</tr>`;
}

async function renderPanel(deps: DashboardDeps): Promise<string> {
  const now = Date.now();
  const [mailboxes, counts, oldest, recent] = await Promise.all([
    mailboxStatuses(deps),
    deps.store.counts(),
    deps.store.oldestWaiting(),
    deps.store.list({ limit: RECENT }),
  ]);
  const recipients = await Promise.all(recent.items.map((m) => deps.store.recipients(m.id)));
  const tiles = MESSAGE_STATES.map(
    (s: MessageState) => `<div class="tile state-${s}" data-count="${s}"><span class="n">${counts[s]}</span><span>${s}</span></div>`,
  ).join('');
  return `<section class="row">${mailboxes.map((m) => mailboxCard(m, now)).join('') || '<p>No mailbox is configured.</p>'}</section>
<h2>Queue</h2>
<div class="tiles">${tiles}<div class="tile"><span class="n">${oldest ? escapeHtml(ago(oldest, now).replace(' ago', '')) : '–'}</span><span>oldest waiting</span></div></div>
<h2>Recent messages</h2>
<table class="messages">
<thead><tr><th>When</th><th>Id</th><th>From → recipients</th><th>Mailbox</th><th>State</th><th>Reply and explanation</th><th></th></tr></thead>
<tbody>${recent.items.map((m, i) => messageRow(m, recipients[i]!, now)).join('') || '<tr><td colspan="7" class="muted">No message yet.</td></tr>'}</tbody>
</table>`;
}

const CSS = `
:root { font-family: system-ui, sans-serif; color: #1d232b; background: #f5f6f8; }
body { margin: 0 auto; max-width: 1200px; padding: 1rem 1.5rem; }
header { display: flex; align-items: baseline; justify-content: space-between; }
h1 { font-size: 1.4rem; margin: .2rem 0; } h2 { font-size: 1.1rem; margin: 1.4rem 0 .5rem; } h3 { font-size: 1rem; margin: 0 0 .4rem; }
.row { display: flex; flex-wrap: wrap; gap: 1rem; }
.card { background: #fff; border: 1px solid #d9dde3; border-radius: 6px; padding: .8rem 1rem; min-width: 320px; flex: 1; }
.gauge { display: grid; grid-template-columns: 11rem 1fr 6rem; align-items: center; gap: .5rem; font-size: .85rem; }
.gauge meter { width: 100%; } .num { text-align: right; font-variant-numeric: tabular-nums; }
.paused { background: #fff4e5; border-left: 4px solid #d97706; padding: .4rem .6rem; margin: .4rem 0; }
.active { color: #15803d; font-weight: 600; }
.good { color: #15803d; } .bad { color: #b91c1c; font-weight: 600; } .muted { color: #6b7280; } .small { font-size: .8rem; }
.fix { color: #374151; font-style: italic; } .explain p { margin: .2rem 0; font-size: .85rem; }
.tiles { display: flex; gap: .6rem; flex-wrap: wrap; }
.tile { background: #fff; border: 1px solid #d9dde3; border-radius: 6px; padding: .5rem .9rem; display: flex; flex-direction: column; min-width: 6rem; }
.tile .n { font-size: 1.5rem; font-weight: 600; font-variant-numeric: tabular-nums; }
table { border-collapse: collapse; width: 100%; background: #fff; font-size: .85rem; }
th, td { text-align: left; padding: .4rem .5rem; border-bottom: 1px solid #e5e7eb; vertical-align: top; }
code { font-size: .8rem; word-break: break-all; }
.state { padding: .1rem .45rem; border-radius: 999px; font-size: .8rem; background: #e5e7eb; }
.state-sent { background: #dcfce7; color: #166534; } .state-failed { background: #fee2e2; color: #991b1b; }
.state-deferred { background: #fef3c7; color: #92400e; } .state-sending { background: #dbeafe; color: #1e40af; }
.state-cancelled { background: #f3f4f6; color: #4b5563; }
ul.recipients { list-style: none; margin: .2rem 0 0; padding: 0; } ul.recipients li { margin: .1rem 0; }
.rstate { padding: 0 .35rem; border-radius: 999px; font-size: .75rem; background: #e5e7eb; }
.rstate-accepted { background: #dcfce7; color: #166534; } .rstate-refused, .rstate-bounced { background: #fee2e2; color: #991b1b; }
.rstate-delayed { background: #fef3c7; color: #92400e; }
button.retry { cursor: pointer; border: 1px solid #9ca3af; background: #fff; border-radius: 4px; padding: .2rem .6rem; }
#status { font-size: .8rem; color: #6b7280; }
`;

/** Reloads the panel every REFRESH_MS; posts retries with the header that proves the request came from this page. */
const SCRIPT = `
const panel = document.getElementById('panel');
const status = document.getElementById('status');
let busy = false;
async function refresh() {
  if (busy) return;
  busy = true;
  try {
    const r = await fetch('/dashboard/panel', { headers: { '${DASHBOARD_HEADER}': '1' }, cache: 'no-store' });
    if (r.ok) { panel.innerHTML = await r.text(); status.textContent = 'updated ' + new Date().toLocaleTimeString(); }
    else status.textContent = 'refresh failed: HTTP ' + r.status;
  } catch (e) {
    status.textContent = 'relay365 is not answering';
  } finally {
    busy = false;
  }
}
panel.addEventListener('click', async (event) => {
  const resume = event.target.closest('button[data-resume]');
  if (resume) {
    resume.disabled = true;
    resume.textContent = 'Resuming…';
    const r = await fetch('/dashboard/mailboxes/' + encodeURIComponent(resume.dataset.resume) + '/resume', { method: 'POST', headers: { '${DASHBOARD_HEADER}': '1' } });
    if (!r.ok) {
      const body = await r.json().catch(() => null);
      status.textContent = 'resume failed: ' + (body && body.error ? body.error.message : 'HTTP ' + r.status);
    }
    await refresh();
    return;
  }
  const button = event.target.closest('button[data-retry]');
  if (!button) return;
  button.disabled = true;
  button.textContent = 'Retrying…';
  const r = await fetch('/dashboard/messages/' + encodeURIComponent(button.dataset.retry) + '/retry', { method: 'POST', headers: { '${DASHBOARD_HEADER}': '1' } });
  if (!r.ok) {
    const body = await r.json().catch(() => null);
    status.textContent = 'retry failed: ' + (body && body.error ? body.error.message : 'HTTP ' + r.status);
  }
  await refresh();
});
setInterval(refresh, ${REFRESH_MS});
`;

function page(panel: string, nonce: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>relay365</title>
<link rel="icon" href="data:,">
<noscript><meta http-equiv="refresh" content="5"></noscript>
<style nonce="${nonce}">${CSS}</style>
</head>
<body>
<header><h1>relay365</h1><span id="status">updated ${escapeHtml(new Date().toLocaleTimeString('en-GB'))}</span></header>
<main id="panel">${panel}</main>
<script nonce="${nonce}">${SCRIPT}</script>
</body>
</html>`;
}

function disabledPage(): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>relay365: dashboard off</title></head><body><h1>relay365</h1><p>${escapeHtml(HOW_TO_ENABLE)}</p></body></html>`;
}

/** Headers of every dashboard answer: nothing cached, nothing framed, only our own nonce'd script and style run. */
function secure(reply: FastifyReply, nonce?: string): void {
  void reply.headers({
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'x-frame-options': 'DENY',
    'content-security-policy': `default-src 'none'; connect-src 'self'; img-src 'self' data:; ${nonce ? `script-src 'nonce-${nonce}'; style-src 'nonce-${nonce}'; ` : ''}base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
  });
}

/**
 * The admin's routes: `/` (the page), `/dashboard/panel` (its reloaded part) and
 * `POST /dashboard/messages/{id}/retry`, behind HTTP Basic with `http.adminPassword`.
 */
export function dashboardRoutes(app: FastifyInstance, deps: DashboardDeps): void {
  const hidden = { schema: { hide: true } };
  const logins = new AdminLoginLimit();

  /** Whether the request may go on; answers it (404 or 401) when not. */
  function admitted(request: FastifyRequest, reply: FastifyReply, html: boolean): boolean {
    secure(reply);
    if (deps.adminPassword === undefined) {
      if (html) void reply.code(404).type('text/html; charset=utf-8').send(disabledPage());
      else sendApiError(request, reply, apiError('R365_DASHBOARD_DISABLED', HOW_TO_ENABLE), deps.bodyLimitBytes);
      return false;
    }
    const password = deps.adminPassword;
    // A request without credentials is the browser asking for the prompt, not a guess.
    const verdict =
      request.headers.authorization === undefined ? false : logins.check(request.ip, () => adminPasswordMatches(request.headers.authorization, password));
    if (typeof verdict === 'object') {
      const seconds = Math.max(1, Math.ceil((verdict.locked.getTime() - Date.now()) / 1000));
      void reply.header('retry-after', String(seconds));
      sendApiError(
        request,
        reply,
        apiError('R365_HTTP_TOO_MANY_LOGINS', `Too many wrong dashboard passwords from ${request.ip}: try again in ${seconds} s.`),
        deps.bodyLimitBytes,
      );
      return false;
    }
    if (!verdict) {
      challengeAdmin(reply);
      sendApiError(
        request,
        reply,
        apiError('R365_HTTP_UNAUTHORIZED', 'The dashboard needs the admin password (http.adminPassword); any user name is accepted.'),
        deps.bodyLimitBytes,
      );
      return false;
    }
    return true;
  }

  app.get('/', hidden, async (request, reply) => {
    if (!admitted(request, reply, true)) return reply;
    const nonce = randomBytes(16).toString('base64');
    secure(reply, nonce);
    return reply.type('text/html; charset=utf-8').send(page(await renderPanel(deps), nonce));
  });

  app.get('/dashboard/panel', hidden, async (request, reply) => {
    if (!admitted(request, reply, false)) return reply;
    return reply.type('text/html; charset=utf-8').send(await renderPanel(deps));
  });

  /** Basic credentials ride along on any request the browser makes to this origin, a cross-site form post included: demand the header only our script sets, and a same-origin Origin. */
  function fromOwnPage(request: FastifyRequest): boolean {
    const origin = request.headers.origin;
    return request.headers[DASHBOARD_HEADER] === '1' && (origin === undefined || origin === `${request.protocol}://${request.headers.host ?? ''}`);
  }

  app.post<{ Params: { mailbox: string } }>('/dashboard/mailboxes/:mailbox/resume', hidden, async (request, reply) => {
    if (!admitted(request, reply, false)) return reply;
    if (!fromOwnPage(request)) {
      return sendApiError(
        request,
        reply,
        apiError('R365_HTTP_INVALID_REQUEST', 'Resumes are posted by the dashboard page itself.', { status: 403 }),
        deps.bodyLimitBytes,
      );
    }
    const mailbox = request.params.mailbox.toLowerCase();
    if (!deps.config.mailboxes.some((m) => m.address.toLowerCase() === mailbox)) {
      return sendApiError(request, reply, apiError('R365_UNKNOWN_MAILBOX', `${request.params.mailbox} is not a configured mailbox.`, { status: 404 }), deps.bodyLimitBytes);
    }
    const asked = await deps.store.requestMailboxResume(mailbox);
    if (asked) await deps.worker.syncPauses();
    return reply.send({ mailbox, paused: asked !== undefined });
  });

  app.post<{ Params: { id: string } }>('/dashboard/messages/:id/retry', hidden, async (request, reply) => {
    if (!admitted(request, reply, false)) return reply;
    if (!fromOwnPage(request)) {
      return sendApiError(
        request,
        reply,
        apiError('R365_HTTP_INVALID_REQUEST', 'Retries are posted by the dashboard page itself.', { status: 403 }),
        deps.bodyLimitBytes,
      );
    }
    const message = await deps.store.get(request.params.id);
    if (!message) return sendApiError(request, reply, apiError('R365_HTTP_NOT_FOUND', `No message ${request.params.id} in the outbox.`), deps.bodyLimitBytes);
    if (!(await deps.store.retry(message.id))) {
      return sendApiError(
        request,
        reply,
        apiError('R365_MESSAGE_NOT_RETRYABLE', `Message ${message.id} is ${message.state}: only a queued, deferred or failed message can be retried.`),
        deps.bodyLimitBytes,
      );
    }
    deps.worker.notify({ mailbox: message.pool === undefined ? message.mailbox : undefined, pool: message.pool });
    return reply.send({ id: message.id, state: 'queued' });
  });
}
