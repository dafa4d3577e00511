import type { Explanation, ReplyClass } from './types.js';
import { SOURCES } from './sources.js';

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
    doc: SOURCES.clientSubmission,
  },
  {
    id: 'smtp-535-5.7.139-basic',
    code: 535,
    enhanced: '5.7.139',
    pattern: /basic authentication is disabled/i,
    class: 'auth',
    cause: 'A password (Basic AUTH) was sent; Exchange Online only takes OAuth2 for SMTP AUTH now.',
    fix: 'Use AUTH XOAUTH2 with an access token (relay365 does this for every mailbox in its config).',
    doc: SOURCES.smtpOAuth,
  },
  {
    id: 'smtp-535-5.7.139-security-defaults',
    code: 535,
    enhanced: '5.7.139',
    pattern: /security defaults/i,
    class: 'auth',
    cause:
      "The tenant's Security Defaults block a password (Basic AUTH) sign-in for this user; relay365 never sends one, so another client is using {mailbox} with a password.",
    fix: 'Use AUTH XOAUTH2 with a token (relay365 does). With OAuth, Security Defaults and Conditional Access act when the token is requested (AADSTS50076, AADSTS53003, AADSTS530035), not here: turning Security Defaults off is not the fix.',
    doc: SOURCES.clientSubmission,
  },
  {
    id: 'smtp-535-5.7.139-criteria',
    code: 535,
    enhanced: '5.7.139',
    pattern: /did not meet the criteria/i,
    class: 'auth',
    cause: 'SMTP AUTH is disabled for this mailbox, or Security Defaults or a Conditional Access policy blocks it.',
    fix: 'In Exchange Online PowerShell: Set-CASMailbox -Identity {mailbox} -SmtpClientAuthenticationDisabled $false; then check Security Defaults and Conditional Access sign-in logs.',
    doc: SOURCES.clientSubmission,
  },
  {
    id: 'smtp-535-5.7.139-credentials',
    code: 535,
    enhanced: '5.7.139',
    pattern: /user credentials were incorrect/i,
    class: 'auth',
    cause: 'Exchange refused the user name and password (Basic AUTH); relay365 itself never sends a password, so another client is using {mailbox} this way.',
    fix: 'Use AUTH XOAUTH2 with an access token (relay365 does this for every mailbox in its config); a password or app password will stop working when Basic AUTH for SMTP is retired.',
    doc: SOURCES.clientSubmission,
  },
  {
    id: 'smtp-504-5.7.4',
    code: 504,
    enhanced: '5.7.4',
    class: 'auth',
    cause: 'Exchange does not offer this authentication mechanism here (AUTH before STARTTLS, or a mechanism other than LOGIN and XOAUTH2).',
    fix: 'Connect with STARTTLS on port 587 before AUTH, and use XOAUTH2 (relay365 does both; check for a proxy that strips STARTTLS).',
    doc: SOURCES.smtpOAuth,
  },
  {
    id: 'smtp-535-5.7.3',
    code: 535,
    enhanced: '5.7.3',
    class: 'auth',
    cause:
      'Exchange refused the token: wrong audience or scope (a Graph token?), expired, the app lacks SMTP.SendAsApp (app-only) or SMTP.Send (delegated), the service principal is not registered in Exchange or has no permission on the mailbox, or the XOAUTH2 user is not the mailbox.',
    fix: 'Run `relay365 doctor --mailbox {mailbox}`. For app-only: New-ServicePrincipal -AppId <appId> -ObjectId <enterprise app object id>; Add-MailboxPermission -Identity {mailbox} -User <service principal id> -AccessRights FullAccess; and grant admin consent for SMTP.SendAsApp.',
    doc: SOURCES.smtpOAuth,
  },
  {
    id: 'smtp-530-5.7.57',
    code: 530,
    enhanced: '5.7.57',
    class: 'auth',
    cause: 'The message was submitted without authenticating first.',
    fix: 'Authenticate (AUTH XOAUTH2) before MAIL FROM; relay365 does this itself, so check for a proxy that strips AUTH.',
    doc: SOURCES.clientSubmission,
  },
  {
    id: 'smtp-554-5.2.252-sendas',
    code: 554,
    enhanced: '5.2.252',
    pattern: /SendAsDenied/i,
    class: 'permanent',
    cause: 'The From address is not the mailbox and the mailbox has no SendAs right on it (Exchange names both: "<mailbox> not allowed to send as <From>").',
    fix: "Send from the mailbox's own address, or grant the right: Add-RecipientPermission -Identity <From address> -Trustee {mailbox} -AccessRights SendAs.",
    doc: SOURCES.ndr,
  },
  {
    id: 'smtp-554-5.2.0-sendas',
    code: 554,
    enhanced: '5.2.0',
    pattern: /SendAsDenied/i,
    class: 'permanent',
    cause: 'The From address is not the mailbox and the mailbox has no SendAs right on it.',
    fix: "Send from the mailbox's own address, or grant the right: Add-RecipientPermission -Identity <From address> -Trustee {mailbox} -AccessRights SendAs.",
    doc: SOURCES.ndr,
  },
  {
    id: 'smtp-550-5.7.60',
    code: 550,
    enhanced: '5.7.60',
    class: 'permanent',
    cause: 'The mailbox has no permission to send as this sender.',
    fix: "Add-RecipientPermission -Identity <From address> -Trustee {mailbox} -AccessRights SendAs, or send from the mailbox's own address.",
    doc: SOURCES.adminReports,
  },
  {
    id: 'smtp-432-4.3.2-concurrent',
    code: 432,
    enhanced: '4.3.2',
    pattern: /Concurrent connections limit exceeded/i,
    class: 'throttled',
    handling: { lowerConcurrency: true },
    cause: 'More than 3 simultaneous SMTP connections for this mailbox (Exchange Online limit since 2021).',
    fix: "relay365 lowers the mailbox's concurrency and retries; keep delivery.maxConnections at 3 or less, and make sure no other client sends as {mailbox} at the same time.",
    doc: SOURCES.smtpSubmission,
  },
  {
    id: 'smtp-432-4.3.2-threads',
    code: 432,
    enhanced: '4.3.2',
    pattern: /sender thread limit/i,
    class: 'throttled',
    handling: { lowerConcurrency: true },
    cause: 'More than 3 simultaneous SMTP connections for this mailbox (the 2018 wording of the limit).',
    fix: "relay365 lowers the mailbox's concurrency and retries; keep delivery.maxConnections at 3 or less, and make sure no other client sends as {mailbox} at the same time.",
    doc: SOURCES.exchangeLimits,
  },
  {
    id: 'smtp-554-5.2.0-quota',
    code: 554,
    enhanced: '5.2.0',
    pattern: /SubmissionQuotaExceeded/i,
    class: 'throttled',
    handling: { holdUntilRecipientWindowFrees: true },
    cause: 'The mailbox has used its 10,000 recipients per rolling 24 hours (going over 30 messages a minute only delays mail; it does not give this reply).',
    fix: 'relay365 holds {mailbox} until its oldest recipients leave the 24-hour window, then carries on; spread the load over a pool of mailboxes if this recurs.',
    doc: SOURCES.smtpSubmission,
  },
  {
    id: 'smtp-554-5.2.2-recipient-full',
    code: 554,
    enhanced: '5.2.2',
    pattern: /STOREDRV\.Deliver/i,
    class: 'permanent',
    cause: "A recipient's mailbox is full, so Exchange could not deliver the message to it (STOREDRV.Deliver: the recipient, not the sending mailbox).",
    fix: 'Nothing to fix in relay365 or {mailbox}: the recipient must free space in their mailbox; send the message again later.',
    doc: SOURCES.ndr,
  },
  {
    id: 'smtp-554-5.2.2-mailbox-full',
    code: 554,
    enhanced: '5.2.2',
    pattern: /QuotaExceeded|mailbox full/i,
    class: 'blocked',
    cause: 'The sending mailbox is full: every message sent by SMTP AUTH is kept in its Sent Items, and a full mailbox cannot send.',
    fix: 'Free space in {mailbox} (a retention policy that deletes Sent Items after some days: New-RetentionPolicyTag "Sent 7d" -Type SentItems -AgeLimitForRetention 7 -RetentionAction DeletePermanently; New-RetentionPolicy "Relay" -RetentionPolicyTagLinks "Sent 7d"; Set-Mailbox {mailbox} -RetentionPolicy "Relay"), or give it a bigger quota; relay365 tries {mailbox} again every queue.authPauseSeconds and resumes it when a message goes through. Its queue is kept.',
    doc: SOURCES.exchangeLimits,
  },
  {
    id: 'smtp-550-5.2.251-throttled',
    code: 550,
    enhanced: '5.2.251',
    pattern: /continuous/i,
    class: 'blocked',
    cause: 'Exchange blocked SMTP AUTH for this mailbox for a while after continuous "mailbox full" errors.',
    fix: 'Free space in {mailbox} (retention policy on Sent Items, or a bigger quota); the block lifts after a while, and relay365 probes and resumes. Its queue is kept.',
    doc: SOURCES.continuousErrorThrottling,
  },
  {
    id: 'smtp-550-5.2.252-throttled',
    code: 550,
    enhanced: '5.2.252',
    pattern: /continuous/i,
    class: 'blocked',
    cause: 'Exchange blocked SMTP AUTH for this mailbox for a while after continuous "send as denied" errors.',
    fix: 'Grant the right (Add-RecipientPermission -Identity <From address> -Trustee {mailbox} -AccessRights SendAs) or fix the From addresses of the devices using {mailbox}; relay365 probes and resumes. Its queue is kept.',
    doc: SOURCES.continuousErrorThrottling,
  },
  {
    id: 'smtp-550-5.2.253-throttled',
    code: 550,
    enhanced: '5.2.253',
    pattern: /continuous/i,
    class: 'blocked',
    cause: 'Exchange blocked SMTP AUTH for this mailbox for a while after continuous "invalid licence" errors.',
    fix: 'Assign {mailbox} a licence with Exchange Online (Microsoft 365 admin center > Users > Licenses and apps); relay365 probes and resumes. Its queue is kept.',
    doc: SOURCES.continuousErrorThrottling,
  },
  {
    id: 'smtp-550-5.2.254-throttled',
    code: 550,
    enhanced: '5.2.254',
    pattern: /continuous/i,
    class: 'blocked',
    cause: 'Exchange blocked SMTP AUTH for this mailbox for a while after continuous "too many recipients" errors.',
    fix: 'Split messages so each has at most 500 recipients (or the tenant maximum); relay365 probes and resumes. Its queue is kept.',
    doc: SOURCES.continuousErrorThrottling,
  },
  {
    id: 'smtp-550-5.2.255-throttled',
    code: 550,
    enhanced: '5.2.255',
    pattern: /continuous/i,
    class: 'blocked',
    cause: 'Exchange blocked SMTP AUTH for this mailbox for a while after continuous "invalid recipients" errors.',
    fix: 'Find the device or application using {mailbox} that sends to addresses that do not exist (`relay365 queue list --state failed`), and fix its recipients; relay365 probes and resumes. Its queue is kept.',
    doc: SOURCES.continuousErrorThrottling,
  },
  {
    id: 'smtp-554-5.2.0-outbound-spam',
    code: 554,
    enhanced: '5.2.0',
    pattern: /OutboundSpam/i,
    class: 'blocked',
    cause: "Exchange Online's outbound spam filter blocked the mailbox from sending (OutboundSpamException): it sent mail that looked like spam, or too much of it.",
    fix: 'Find out why (a stolen password? a device sending a flood?), then release {mailbox} in the Microsoft Defender portal (Email & collaboration > Review > Restricted entities) if it is listed there; relay365 tries {mailbox} again every queue.authPauseSeconds and resumes it when a message goes through. Its queue is kept.',
    doc: SOURCES.restrictedSender,
  },
  {
    id: 'smtp-550-5.7.501',
    code: 550,
    enhanced: '5.7.501',
    class: 'blocked',
    cause: 'The sending account is banned for spam abuse ("Access denied, spam abuse detected"); every message it sends is refused until Microsoft lifts the block.',
    fix: 'Check {mailbox} for compromise (sign-in logs, inbox rules, a changed password), then release it in the Microsoft Defender portal (Email & collaboration > Review > Restricted entities) or ask Microsoft support; relay365 probes {mailbox} every queue.authPauseSeconds and resumes it when a message goes through. Its queue is kept.',
    doc: SOURCES.ndr,
  },
  {
    id: 'smtp-550-5.7.708',
    code: 550,
    enhanced: '5.7.708',
    class: 'blocked',
    cause: "Exchange Online does not accept outbound mail from the tenant's traffic ('traffic not accepted from this IP'): usually a trial tenant, sent from a low-reputation IP pool until licences are bought.",
    fix: 'Buy (or activate) paid Exchange Online licences, or ask Microsoft support for an exception until then; relay365 probes {mailbox} every queue.authPauseSeconds and resumes it when a message goes through. Its queue is kept.',
    doc: SOURCES.ndr7xx,
  },
  {
    id: 'smtp-550-5.1.90-daily-recipients',
    code: 550,
    enhanced: '5.1.90',
    pattern: /daily limit for message recipients/i,
    class: 'throttled',
    handling: { holdUntilRecipientWindowFrees: true },
    cause: "The mailbox has reached its daily recipient limit (10,000 recipients per rolling 24 hours): Exchange's NDR wording of the limit that 554 5.2.0 SubmissionQuotaExceeded gives in the session.",
    fix: 'relay365 holds {mailbox} until its oldest recipients leave the 24-hour window, then carries on; spread the load over a pool of mailboxes if this recurs.',
    doc: SOURCES.exchangeLimits,
  },
  {
    id: 'smtp-550-5.7.520',
    code: 550,
    enhanced: '5.7.520',
    pattern: /external forwarding/i,
    class: 'permanent',
    cause: "The tenant's outbound spam policy does not allow automatic forwarding to external addresses, and the message was being forwarded (a forwarding rule or ForwardingSmtpAddress on a recipient mailbox).",
    fix: 'Allow it for the mailboxes that need it: an outbound spam filter policy with AutoForwardingMode On for them (New-HostedOutboundSpamFilterPolicy -Name "Allow forwarding" -AutoForwardingMode On; New-HostedOutboundSpamFilterRule -Name "Allow forwarding" -HostedOutboundSpamFilterPolicy "Allow forwarding" -From <mailbox>), or remove the forwarding.',
    doc: 'https://learn.microsoft.com/defender-office-365/outbound-spam-policies-external-email-forwarding',
  },
  {
    id: 'smtp-550-5.7.705',
    code: 550,
    enhanced: '5.7.705',
    class: 'blocked',
    cause: "Exchange Online banned the whole tenant from sending ('tenant has exceeded threshold'): most of its recent mail looked suspicious (a compromised account or server, an open relay, or bulk mail).",
    fix: 'Find and stop the source (compromised accounts, connectors that relay for anyone, bulk senders), then contact Microsoft support to lift the ban; relay365 probes {mailbox} every queue.authPauseSeconds and resumes it when a message goes through. Its queue is kept.',
    doc: SOURCES.ndr7xx,
  },
  {
    id: 'smtp-550-5.7.750',
    code: 550,
    enhanced: '5.7.750',
    class: 'blocked',
    cause: 'Exchange Online blocked the tenant from sending from domains it has not registered: a suspicious number of messages came from unprovisioned domains (a From or envelope sender in a domain that is not an accepted domain).',
    fix: 'Add and verify every domain you send from (Microsoft 365 admin center > Settings > Domains), or send only from verified domains (relay365: the mailbox address and its aliases); then contact support if the block stays; relay365 probes {mailbox} and resumes it when a message goes through. Its queue is kept.',
    doc: SOURCES.ndr7xx,
  },
  {
    id: 'smtp-550-5.4.1',
    code: 550,
    enhanced: '5.4.1',
    class: 'permanent',
    cause: "The recipient's organization rejected the address (Directory Based Edge Blocking: no such recipient in its directory), or its mail server does not accept mail for that domain.",
    fix: 'Correct the recipient address; if it is your own domain, check that the recipient exists and the domain is an accepted domain of the right type (Get-AcceptedDomain).',
    doc: SOURCES.ndr,
  },
  {
    id: 'smtp-550-5.1.10',
    code: 550,
    enhanced: '5.1.10',
    class: 'permanent',
    cause: 'A recipient address does not exist (RecipientNotFound: no mailbox or contact has it in the recipient\'s directory).',
    fix: "Correct the recipient address; if it is in your own tenant, check that the mailbox, group or mail contact exists with that address (Get-Recipient -Identity <address>).",
    doc: SOURCES.ndr,
  },
  {
    id: 'smtp-550-5.1.8',
    code: 550,
    enhanced: '5.1.8',
    class: 'blocked',
    cause:
      'The mailbox is blocked from sending: Microsoft restricted it for sending spam ("bad outbound sender"). Every message it sends is refused until an admin releases it.',
    fix: 'Find out why it was restricted (a stolen password?), then release {mailbox} in the Microsoft Defender portal (Email & collaboration > Review > Restricted entities); relay365 tries {mailbox} again every queue.authPauseSeconds and resumes it when a message goes through. Its queue is kept.',
    doc: SOURCES.restrictedSender,
  },
  {
    id: 'smtp-421-4.7.66',
    code: 421,
    enhanced: '4.7.66',
    class: 'permanent',
    cause: 'The connection used TLS 1.0 or 1.1; Exchange Online requires TLS 1.2 or newer.',
    fix: 'Use TLS 1.2 or newer (relay365 always does; check for a TLS-intercepting proxy).',
    doc: SOURCES.clientSubmission,
  },
  {
    id: 'smtp-451-5.7.3-starttls',
    code: 451,
    enhanced: '5.7.3',
    pattern: /STARTTLS is required/i,
    class: 'blocked',
    cause: 'The session reached MAIL FROM without STARTTLS; Exchange Online takes mail on port 587 only after STARTTLS. relay365 always starts TLS, so something between it and Exchange stripped STARTTLS, or the smtp host in the config is not Exchange Online.',
    fix: 'Check the smtp host and port in the config (smtp.office365.com:587) and look for a proxy or firewall that removes STARTTLS from the EHLO answer (`relay365 doctor --mailbox {mailbox}` checks the EHLO answer and STARTTLS); relay365 probes {mailbox} and resumes it when a message goes through. Its queue is kept.',
    doc: SOURCES.clientSubmission,
  },
  {
    id: 'smtp-451-4.7.500',
    code: 451,
    enhanced: '4.7.500',
    class: 'transient',
    cause: 'Exchange Online is busy.',
    fix: 'Nothing to do: relay365 retries with backoff.',
    doc: SOURCES.adminReports,
  },
  {
    id: 'smtp-451-4.7.0-temporary',
    code: 451,
    enhanced: '4.7.0',
    pattern: /Temporary server error/i,
    class: 'transient',
    cause: 'Exchange Online had a temporary server error.',
    fix: 'Nothing to do: relay365 retries with backoff.',
    doc: SOURCES.ndr,
  },
  {
    id: 'smtp-451-4.3.111-temporary',
    code: 451,
    enhanced: '4.3.111',
    class: 'transient',
    cause: 'Exchange Online had a temporary server error.',
    fix: 'Nothing to do: relay365 retries with backoff.',
    doc: SOURCES.ndr,
  },
  {
    id: 'smtp-421-4.3.2',
    code: 421,
    enhanced: '4.3.2',
    class: 'transient',
    cause: 'The service is not available right now.',
    fix: 'Nothing to do: relay365 retries with backoff.',
    doc: SOURCES.adminReports,
  },
  {
    id: 'smtp-552-5.3.4-header',
    code: 552,
    enhanced: '5.3.4',
    pattern: /Header size exceeds/i,
    class: 'permanent',
    cause: 'The message header is larger than Exchange Online accepts (256 KB).',
    fix: 'Send the message with a smaller header (fewer or shorter header fields, e.g. long To/Cc lists or large custom headers).',
    doc: SOURCES.exchangeLimits,
  },
  {
    id: 'smtp-552-5.3.4',
    code: 552,
    enhanced: '5.3.4',
    class: 'permanent',
    cause: 'The message is larger than the mailbox may send (35 MB by default; base64 attachments grow by a third).',
    fix: 'Send smaller attachments, or raise the limit: Set-Mailbox -Identity {mailbox} -MaxSendSize 150MB.',
    doc: SOURCES.exchangeLimits,
  },
  {
    id: 'smtp-452-4.5.3',
    code: 452,
    enhanced: '4.5.3',
    class: 'permanent',
    cause: 'The message has more recipients than Exchange Online allows in one message (500 by default).',
    fix: 'Split the recipients over several messages.',
    doc: SOURCES.exchangeLimits,
  },
  {
    id: 'smtp-550-5.5.4',
    code: 550,
    enhanced: '5.5.4',
    pattern: /too many recipients/i,
    class: 'permanent',
    cause: 'The message has more recipients than Exchange Online allows in one message.',
    fix: 'Split the recipients over several messages.',
    doc: SOURCES.exchangeLimits,
  },
];

/** RFC 3463 classes for replies the catalogue does not know (section 3.1: 2 success, 4 persistent transient, 5 permanent). */
function fallback(code: number, enhanced: string | undefined): Explanation {
  // 454 is temporary by definition (RFC 3207 4: TLS not available for now; RFC 4954 6: temporary
  // authentication failure): retried with backoff, not taken for a wrong setup that pauses the mailbox.
  const cls: ReplyClass = code < 400 ? 'sent' : code === 530 || code === 535 ? 'auth' : code < 500 ? 'transient' : 'permanent';
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

/** True when the explanation is the RFC fallback for a reply the catalogue has no row for. */
export function isUnknownReply(explanation: Pick<Explanation, 'id'>): boolean {
  return explanation.id.endsWith('-unknown');
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
  return {
    id: found.id,
    class: found.class,
    cause: found.cause,
    fix: found.fix.replaceAll('{mailbox}', mailbox),
    ...(found.doc ? { doc: found.doc } : {}),
    ...(found.handling ? { handling: found.handling } : {}),
  };
}
