// Queue one message through relay365's outbox from a Node app, and wait for Exchange's answer.
//   RELAY365_CONFIG=relay365.yaml node examples/queue-with-library.mjs you@example.net
// The config file is the same one `relay365 serve` reads (see docs/configuration.md); the outbox is
// its dataDir's SQLite file (or queue.url's PostgreSQL), so a message queued here survives a crash.
import { createRelay } from 'relay365';

const relay = await createRelay(process.env.RELAY365_CONFIG ?? 'relay365.yaml');
try {
  const from = relay.relay.config.mailboxes[0].address;
  const queued = await relay.send({ from, to: process.argv[2] ?? from, subject: 'Queued by relay365', text: 'On disk first, then sent.' });
  if (!queued.ok) {
    console.log(`refused (${queued.code}): ${queued.message}`);
    process.exitCode = 1;
  } else {
    console.log(`queued: ${queued.id}`);
    const done = await relay.outcome(queued.id, { timeoutMs: 60_000 });
    console.log(`${done.state}: ${done.lastReply}`);
    for (const r of done.recipients) console.log(`  ${r.address}: ${r.state}`);
    process.exitCode = done.state === 'sent' ? 0 : 1;
  }
} finally {
  await relay.close();
}
