/**
 * The operator's dashboard at `/`: server-rendered HTML, no external resources (it works on an
 * offline LAN), a small inline script that reloads the page's data every 2 s and posts retries,
 * cancels and resumes. `/` lists and searches messages (dashboard-search.ts); each links to its own
 * page, `/dashboard/messages/{id}` (dashboard-detail.ts).
 */
import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { isRelay365Error } from '../../errors.js';
import { renewalSteps, type MailboxCredential } from '../../identity/index.js';
import { MESSAGE_STATES, type MessageState, type RecipientRecord, type StoredMessage } from '../../outbox/index.js';
import { adminPasswordMatches, challengeAdmin } from './auth.js';
import { renderDetail, retryable, subjectHeading } from './dashboard-detail.js';
import { ago, escapeHtml, explanationBlock, recipientBadge, stateBadge, tagList } from './dashboard-html.js';
import { filtered, searchFields, searchForm, searchListQuery, searchQueryString, type SearchFields } from './dashboard-search.js';
import { AdminLoginLimit } from './limits.js';
import { apiError, sendApiError, stateChangeRefused } from './errors.js';
import { mailboxStatuses, type MailboxStatusView, type ViewSources } from './views.js';

export interface DashboardDeps extends ViewSources {
  /** The admin password, read at each request (a reload may change it); undefined turns the dashboard off. */
  adminPassword: () => string | undefined;
  worker: ViewSources['worker'] & { notify(target: { mailbox?: string | undefined; pool?: string | undefined }): void; syncPauses(): Promise<void> };
  bodyLimitBytes: number;
  /** The app credentials' end dates as the relay's CredentialExpiryMonitor last read them (issue 19). */
  credentials?: (() => readonly MailboxCredential[]) | undefined;
}

/** Sent by the dashboard's own script: a cross-site form or image cannot add it, so it stops CSRF. */
const DASHBOARD_HEADER = 'x-relay365-dashboard';
const REFRESH_MS = 2000;

const HOW_TO_ENABLE =
  'The dashboard is off: set http.adminPassword in the config (e.g. adminPassword: env:RELAY365_ADMIN_PASSWORD) and reload relay365 (systemctl reload relay365, or SIGHUP).';

function until(iso: string | null, now: number): string {
  if (iso === null) return '';
  const s = Math.round((Date.parse(iso) - now) / 1000);
  if (s <= 0) return 'expired';
  return s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`;
}

function gauge(label: string, used: number, limit: number): string {
  return `<div class="gauge"><span>${escapeHtml(label)}</span><meter min="0" max="${limit}" low="${Math.floor(limit * 0.7)}" high="${Math.floor(limit * 0.9)}" optimum="0" value="${used}"></meter><span class="num">${used} / ${limit}</span></div>`;
}

const CREDENTIAL_NAMES = { 'client-secret': 'client secret', certificate: 'certificate' } as const;

/**
 * A banner for a credential that ends within the warning days or has ended, with the steps to make a
 * new one (the fix doctor and the credential.expiring webhook give); nothing while it is far off.
 */
function credentialBanner(c: MailboxCredential | undefined): string {
  if (!c?.expiresAt || (c.status !== 'expiring' && c.status !== 'expired')) return '';
  const name = CREDENTIAL_NAMES[c.kind];
  const day = c.expiresAt.toISOString().slice(0, 10);
  const from = c.source === 'config' ? 'auth.secretExpires' : `the certificate's notAfter${c.thumbprint ? `, thumbprint ${c.thumbprint}` : ''}`;
  const days = Math.floor(c.daysLeft ?? 0);
  const when =
    c.status === 'expired'
      ? `<strong>The app's ${name} has ended</strong> (${escapeHtml(day)}): Entra refuses it, and the mailbox cannot get a token.`
      : `<strong>The app's ${name} ends in ${days} day${days === 1 ? '' : 's'}</strong>, on ${escapeHtml(day)}.`;
  return `<div class="credential ${c.status}" data-credential="${c.kind}" data-status="${c.status}">${when} <span class="muted small">(from ${escapeHtml(from)})</span><p class="fix">Fix: ${escapeHtml(renewalSteps(c, c.auth))}</p></div>`;
}

function mailboxCard(m: MailboxStatusView, now: number, credential?: MailboxCredential): string {
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
  ${credentialBanner(credential)}
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
    return `<li data-recipient="${escapeHtml(r.address)}" data-state="${r.state}">${recipientBadge(r.state)} ${escapeHtml(r.address)}${why}</li>`;
  });
  const more = recipients.length > RECIPIENTS_SHOWN ? `<li class="muted small">+${recipients.length - RECIPIENTS_SHOWN} more</li>` : '';
  return `<ul class="recipients">${items.join('')}${more}</ul>`;
}

/** The page of one message. */
const detailPath = (id: string): string => `/dashboard/messages/${encodeURIComponent(id)}`;

function messageRow(m: StoredMessage, recipients: readonly RecipientRecord[], now: number): string {
  const explanation = m.state !== 'sent' ? explanationBlock(m.lastExplanation) : '';
  const reply = m.lastReply ? `<code>${escapeHtml(m.lastReply.slice(0, 140))}</code>` : '';
  const scheduled =
    m.sendAt && m.state === 'queued' ? ` <span class="muted small">for ${escapeHtml(m.sendAt.toISOString().slice(0, 16).replace('T', ' '))} UTC</span>` : '';
  return `<tr data-id="${escapeHtml(m.id)}" data-state="${m.state}">
  <td title="${escapeHtml(m.createdAt.toISOString())}">${escapeHtml(ago(m.createdAt, now))}</td>
  <td><a class="detail" href="${escapeHtml(detailPath(m.id))}"><code title="${escapeHtml(m.id)}">${escapeHtml(m.id.slice(-12))}</code></a>${tagList(m.tags)}</td>
  <td>${escapeHtml(m.envelope.from)} →${recipientList(recipients)}</td>
  <td>${escapeHtml(m.mailbox ?? m.pool ?? '')}</td>
  <td>${stateBadge(m.state)}${scheduled}${m.attempts > 1 ? ` <span class="muted small">${m.attempts} attempts</span>` : ''}</td>
  <td>${reply}${explanation}</td>
  <td>${retryable(m) ? `<button type="button" class="retry" data-retry="${escapeHtml(m.id)}">Retry</button>` : ''}</td>
</tr>`;
}

/** The mailboxes and the queue's counts: the top of `/`, reloaded with the messages. */
async function renderOverview(deps: DashboardDeps, now: number): Promise<string> {
  const [mailboxes, counts, oldest] = await Promise.all([mailboxStatuses(deps), deps.store.counts(), deps.store.oldestWaiting()]);
  const tiles = MESSAGE_STATES.map(
    (s: MessageState) => `<div class="tile state-${s}" data-count="${s}"><span class="n">${counts[s]}</span><span>${s}</span></div>`,
  ).join('');
  const credentials = new Map((deps.credentials?.() ?? []).map((c) => [c.mailbox.toLowerCase(), c]));
  return `<section id="overview"><section class="row">${mailboxes.map((m) => mailboxCard(m, now, credentials.get(m.address))).join('') || '<p>No mailbox is configured.</p>'}</section>
<h2>Queue</h2>
<div class="tiles">${tiles}<div class="tile"><span class="n">${oldest ? escapeHtml(ago(oldest, now).replace(' ago', '')) : '–'}</span><span>oldest waiting</span></div></div></section>`;
}

function searchProblem(lines: readonly string[]): string {
  return `<section id="messages" data-live="1"><div class="error" role="alert">${lines.map((l) => `<p>${escapeHtml(l)}</p>`).join('')}<p><a href="/">Show the newest messages</a></p></div></section>`;
}

/** One page of the messages the search finds, newest first, with the link to the next (older) page. */
async function renderMessages(deps: DashboardDeps, fields: SearchFields, now: number): Promise<string> {
  const parsed = searchListQuery(fields);
  if ('problems' in parsed) return searchProblem(parsed.problems);
  let page: Awaited<ReturnType<DashboardDeps['store']['list']>>;
  try {
    page = await deps.store.list(parsed.query);
  } catch (error) {
    if (isRelay365Error(error) && error.code === 'R365_LIST_CURSOR_INVALID') return searchProblem([error.message]);
    throw error;
  }
  const recipients = await Promise.all(page.items.map((m) => deps.store.recipients(m.id)));
  const searching = filtered(fields);
  const empty = searching ? 'No message matches this search.' : fields.cursor !== '' ? 'No older message.' : 'No message yet.';
  const links = [
    fields.cursor !== '' ? `<a class="newest" href="/${escapeHtml(searchQueryString(fields, { cursor: '' }))}">← Newest</a>` : '',
    page.nextCursor !== undefined
      ? `<a class="older" rel="next" href="/${escapeHtml(searchQueryString(fields, { cursor: page.nextCursor }))}">Older →</a>`
      : '',
  ].filter(Boolean);
  return `<section id="messages" data-live="1">
<p class="muted small" data-shown="${page.items.length}">${page.items.length} message${page.items.length === 1 ? '' : 's'} shown${searching ? ' (search)' : ''}, newest first</p>
<table class="messages">
<thead><tr><th>When</th><th>Id and tags</th><th>From → recipients</th><th>Mailbox</th><th>State</th><th>Reply and explanation</th><th></th></tr></thead>
<tbody>${page.items.map((m, i) => messageRow(m, recipients[i]!, now)).join('') || `<tr class="empty"><td colspan="7" class="muted">${empty}</td></tr>`}</tbody>
</table>
${links.length ? `<nav class="pages">${links.join(' ')}</nav>` : ''}
</section>`;
}

/** What `/` reloads: the overview and the messages of the search in the page's URL. */
async function renderPanel(deps: DashboardDeps, fields: SearchFields): Promise<string> {
  const now = Date.now();
  const [overview, messages] = await Promise.all([renderOverview(deps, now), renderMessages(deps, fields, now)]);
  return overview + messages;
}

/** What a message's page reloads; undefined for an id the outbox does not hold. */
async function renderMessagePanel(deps: DashboardDeps, id: string): Promise<string | undefined> {
  const message = await deps.store.get(id);
  if (!message) return undefined;
  const [recipients, attempts] = await Promise.all([deps.store.recipients(message.id), deps.store.attempts(message.id)]);
  return renderDetail({ message, recipients, attempts }, Date.now());
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
.credential { background: #fff4e5; border-left: 4px solid #d97706; padding: .4rem .6rem; margin: .4rem 0; font-size: .9rem; }
.credential.expired { background: #fdecec; border-left-color: #b91c1c; }
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
form.search { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: end; background: #fff; border: 1px solid #d9dde3; border-radius: 6px; padding: .6rem .8rem; margin-bottom: .6rem; font-size: .85rem; }
form.search label { display: flex; flex-direction: column; gap: .15rem; }
form.search input, form.search select, form.search button { font: inherit; padding: .2rem .35rem; }
.tags { display: inline-flex; flex-wrap: wrap; gap: .2rem; margin-left: .3rem; }
.tag { background: #ede9fe; color: #5b21b6; border-radius: 4px; padding: 0 .3rem; font-size: .75rem; }
nav.pages { display: flex; justify-content: space-between; margin: .6rem 0; }
.error { background: #fee2e2; border-left: 4px solid #b91c1c; padding: .4rem .6rem; }
#result:empty { display: none; } #result { margin: .5rem 0; padding: .4rem .6rem; background: #fff; border-left: 4px solid #6b7280; }
#result.good { border-color: #15803d; } #result.bad { border-color: #b91c1c; color: #991b1b; }
table.fields th { width: 9rem; color: #4b5563; font-weight: 500; }
.doc a { font-size: .8rem; word-break: break-all; }
`;

/**
 * Reloads the page's data (the elements with an id in what \`data-panel\` answers) every REFRESH_MS
 * while it shows something that moves (\`data-live\`); posts retries, cancels and resumes with the
 * header that proves the request came from this page, and shows what each did.
 */
const SCRIPT = `
const source = document.body.dataset.panel + location.search;
const status = document.getElementById('status');
const result = document.getElementById('result');
// Only the answer to the latest reload is shown: one sent before a click may come back after it.
let latest = 0;
let inFlight = false;
async function refresh(force) {
  if (inFlight && !force) return;
  const mine = ++latest;
  inFlight = true;
  try {
    const r = await fetch(source, { headers: { '${DASHBOARD_HEADER}': '1' }, cache: 'no-store' });
    const text = await r.text();
    if (mine !== latest) return;
    if (r.ok) {
      const fresh = document.createElement('template');
      fresh.innerHTML = text;
      for (const part of [...fresh.content.children]) if (part.id) document.getElementById(part.id)?.replaceWith(part);
      status.textContent = 'updated ' + new Date().toLocaleTimeString();
    } else status.textContent = 'refresh failed: HTTP ' + r.status;
  } catch (e) {
    if (mine === latest) status.textContent = 'relay365 is not answering';
  } finally {
    if (mine === latest) inFlight = false;
  }
}
function tell(text, ok) {
  result.textContent = text;
  result.className = ok ? 'good' : 'bad';
}
async function post(path, what) {
  const r = await fetch(path, { method: 'POST', headers: { '${DASHBOARD_HEADER}': '1' } });
  const body = await r.json().catch(() => null);
  if (!r.ok) tell(what + ' failed: ' + (body && body.error ? body.error.message : 'HTTP ' + r.status), false);
  return r.ok ? body : null;
}
document.body.addEventListener('click', async (event) => {
  const button = event.target.closest('button[data-resume], button[data-retry], button[data-cancel]');
  if (!button) return;
  const d = button.dataset;
  if (d.cancel && !confirm('Cancel message ' + d.cancel + '? It will not be sent.')) return;
  button.disabled = true;
  if (d.resume) {
    button.textContent = 'Resuming…';
    const done = await post('/dashboard/mailboxes/' + encodeURIComponent(d.resume) + '/resume', 'Resume');
    if (done) tell(done.paused ? 'Mailbox ' + done.mailbox + ' resumed.' : 'Mailbox ' + done.mailbox + ' was not paused.', true);
  } else if (d.retry) {
    button.textContent = 'Retrying…';
    const done = await post('/dashboard/messages/' + encodeURIComponent(d.retry) + '/retry', 'Retry');
    if (done) tell('Message ' + done.id + ' is queued to be sent again.', true);
  } else {
    button.textContent = 'Cancelling…';
    const done = await post('/dashboard/messages/' + encodeURIComponent(d.cancel) + '/cancel', 'Cancel');
    if (done) tell('Message ' + done.id + ' is cancelled: it will not be sent.', true);
  }
  await refresh(true);
});
setInterval(() => { if (document.querySelector('[data-live]')) void refresh(); }, ${REFRESH_MS});
`;

/** A dashboard page: `panelPath` is what its script reloads (with the page's own query string). */
function page(title: string, body: string, panelPath: string, nonce: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<link rel="icon" href="data:,">
<noscript><meta http-equiv="refresh" content="5"></noscript>
<style nonce="${nonce}">${CSS}</style>
</head>
<body data-panel="${escapeHtml(panelPath)}">
<header><h1><a href="/">relay365</a></h1><span id="status">updated ${escapeHtml(new Date().toLocaleTimeString('en-GB'))}</span></header>
<div id="result" role="status" aria-live="polite"></div>
<main id="panel">${body}</main>
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
    'content-security-policy': `default-src 'none'; connect-src 'self'; img-src 'self' data:; ${nonce ? `script-src 'nonce-${nonce}'; style-src 'nonce-${nonce}'; ` : ''}base-uri 'none'; form-action 'self'; frame-ancestors 'none'`,
  });
}

/**
 * The admin's routes, behind HTTP Basic with `http.adminPassword`: `/` (the page, with the search in
 * its query string), `/dashboard/panel` (its reloaded part), `/dashboard/messages/{id}` and its
 * `/panel` (one message), and the posts `/dashboard/messages/{id}/retry`, `/dashboard/messages/{id}/cancel`
 * and `/dashboard/mailboxes/{mailbox}/resume`, which only the page's own script may send.
 */
export function dashboardRoutes(app: FastifyInstance, deps: DashboardDeps): void {
  const hidden = { schema: { hide: true } };
  const logins = new AdminLoginLimit();
  const configured = (): string[] => deps.config().mailboxes.map((m) => m.address.toLowerCase());

  /** Whether the request may go on; answers it (404 or 401) when not. */
  function admitted(request: FastifyRequest, reply: FastifyReply, html: boolean): boolean {
    secure(reply);
    const password = deps.adminPassword();
    if (password === undefined) {
      if (html) void reply.code(404).type('text/html; charset=utf-8').send(disabledPage());
      else sendApiError(request, reply, apiError('R365_DASHBOARD_DISABLED', HOW_TO_ENABLE), deps.bodyLimitBytes);
      return false;
    }
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

  /** Answers an HTML page with a fresh nonce for its script and style. */
  function sendPage(reply: FastifyReply, status: number, title: string, body: string, panelPath: string): FastifyReply {
    const nonce = randomBytes(16).toString('base64');
    secure(reply, nonce);
    return reply
      .code(status)
      .type('text/html; charset=utf-8')
      .send(page(title, body, panelPath, nonce));
  }

  app.get('/', hidden, async (request, reply) => {
    if (!admitted(request, reply, true)) return reply;
    const fields = searchFields(request.query);
    const now = Date.now();
    const [overview, messages] = await Promise.all([renderOverview(deps, now), renderMessages(deps, fields, now)]);
    return sendPage(reply, 200, 'relay365', `${overview}\n<h2>Messages</h2>\n${searchForm(fields, configured())}\n${messages}`, '/dashboard/panel');
  });

  app.get('/dashboard/panel', hidden, async (request, reply) => {
    if (!admitted(request, reply, false)) return reply;
    return reply.type('text/html; charset=utf-8').send(await renderPanel(deps, searchFields(request.query)));
  });

  const notFound = (id: string) => apiError('R365_HTTP_NOT_FOUND', `No message ${id} in the outbox: it was never queued here, or retention deleted it.`);

  app.get<{ Params: { id: string } }>('/dashboard/messages/:id', hidden, async (request, reply) => {
    if (!admitted(request, reply, true)) return reply;
    const { id } = request.params;
    const [panel, raw] = await Promise.all([renderMessagePanel(deps, id), deps.store.getRaw(id)]);
    const back = '<p><a href="/">← All messages</a></p>';
    if (panel === undefined)
      return sendPage(
        reply,
        404,
        'relay365: no such message',
        `${back}<div class="error" role="alert"><p>${escapeHtml(notFound(id).message)}</p></div>`,
        detailPath(id),
      );
    return sendPage(reply, 200, `relay365: message ${id}`, `${back}\n${subjectHeading(raw)}\n${panel}`, `${detailPath(id)}/panel`);
  });

  app.get<{ Params: { id: string } }>('/dashboard/messages/:id/panel', hidden, async (request, reply) => {
    if (!admitted(request, reply, false)) return reply;
    const panel = await renderMessagePanel(deps, request.params.id);
    if (panel === undefined) return sendApiError(request, reply, notFound(request.params.id), deps.bodyLimitBytes);
    return reply.type('text/html; charset=utf-8').send(panel);
  });

  /**
   * Basic credentials ride along on any request the browser makes to this origin, a cross-site form
   * post included: an admin post must carry the header only our script sets, and a same-origin Origin.
   * Answers the request (401, 403, 404) and returns false when it may not go on.
   */
  function ownPagePost(request: FastifyRequest, reply: FastifyReply, what: string): boolean {
    if (!admitted(request, reply, false)) return false;
    const origin = request.headers.origin;
    if (request.headers[DASHBOARD_HEADER] === '1' && (origin === undefined || origin === `${request.protocol}://${request.headers.host ?? ''}`)) return true;
    sendApiError(
      request,
      reply,
      apiError('R365_HTTP_INVALID_REQUEST', `${what} are posted by the dashboard page itself.`, { status: 403 }),
      deps.bodyLimitBytes,
    );
    return false;
  }

  app.post<{ Params: { mailbox: string } }>('/dashboard/mailboxes/:mailbox/resume', hidden, async (request, reply) => {
    if (!ownPagePost(request, reply, 'Resumes')) return reply;
    const mailbox = request.params.mailbox.toLowerCase();
    if (!configured().includes(mailbox)) {
      return sendApiError(
        request,
        reply,
        apiError('R365_UNKNOWN_MAILBOX', `${request.params.mailbox} is not a configured mailbox.`, { status: 404 }),
        deps.bodyLimitBytes,
      );
    }
    const asked = await deps.store.requestMailboxResume(mailbox);
    if (asked) await deps.worker.syncPauses();
    return reply.send({ mailbox, paused: asked !== undefined });
  });

  /** The message a button's POST names, once it came from the page; undefined when the refusal (403, 404) is already sent. */
  async function postedMessage(request: FastifyRequest<{ Params: { id: string } }>, reply: FastifyReply, what: string): Promise<StoredMessage | undefined> {
    if (!ownPagePost(request, reply, what)) return undefined;
    const message = await deps.store.get(request.params.id);
    if (!message) void sendApiError(request, reply, notFound(request.params.id), deps.bodyLimitBytes);
    return message;
  }

  app.post<{ Params: { id: string } }>('/dashboard/messages/:id/retry', hidden, async (request, reply) => {
    const message = await postedMessage(request, reply, 'Retries');
    if (!message) return reply;
    if (!(await deps.store.retry(message.id))) {
      return sendApiError(request, reply, await stateChangeRefused(deps.store, message, 'R365_MESSAGE_NOT_RETRYABLE', 'retried'), deps.bodyLimitBytes);
    }
    deps.worker.notify({ mailbox: message.pool === undefined ? message.mailbox : undefined, pool: message.pool });
    return reply.send({ id: message.id, state: 'queued' });
  });

  app.post<{ Params: { id: string } }>('/dashboard/messages/:id/cancel', hidden, async (request, reply) => {
    const message = await postedMessage(request, reply, 'Cancels');
    if (!message) return reply;
    if (!(await deps.store.cancel(message.id))) {
      return sendApiError(request, reply, await stateChangeRefused(deps.store, message, 'R365_MESSAGE_NOT_CANCELLABLE', 'cancelled'), deps.bodyLimitBytes);
    }
    return reply.send({ id: message.id, state: 'cancelled' });
  });
}
