import { randomUUID } from 'node:crypto';
import addressparser from 'nodemailer/lib/addressparser';
import { SANDBOX_HOST } from './exchange-replies.js';

/**
 * Exchange Online's non-delivery reports (NDRs) and delay notifications, as the sandbox places them
 * in the sending mailbox's Inbox after it answered `250` (RFC 3462 `multipart/report`, RFC 3464
 * `message/delivery-status`). Modelled on a report Exchange Online sent and a mailing list archived
 * whole, headers and parts (an NDR from AM7PR02MB5846.eurprd02.prod.outlook.com to
 * nvdimm@lists.linux.dev, 10 Sep 2022, Message-ID
 * `<733ca061-54d7-4139-90ed-f5d565a46ddf@AM7PR02MB5846.eurprd02.prod.outlook.com>`,
 * https://lore.kernel.org/nvdimm/733ca061-54d7-4139-90ed-f5d565a46ddf@AM7PR02MB5846.eurprd02.prod.outlook.com/):
 * - headers `From: <postmaster@<domain>>` (with the display name "Microsoft Outlook" in Exchange
 *   Online's notifications since, e.g. `From: Microsoft Outlook <postmaster@meilai1.adminc.store>` of
 *   23 Apr 2025 archived on the osst-users list at lists.sourceforge.net), `Subject: Undeliverable: <original subject>`,
 *   `Content-Type: multipart/report; report-type=delivery-status`, `X-MS-Exchange-Message-Is-Ndr:`,
 *   `Content-Language: en-US`, `Message-ID: <uuid@<reporting host>>`, `In-Reply-To` and `References`
 *   naming the original's Message-ID, `Auto-Submitted: auto-replied`;
 * - part 1 `multipart/alternative` (text/plain and text/html for people), part 2
 *   `message/delivery-status` with `Reporting-MTA: dns;<host>.prod.outlook.com`,
 *   `Received-From-MTA: dns;<client>`, `Arrival-Date`, then per recipient `Final-Recipient: rfc822;<address>`,
 *   `Action: failed`, `Status: 5.1.10`, `Diagnostic-Code: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; ...`,
 *   `X-Display-Name: <name>` (the field order and the `dns;`/`rfc822;`/`smtp;` spelling without a space
 *   are Exchange's own, copied from that report);
 * - part 3 the original. That report returned the whole message (`message/rfc822`); the sandbox
 *   returns its header block as `text/rfc822-headers` (RFC 3462 section 2 allows either), as Exchange
 *   shows it under "Original message headers", so a report for a 150 MB message stays small.
 * The human-readable text follows the Exchange layout users paste ("Delivery has failed to these
 * recipients or groups:", "Diagnostic information for administrators:", "Generating server:",
 * "Remote Server returned '...'", "Original message headers:": moqui/moqui#225 and
 * ministero-salute/it-fse-support#2056 on GitHub; sisimai's Office365 parser keys on the same lines).
 */

/** RFC 3464 `Action` of one recipient in a report. */
export type NdrAction = 'failed' | 'delayed';

/** Why a recipient is in a report: the sandbox's names for the cases it models. */
export type NdrReason =
  | 'recipientUnknown'
  | 'recipientNotFound'
  | 'recipientMailboxFull'
  | 'messageTooLarge'
  | 'tenantExternalLimit'
  | 'trialTenantExternalLimit'
  | 'domainUnreachableDelayed'
  | 'domainUnreachableExpired';

/** One reason's DSN fields, what the report tells a person, and where each text comes from. */
export interface NdrReasonText {
  action: NdrAction;
  /** RFC 3463 enhanced status code for `Status:`. */
  status: string;
  /**
   * The reply for `Diagnostic-Code: smtp;...`: the remote server's when the reason is the remote
   * server's (`{recipient}` is replaced by the address), else Exchange's own.
   */
  diagnostic: string;
  /** The recipient's domain answered this itself: the report carries `Remote-MTA`. */
  remote: boolean;
  /** The sentence under the recipient in the human-readable part (`{size}`, `{limit}` filled in). */
  summary: string;
  source: string;
}

const LEARN_NDR = 'MS Learn "Email non-delivery reports and SMTP errors in Exchange Online"';

/**
 * Every reason the sandbox reports, with its DSN status, diagnostic and human text, each copied from
 * the source beside it (Microsoft Learn, or a report a user pasted).
 */
export const NDR_REASONS: Record<NdrReason, NdrReasonText> = {
  // An address another domain's server refused after Exchange had accepted the message: Postfix's
  // refusal as users paste it (jeboehm/docker-mailserver#221, mlandauer/cuttlefish#191); Exchange puts
  // the remote reply in Diagnostic-Code and names the server in Remote-MTA (RFC 3464 2.3.5, 2.3.6).
  recipientUnknown: {
    action: 'failed',
    status: '5.1.1',
    diagnostic: '550 5.1.1 <{recipient}>: Recipient address rejected: User unknown in local recipient table',
    remote: true,
    summary: "The email address you entered couldn't be found. Please check the recipient's email address and try to resend the message. If the problem continues, please contact your helpdesk.",
    source: `${LEARN_NDR} (5.1.1 Bad destination mailbox address); summary as in moqui/moqui#225`,
  },
  // An address at a domain hosted in Exchange Online that does not exist (the lore.kernel.org report above).
  recipientNotFound: {
    action: 'failed',
    status: '5.1.10',
    diagnostic: '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient {recipient} not found by SMTP address lookup',
    remote: false,
    summary: "The email address you entered couldn't be found. Please check the recipient's email address and try to resend the message. If the problem continues, please contact your helpdesk.",
    source: `${LEARN_NDR} (5.1.10 Recipient not found); text from the lore.kernel.org NDR cited above`,
  },
  // The recipient's mailbox is full: the remote Exchange's delivery refusal as a user pasted it
  // ("Remote Server returned '554 5.2.2 mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException.
  // MapiExceptionShutoffQuotaExceeded; Failed to process message due to a permanent exception ...'",
  // awslabs/ecs-nginx-reverse-proxy#3), cut before its diagnostic hex dump.
  recipientMailboxFull: {
    action: 'failed',
    status: '5.2.2',
    diagnostic:
      '554 5.2.2 mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException.MapiExceptionShutoffQuotaExceeded; Failed to process message due to a permanent exception with message The process failed to get the correct properties.',
    remote: true,
    summary: "The recipient's mailbox is full and can't accept messages now.",
    source: 'awslabs/ecs-nginx-reverse-proxy#3 (a pasted Exchange Online NDR)',
  },
  // Over the sending mailbox's MaxSendSize: Exchange's categorizer refuses it after the 250. Text of
  // Exchange's MessageTooLargeForSender response (550 5.2.3 RESOLVER.RST.SendSizeLimit.Sender; message
  // too large for this sender) as MS Learn KB 3146087 quotes it, and its user text "Your message
  // wasn't delivered to anyone because it's too large. The limit is 35 MB. Your message is <size>."
  messageTooLarge: {
    action: 'failed',
    status: '5.2.3',
    diagnostic: '550 5.2.3 RESOLVER.RST.SendSizeLimit.Sender; message too large for this sender',
    remote: false,
    summary: "Your message wasn't delivered to anyone because it's too large. The limit is {limit}. Your message is {size}.",
    source: 'MS Learn KB 3146087 "Error code 19738 when you use Outlook for Mac to send a large email message"; KB 960775 for 550 5.2.3',
  },
  // Tenant External Recipient Rate Limit (Exchange Team blog "Introducing Exchange Online Tenant
  // Outbound Email Limits", 2025-02-24): text from the Learn NDR table, and as a user pasted it
  // ("Remote server returned '550 5.7.233 - Your message can't be sent because your tenant has exceeded
  // its daily limit ...'", learn.microsoft.com/en-us/answers/questions/5835651).
  tenantExternalLimit: {
    action: 'failed',
    status: '5.7.233',
    diagnostic:
      "550 5.7.233 Your message can't be sent because your tenant exceeded its daily limit for sending email to external recipients (tenant external recipient rate limit)",
    remote: false,
    summary: "Your message can't be sent because your tenant exceeded its daily limit for sending email to external recipients (tenant external recipient rate limit)",
    source: `${LEARN_NDR} (5.7.233)`,
  },
  trialTenantExternalLimit: {
    action: 'failed',
    status: '5.7.232',
    diagnostic:
      "550 5.7.232 Your message can't be sent because your trial tenant has exceeded its daily limit for sending email to external recipients (tenant external recipient rate limit)",
    remote: false,
    summary:
      "Your message can't be sent because your trial tenant has exceeded its daily limit for sending email to external recipients (tenant external recipient rate limit)",
    source: `${LEARN_NDR} (5.7.232)`,
  },
  // A domain whose servers do not answer: Exchange keeps retrying and sends a delay notification
  // ("Delivery is delayed to these recipients or groups: ... This message hasn't been delivered yet.
  // Delivery will continue to be attempted.", and "400 4.4.7 Message delayed", pasted from Exchange in
  // https://serverfault.com/questions/302791/400-4-4-7-message-delayed); the last error is Learn's
  // 4.4.316 "Connection refused [Message=Socket error code 10061]".
  domainUnreachableDelayed: {
    action: 'delayed',
    status: '4.4.7',
    diagnostic: '400 4.4.7 Message delayed',
    remote: false,
    summary: "This message hasn't been delivered yet. Delivery will continue to be attempted.",
    source: `serverfault.com/questions/302791; ${LEARN_NDR} (4.4.7 Message expired, 4.4.316)`,
  },
  // When the retries run out: MS Learn "Fix email delivery issues for error code 4.4.7 in Exchange
  // Online" gives the NDR's texts, "#550 4.4.7 QUEUE.Expired; message expired ##" and "The server tries
  // to deliver this message but can't. It stops trying. Try sending this message again. If the problem
  // continues, contact your help desk."
  domainUnreachableExpired: {
    action: 'failed',
    status: '4.4.7',
    diagnostic: '550 4.4.7 QUEUE.Expired; message expired',
    remote: false,
    summary: "The server tries to deliver this message but can't. It stops trying. Try sending this message again. If the problem continues, contact your help desk.",
    source: 'MS Learn "Fix email delivery issues for error code 4.4.7 in Exchange Online"',
  },
};

/** One recipient of a report. */
export interface NdrRecipient {
  address: string;
  reason: NdrReason;
  /** `Remote-MTA` for a reason the remote server gave (default `mx.<recipient domain>`). */
  remoteMta?: string;
  /** For a delay: until when Exchange keeps trying (`Will-Retry-Until`). */
  willRetryUntil?: Date;
}

/** What a report is built from. */
export interface NdrInput {
  /** The tenant's domain: the report comes from `postmaster@<domain>`. */
  tenantDomain: string;
  /** The mailbox whose Inbox receives the report (the original's sender). */
  mailbox: string;
  /** The original message as Exchange accepted it (only its header block is used). */
  original: Buffer;
  /** The original's size, for the MaxSendSize text (default `original.length`). */
  originalSize?: number;
  /** The mailbox's MaxSendSize, for the MaxSendSize text. */
  maxSendSizeBytes?: number;
  /** When Exchange accepted the original (`Arrival-Date`). */
  arrivalDate: Date;
  /** The client host that submitted it (`Received-From-MTA`). */
  receivedFromMta?: string;
  recipients: NdrRecipient[];
  /** When the report is made (default now). */
  date?: Date;
  /** The mailbox server that writes the report (default the sandbox's `...prod.outlook.com` name). */
  reportingMta?: string;
}

/** A built report: its MIME and the fields a reader correlates on. */
export interface BuiltNdr {
  raw: Buffer;
  /** The report's own `Message-ID`, with angle brackets. */
  messageId: string;
  /** The original's `Message-ID`, with angle brackets (undefined when it had none). */
  originalMessageId: string | undefined;
  subject: string;
  from: string;
  /** `failed` when any recipient failed, else `delayed`. */
  kind: NdrAction;
}

const CRLF = '\r\n';
const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const pad = (n: number): string => String(n).padStart(2, '0');

/** RFC 5322 date as Exchange writes it: `Sat, 10 Sep 2022 01:05:15 +0000` (day unpadded). */
export function exchangeDate(d: Date): string {
  return (
    `${DAYS[d.getUTCDay()]!}, ${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]!} ${d.getUTCFullYear()} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} +0000`
  );
}

/** The original's header block, as received (folding kept), without the blank line. */
function headerBlockOf(raw: Buffer): string {
  const text = raw.subarray(0, Math.min(raw.length, 256 * 1024)).toString('latin1');
  const end = text.search(/\r?\n\r?\n/);
  const block = end < 0 ? text : text.slice(0, end);
  return block.replace(/\r?\n/g, CRLF);
}

/** An unfolded header value of the original (first occurrence). */
function headerValue(block: string, name: string): string | undefined {
  const unfolded = block.replace(/\r\n[ \t]+/g, ' ');
  const m = new RegExp(`^${name}:[ \\t]*(.*)$`, 'im').exec(unfolded);
  return m?.[1]?.trim();
}

/** Display names the original gave its recipients (To and Cc), by address in lower case. */
function displayNames(block: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const name of ['To', 'Cc']) {
    const v = headerValue(block, name);
    if (!v) continue;
    for (const a of addressparser(v, { flatten: true })) if (a.address && a.name) out.set(a.address.toLowerCase(), a.name);
  }
  return out;
}

/** A size as the NDR's text gives it ("The limit is 35 MB"); below 1 MB in KB, so a small test limit still reads. */
function megabytes(bytes: number): string {
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KB`;
  return `${Math.round((bytes / (1024 * 1024)) * 10) / 10} MB`;
}

function html(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** A header value safe on one line: no CR or LF from the original can start a header of ours. */
function oneLine(value: string): string {
  return value.replace(/[\r\n]+/g, ' ');
}

/**
 * Builds an Exchange Online NDR (or, when every recipient is delayed, a delay notification) for
 * the recipients given, addressed to the sending mailbox.
 *
 * @example
 * const ndr = buildNdr({
 *   tenantDomain: 'contoso.com', mailbox: 'relay@contoso.com', original: raw, arrivalDate: new Date(),
 *   recipients: [{ address: 'nobody@example.net', reason: 'recipientUnknown' }],
 * });
 * // ndr.raw is a multipart/report whose delivery-status part says `Status: 5.1.1`.
 */
export function buildNdr(input: NdrInput): BuiltNdr {
  if (input.recipients.length === 0) throw new Error('an NDR needs at least one recipient');
  const date = input.date ?? new Date();
  const reportingMta = input.reportingMta ?? SANDBOX_HOST;
  const block = headerBlockOf(input.original);
  const rawSubject = headerValue(block, 'Subject') ?? '';
  const originalMessageId = headerValue(block, 'Message-ID')?.match(/<[^<>\s]+>/)?.[0];
  const failed = input.recipients.some((r) => NDR_REASONS[r.reason].action === 'failed');
  const kind: NdrAction = failed ? 'failed' : 'delayed';
  // "Undeliverable: <subject>" (the lore.kernel.org report); "Delivery delayed:<subject>" for a delay
  // notification as Exchange titles it (serverfault.com/questions/302791 shows its body).
  const subject = oneLine(`${failed ? 'Undeliverable:' : 'Delivery delayed:'} ${rawSubject}`.trimEnd());
  const from = `postmaster@${input.tenantDomain}`;
  const messageId = `<${randomUUID()}@${reportingMta}>`;
  const boundary = randomUUID();
  const alt = randomUUID();
  const names = displayNames(block);
  const size = input.originalSize ?? input.original.length;

  const fill = (text: string, address: string): string =>
    text
      .replace('{recipient}', address)
      .replace('{size}', megabytes(size))
      .replace('{limit}', megabytes(input.maxSendSizeBytes ?? size));

  const plain: string[] = [failed ? 'Delivery has failed to these recipients or groups:' : 'Delivery is delayed to these recipients or groups:', ''];
  for (const r of input.recipients) plain.push(r.address, fill(NDR_REASONS[r.reason].summary, r.address), '');
  plain.push('', 'Diagnostic information for administrators:', '', `Generating server: ${reportingMta}`, '');
  for (const r of input.recipients) {
    const reason = NDR_REASONS[r.reason];
    plain.push(r.address, `${reason.remote ? 'Remote Server' : reportingMta} returned '${fill(reason.diagnostic, r.address)}'`, '');
  }
  plain.push('Original message headers:', '', block, '');

  const htmlBody = [
    '<html>',
    '<head><title>DSN</title></head>',
    '<body>',
    `<p><b>${failed ? 'Delivery has failed to these recipients or groups:' : 'Delivery is delayed to these recipients or groups:'}</b></p>`,
    ...input.recipients.map((r) => `<p><a href="mailto:${html(r.address)}">${html(r.address)}</a><br>${html(fill(NDR_REASONS[r.reason].summary, r.address))}</p>`),
    '<p><b>Diagnostic information for administrators:</b></p>',
    `<p>Generating server: ${html(reportingMta)}</p>`,
    ...input.recipients.map((r) => {
      const reason = NDR_REASONS[r.reason];
      return `<p>${html(r.address)}<br>${reason.remote ? 'Remote Server' : html(reportingMta)} returned '${html(fill(reason.diagnostic, r.address))}'</p>`;
    }),
    '<p>Original message headers:</p>',
    `<pre>${html(block)}</pre>`,
    '</body>',
    '</html>',
  ];

  const status: string[] = [`Reporting-MTA: dns;${reportingMta}`];
  if (input.receivedFromMta) status.push(`Received-From-MTA: dns;${input.receivedFromMta}`);
  status.push(`Arrival-Date: ${exchangeDate(input.arrivalDate)}`, '');
  for (const r of input.recipients) {
    const reason = NDR_REASONS[r.reason];
    status.push(`Final-Recipient: rfc822;${r.address}`, `Action: ${reason.action}`, `Status: ${reason.status}`);
    status.push(`Diagnostic-Code: smtp;${fill(reason.diagnostic, r.address)}`);
    if (reason.remote) status.push(`Remote-MTA: dns;${r.remoteMta ?? `mx.${r.address.split('@')[1] ?? 'invalid'}`}`);
    if (reason.action === 'delayed' && r.willRetryUntil) status.push(`Will-Retry-Until: ${exchangeDate(r.willRetryUntil)}`);
    status.push(`X-Display-Name: ${oneLine(names.get(r.address.toLowerCase()) ?? r.address.split('@')[0] ?? r.address)}`, '');
  }

  const head = [
    'MIME-Version: 1.0',
    `From: Microsoft Outlook <${from}>`,
    `To: <${input.mailbox}>`,
    `Date: ${exchangeDate(date)}`,
    `Content-Type: multipart/report; report-type=delivery-status;${CRLF}\tboundary="${boundary}"`,
    'X-MS-Exchange-Message-Is-Ndr:',
    'Content-Language: en-US',
    `Message-ID:${CRLF} ${messageId}`,
    ...(originalMessageId ? [`In-Reply-To: ${originalMessageId}`, `References: ${originalMessageId}`] : []),
    `Subject: ${subject}`,
    'Auto-Submitted: auto-replied',
  ];
  const body = [
    `--${boundary}`,
    `Content-Type: multipart/alternative; differences=Content-Type;${CRLF}\tboundary="${alt}"`,
    '',
    `--${alt}`,
    'Content-Type: text/plain; charset="utf-8"',
    'Content-Transfer-Encoding: 8bit',
    '',
    plain.join(CRLF),
    `--${alt}`,
    'Content-Type: text/html; charset="utf-8"',
    'Content-Transfer-Encoding: 8bit',
    '',
    htmlBody.join(CRLF),
    '',
    `--${alt}--`,
    '',
    `--${boundary}`,
    'Content-Type: message/delivery-status',
    '',
    status.join(CRLF),
    '',
    `--${boundary}`,
    'Content-Type: text/rfc822-headers',
    '',
    block,
    '',
    `--${boundary}--`,
    '',
  ];
  const raw = Buffer.from(`${head.join(CRLF)}${CRLF}${CRLF}${body.join(CRLF)}`, 'latin1');
  return { raw, messageId, originalMessageId, subject, from, kind };
}
