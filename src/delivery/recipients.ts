import type { Explanation } from '../catalogue/index.js';
import type { SendResult } from './types.js';

/**
 * What the session decided for one recipient: `accepted` (Exchange's 250 for it: taken, not yet
 * delivered; a later NDR can still bounce it, which only the queued relay with `bounces.read` reads
 * back), `refused` (at RCPT, or with the whole message by a permanent reply), or `pending` (nothing
 * was decided: the send failed for a reason that is not about the recipient and may be tried again).
 */
export interface RecipientResult {
  address: string;
  state: 'accepted' | 'refused' | 'pending';
  reply?: string;
  explanation?: Explanation;
}

/** A send's outcome, with each envelope recipient's. */
export type MailerResult = SendResult & {
  recipients: RecipientResult[];
};

/** Each envelope recipient's outcome in `result`. */
export function recipientResults(to: readonly string[], result: SendResult): RecipientResult[] {
  const refused = new Map((result.rejected ?? []).map((r) => [r.address.toLowerCase(), r]));
  return to.map((address) => {
    const r = refused.get(address.toLowerCase());
    if (r) return { address, state: 'refused', ...(r.reply !== undefined ? { reply: r.reply } : {}), ...(r.explanation ? { explanation: r.explanation } : {}) };
    if (result.ok) return { address, state: 'accepted', ...(result.reply !== undefined ? { reply: result.reply } : {}) };
    if (result.class === 'permanent')
      return {
        address,
        state: 'refused',
        ...(result.reply !== undefined ? { reply: result.reply } : {}),
        explanation: result.explanation,
      };
    return { address, state: 'pending' };
  });
}
