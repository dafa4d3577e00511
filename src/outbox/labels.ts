/**
 * Tags and metadata: what a caller attaches to a message to find it again and to recognise it in a
 * webhook. The limits are those of the managed email APIs users know (a few short tags, a small map
 * of strings), so a label never costs more to store than the message's own row.
 */
import { Relay365Error } from '../errors.js';

/** At most this many tags on one message. */
export const MAX_TAGS = 10;
/** A tag: 1 to 64 of letters, digits and `_ . : -` (no spaces, so it fits a URL query and a log line as is). */
export const TAG_PATTERN = '^[A-Za-z0-9_.:-]{1,64}$';
/** At most this many metadata keys. */
export const MAX_METADATA_KEYS = 20;
/** A metadata key: 1 to 40 of letters, digits and `_ . -`. */
export const METADATA_KEY_PATTERN = '^[A-Za-z0-9_.-]{1,40}$';
/** A metadata value: a string of at most 500 characters. */
export const MAX_METADATA_VALUE = 500;

const TAG = new RegExp(TAG_PATTERN);
const KEY = new RegExp(METADATA_KEY_PATTERN);

/**
 * The labels as the outbox keeps them: tags without repeats, in the order given; metadata as given.
 *
 * @throws Relay365Error `R365_MESSAGE_INVALID` naming the first label over a limit and the limit.
 */
export function checkLabels(tags: readonly string[] | undefined, metadata: Readonly<Record<string, string>> | undefined): { tags: string[]; metadata: Record<string, string> } {
  const unique = [...new Set(tags ?? [])];
  if (unique.length > MAX_TAGS) throw invalid(`A message takes at most ${MAX_TAGS} tags; this one has ${unique.length}.`, 'tags');
  for (const tag of unique) {
    if (typeof tag !== 'string' || !TAG.test(tag)) throw invalid(`The tag ${JSON.stringify(tag)} is not 1 to 64 letters, digits or _ . : - characters.`, 'tags');
  }
  const entries = Object.entries(metadata ?? {});
  if (entries.length > MAX_METADATA_KEYS) throw invalid(`A message takes at most ${MAX_METADATA_KEYS} metadata keys; this one has ${entries.length}.`, 'metadata');
  for (const [key, value] of entries) {
    if (!KEY.test(key)) throw invalid(`The metadata key ${JSON.stringify(key)} is not 1 to 40 letters, digits or _ . - characters.`, 'metadata');
    if (typeof value !== 'string') throw invalid(`The metadata value of ${key} is not a string: metadata maps keys to strings.`, 'metadata');
    if (value.length > MAX_METADATA_VALUE) throw invalid(`The metadata value of ${key} is ${value.length} characters; at most ${MAX_METADATA_VALUE} are kept.`, 'metadata');
  }
  return { tags: unique, metadata: Object.fromEntries(entries) };
}

/** The `labels` column: NULL (no write of its own) when a message has neither tags nor metadata. */
export function labelsColumn(labels: { tags: string[]; metadata: Record<string, string> }): string | null {
  return labels.tags.length === 0 && Object.keys(labels.metadata).length === 0 ? null : JSON.stringify(labels);
}

function invalid(message: string, field: 'tags' | 'metadata'): Relay365Error {
  return new Relay365Error('R365_MESSAGE_INVALID', message, { details: { field } });
}
