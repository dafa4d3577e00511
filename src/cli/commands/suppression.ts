import { Command } from 'commander';
import { Relay365Error } from '../../errors.js';
import { SUPPRESSION_ADDRESS_PATTERN, suppressionJson } from '../../bounces/suppression.js';
import { withOutboxStore as withStore } from '../outbox-store.js';
import { configSubcommand, printList, type ConfigJsonFlags } from '../subcommand.js';

/** An envelope address, as `POST /v1/suppressions` takes it. */
function checkAddress(value: string): string {
  if (!new RegExp(SUPPRESSION_ADDRESS_PATTERN).test(value))
    throw new Relay365Error('R365_CLI_OPTION_INVALID', `${JSON.stringify(value)} is not an email address (name@domain).`);
  return value;
}

/** `relay365 suppression list|add|remove`: the addresses relay365 refuses to send to (docs/bounces.md). */
export function suppressionCommand(): Command {
  const suppression = new Command('suppression').description(
    'The suppression list: addresses that hard-bounced (or that you added), refused at SMTP RCPT TO and by the HTTP API.',
  );
  configSubcommand(suppression, 'list', 'List suppressed addresses, newest first', (c) =>
    c
      .option('--limit <n>', 'at most this many (1 to 500)', '100')
      .option('--cursor <cursor>', 'the next page: the nextCursor of the previous page (GET /v1/suppressions takes the same)'),
  ).action(async (flags: ConfigJsonFlags & { limit: string; cursor?: string }) => {
    const limit = Number(flags.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 500)
      throw new Relay365Error('R365_CLI_OPTION_INVALID', `--limit takes a whole number from 1 to 500; got ${flags.limit}.`);
    await withStore(flags, async (store) => {
      const page = await store.suppressions({ limit, ...(flags.cursor ? { cursor: flags.cursor } : {}) });
      printList(flags.json, page.items, {
        json: () => ({ items: page.items.map(suppressionJson), nextCursor: page.nextCursor ?? null }),
        empty: 'No suppressed address.',
        line: (s) => `${s.address}  since ${s.createdAt.toISOString()}  ${s.source}  ${s.reason}`,
      });
      if (!flags.json && page.nextCursor) console.log(`(more: the same command with --cursor ${page.nextCursor})`);
    });
  });
  configSubcommand(suppression, 'add <address>', 'Suppress an address: messages to it are refused until it is removed', (c) =>
    c.option('--reason <text>', 'why (shown in the refusal)', 'added by an operator (relay365 suppression add)'),
  ).action(async (address: string, flags: ConfigJsonFlags & { reason: string }) => {
    checkAddress(address);
    await withStore(flags, async (store) => {
      await store.suppress({ address, reason: flags.reason.replace(/[\r\n]+/g, ' ').slice(0, 300), source: 'manual' });
      const [entry] = await store.suppressed([address]);
      if (flags.json) console.log(JSON.stringify(entry ? suppressionJson(entry) : { address }));
      else console.log(`${address} suppressed: SMTP answers 550 5.1.1 at RCPT TO, the HTTP API 422 R365_SUPPRESSED.`);
    });
  });
  configSubcommand(suppression, 'remove <address>', 'Remove an address from the suppression list').action(async (address: string, flags: ConfigJsonFlags) => {
    await withStore(flags, async (store) => {
      const removed = await store.unsuppress(address);
      if (!removed) throw new Relay365Error('R365_SUPPRESSION_NOT_FOUND', `${address} is not on the suppression list; relay365 suppression list shows it.`);
      if (flags.json) console.log(JSON.stringify({ address, removed }));
      else console.log(`${address} removed from the suppression list: messages to it are accepted again.`);
    });
  });
  return suppression;
}
