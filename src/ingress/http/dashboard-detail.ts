/**
 * One message on the dashboard (`/dashboard/messages/{id}`): its envelope, state and labels, every
 * recipient with what Exchange (or its report) said and the catalogue's explanation, every attempt,
 * and the Retry and Cancel buttons.
 */
import type { Attempt, RecipientRecord, StoredMessage } from '../../outbox/index.js';
import { headerValues, readHeaders } from '../../message/index.js';
import { ago, escapeHtml, explanationBlock, recipientBadge, stateBadge, tagList, utc } from './dashboard-html.js';

/** What the detail shows of a message, read from the store. */
export interface MessageDetail {
  message: StoredMessage;
  recipients: readonly RecipientRecord[];
  attempts: readonly Attempt[];
}

/** A message can be retried while it waits or after it failed (the store refuses the rest). */
export function retryable(m: StoredMessage): boolean {
  return m.state === 'failed' || m.state === 'deferred';
}

/** The states `OutboxStore.cancel` accepts. */
function cancellable(m: StoredMessage): boolean {
  return m.state === 'queued' || m.state === 'deferred' || m.state === 'failed';
}

/** The states in which the page keeps reloading the message (its state will change on its own). */
function moving(m: StoredMessage): boolean {
  return m.state === 'queued' || m.state === 'sending' || m.state === 'deferred';
}

/**
 * RFC 2047 encoded words (`=?charset?B|Q?text?=`) decoded, as mail clients show a Subject; a word in
 * a charset this runtime does not know is left as it is. Whitespace between two encoded words is
 * dropped (RFC 2047 section 6.2).
 */
export function decodeEncodedWords(value: string): string {
  return value
    .replace(/(=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=)\s+(?==\?)/g, '$1')
    .replace(/=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=/g, (word, charset: string, encoding: string, text: string) => {
      try {
        const bytes =
          encoding.toUpperCase() === 'B'
            ? Buffer.from(text, 'base64')
            : Buffer.from(
                text.replace(/_/g, ' ').replace(/=([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16))),
                'latin1',
              );
        // RFC 2231 section 5 lets a language ride after the charset: `utf-8*en`.
        return new TextDecoder(charset.split('*')[0]).decode(bytes);
      } catch {
        return word;
      }
    });
}

/** The Subject of raw MIME, decoded; undefined when there is none. */
export function subjectOf(raw: Buffer): string | undefined {
  const value = headerValues(readHeaders(raw), 'Subject')[0];
  return value === undefined ? undefined : decodeEncodedWords(value);
}

/**
 * The page's heading: the message's Subject (read once with the page, not at each reload: the
 * content may be megabytes), or why there is none. `raw` is undefined when a purge removed the content.
 */
export function subjectHeading(raw: Buffer | undefined): string {
  const subject = raw === undefined ? undefined : subjectOf(raw);
  if (subject !== undefined) return `<h2 class="subject">${escapeHtml(subject)}</h2>`;
  return `<h2 class="subject muted">${raw === undefined ? '(content purged: only the record is kept)' : '(no subject)'}</h2>`;
}

function row(label: string, html: string): string {
  return html === '' ? '' : `<tr><th scope="row">${escapeHtml(label)}</th><td>${html}</td></tr>`;
}

function recipientRow(r: RecipientRecord): string {
  const why = r.state === 'accepted' || r.state === 'pending' ? '' : explanationBlock(r.explanation);
  const dsn = [r.dsnStatus ? `DSN ${escapeHtml(r.dsnStatus)}` : '', r.remoteMta ? `from ${escapeHtml(r.remoteMta)}` : ''].filter(Boolean).join(', ');
  return `<tr data-recipient="${escapeHtml(r.address)}" data-state="${r.state}">
  <td>${escapeHtml(r.address)}</td>
  <td>${recipientBadge(r.state)}</td>
  <td>${r.reply ? `<code>${escapeHtml(r.reply)}</code>` : ''}${dsn ? `<p class="muted small">${dsn}</p>` : ''}${why}</td>
  <td title="${escapeHtml(r.updatedAt.toISOString())}">${escapeHtml(utc(r.updatedAt))}</td>
</tr>`;
}

function attemptRow(a: Attempt, n: number): string {
  return `<tr data-attempt="${n}" data-class="${escapeHtml(a.class)}">
  <td>${n}</td>
  <td title="${escapeHtml(a.at.toISOString())}">${escapeHtml(utc(a.at))}</td>
  <td>${escapeHtml(a.mailbox)}</td>
  <td>${escapeHtml(a.class)}</td>
  <td>${a.reply ? `<code>${escapeHtml(a.reply)}</code>` : ''}${a.class === 'sent' ? '' : explanationBlock(a.explanation)}</td>
  <td class="num">${escapeHtml(a.durationMs)} ms</td>
</tr>`;
}

/**
 * The reloaded part of the detail page. `data-live` tells the page's script to keep reloading it
 * while the message is still on its way.
 */
export function renderDetail(d: MessageDetail, now: number): string {
  const m = d.message;
  const source = [m.source.kind, m.source.user ? `user ${m.source.user}` : '', m.source.client ? `from ${m.source.client}` : ''].filter(Boolean).join(', ');
  const metadata = Object.entries(m.metadata);
  const waiting = m.state === 'queued' || m.state === 'deferred';
  const buttons = [
    retryable(m) ? `<button type="button" class="retry" data-retry="${escapeHtml(m.id)}">Retry</button>` : '',
    cancellable(m) ? `<button type="button" class="retry cancel" data-cancel="${escapeHtml(m.id)}">Cancel</button>` : '',
  ].filter(Boolean);
  const last =
    m.lastReply || (m.state !== 'sent' && m.lastExplanation)
      ? `<h3>Last reply</h3><div class="last">${m.lastReply ? `<code>${escapeHtml(m.lastReply)}</code>` : ''}${m.state === 'sent' ? '' : explanationBlock(m.lastExplanation)}</div>`
      : '';
  const recipients = d.recipients.length
    ? `<table class="recipients-detail"><thead><tr><th>Recipient</th><th>State</th><th>Reply and explanation</th><th>Updated</th></tr></thead><tbody>${d.recipients.map(recipientRow).join('')}</tbody></table>`
    : '<p class="muted">No recipient is recorded.</p>';
  const attempts = d.attempts.length
    ? `<table class="attempts"><thead><tr><th>#</th><th>When</th><th>Mailbox</th><th>Class</th><th>Reply and explanation</th><th>Took</th></tr></thead><tbody>${d.attempts.map((a, i) => attemptRow(a, i + 1)).join('')}</tbody></table>`
    : '<p class="muted">No attempt yet.</p>';
  return `<article id="detail" class="message" data-id="${escapeHtml(m.id)}" data-state="${m.state}"${moving(m) ? ' data-live="1"' : ''}>
<p>${stateBadge(m.state)} ${buttons.join(' ')}</p>
<table class="fields"><tbody>
${row('Id', `<code>${escapeHtml(m.id)}</code>`)}
${row('From', escapeHtml(m.envelope.from))}
${row('To', escapeHtml(m.envelope.to.join(', ')))}
${row('Mailbox', escapeHtml(m.mailbox ?? ''))}
${row('Pool', escapeHtml(m.pool ?? ''))}
${row('Message-ID', m.messageId ? `<code>${escapeHtml(m.messageId)}</code>` : '')}
${row('Tags', tagList(m.tags))}
${row('Scheduled for', m.sendAt ? `<span data-send-at="${escapeHtml(m.sendAt.toISOString())}">${escapeHtml(utc(m.sendAt))}</span>` : '')}
${row('Next attempt', waiting ? escapeHtml(utc(m.nextAttemptAt)) : '')}
${row('Created', `<span title="${escapeHtml(m.createdAt.toISOString())}">${escapeHtml(utc(m.createdAt))} (${escapeHtml(ago(m.createdAt, now))})</span>`)}
${row('Updated', escapeHtml(utc(m.updatedAt)))}
${row('Size', `${escapeHtml(m.size)} bytes`)}
${row('Submitted by', escapeHtml(source))}
</tbody></table>
${
  metadata.length
    ? `<h3>Metadata</h3><table class="metadata"><tbody>${metadata.map(([k, v]) => `<tr data-key="${escapeHtml(k)}"><th scope="row">${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`).join('')}</tbody></table>`
    : ''
}
${last}
<h3>Recipients</h3>
${recipients}
<h3>Attempts</h3>
${attempts}
</article>`;
}
