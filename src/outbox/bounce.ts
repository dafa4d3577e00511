import { hostname } from 'node:os';
import MimeNode from 'nodemailer/lib/mime-node';
import type { Explanation } from '../catalogue/index.js';
import { headerBlock, toCrlf, type Envelope } from '../message/index.js';

export interface BounceInput {
  /** The mailbox that tried to send; the notice is sent as it. */
  mailbox: string;
  original: { id: string; envelope: Envelope; headers: string; messageId: string | undefined };
  reply: string | undefined;
  explanation: Explanation | undefined;
  reportingHost?: string;
  /**
   * The recipients that failed, each with its own status, when not all of the envelope's did: a
   * non-delivery report read back after Exchange took the message (src/bounces) names one.
   */
  failed?: Array<{ address: string; status: string; diagnostic?: string | undefined; remoteMta?: string | undefined }>;
}

export { headerBlock };

/** A message that must never be answered with a bounce: a bounce itself, or an auto-reply (RFC 3834). */
export function isAutomatic(headers: string): boolean {
  return /^Auto-Submitted:[ \t]*(?!no\b)/im.test(headers) || /^Content-Type:[ \t]*multipart\/report/im.test(headers);
}

/**
 * A delivery status notification (RFC 3464) for a message that failed: a human-readable part with
 * Exchange's reply and relay365's explanation, the machine-readable `message/delivery-status` part,
 * and the original headers. Sent as the mailbox to the envelope sender.
 */
export async function composeBounce(input: BounceInput): Promise<{ raw: Buffer; envelope: Envelope }> {
  const reporting = input.reportingHost ?? hostname();
  const status = /\b([45]\.\d{1,3}\.\d{1,3})\b/.exec(input.reply ?? '')?.[1] ?? '5.0.0';
  const oneLine = (text: string): string => text.replace(/[\r\n]+/g, ' ');
  const failed = input.failed ?? input.original.envelope.to.map((address) => ({ address, status, diagnostic: input.reply, remoteMta: undefined }));
  const perRecipient = failed
    .map(
      (r) =>
        `Final-Recipient: rfc822;${oneLine(r.address)}\r\nAction: failed\r\nStatus: ${oneLine(r.status)}\r\n` +
        (r.remoteMta ? `Remote-MTA: dns;${oneLine(r.remoteMta)}\r\n` : '') +
        (r.diagnostic ? `Diagnostic-Code: smtp;${oneLine(r.diagnostic)}\r\n` : ''),
    )
    .join('\r\n');
  const deliveryStatus = `Reporting-MTA: dns;${reporting}\r\nX-Relay365-Message-Id: ${input.original.id}\r\nArrival-Date: ${new Date().toUTCString()}\r\n\r\n${perRecipient}`;
  const text =
    (input.failed
      ? `Microsoft 365 took your message from ${input.mailbox}, then reported that it could not be delivered.\n\n` +
        input.failed.map((r) => `Recipient: ${r.address}\nStatus: ${r.status}\n${r.diagnostic ? `Reason: ${r.diagnostic}\n` : ''}`).join('\n')
      : `relay365 could not deliver your message through ${input.mailbox}.\n\n` + `Recipients: ${input.original.envelope.to.join(', ')}\n`) +
    (input.reply ? `Microsoft 365 answered: ${input.reply}\n` : '') +
    (input.explanation ? `\nWhy: ${input.explanation.cause}\nWhat to do: ${input.explanation.fix}\n` : '') +
    `\nrelay365 message id: ${input.original.id}\n`;
  // multipart/report (RFC 6522) built with nodemailer's MIME tree: its composer knows only mixed/alternative/related.
  const root = new MimeNode('multipart/report; report-type=delivery-status');
  root.setHeader({
    From: `Mail Delivery System <${input.mailbox}>`,
    To: input.original.envelope.from,
    Subject: `Undeliverable: message ${input.original.messageId ?? input.original.id}`,
    'Auto-Submitted': 'auto-replied',
    ...(input.original.messageId ? { 'In-Reply-To': input.original.messageId, References: input.original.messageId } : {}),
  });
  root.createChild('text/plain; charset=utf-8').setContent(text);
  root.createChild('message/delivery-status').setContent(deliveryStatus);
  root.createChild('text/rfc822-headers; charset=utf-8').setContent(input.original.headers);
  const raw = toCrlf(await root.build());
  return { raw, envelope: { from: input.mailbox, to: [input.original.envelope.from] } };
}
