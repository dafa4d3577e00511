/**
 * What a report's DSN status means for the recipient, from the status code alone (never from the text):
 * RFC 3463's class digit (2 success, 4 persistent transient, 5 permanent) and its subject (X.1 addressing,
 * X.2 mailbox, X.3 mail system, X.4 network and routing, X.5 protocol, X.6 content, X.7 security/policy).
 */

/** `hard`: the address does not exist (suppressed); `soft`: failed for a reason that may pass; `delayed`: still being tried. */
export type BounceClass = 'hard' | 'soft' | 'delayed';
export const BOUNCE_CLASSES: readonly BounceClass[] = ['hard', 'soft', 'delayed'];

/**
 * Permanent statuses that say the recipient's address is no good, so sending to it again only draws
 * another NDR (and hurts the sender's reputation). Everything else permanent is `soft`: a full mailbox
 * (5.2.2), a message too big (5.3.4), a policy refusal (5.7.x), the sender's own limits (5.1.90) or the
 * sender's address (5.1.0 "Sender denied", 5.1.7, 5.1.8 "bad outbound sender") are not the recipient's fault.
 */
const HARD: ReadonlyArray<{ status: string; why: string }> = [
  // RFC 3463 section 3.2: X.1.1 bad destination mailbox address, X.1.2 bad destination system address,
  // X.1.3 bad destination mailbox address syntax, X.1.4 destination mailbox address ambiguous, X.1.6
  // destination mailbox has moved, no forwarding address.
  { status: '5.1.1', why: 'bad destination mailbox address' },
  { status: '5.1.2', why: 'bad destination system address' },
  { status: '5.1.3', why: 'bad destination mailbox address syntax' },
  { status: '5.1.4', why: 'destination mailbox address ambiguous' },
  { status: '5.1.6', why: 'destination mailbox has moved' },
  // Microsoft Learn, "Email non-delivery reports and SMTP errors in Exchange Online": 5.1.10 "Recipient
  // not found" (RESOLVER.ADR.RecipientNotFound).
  { status: '5.1.10', why: 'recipient not found' },
  // Exchange Online relaying a remote server's unknown-user reply ("550 5.1.351 Remote server returned
  // unknown recipient or mailbox unavailable", test/fixtures/ndr/exchange-online-5.1.351-unknown-user.eml).
  { status: '5.1.351', why: 'remote server returned unknown recipient' },
  // Directory-Based Edge Blocking: "550 5.4.1 Recipient address rejected: Access denied" for an address
  // that does not exist in the tenant (Microsoft Learn, "Use Directory Based Edge Blocking to reject
  // messages sent to invalid recipients"; MicrosoftDocs/OfficeDocs-Exchange#2654).
  { status: '5.4.1', why: 'recipient address rejected' },
];
const HARD_BY_STATUS = new Map(HARD.map((h) => [h.status, h.why]));

/** The class of a report entry: its action and status. */
export function bounceClass(action: 'failed' | 'delayed', status: string): BounceClass {
  if (action === 'delayed' || status.startsWith('4.')) return action === 'delayed' ? 'delayed' : 'soft';
  return HARD_BY_STATUS.has(status) ? 'hard' : 'soft';
}

/** Why a hard status is hard (RFC 3463's or Microsoft's words), for the suppression reason. */
export function hardReason(status: string): string | undefined {
  return HARD_BY_STATUS.get(status);
}
