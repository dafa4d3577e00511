// Send one message through Microsoft 365 from a Node app with relay365's library API.
//   RELAY365_CONFIG=relay365.yaml node examples/send-with-library.mjs you@example.net
// The config file is the same one `relay365 serve` reads (see docs/configuration.md).
import { createMailer, loadConfig } from 'relay365';

// loadConfig reads the file as `serve` does: RELAY365_* overrides, paths relative to the file, every problem at once.
const config = await loadConfig({ path: process.env.RELAY365_CONFIG ?? 'relay365.yaml' });
const mailer = await createMailer(config);
try {
  const from = config.mailboxes[0].address;
  const result = await mailer.send({
    from,
    to: process.argv[2] ?? from,
    subject: 'Hello from relay365',
    text: 'Sent through Exchange Online with OAuth2 (XOAUTH2).',
    attachments: [{ filename: 'hello.txt', content: 'attached ✓' }],
  });
  if (result.ok) console.log(`sent: ${result.reply}`);
  else console.log(`not sent (${result.class}): ${result.explanation.cause}\nfix: ${result.explanation.fix}`);
  process.exitCode = result.ok ? 0 : 1;
} finally {
  await mailer.close();
}
