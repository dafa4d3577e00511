import { Command } from 'commander';
import { Relay365Error } from '../../errors.js';
import { configOption } from '../context.js';
import { withMailboxIdentity } from '../mailbox-identity.js';

const MARK = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL' } as const;

export function permissionsCommand(): Command {
  return new Command('permissions')
    .description('Least-privilege review: what the mailbox token grants compared with what sending needs, and how to narrow it.')
    .addOption(configOption())
    .option('-m, --mailbox <address>', 'mailbox (default: the only configured one)')
    .option('--json', 'print the findings as JSON')
    .addHelpText('after', '\nExit status: 0 when every finding is ok, 1 when any is a warning or a failure.')
    .action(async (flags: { config?: string; mailbox?: string; json?: boolean }) => {
      await withMailboxIdentity(flags, async ({ config, logger, mailbox, identity, cacheStore }) => {
        const token = await identity.provider.getToken(mailbox);
        const { reviewBounceReading, summarizeToken } = await import('../../identity/index.js');
        const { reviewTransportPermissions } = await import('../../delivery/index.js');
        const summary = summarizeToken(token.accessToken);
        if (!summary) {
          throw new Relay365Error(
            'R365_TOKEN_NOT_JWT',
            `The token of ${mailbox} is not a JWT, so its permissions cannot be read (a token-command that prints an opaque token?). Exchange Online accepts only JWTs from the Microsoft identity platform.`,
          );
        }
        const configured = config.mailboxes.find((m) => m.address.toLowerCase() === mailbox.toLowerCase());
        // Against what the mailbox's own transport needs (SMTP.SendAsApp for SMTP, Mail.Send for Graph).
        const findings = reviewTransportPermissions(summary, configured?.transport);
        // bounces.read: the NDR reader's own Graph token, which needs Mail.Read (docs/bounces.md).
        const reading = configured?.bounces?.read === true;
        if (reading) {
          const { bounceIdentity } = await import('../../runtime/bounces.js');
          const graphIdentity = await bounceIdentity(config, { logger, ...(cacheStore ? { cacheStore } : {}) });
          try {
            const graphSummary = summarizeToken((await graphIdentity!.provider.getToken(mailbox)).accessToken);
            if (graphSummary) findings.push(...reviewBounceReading(graphSummary, mailbox).map((f) => ({ ...f, permission: `${f.permission} (NDR reading)` })));
          } finally {
            graphIdentity?.close();
          }
        }
        const worst = findings.some((f) => f.level === 'fail') ? 'fail' : findings.some((f) => f.level === 'warn') ? 'warn' : 'ok';
        if (flags.json) {
          console.log(JSON.stringify({ mailbox, kind: summary.kind, appId: summary.appId, result: worst, findings }, null, 2));
        } else {
          console.log(`${mailbox}: ${summary.kind} token of app ${summary.appId ?? '?'}${summary.appName ? ` (${summary.appName})` : ''}`);
          for (const f of findings) {
            console.log(`  ${MARK[f.level]}  ${f.permission}: ${f.message}`);
            if (f.fix) console.log(`        fix: ${f.fix}`);
          }
          console.log(
            worst === 'ok'
              ? 'Least privilege: nothing broader than sending.'
              : worst === 'warn'
                ? 'The app holds more than sending needs: narrow it as shown.'
                : 'Sending cannot work with this token: see the failures above.',
          );
        }
        if (worst !== 'ok') process.exitCode = 1;
      });
    });
}
