/**
 * The dashboard's message search: the form, the URL query it submits (so a search can be bookmarked
 * and the page's refresh keeps it), and the store's `ListQuery` made from that query.
 */
import { MESSAGE_STATES, type ListQuery, type MessageState } from '../../outbox/index.js';
import { escapeHtml } from './dashboard-html.js';

/** Messages on one page when the URL does not say (`limit`); the store holds any page to 1..500. */
export const PAGE_SIZE = 30;
const MAX_PAGE = 500;
const DAY_MS = 86_400_000;

/** The filters as the URL carries them: text, exactly as typed, so the form shows them back. */
export interface SearchFields {
  state: string;
  mailbox: string;
  recipient: string;
  tag: string;
  since: string;
  until: string;
  limit: string;
  cursor: string;
}

const FIELD_NAMES = ['state', 'mailbox', 'recipient', 'tag', 'since', 'until', 'limit', 'cursor'] as const;

/** The search of a request's query string (a repeated parameter counts once, its first value). */
export function searchFields(query: unknown): SearchFields {
  const q = (query ?? {}) as Record<string, unknown>;
  const one = (name: string): string => {
    const v = q[name];
    const first = Array.isArray(v) ? (v[0] as unknown) : v;
    return typeof first === 'string' ? first.trim() : '';
  };
  return Object.fromEntries(FIELD_NAMES.map((n) => [n, one(n)])) as unknown as SearchFields;
}

/** Whether any filter is set (paging alone is not a search). */
export function filtered(f: SearchFields): boolean {
  return f.state !== '' || f.mailbox !== '' || f.recipient !== '' || f.tag !== '' || f.since !== '' || f.until !== '';
}

/**
 * A day of the form (`YYYY-MM-DD`, as `<input type="date">` sends it) read as UTC midnight, or an ISO
 * date-time with its zone used as it is; `null` when it is neither.
 */
function parseTime(text: string): { at: Date; day: boolean } | null {
  if (/^\d{4}-\d{2}-\d{2}$/.test(text)) {
    const at = new Date(`${text}T00:00:00Z`);
    return Number.isNaN(at.getTime()) || at.toISOString().slice(0, 10) !== text ? null : { at, day: true };
  }
  if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(text)) {
    const at = new Date(text);
    return Number.isNaN(at.getTime()) ? null : { at, day: false };
  }
  return null;
}

/**
 * The store's query for the fields, or every problem with them (an unknown state, a date that is not
 * one): a search with a bad filter shows the problem rather than the messages without that filter.
 * `until` as a day includes that day (the store's `until` is exclusive, so it is the next midnight).
 */
export function searchListQuery(f: SearchFields): { query: ListQuery } | { problems: string[] } {
  const problems: string[] = [];
  const query: ListQuery = { limit: PAGE_SIZE };
  if (f.state !== '') {
    if ((MESSAGE_STATES as readonly string[]).includes(f.state)) query.state = f.state as MessageState;
    else problems.push(`State "${f.state}" is not one of ${MESSAGE_STATES.join(', ')}.`);
  }
  if (f.mailbox !== '') query.mailbox = f.mailbox.toLowerCase();
  if (f.recipient !== '') query.recipient = f.recipient;
  if (f.tag !== '') query.tag = f.tag;
  if (f.since !== '') {
    const since = parseTime(f.since);
    if (since) query.since = since.at;
    else problems.push(`Since "${f.since}" is not a date (YYYY-MM-DD) or an ISO date-time with its zone.`);
  }
  if (f.until !== '') {
    const until = parseTime(f.until);
    if (until) query.until = until.day ? new Date(until.at.getTime() + DAY_MS) : until.at;
    else problems.push(`Until "${f.until}" is not a date (YYYY-MM-DD) or an ISO date-time with its zone.`);
  }
  if (f.limit !== '') {
    const limit = Number(f.limit);
    if (Number.isInteger(limit) && limit >= 1 && limit <= MAX_PAGE) query.limit = limit;
    else problems.push(`Limit "${f.limit}" is not a whole number from 1 to ${MAX_PAGE}.`);
  }
  if (f.cursor !== '') query.cursor = f.cursor;
  return problems.length > 0 ? { problems } : { query };
}

/** The URL query of a search (empty fields left out), with `changes` applied: what the Older link and the refresh use. */
export function searchQueryString(f: SearchFields, changes: Partial<SearchFields> = {}): string {
  const params = new URLSearchParams();
  const merged = { ...f, ...changes };
  for (const name of FIELD_NAMES) if (merged[name] !== '') params.set(name, merged[name]);
  const text = params.toString();
  return text === '' ? '' : `?${text}`;
}

/** The search form: a GET to `/`, so the browser puts the filters in the address bar. */
export function searchForm(f: SearchFields, mailboxes: readonly string[]): string {
  const option = (value: string, label: string, selected: string): string =>
    `<option value="${escapeHtml(value)}"${value === selected ? ' selected' : ''}>${escapeHtml(label)}</option>`;
  const states = [option('', 'any state', f.state), ...MESSAGE_STATES.map((s) => option(s, s, f.state))].join('');
  // A mailbox in the URL that the config no longer names is kept, so the form shows what is searched.
  const known = mailboxes.map((m) => m.toLowerCase());
  const searched = f.mailbox.toLowerCase();
  const listed = searched !== '' && !known.includes(searched) ? [...known, searched] : known;
  const boxes = [option('', 'any mailbox', searched), ...listed.map((m) => option(m, m, searched))].join('');
  const text = (name: keyof SearchFields, label: string, type: string, placeholder: string): string =>
    `<label>${escapeHtml(label)} <input type="${type}" name="${name}" value="${escapeHtml(f[name])}" placeholder="${escapeHtml(placeholder)}"></label>`;
  return `<form id="search" class="search" method="get" action="/" role="search">
  <label>State <select name="state">${states}</select></label>
  <label>Mailbox <select name="mailbox">${boxes}</select></label>
  ${text('recipient', 'Recipient', 'email', 'exact address')}
  ${text('tag', 'Tag', 'text', 'e.g. invoice')}
  ${text('since', 'From day (UTC)', 'date', 'YYYY-MM-DD')}
  ${text('until', 'To day (UTC, included)', 'date', 'YYYY-MM-DD')}
  ${f.limit !== '' ? `<input type="hidden" name="limit" value="${escapeHtml(f.limit)}">` : ''}
  <button type="submit">Search</button>${filtered(f) || f.cursor !== '' ? ' <a href="/" class="clear">Clear</a>' : ''}
</form>`;
}
