import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename } from 'node:path';
import { Command } from 'commander';
import { createAdmission, type Refusal, type Submitter, type Verdict } from '../../admission/index.js';
import type { Config } from '../../config/index.js';
import type { MessageInput, RawMessage, SendResult } from '../../delivery/index.js';
import { Relay365Error } from '../../errors.js';
import type { OutboxStore } from '../../outbox/types.js';
import { cliContext, cliTokenCache, configOption } from '../context.js';

/**
 * Runs a message through the admission pipeline every front door uses (size, NUL and line rules,
 * headers and originators, routing to a mailbox, the suppression list, Message-ID and Date), without
 * an outbox: `relay365 send` then sends the admitted bytes at once.
 */
export async function admitForSend(
  config: Pick<Config, 'limits' | 'mailboxes'>,
  input: MessageInput,
  options: {
    mailbox?: string | undefined;
    suppressions?: Pick<OutboxStore, 'suppressed'> | undefined;
    /** Who sends; default the operator, whom no `allowedSenders` limit (the Router still decides). */
    submitter?: Submitter;
  } = {},
): Promise<Verdict> {
  const [{ composeMessage }, { Router }] = await Promise.all([import('../../delivery/compose.js'), import('../../outbox/routing.js')]);
  // Raw MIME is checked as given (a bare LF in its headers is refused, as at the other doors); the pipeline makes it CRLF.
  const raw = (input as Partial<RawMessage>).raw;
  const envelope = (input as Partial<RawMessage>).envelope;
  const composed =
    raw !== undefined && envelope !== undefined
      ? { raw: Buffer.isBuffer(raw) ? raw : Buffer.from(raw, 'utf8'), envelope: { from: envelope.from, to: [...envelope.to] } }
      : await composeMessage(input);
  const admission = createAdmission({
    limits: () => config.limits,
    router: new Router(config.mailboxes),
    mailboxes: () => config.mailboxes.map((m) => m.address.toLowerCase()),
    suppressions: options.suppressions,
    hostname: hostname(),
  });
  return admission.admit(
    { raw: composed.raw, envelope: composed.envelope, mailbox: options.mailbox },
    options.submitter ?? { source: { kind: 'cli' }, display: 'relay365 send' },
  );
}

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
    if (result.reply) console.log(`  ${result.stage === 'admission' ? 'relay365' : 'Exchange'} said: ${result.reply}`);
    if (result.explanation) {
      console.log(`  cause: ${result.explanation.cause}`);
      if (result.explanation.fix) console.log(`  fix:   ${result.explanation.fix}`);
      if (result.explanation.doc) console.log(`  docs:  ${result.explanation.doc}`);
    }
  }
  return result.ok ? 0 : result.class === 'transient' || result.class === 'throttled' ? 75 : 1;
}

/** A refusal of the admission checks as a send outcome: nothing reached Microsoft 365. */
function refusedResult(refusal: Refusal, mailbox: string | undefined): SendResult {
  const transient = refusal.smtp.startsWith('4');
  const kind = transient ? 'transient' : 'permanent';
  return {
    ok: false,
    class: kind,
    mailbox: mailbox ?? '(none: refused before sending)',
    messageId: undefined,
    reply: refusal.smtp,
    explanation: {
      id: `relay365-${refusal.reason}`,
      class: kind,
      cause: `relay365 refused the message before sending it (${refusal.reason}, ${refusal.code}).`,
      fix: refusal.message,
    },
    stage: 'admission',
    errorCode: refusal.code,
  };
}

export function sendCommand(): Command {
  return new Command('send')
    .description(
      'Send one message now through Microsoft 365 and print the outcome, explained. It passes the checks every front door runs ' +
        '(size, NUL bytes and 1000-octet lines, headers, routing, the suppression list), then sends at once: not through the queue, so no retries.',
    )
    .addOption(configOption())
    .requiredOption('--from <address>', 'From address (the mailbox, or an address it may send as)')
    .requiredOption('--to <address>', 'recipient (repeatable)', collect)
    .option('--cc <address>', 'Cc recipient (repeatable)', collect)
    .option('--bcc <address>', 'Bcc recipient (repeatable)', collect)
    .option('--subject <text>', 'subject', '')
    .option('--text <text>', 'plain text body')
    .option('--html <html>', 'HTML body')
    .option(
      '--eml <file>',
      'send this MIME file (checked as every door checks it; a missing Message-ID, Date or From is added; --subject/--text/--html ignored)',
    )
    .option('--attach <file>', 'attach a file (repeatable)', collect)
    .option('-m, --mailbox <address>', 'sending mailbox (default: the one whose address is --from, or the only one)')
    .option('--json', 'print the outcome as JSON')
    .addHelpText(
      'after',
      "\nExit status: 0 sent, 1 refused (by relay365's checks or by Exchange) or misconfigured, 75 temporary failure (try again later)." +
        '\nTo queue instead (limits, retries, status), send through the relay: SMTP or POST /v1/messages.',
    )
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
        if (config.mailboxes.length === 0)
          throw new Relay365Error('R365_NO_MAILBOX_CONFIGURED', 'No mailbox is configured: add one under mailboxes: in the config.');
        // The suppression list lives in the outbox: read it as the relay's doors do.
        const { openOutboxStore } = await import('../../runtime/stores.js');
        const store = await openOutboxStore(config);
        let verdict: Verdict;
        try {
          verdict = await admitForSend(config, message, { mailbox: flags.mailbox, suppressions: store });
        } finally {
          await store.close();
        }
        if (!verdict.ok) {
          // A config problem is an error like any other command's; a refused message is an outcome, printed as one.
          if (verdict.reason === 'unknown-mailbox') throw new Relay365Error('R365_UNKNOWN_MAILBOX', verdict.message);
          process.exitCode = printResult(refusedResult(verdict, flags.mailbox), flags.json === true);
          return;
        }
        const cache = await cliTokenCache(config);
        const mailer = await createMailer(config, { logger, pool: false, ...(cache.cacheStore ? { cacheStore: cache.cacheStore } : {}) });
        try {
          const mailbox = verdict.route.mailbox ?? flags.mailbox;
          const admitted = { raw: verdict.message.raw, envelope: verdict.message.envelope };
          const result = await mailer.send(admitted, mailbox !== undefined ? { mailbox } : {});
          process.exitCode = printResult(result, flags.json === true);
        } finally {
          await mailer.close();
          await cache.close();
        }
      },
    );
}
