import type { Explanation, ReplyClass } from './types.js';

const DOC_OAUTH = 'https://learn.microsoft.com/exchange/client-developers/legacy-protocols/how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth';
const DOC_SMTP_AUTH = 'https://learn.microsoft.com/exchange/clients-and-mobile-in-exchange-online/authenticated-client-smtp-submission';
const DOC_LIMITS = 'https://learn.microsoft.com/office365/servicedescriptions/exchange-online-service-description/exchange-online-limits';
const DOC_NDR = 'https://learn.microsoft.com/exchange/mail-flow-best-practices/non-delivery-reports-in-exchange-online/non-delivery-reports-in-exchange-online';
const M365 = 'shared/M365.md reply catalogue (as reported by admins)';

/** One row: which replies it matches (basic code, enhanced code, text pattern) and what they mean. */
export interface SmtpReplyRow extends Explanation {
  code: number;
  enhanced?: string;
  /** Key words of the text, not the whole sentence (wording varies between Exchange builds). */
  pattern?: RegExp;
}

/**
 * Microsoft's SMTP submission replies (shared/M365.md, "Reply catalogue seed"), most specific first.
 * `{mailbox}` in a fix is filled in with the sending mailbox by {@link explainSmtpReply}.
 */
export const SMTP_REPLY_CATALOGUE: readonly SmtpReplyRow[] = [
  {
    id: 'smtp-535-5.7.139-tenant',
    code: 535,
    enhanced: '5.7.139',
    pattern: /SmtpClientAuthentication is disabled for the Tenant/i,
    class: 'auth',
    cause: 'SMTP AUTH is disabled for the whole tenant.',
    fix: 'In Exchange Online PowerShell: Set-TransportConfig -SmtpClientAuthenticationDisabled $false (or enable it for this mailbox only: Set-CASMailbox -Identity {mailbox} -SmtpClientAuthenticationDisabled $false).',
    doc: DOC_SMTP_AUTH,
  },
  {
    id: 'smtp-535-5.7.139-basic',
    code: 535,
    enhanced: '5.7.139',
    pattern: /basic authentication is disabled/i,
    class: 'auth',
    cause: 'A password (Basic AUTH) was sent; Exchange Online only takes OAuth2 for SMTP AUTH now.',
    fix: 'Use AUTH XOAUTH2 with an access token (relay365 does this for every mailbox in its config).',
    doc: DOC_OAUTH,
  },
  {
    id: 'smtp-535-5.7.139-security-defaults',
    code: 535,
    enhanced: '5.7.139',
    pattern: /security defaults/i,
    class: 'auth',
    cause: "The tenant's Security Defaults block SMTP AUTH for this user.",
    fix: 'Turn off Security Defaults (Entra admin center > Properties > Manage security defaults) in favour of Conditional Access, or send through Graph (transport: graph).',
    doc: DOC_SMTP_AUTH,
  },
  {
    id: 'smtp-535-5.7.139-criteria',
    code: 535,
    enhanced: '5.7.139',
    pattern: /did not meet the criteria/i,
    class: 'auth',
    cause: 'SMTP AUTH is disabled for this mailbox, or Security Defaults or a Conditional Access policy blocks it.',
    fix: 'In Exchange Online PowerShell: Set-CASMailbox -Identity {mailbox} -SmtpClientAuthenticationDisabled $false; then check Security Defaults and Conditional Access sign-in logs.',
    doc: DOC_SMTP_AUTH,
  },
  {
    id: 'smtp-535-5.7.3',
    code: 535,
    enhanced: '5.7.3',
    class: 'auth',
    cause:
      'Exchange refused the token: wrong audience or scope (a Graph token?), expired, the app lacks SMTP.SendAsApp (app-only) or SMTP.Send (delegated), the service principal is not registered in Exchange or has no permission on the mailbox, or the XOAUTH2 user is not the mailbox.',
    fix: 'Run `relay365 doctor --mailbox {mailbox}`. For app-only: New-ServicePrincipal -AppId <appId> -ObjectId <enterprise app object id>; Add-MailboxPermission -Identity {mailbox} -User <service principal id> -AccessRights FullAccess; and grant admin consent for SMTP.SendAsApp.',
    doc: DOC_OAUTH,
  },
  {
    id: 'smtp-530-5.7.57',
    code: 530,
    enhanced: '5.7.57',
    class: 'auth',
    cause: 'The message was submitted without authenticating first.',
    fix: 'Authenticate (AUTH XOAUTH2) before MAIL FROM; relay365 does this itself, so check for a proxy that strips AUTH.',
    doc: DOC_SMTP_AUTH,
  },
  {
    id: 'smtp-554-5.2.0-sendas',
    code: 554,
    enhanced: '5.2.0',
    pattern: /SendAsDenied/i,
    class: 'permanent',
    cause: 'The From address is not the mailbox and the mailbox has no SendAs right on it.',
    fix: "Send from the mailbox's own address, or grant the right: Add-RecipientPermission -Identity <From address> -Trustee {mailbox} -AccessRights SendAs.",
    doc: DOC_NDR,
  },
  {
    id: 'smtp-550-5.7.60',
    code: 550,
    enhanced: '5.7.60',
    class: 'permanent',
    cause: 'The mailbox has no permission to send as this sender.',
    fix: "Add-RecipientPermission -Identity <From address> -Trustee {mailbox} -AccessRights SendAs, or send from the mailbox's own address.",
    doc: M365,
  },
  {
    id: 'smtp-432-4.3.2-threads',
    code: 432,
    enhanced: '4.3.2',
    pattern: /thread limit/i,
    class: 'throttled',
    cause: 'More than 3 simultaneous SMTP connections for this mailbox (Exchange Online limit).',
    fix: "relay365 lowers the mailbox's concurrency and retries; keep delivery.maxConnections at 3 or less, and make sure no other client sends as the same mailbox at the same time.",
    doc: DOC_LIMITS,
  },
  {
    id: 'smtp-554-5.2.0-quota',
    code: 554,
    enhanced: '5.2.0',
    pattern: /SubmissionQuotaExceeded/i,
    class: 'throttled',
    cause: 'The mailbox exceeded its sending rate (30 messages a minute) or its recipients per 24 hours (10,000).',
    fix: 'relay365 waits and retries; spread the load over a pool of mailboxes if this recurs.',
    doc: DOC_LIMITS,
  },
  {
    id: 'smtp-550-5.1.8',
    code: 550,
    enhanced: '5.1.8',
    class: 'permanent',
    cause: 'The mailbox is blocked from sending (restricted for sending spam).',
    fix: 'Unblock it in the Microsoft Defender portal (Email & collaboration > Review > Restricted entities), and find out why it was restricted.',
    doc: DOC_NDR,
  },
  {
    id: 'smtp-421-4.7.66',
    code: 421,
    enhanced: '4.7.66',
    class: 'permanent',
    cause: 'The connection used TLS 1.0 or 1.1; Exchange Online requires TLS 1.2 or newer.',
    fix: 'Use TLS 1.2 or newer (relay365 always does; check for a TLS-intercepting proxy).',
    doc: DOC_SMTP_AUTH,
  },
  {
    id: 'smtp-451-4.7.500',
    code: 451,
    enhanced: '4.7.500',
    class: 'transient',
    cause: 'Exchange Online is busy.',
    fix: 'Nothing to do: relay365 retries with backoff.',
    doc: M365,
  },
  {
    id: 'smtp-421-4.3.2',
    code: 421,
    enhanced: '4.3.2',
    class: 'transient',
    cause: 'The service is not available right now.',
    fix: 'Nothing to do: relay365 retries with backoff.',
    doc: M365,
  },
  {
    id: 'smtp-552-5.3.4',
    code: 552,
    enhanced: '5.3.4',
    class: 'permanent',
    cause: 'The message is larger than the mailbox may send (35 MB by default; base64 attachments grow by a third).',
    fix: 'Send smaller attachments, or raise the limit: Set-Mailbox -Identity {mailbox} -MaxSendSize 150MB.',
    doc: DOC_LIMITS,
  },
  {
    id: 'smtp-452-4.5.3',
    code: 452,
    enhanced: '4.5.3',
    class: 'permanent',
    cause: 'The message has more recipients than Exchange Online allows in one message (500 by default).',
    fix: 'Split the recipients over several messages.',
    doc: DOC_LIMITS,
  },
  {
    id: 'smtp-550-5.5.4',
    code: 550,
    enhanced: '5.5.4',
    pattern: /too many recipients/i,
    class: 'permanent',
    cause: 'The message has more recipients than Exchange Online allows in one message.',
    fix: 'Split the recipients over several messages.',
    doc: DOC_LIMITS,
  },
];

/** RFC 3463 classes for replies the catalogue does not know (section 3.1: 2 success, 4 persistent transient, 5 permanent). */
function fallback(code: number, enhanced: string | undefined): Explanation {
  const cls: ReplyClass = code < 400 ? 'sent' : code === 530 || code === 535 || code === 454 ? 'auth' : code < 500 ? 'transient' : 'permanent';
  return {
    id: `smtp-${code}${enhanced ? `-${enhanced}` : ''}-unknown`,
    class: cls,
    cause:
      cls === 'sent'
        ? 'Accepted.'
        : cls === 'transient'
          ? 'Exchange Online refused the message for now (a temporary failure, RFC 5321 4xx).'
          : cls === 'auth'
            ? 'Exchange Online refused the authentication.'
            : 'Exchange Online refused the message permanently (RFC 5321 5xx).',
    fix:
      cls === 'transient'
        ? 'Nothing to do: relay365 retries with backoff.'
        : cls === 'sent'
          ? ''
          : 'Read the reply text; `relay365 doctor` checks the setup step by step.',
    doc: 'RFC 5321 section 4.2.1; RFC 3463',
  };
}

/** Splits `535 5.7.3 Authentication unsuccessful` into its parts; tolerates a missing enhanced code. */
export function parseReply(reply: string): { code: number; enhanced: string | undefined; text: string } | undefined {
  const m = /^(\d{3})[ -](?:([245]\.\d{1,3}\.\d{1,3}) )?(.*)$/s.exec(reply.trim());
  if (!m) return undefined;
  return { code: Number(m[1]), enhanced: m[2], text: m[3] ?? '' };
}

/** The catalogue row for a reply, or the RFC class when the reply is unknown. `{mailbox}` is filled in. */
export function explainSmtpReply(reply: string, mailbox = '<mailbox>'): Explanation {
  const parsed = parseReply(reply);
  if (!parsed)
    return {
      id: 'smtp-unparsable',
      class: 'transient',
      cause: `Unexpected answer from the server: ${reply.slice(0, 200)}`,
      fix: 'Check that the SMTP host is Exchange Online (smtp.office365.com:587).',
    };
  const row =
    SMTP_REPLY_CATALOGUE.find(
      (r) => r.code === parsed.code && (r.enhanced === undefined || r.enhanced === parsed.enhanced) && (r.pattern === undefined || r.pattern.test(parsed.text)),
    ) ??
    // The enhanced code alone is enough when the basic code differs between builds (e.g. 550 vs 554).
    SMTP_REPLY_CATALOGUE.find((r) => r.enhanced !== undefined && r.enhanced === parsed.enhanced && r.pattern !== undefined && r.pattern.test(parsed.text));
  const found = row ?? fallback(parsed.code, parsed.enhanced);
  return { id: found.id, class: found.class, cause: found.cause, fix: found.fix.replaceAll('{mailbox}', mailbox), ...(found.doc ? { doc: found.doc } : {}) };
}
