// An app that sends with nodemailer, switched to relay365 by one line: the createTransport call.
//   RELAY365_CONFIG=relay365.yaml node examples/nodemailer-switch.mjs you@example.net
// Everything else (sendMail, its fields, info.messageId, info.accepted, info.rejected) stays as it was.
import nodemailer from 'nodemailer';
import { relay365Transport } from 'relay365';

// Before: nodemailer.createTransport({ host: 'smtp.office365.com', port: 587, auth: { user: 'relay@contoso.com', pass: process.env.SMTP_PASSWORD } });
// waitForOutcome: this script exits once it has sent, so it waits for Exchange's answer; a server
// that keeps running leaves it out, and sendMail resolves as soon as the message is in the outbox.
const transporter = nodemailer.createTransport(relay365Transport({ config: process.env.RELAY365_CONFIG ?? 'relay365.yaml', waitForOutcome: true }));

const from = process.env.MAIL_FROM ?? 'relay@contoso.com';
try {
  const info = await transporter.sendMail({
    from: `Billing <${from}>`,
    to: process.argv[2] ?? from,
    subject: 'Your invoice',
    text: 'Your invoice is attached.',
    attachments: [{ filename: 'invoice.txt', content: 'Total: 42.00 EUR\n' }],
  });
  console.log(`sent ${info.messageId}: ${info.response}`);
  console.log(`  accepted: ${info.accepted.join(', ') || '-'}`);
  console.log(`  rejected: ${info.rejected.join(', ') || '-'}`);
  for (const err of info.rejectedErrors) console.log(`  ${err.message}`);
} catch (err) {
  // A refusal reads as nodemailer's SMTP errors do: err.code, err.response, err.responseCode.
  console.log(`refused (${err.code}): ${err.message}`);
  process.exitCode = 1;
} finally {
  await transporter.close();
}
