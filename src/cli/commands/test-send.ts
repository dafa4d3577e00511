import { hostname } from 'node:os';
import { Command } from 'commander';
import { cliContext, cliTokenCache, configOption, pickMailbox } from '../context.js';
import { printResult } from './send.js';

export function testCommand(): Command {
  return new Command('test')
    .description('Send a test message as a mailbox and print the SMTP conversation (secrets redacted), then the outcome explained.')
    .addOption(configOption())
    .requiredOption('--to <address>', 'where the test message goes')
    .option('-m, --mailbox <address>', 'sending mailbox (default: the only configured one)')
    .option('--json', 'print the outcome and the transcript as JSON')
    .action(async (flags: { config?: string; to: string; mailbox?: string; json?: boolean }) => {
      const { config, logger } = await cliContext(flags);
      const { createMailer, transportDescriptor } = await import('../../delivery/index.js');
      const mailbox = pickMailbox(config, flags.mailbox);
      const transcript: string[] = [];
      const cache = await cliTokenCache(config);
      const mailer = await createMailer(config, {
        logger,
        ...(cache.cacheStore ? { cacheStore: cache.cacheStore } : {}),
        pool: false,
        transcript: (line) => {
          transcript.push(line);
          if (!flags.json) console.log(line);
        },
      });
      try {
        const now = new Date();
        const flow = mailer.identity.auth.get(mailbox.toLowerCase())?.flow ?? '?';
        const configured = config.mailboxes.find((m) => m.address.toLowerCase() === mailbox.toLowerCase());
        // Where this mailbox's transport sends: Exchange's SMTP host (or the HVE endpoint), or Graph.
        const way = transportDescriptor(configured?.transport).endpoint(config, mailer.identity.cloud, mailbox);
        const result = await mailer.send(
          {
            from: mailbox,
            to: flags.to,
            subject: `relay365 test message (${now.toISOString()})`,
            text:
              `This is a test message from relay365.\n\n` +
              `Sent:      ${now.toISOString()}\n` +
              `From host: ${hostname()}\n` +
              `Mailbox:   ${mailbox}\n` +
              `Auth:      OAuth2 (${flow}), ${way.how}\n` +
              `Server:    ${way.where} (${mailer.identity.cloud.name} cloud)\n`,
          },
          { mailbox },
        );
        if (flags.json) console.log(JSON.stringify({ ...result, transcript }, null, 2));
        else {
          console.log('');
          process.exitCode = printResult(result, false);
        }
        if (flags.json) process.exitCode = result.ok ? 0 : 1;
      } finally {
        await mailer.close();
        await cache.close();
      }
    });
}
