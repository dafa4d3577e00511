import { Command, Option } from 'commander';
import { MESSAGE_STATES, type OutboxStore, type StoredMessage } from '../../outbox/types.js';
import { openOutboxStore } from '../../runtime/stores.js';
import { cliContext, configOption } from '../context.js';

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
    .option('--limit <n>', 'how many', '50')
    .option('--json', 'print JSON')
    .action(async (flags: { config?: string; state?: (typeof MESSAGE_STATES)[number]; mailbox?: string; limit: string; json?: boolean }) => {
      await withStore(flags, async (store) => {
        const page = await store.list({
          ...(flags.state ? { state: flags.state } : {}),
          ...(flags.mailbox ? { mailbox: flags.mailbox } : {}),
          limit: Number(flags.limit),
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
        if (!m) throw new Error(`No message ${id} in the outbox.`);
        const attempts = await store.attempts(id);
        if (flags.json) {
          console.log(JSON.stringify({ message: m, attempts }, null, 2));
          return;
        }
        console.log(line(m));
        console.log(
          `  size ${m.size} bytes, ${m.envelope.to.length} recipient(s), from ${m.source.kind}${m.source.client ? ` ${m.source.client}` : ''}${m.source.user ? ` (${m.source.user})` : ''}`,
        );
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
    .action(async (id: string | undefined, flags: { config?: string; allFailed?: boolean }) => {
      await withStore(flags, async (store) => {
        if (flags.allFailed) {
          let n = 0;
          let cursor: string | undefined;
          do {
            const page = await store.list({ state: 'failed', limit: 500, ...(cursor ? { cursor } : {}) });
            for (const m of page.items) if (await store.retry(m.id)) n += 1;
            cursor = page.nextCursor;
          } while (cursor);
          console.log(`${n} failed message(s) queued again.`);
          return;
        }
        if (!id) throw new Error('Give a message id, or --all-failed.');
        if (!(await store.retry(id))) throw new Error(`Message ${id} cannot be retried (unknown, already sent, being sent, or cancelled).`);
        console.log(`${id} queued again.`);
      });
    });
  queue
    .command('cancel <id>')
    .description('Cancel a message that has not been sent yet')
    .addOption(configOption())
    .action(async (id: string, flags: { config?: string }) => {
      await withStore(flags, async (store) => {
        if (!(await store.cancel(id))) throw new Error(`Message ${id} cannot be cancelled (unknown, sent, being sent, or already cancelled).`);
        console.log(`${id} cancelled.`);
      });
    });
  return queue;
}
