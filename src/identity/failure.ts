import type { Explanation, ReplyClass } from '../catalogue/index.js';
import { isRelay365Error } from '../errors.js';
import { scrubSecrets } from '../observe/index.js';

/**
 * Why a send failed, for every transport: no token (identity refused or could not ask), no connection
 * to Microsoft, Microsoft's answer refused it, or the message cannot go as it is.
 */
export type FailureKind = 'token' | 'connection' | 'reply' | 'message';

/**
 * Whether trying the same message again later may succeed, by class (see `ReplyClass`). The worker
 * decides the schedule; this is what a caller of the library or the API reads.
 */
export const RETRYABLE: Readonly<Record<ReplyClass, boolean>> = {
  sent: false,
  // Busy, network, a server error: back off and try again.
  transient: true,
  // A Microsoft limit (432 4.3.2, 429, the rolling recipient window): slow down, then try again.
  throttled: true,
  // The token or the tenant's setup is wrong: the transport retries once with a fresh token; then the
  // mailbox pauses until an admin fixes the setup (the message is kept, not retried blindly).
  auth: false,
  // The same message will never go through as it is.
  permanent: false,
  // Exchange blocks the mailbox until an admin acts; its queue is kept.
  blocked: false,
};

/**
 * One failure vocabulary, shared by identity and every transport: what kind of failure, its class,
 * whether retrying may help, and the catalogue's explanation (whose `id` is the catalogue row).
 */
export interface Failure {
  kind: FailureKind;
  class: ReplyClass;
  retryable: boolean;
  explanation: Explanation;
  /** The stable code behind it: `R365_*` for a token failure, nodemailer's code or `HTTP_<status>` otherwise. */
  code?: string;
  /** For a token failure: the AADSTS catalogue row identity matched, when there is one. */
  catalogueId?: string;
}

/** A failure of `kind` explained by a catalogue row: retryable as its class says. */
export function failureOf(kind: FailureKind, explanation: Explanation, code?: string): Failure {
  return { kind, class: explanation.class, retryable: RETRYABLE[explanation.class], explanation, ...(code !== undefined ? { code } : {}) };
}

/**
 * A token that identity would not give, as a send failure: explained by identity's own classification
 * (`toIdentityError` and the AADSTS catalogue), the same words whichever transport asked. A refusal
 * that needs a setup change is `auth`; an identity platform that could not be reached is `transient`.
 */
export function tokenFailure(err: unknown, mailbox: string): Failure {
  if (!isRelay365Error(err)) {
    const explanation: Explanation = { id: 'token-unknown', class: 'transient', cause: scrubSecrets(String(err)), fix: 'See the cause.' };
    return { kind: 'token', class: 'transient', retryable: true, explanation };
  }
  // A protocol library may relabel the error of a token callback (nodemailer's smtp-connection sets
  // `code = 'EAUTH'` and keeps the original as `originalCode`): relay365's own code is the one that counts.
  const original = (err as { originalCode?: unknown }).originalCode;
  const code = typeof original === 'string' && original.startsWith('R365_') ? original : err.code;
  const cls: ReplyClass = err.retryable ? 'transient' : 'auth';
  const explanation: Explanation = {
    id: code.toLowerCase(),
    class: cls,
    cause: err.message,
    fix: code === 'R365_LOGIN_REQUIRED' ? `relay365 login --mailbox ${mailbox}` : 'See the cause.',
  };
  const catalogueId = err.details?.catalogueId;
  return {
    kind: 'token',
    class: cls,
    retryable: err.retryable,
    explanation,
    code,
    ...(typeof catalogueId === 'string' ? { catalogueId } : {}),
  };
}
