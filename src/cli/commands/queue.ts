import { Command, Option } from 'commander';
import { Relay365Error } from '../../errors.js';
import { MESSAGE_STATES, RECIPIENT_STATES, type OutboxStore, type StoredMessage } from '../../outbox/types.js';
import { openOutboxStore } from '../../runtime/stores.js';
import { cliContext, configOption } from '../context.js';
import { wholeNumber } from '../options.js';

async function withStore<T>(flags: { config?: string }, fn: (store: OutboxStore) => Promise<T>): Promise<T> {
  const { config } = await cliContext(flags);
  const store = await openOutboxStore(config);
  try {
    await store.migrate();
    return await fn(store);
  } finally {
    await store.close();
  }
}

/** The error for an id no message has; the ids are UUIDs, so a typo is the usual cause. */
function notFound(id: string): Relay365Error {
  return new Relay365Error(
    'R365_MESSAGE_NOT_FOUND',
    `No message ${id} in the outbox. Copy the id from relay365 queue list (first column), and check that --config names the config the relay runs with.`,
    { details: { id } },
  );
}

function line(m: StoredMessage): string {
  const to = m.envelope.to.length > 2 ? `${m.envelope.to.slice(0, 2).join(',')},+${m.envelope.to.length - 2}` : m.envelope.to.join(',');
  return `${m.id}  ${m.state.padEnd(9)} ${m.createdAt.toISOString()}  ${(m.mailbox ?? m.pool ?? '-').padEnd(28)} ${m.envelope.from} -> ${to}${m.lastReply ? `  [${m.lastReply.slice(0, 60)}]` : ''}`;
}

export function queueCommand(): Command {
  const queue = new Command('queue').description('Look at and act on the outbox: messages waiting, sent, deferred or failed.');
  queue
    .command('list')
    .description('List messages, newest first')
    .addOption(configOption())
    .addOption(new Option('--state <state>', 'only this state').choices([...MESSAGE_STATES]))
    .option('-m, --mailbox <address>', 'only this mailbox')
    .option('--limit <n>', 'how many, 1 to 500 (the outbox pages at most 500)', wholeNumber('--limit', 1, 500), 50)
    .option('--json', 'print JSON')
    .action(async (flags: { config?: string; state?: (typeof MESSAGE_STATES)[number]; mailbox?: string; limit: number; json?: boolean }) => {
      await withStore(flags, async (store) => {
        const page = await store.list({
          ...(flags.state ? { state: flags.state } : {}),
          ...(flags.mailbox ? { mailbox: flags.mailbox } : {}),
          limit: flags.limit,
        });
        if (flags.json) console.log(JSON.stringify(page, null, 2));
        else {
          const counts = await store.counts();
          console.log(MESSAGE_STATES.map((s) => `${s} ${counts[s]}`).join('  '));
          for (const m of page.items) console.log(line(m));
        }
      });
    });
  queue
    .command('show <id>')
    .description('Show one message with every attempt and the explanation of each reply')
    .addOption(configOption())
    .option('--json', 'print JSON')
    .action(async (id: string, flags: { config?: string; json?: boolean }) => {
      await withStore(flags, async (store) => {
        const m = await store.get(id);
        if (!m) throw notFound(id);
        const [attempts, recipients] = await Promise.all([store.attempts(id), store.recipients(id)]);
        const recipientCounts = Object.fromEntries(RECIPIENT_STATES.map((s) => [s, recipients.filter((r) => r.state === s).length]));
        if (flags.json) {
          console.log(JSON.stringify({ message: m, recipientCounts, recipients, attempts }, null, 2));
          return;
        }
        console.log(line(m));
        console.log(
          `  size ${m.size} bytes, ${m.envelope.to.length} recipient(s), from ${m.source.kind}${m.source.client ? ` ${m.source.client}` : ''}${m.source.user ? ` (${m.source.user})` : ''}`,
        );
        // accepted is Exchange's 250, not delivery; bounced and delayed come from NDRs (mailboxes[].bounces.read).
        console.log(`  recipients: ${RECIPIENT_STATES.filter((s) => recipientCounts[s]! > 0).map((s) => `${recipientCounts[s]} ${s}`).join(', ')}`);
        for (const r of recipients) {
          const detail = [r.dsnStatus, r.reply].filter((x) => x !== undefined).join(' ');
          console.log(`    ${r.state.padEnd(8)} ${r.address}${detail ? `  ${detail}` : ''}`);
          if (r.explanation && (r.state === 'refused' || r.state === 'bounced')) console.log(`      cause: ${r.explanation.cause}\n      fix:   ${r.explanation.fix}`);
        }
        if (m.state === 'queued' || m.state === 'deferred') console.log(`  next attempt ${m.nextAttemptAt.toISOString()}`);
        for (const a of attempts) {
          console.log(`  ${a.at.toISOString()}  ${a.mailbox}  ${a.class}  ${a.reply ?? ''} (${a.durationMs} ms)`);
          if (a.explanation && a.class !== 'sent') console.log(`    cause: ${a.explanation.cause}\n    fix:   ${a.explanation.fix}`);
        }
      });
    });
  queue
    .command('retry [id]')
    .description('Send a failed or deferred message again now')
    .addOption(configOption())
    .option('--all-failed', 'retry every failed message')
    .option('--json', 'print JSON')
    .action(async (id: string | undefined, flags: { config?: string; allFailed?: boolean; json?: boolean }) => {
      await withStore(flags, async (store) => {
        if (flags.allFailed) {
          let n = 0;
          let cursor: string | undefined;
          do {
            const page = await store.list({ state: 'failed', limit: 500, ...(cursor ? { cursor } : {}) });
            for (const m of page.items) if (await store.retry(m.id)) n += 1;
            cursor = page.nextCursor;
          } while (cursor);
          console.log(flags.json ? JSON.stringify({ retried: n }) : `${n} failed message(s) queued again.`);
          return;
        }
        if (!id) throw new Relay365Error('R365_CLI_USAGE', 'relay365 queue retry needs a message id (from relay365 queue list), or --all-failed.');
        if (await store.retry(id)) {
          console.log(flags.json ? JSON.stringify({ id, state: 'queued' }) : `${id} queued again.`);
          return;
        }
        const m = await store.get(id);
        if (!m) throw notFound(id);
        throw new Relay365Error(
          'R365_MESSAGE_NOT_RETRYABLE',
          `Message ${id} is ${m.state}, so it cannot be retried: only a failed, deferred or queued message can. ${m.state === 'cancelled' ? 'Send it again as a new message.' : m.state === 'sent' ? 'It was sent: nothing to do.' : 'It is being sent now: look at it again with relay365 queue show.'}`,
          { details: { id, state: m.state } },
        );
      });
    });
  queue
    .command('cancel <id>')
    .description('Cancel a message that has not been sent yet')
    .addOption(configOption())
    .option('--json', 'print JSON')
    .action(async (id: string, flags: { config?: string; json?: boolean }) => {
      await withStore(flags, async (store) => {
        if (!(await store.cancel(id))) {
          const m = await store.get(id);
          if (!m) throw notFound(id);
          throw new Relay365Error(
            'R365_MESSAGE_NOT_CANCELLABLE',
            `Message ${id} is ${m.state}, so it cannot be cancelled: only a queued, deferred or failed message can${m.state === 'sending' ? ', and one being sent cannot be stopped' : ''}.`,
            { details: { id, state: m.state } },
          );
        }
        console.log(flags.json ? JSON.stringify({ id, state: 'cancelled' }) : `${id} cancelled.`);
      });
    });
  return queue;
}
