import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { Command } from 'commander';
import type { SendResult } from '../../delivery/index.js';
import { Relay365Error } from '../../errors.js';
import { cliContext, cliTokenCache, configOption } from '../context.js';

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

/** Prints a send outcome for a person; returns the exit code (0 sent, 1 refused, 75 temporary: EX_TEMPFAIL). */
export function printResult(result: SendResult, json: boolean): number {
  if (json) {
    console.log(JSON.stringify(result, null, 2));
  } else if (result.ok) {
    console.log(`sent as ${result.mailbox}: ${result.reply ?? ''}`);
    for (const r of result.rejected ?? []) console.log(`  refused ${r.address}: ${r.reply ?? ''}${r.explanation ? ` (${r.explanation.cause})` : ''}`);
  } else {
    console.log(`NOT sent as ${result.mailbox} (${result.class}${result.stage ? `, at ${result.stage}` : ''})`);
    if (result.reply) console.log(`  Exchange said: ${result.reply}`);
    if (result.explanation) {
      console.log(`  cause: ${result.explanation.cause}`);
      if (result.explanation.fix) console.log(`  fix:   ${result.explanation.fix}`);
      if (result.explanation.doc) console.log(`  docs:  ${result.explanation.doc}`);
    }
  }
  return result.ok ? 0 : result.class === 'transient' || result.class === 'throttled' ? 75 : 1;
}

export function sendCommand(): Command {
  return new Command('send')
    .description('Send one message now through Microsoft 365 (not through the queue) and print the outcome, explained.')
    .addOption(configOption())
    .requiredOption('--from <address>', 'From address (the mailbox, or an address it may send as)')
    .requiredOption('--to <address>', 'recipient (repeatable)', collect)
    .option('--cc <address>', 'Cc recipient (repeatable)', collect)
    .option('--bcc <address>', 'Bcc recipient (repeatable)', collect)
    .option('--subject <text>', 'subject', '')
    .option('--text <text>', 'plain text body')
    .option('--html <html>', 'HTML body')
    .option('--eml <file>', 'send this MIME file as it is (its headers are not changed; --subject/--text/--html ignored)')
    .option('--attach <file>', 'attach a file (repeatable)', collect)
    .option('-m, --mailbox <address>', 'sending mailbox (default: the one whose address is --from, or the only one)')
    .option('--json', 'print the outcome as JSON')
    .addHelpText('after', '\nExit status: 0 sent, 1 refused for good or misconfigured, 75 temporary failure (try again later).')
    .action(
      async (flags: {
        config?: string;
        from: string;
        to: string[];
        cc?: string[];
        bcc?: string[];
        subject: string;
        text?: string;
        html?: string;
        eml?: string;
        attach?: string[];
        mailbox?: string;
        json?: boolean;
      }) => {
        const { config, logger } = await cliContext(flags);
        const { createMailer } = await import('../../delivery/mailer.js');
        const readOrFail = (file: string): Promise<Buffer> =>
          readFile(file).catch((cause: unknown) => {
            throw new Relay365Error('R365_MESSAGE_INVALID', `Cannot read ${file} (${(cause as NodeJS.ErrnoException).code ?? 'error'}).`, { cause });
          });
        const message = flags.eml
          ? { raw: await readOrFail(flags.eml), envelope: { from: flags.from, to: [...flags.to, ...(flags.cc ?? []), ...(flags.bcc ?? [])] } }
          : {
              from: flags.from,
              to: flags.to,
              ...(flags.cc ? { cc: flags.cc } : {}),
              ...(flags.bcc ? { bcc: flags.bcc } : {}),
              subject: flags.subject,
              ...(flags.text !== undefined ? { text: flags.text } : {}),
              ...(flags.html !== undefined ? { html: flags.html } : {}),
              attachments: await Promise.all((flags.attach ?? []).map(async (file) => ({ filename: basename(file), content: await readOrFail(file) }))),
            };
        const cache = await cliTokenCache(config);
        const mailer = await createMailer(config, { logger, pool: false, ...(cache.cacheStore ? { cacheStore: cache.cacheStore } : {}) });
        try {
          const result = await mailer.send(message, flags.mailbox ? { mailbox: flags.mailbox } : {});
          process.exitCode = printResult(result, flags.json === true);
        } finally {
          await mailer.close();
          await cache.close();
        }
      },
    );
}
