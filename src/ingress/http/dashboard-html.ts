/**
 * HTML pieces every dashboard page uses. Everything a page shows of a message is the sender's or
 * Exchange's data (subjects, addresses, replies), so every value goes through {@link escapeHtml}.
 */
import type { Explanation } from '../../catalogue/index.js';
import type { MessageState, RecipientState } from '../../outbox/index.js';

/** Text made safe for HTML content and for a quoted attribute value. */
export function escapeHtml(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** How long ago, for a person: seconds, minutes, hours, then the UTC date and time. */
export function ago(date: Date, now: number): string {
  const s = Math.round((now - date.getTime()) / 1000);
  if (s < 60) return `${Math.max(0, s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86_400) return `${Math.round(s / 3600)} h ago`;
  return date.toISOString().slice(0, 16).replace('T', ' ');
}

/** A time in UTC to the second, e.g. `2026-12-03 11:50:47 UTC`. */
export function utc(date: Date): string {
  return `${date.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}

export function stateBadge(state: MessageState): string {
  return `<span class="state state-${state}">${state}</span>`;
}

export function recipientBadge(state: RecipientState): string {
  return `<span class="rstate rstate-${state}">${state}</span>`;
}

/**
 * The catalogue's explanation of a reply: its cause, its fix and, when the row cites one, a link to
 * where Microsoft documents it. Only an https link is made one (the catalogue is ours, but a link is
 * where an escaped value could still run script, as `javascript:`).
 */
export function explanationBlock(e: Explanation | undefined): string {
  if (!e) return '';
  const doc =
    e.doc && /^https:\/\//i.test(e.doc)
      ? `<p class="doc"><a href="${escapeHtml(e.doc)}" rel="noreferrer noopener" target="_blank">${escapeHtml(e.doc)}</a></p>`
      : '';
  return `<div class="explain" data-explanation="${escapeHtml(e.id)}"><p>${escapeHtml(e.cause)}</p><p class="fix">Fix: ${escapeHtml(e.fix)}</p>${doc}</div>`;
}

/** Tags as chips, or nothing. */
export function tagList(tags: readonly string[]): string {
  return tags.length === 0
    ? ''
    : `<span class="tags">${tags.map((t) => `<span class="tag" data-tag="${escapeHtml(t)}">${escapeHtml(t)}</span>`).join('')}</span>`;
}
