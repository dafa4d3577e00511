import { Command, Option } from 'commander';
import { Relay365Error } from '../../errors.js';
import { FINISHED_STATES, MESSAGE_STATES, RECIPIENT_STATES, type FinishedState, type ListQuery, type MailboxPause, type StoredMessage } from '../../outbox/types.js';
// By file, not outbox/index: that loads the stores and the worker into every queue command.
import { messageDetailView, messageView, recipientCounts } from '../../outbox/views.js';
import { wholeNumber } from '../options.js';
import { withOutboxStore as withStore } from '../outbox-store.js';
import { configSubcommand, printList, type ConfigJsonFlags } from '../subcommand.js';

/** A paused mailbox as `queue paused` prints it: since when, why, the fix, and how to resume it. */
function pauseLines(p: MailboxPause): string[] {
  const lines = [`${p.mailbox}  paused since ${p.since.toISOString()} (${p.class === 'auth' ? 'authentication failed' : 'blocked by Exchange'})`];
  if (p.reply) lines.push(`  reply: ${p.reply}`);
  if (p.explanation) lines.push(`  cause: ${p.explanation.cause}`, `  fix:   ${p.explanation.fix}`);
  lines.push(`  last seen ${p.updatedAt.toISOString()} by ${p.owner}; relay365 tries it again every queue.authPauseSeconds and resumes it when a send works`);
  lines.push(
    p.resumeRequestedAt
      ? `  resume asked at ${p.resumeRequestedAt.toISOString()}: a running relay365 resumes it within seconds`
      : `  once fixed: relay365 queue resume ${p.mailbox}`,
  );
  return lines;
}

/** A paused mailbox as `--json` prints it. */
function pauseJson(p: MailboxPause) {
  return {
    mailbox: p.mailbox,
    class: p.class,
    reply: p.reply ?? null,
    explanation: p.explanation ?? null,
    since: p.since.toISOString(),
    updatedAt: p.updatedAt.toISOString(),
    owner: p.owner,
    resumeRequestedAt: p.resumeRequestedAt?.toISOString() ?? null,
  };
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

/** The flags of `queue list`, parsed. */
interface ListFlags {
  state?: (typeof MESSAGE_STATES)[number];
  mailbox?: string;
  recipient?: string;
  tag?: string;
  since?: Date;
  until?: Date;
  limit: number;
  cursor?: string;
}

/** The store's query for `queue list`'s flags, as GET /v1/messages builds it from its query string. */
function listQuery(flags: ListFlags): ListQuery {
  if (flags.since && flags.until && flags.since.getTime() >= flags.until.getTime()) {
    throw new Relay365Error(
      'R365_CLI_OPTION_INVALID',
      `--since (${flags.since.toISOString()}) is not before --until (${flags.until.toISOString()}), so no message can match: --since is inclusive, --until exclusive.`,
      { details: { option: '--since', since: flags.since.toISOString(), until: flags.until.toISOString() } },
    );
  }
  return {
    ...(flags.state ? { state: flags.state } : {}),
    // Mailboxes are stored lower-cased, as the API compares them.
    ...(flags.mailbox ? { mailbox: flags.mailbox.toLowerCase() } : {}),
    ...(flags.recipient ? { recipient: flags.recipient } : {}),
    ...(flags.tag ? { tag: flags.tag } : {}),
    ...(flags.since ? { since: flags.since } : {}),
    ...(flags.until ? { until: flags.until } : {}),
    limit: flags.limit,
    ...(flags.cursor ? { cursor: flags.cursor } : {}),
  };
}

/** An ISO 8601 date (midnight UTC) or an RFC 3339 time with its offset: what the API's `since`/`until` take, plus a bare date. */
const ISO_TIME = /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(Z|z|[+-]\d{2}:\d{2}))?$/;

/**
 * A commander `argParser` for `--since`/`--until`. A time without an offset is refused rather than
 * read in this machine's zone, which the relay's may not share; a day that does not exist (02-30)
 * is refused rather than rolled into the next month as `Date` would.
 */
function isoTime(option: string): (value: string) => Date {
  return (value: string): Date => {
    const m = ISO_TIME.exec(value.trim());
    const at = m ? new Date(m[4] === undefined ? `${m[1]}-${m[2]}-${m[3]}T00:00:00Z` : value.trim()) : undefined;
    const [month, day] = [Number(m?.[2]), Number(m?.[3])];
    // Day 0 of the next month is the last day of this one.
    const daysInMonth = m ? new Date(Date.UTC(Number(m[1]), month, 0)).getUTCDate() : 0;
    if (!at || Number.isNaN(at.getTime()) || month < 1 || month > 12 || day < 1 || day > daysInMonth) {
      throw new Relay365Error(
        'R365_CLI_OPTION_INVALID',
        `${option} takes an ISO date (2026-12-01, midnight UTC) or a time with its offset (2026-12-01T08:00:00Z, 2026-12-01T09:00:00+01:00); got "${value}".`,
        { details: { option, value } },
      );
    }
    return at;
  };
}

export function queueCommand(): Command {
  const queue = new Command('queue').description('Look at and act on the outbox: messages waiting, sent, deferred or failed.');
  configSubcommand(queue, 'list', 'List and search messages, newest first; the filters combine, as GET /v1/messages takes them', (c) =>
    c
      .addOption(new Option('--state <state>', 'only this state').choices([...MESSAGE_STATES]))
      .option('-m, --mailbox <address>', 'only this mailbox')
      .option('--recipient <address>', 'only messages to this envelope recipient (any case)')
      .option('--tag <tag>', 'only messages with this tag (exact)')
      .option('--since <time>', 'only messages created at or after this ISO date or time (2026-12-01, 2026-12-01T08:00:00Z)', isoTime('--since'))
      .option('--until <time>', 'only messages created before this ISO date or time', isoTime('--until'))
      .option('--limit <n>', 'how many, 1 to 500 (the outbox pages at most 500)', wholeNumber('--limit', 1, 500), 50)
      .option('--cursor <cursor>', 'the next page: the nextCursor of the previous page, with the same filters'),
  )
    .addHelpText(
      'after',
      `
With --json it prints what GET /v1/messages answers: { "items": [...], "nextCursor": ... }, each item
as the API shows it. A next page is named by nextCursor (null on the last page); pass it to --cursor.`,
    )
    .action(async (flags: ConfigJsonFlags & ListFlags) => {
      const query = listQuery(flags);
      await withStore(flags, async (store) => {
        const page = await store.list(query);
        if (flags.json) {
          const recipients = await Promise.all(page.items.map((m) => store.recipients(m.id)));
          console.log(JSON.stringify({ items: page.items.map((m, i) => messageView(m, recipients[i]!)), nextCursor: page.nextCursor ?? null }, null, 2));
          return;
        }
        const counts = await store.counts();
        console.log(MESSAGE_STATES.map((s) => `${s} ${counts[s]}`).join('  '));
        for (const m of page.items) console.log(line(m));
        if (page.nextCursor) console.log(`(more: the same command with --cursor ${page.nextCursor})`);
      });
    });
  configSubcommand(queue, 'show <id>', 'Show one message with every attempt and the explanation of each reply').action(
    async (id: string, flags: ConfigJsonFlags) => {
      await withStore(flags, async (store) => {
        const m = await store.get(id);
        if (!m) throw notFound(id);
        const [attempts, recipients] = await Promise.all([store.attempts(id), store.recipients(id)]);
        if (flags.json) {
          // What GET /v1/messages/{id} answers, field for field.
          console.log(JSON.stringify(messageDetailView(m, recipients, attempts), null, 2));
          return;
        }
        const counts = recipientCounts(recipients);
        console.log(line(m));
        console.log(
          `  size ${m.size} bytes, ${m.envelope.to.length} recipient(s), from ${m.source.kind}${m.source.client ? ` ${m.source.client}` : ''}${m.source.user ? ` (${m.source.user})` : ''}`,
        );
        // accepted is Exchange's 250, not delivery; bounced and delayed come from NDRs (mailboxes[].bounces.read).
        console.log(
          `  recipients: ${RECIPIENT_STATES.filter((s) => counts[s] > 0)
            .map((s) => `${counts[s]} ${s}`)
            .join(', ')}`,
        );
        for (const r of recipients) {
          const detail = [r.dsnStatus, r.reply].filter((x) => x !== undefined).join(' ');
          console.log(`    ${r.state.padEnd(8)} ${r.address}${detail ? `  ${detail}` : ''}`);
          if (r.explanation && (r.state === 'refused' || r.state === 'bounced'))
            console.log(`      cause: ${r.explanation.cause}\n      fix:   ${r.explanation.fix}`);
        }
        if (m.state === 'queued' || m.state === 'deferred') console.log(`  next attempt ${m.nextAttemptAt.toISOString()}`);
        for (const a of attempts) {
          console.log(`  ${a.at.toISOString()}  ${a.mailbox}  ${a.class}  ${a.reply ?? ''} (${a.durationMs} ms)`);
          if (a.explanation && a.class !== 'sent') console.log(`    cause: ${a.explanation.cause}\n    fix:   ${a.explanation.fix}`);
        }
      });
    },
  );
  configSubcommand(queue, 'retry [id]', 'Send a failed or deferred message again now', (c) => c.option('--all-failed', 'retry every failed message')).action(
    async (id: string | undefined, flags: ConfigJsonFlags & { allFailed?: boolean }) => {
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
    },
  );
  configSubcommand(queue, 'cancel <id>', 'Cancel a message that has not been sent yet').action(async (id: string, flags: ConfigJsonFlags) => {
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
  configSubcommand(queue, 'paused', 'List the paused mailboxes with since when, the cause and the fix').action(async (flags: ConfigJsonFlags) => {
    await withStore(flags, async (store) => {
      const pauses = await store.mailboxPauses();
      printList(flags.json, pauses, { json: () => ({ items: pauses.map(pauseJson) }), empty: 'No mailbox is paused.', line: (p) => pauseLines(p).join('\n') });
    });
  });
  configSubcommand(
    queue,
    'resume [mailbox]',
    'Resume a paused mailbox once its cause is fixed: the running relay (any node) resumes it within seconds and sends its queue',
    (c) => c.option('--all', 'resume every paused mailbox'),
  ).action(async (mailbox: string | undefined, flags: ConfigJsonFlags & { all?: boolean }) => {
    await withStore(flags, async (store, config) => {
      if (!flags.all && !mailbox) throw new Relay365Error('R365_CLI_USAGE', 'relay365 queue resume needs a mailbox (from relay365 queue paused), or --all.');
      const targets = flags.all ? (await store.mailboxPauses()).map((p) => p.mailbox) : [mailbox!.toLowerCase()];
      if (!flags.all && !config.mailboxes.some((m) => m.address.toLowerCase() === targets[0])) {
        const pausedOnes = (await store.mailboxPauses()).map((p) => p.mailbox);
        if (!pausedOnes.includes(targets[0]!)) {
          throw new Relay365Error(
            'R365_UNKNOWN_MAILBOX',
            `${mailbox} is not a configured mailbox${pausedOnes.length > 0 ? `; paused now: ${pausedOnes.join(', ')}` : ''}. Check the address and that --config names the config the relay runs with.`,
            { details: { mailbox } },
          );
        }
      }
      const resumed: MailboxPause[] = [];
      const notPaused: string[] = [];
      for (const t of targets) {
        const asked = await store.requestMailboxResume(t);
        if (asked) resumed.push(asked);
        else notPaused.push(t);
      }
      if (flags.json) {
        console.log(JSON.stringify({ resumeRequested: resumed.map(pauseJson), notPaused }, null, 2));
        return;
      }
      if (flags.all && targets.length === 0) console.log('No mailbox is paused: nothing to resume.');
      for (const p of resumed) {
        console.log(
          `${p.mailbox}: resume asked (paused since ${p.since.toISOString()}${p.explanation ? `: ${p.explanation.cause}` : ''}). ` +
            'A running relay365 resumes it within seconds and sends its queue; if the cause is still there, the next send pauses it again.',
        );
      }
      for (const t of notPaused) console.log(`${t} is not paused: nothing to resume.`);
    });
  });
  configSubcommand(
    queue,
    'purge',
    'Delete finished messages (sent, failed, cancelled), or only their content, from the outbox; shows what it would delete unless --yes',
    (c) =>
      c
        .option('--before <date>', 'only messages finished before this date (2026-01-31, an ISO time) or this long ago (30d, 12h); default: now')
        .option('--state <states>', 'comma-separated: sent, failed, cancelled', 'sent,failed,cancelled')
        .option('--bodies-only', 'delete the content only; keep the message, its attempts and recipients (it can no longer be retried)')
        .option('--yes', 'delete; without it, only count'),
  )
    .addHelpText(
      'after',
      `
queue.retention does this by itself (bodies after 7d, records after 90d by default); purge is for an
operator who must delete sooner, e.g. after a message was sent with data it should not have held.
Messages still queued, deferred or being sent are never touched.`,
    )
    .action(async (flags: ConfigJsonFlags & { before?: string; state: string; bodiesOnly?: boolean; yes?: boolean }) => {
      const before = await purgeBefore(flags.before);
      const states = flags.state
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
      const wrong = states.filter((s) => !(FINISHED_STATES as readonly string[]).includes(s));
      if (wrong.length > 0 || states.length === 0) {
        throw new Relay365Error(
          'R365_CLI_OPTION_INVALID',
          `--state takes ${FINISHED_STATES.join(', ')} (comma-separated); not ${wrong.join(', ') || 'nothing'}. Messages not yet finished are never purged.`,
          {
            details: { option: '--state', value: flags.state },
          },
        );
      }
      await withStore(flags, async (store) => {
        const request = { before, states: states as FinishedState[], bodiesOnly: flags.bodiesOnly === true };
        const what = flags.bodiesOnly ? 'content of' : '';
        if (!flags.yes) {
          const { count } = await store.purge({ ...request, dryRun: true });
          if (flags.json) console.log(JSON.stringify({ dryRun: true, count, before: before.toISOString(), states, bodiesOnly: request.bodiesOnly }));
          else
            console.log(
              `Would delete the ${what ? 'content of ' : ''}${count} ${states.join('/')} message(s) finished before ${before.toISOString()}. Run again with --yes to delete.`,
            );
          return;
        }
        let count = 0;
        for (;;) {
          const batch = await store.purge({ ...request, limit: 500 });
          count += batch.count;
          if (batch.count < 500) break;
        }
        if (flags.json) console.log(JSON.stringify({ dryRun: false, count, before: before.toISOString(), states, bodiesOnly: request.bodiesOnly }));
        else console.log(`Deleted the ${what ? 'content of ' : ''}${count} ${states.join('/')} message(s) finished before ${before.toISOString()}.`);
      });
    });
  return queue;
}

/** `--before`: a date or time, or a duration back from now (`30d`). */
async function purgeBefore(value: string | undefined): Promise<Date> {
  if (value === undefined) return new Date();
  const { parseDuration } = await import('../../config/schema.js');
  const ago = /^\d+(\.\d+)?(s|m|h|d)$/.test(value) ? parseDuration(value) : undefined;
  if (ago !== undefined) return new Date(Date.now() - ago);
  const at = new Date(value);
  if (Number.isNaN(at.getTime()))
    throw new Relay365Error('R365_CLI_OPTION_INVALID', `--before takes a date (2026-01-31), an ISO time or a duration such as 30d; not ${value}.`, {
      details: { option: '--before', value },
    });
  return at;
}
