import type { Suppression } from '../outbox/index.js';
import { oneLine } from './ndr-parse.js';

/**
 * Why a submission to a suppressed address is refused, in one line: the same words at SMTP and in the
 * HTTP error, so an operator can search the logs for either. `reasonMax` bounds the reason's length.
 */
export function suppressionMessage(entry: Pick<Suppression, 'address' | 'reason' | 'createdAt'>, reasonMax = 300): string {
  const address = oneLine(entry.address, 320);
  return `<${address}>: suppressed by relay365 since ${entry.createdAt.toISOString()} after ${oneLine(entry.reason, Math.max(20, reasonMax))}; remove with relay365 suppression remove ${address}`;
}

/**
 * The SMTP reply at `RCPT TO` for a suppressed address: `550 5.1.1` (RFC 3463 X.1.1, bad destination
 * mailbox address: relay365 knows the address bounced). One line within RFC 5321's 512 octets (section
 * 4.5.3.1.5, CRLF included): the reason is shortened to fit, the address and the remedy never are.
 */
export function suppressionReply(entry: Pick<Suppression, 'address' | 'reason' | 'createdAt'>): string {
  const fixed = `550 5.1.1 ${suppressionMessage({ ...entry, reason: '' }, 0)}`.length;
  return `550 5.1.1 ${suppressionMessage(entry, Math.min(300, 510 - fixed))}`;
}

/**
 * What an operator may add to the list: an envelope address, something@domain without white space,
 * angle brackets or control characters (the `POST /v1/suppressions` schema and `relay365 suppression add`).
 */
export const SUPPRESSION_ADDRESS_PATTERN = '^[^\\s@<>\\x00-\\x1f\\x7f]{1,64}@[^\\s@<>\\x00-\\x1f\\x7f]{1,255}$';

/** A suppression as `/v1/suppressions` and `relay365 suppression list --json` show it. */
export function suppressionJson({ address, reason, dsnStatus, messageId, source, createdAt }: Suppression) {
  return { address, reason, dsnStatus: dsnStatus ?? null, messageId: messageId ?? null, source, createdAt: createdAt.toISOString() };
}
