import MailComposer, { type MailComposerOptions } from 'nodemailer/lib/mail-composer';
import { Relay365Error } from '../errors.js';
import { messageIdOf, toCrlf, type Envelope } from '../message/index.js';
import type { OutgoingMessage } from './types.js';

export { messageIdOf, toCrlf };

/** A message as nodemailer takes it (from, to, cc, bcc, subject, text, html, attachments, headers, ...). */
export type MessageFields = MailComposerOptions;

/** Raw MIME plus its envelope, sent byte for byte. */
export interface RawMessage {
  raw: Buffer | string;
  envelope: Envelope;
}

export type MessageInput = MessageFields | RawMessage;

function isRaw(input: MessageInput): input is RawMessage {
  return (
    'raw' in input && input.raw !== undefined && 'envelope' in input && typeof input.envelope === 'object' && input.envelope !== null && 'to' in input.envelope
  );
}

/** "to is "x", which holds no e-mail address." for a field given without an address in it (a typo, a bare name). */
function given(field: string, value: unknown): string | undefined {
  if (value === undefined || value === null || value === '' || (Array.isArray(value) && value.length === 0)) return undefined;
  const text = (Array.isArray(value) ? value : [value]).map((v) => (typeof v === 'string' ? v : JSON.stringify(v))).join(', ');
  return `${field} is "${text.length > 80 ? `${text.slice(0, 80)}...` : text}", which holds no e-mail address (name@domain).`;
}

/**
 * Builds the exact bytes to send: nodemailer's composer for field messages (Bcc removed from the
 * headers but kept in the envelope, Message-ID and Date added), or raw MIME as given.
 * @throws Relay365Error `R365_MESSAGE_INVALID` when there is no sender or no recipient.
 */
export async function composeMessage(input: MessageInput): Promise<OutgoingMessage> {
  if (isRaw(input)) {
    const raw = toCrlf(Buffer.isBuffer(input.raw) ? input.raw : Buffer.from(input.raw, 'utf8'));
    if (!input.envelope.from || input.envelope.to.length === 0) {
      throw new Relay365Error('R365_MESSAGE_INVALID', 'A raw message needs an envelope with from and at least one to address.');
    }
    return { raw, envelope: { from: input.envelope.from, to: [...input.envelope.to] }, ...(messageIdOf(raw) ? { messageId: messageIdOf(raw)! } : {}) };
  }
  const node = new MailComposer(input).compile();
  const env = node.getEnvelope();
  const from = typeof env.from === 'string' ? env.from : '';
  if (!from) throw new Relay365Error('R365_MESSAGE_INVALID', `The message has no sender: ${given('from', input.from) ?? 'set from (or envelope.from).'}`);
  if (env.to.length === 0) {
    const said = given('to', input.to) ?? given('cc', input.cc) ?? given('bcc', input.bcc);
    throw new Relay365Error('R365_MESSAGE_INVALID', `The message has no recipient: ${said ?? 'set to, cc or bcc.'}`);
  }
  const raw = toCrlf(await node.build());
  return { raw, envelope: { from, to: env.to }, messageId: node.messageId() };
}
