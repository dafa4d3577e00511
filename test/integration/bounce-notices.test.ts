/**
 * `queue.bounces` for a recipient bounced by a non-delivery report read back after Exchange's 250:
 * the envelope sender gets a delivery status notification (RFC 3464) from the mailbox, naming that
 * recipient with the NDR's status and diagnostic, once per NDR entry, also when the entry is raised
 * again after a stop. Against the sandbox's Exchange (SMTP) and Graph (HTTPS), end to end.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createRelay, type QueuedRelay } from '../../src/index.js';
import type { RelayEvent } from '../../src/observe/index.js';
import { noticeTag } from '../../src/runtime/bounce-notices.js';
import { DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';
import { sandboxConfig } from '../helpers/config.js';
import { scenario, startTestSandbox, tempDir } from '../helpers/sandbox.js';
import { until } from '../helpers/wait.js';

const MAILBOX = DEFAULT_IDS.mailbox;
/** The device's sender: an alias of the mailbox, which the sandbox's Exchange lets it send as. */
const DEVICE = `noreply@${DEFAULT_IDS.tenantDomain}`;
const GOOD = 'good@fabrikam.example';
const UNKNOWN = 'nobody@fabrikam.example';
/** Another: the first is suppressed once it bounced. */
const UNKNOWN2 = 'nobody2@fabrikam.example';

type Bounced = Extract<RelayEvent, { type: 'message.bounced' }>;

describe('queue.bounces: a notice to the sender for a recipient an NDR bounced', () => {
  let sandbox: Sandbox & { dir: string };
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let relay: QueuedRelay;
  const bounced: Bounced[] = [];

  before(async () => {
    sandbox = await startTestSandbox({
      scenario: scenario((s) => {
        const app = s.tenants[0]!.apps[0]!;
        app.roles.graph = ['Mail.Send', 'Mail.ReadWrite'];
        app.mailboxScope = [MAILBOX];
        s.mailFlow.unknownRecipients = [UNKNOWN, UNKNOWN2];
        s.mailFlow.ndrDelayMs = 100;
      }),
    });
    dir = await tempDir();
    relay = await createRelay(
      sandboxConfig(sandbox, dir.path, {
        mailboxes: [{ address: MAILBOX, aliases: [DEVICE], bounces: { read: true, everySeconds: 0.3 } }],
        queue: { bounces: true, retryBaseSeconds: 0.1, retryMaxSeconds: 0.5 },
      }),
    );
    relay.relay.events.subscribe((e) => void (e.type === 'message.bounced' && bounced.push(e)));
  });
  after(async () => {
    await relay?.close();
    await sandbox?.close();
    await dir?.cleanup();
  });

  /** The notices Exchange received for the device, newest last. */
  const notices = () => sandbox.state.messages.filter((m) => m.envelope.rcptTo.includes(DEVICE));

  it('tells the sender which recipient bounced, with the status and the remote reply, once', async () => {
    const queued = await relay.send({ from: DEVICE, to: [GOOD, UNKNOWN], subject: 'Scan 42', text: 'attached' });
    assert.ok(queued.ok, JSON.stringify(queued));
    const event = await until(() => bounced.find((e) => e.id === queued.id), 15_000, 'the NDR to be read');
    const notice = await until(() => notices()[0], 15_000, 'the notice to reach Exchange');
    const text = notice.raw.toString('utf8');
    assert.equal(notice.envelope.mailFrom, MAILBOX, 'sent as the mailbox');
    assert.match(text, /^Content-Type: multipart\/report; report-type=delivery-status/im);
    assert.match(text, /^Auto-Submitted: auto-replied/im, 'marked automatic, so it is never answered in turn');
    assert.match(text, new RegExp(`^Final-Recipient: rfc822;${UNKNOWN}\\r?$`, 'm'));
    assert.doesNotMatch(text, new RegExp(`Final-Recipient: rfc822;${GOOD}`), 'the recipient that was delivered is not named');
    assert.match(text, /^Status: 5\.1\.1\r?$/m);
    assert.match(text, /^Remote-MTA: dns;mx\.fabrikam\.example\r?$/m);
    assert.ok(text.includes(`Diagnostic-Code: smtp;${event.diagnostic!}`), 'the remote server reply from the NDR');
    assert.match(text, /^Subject: Scan 42\r?$/m, "the original's headers are returned");
    assert.match(text, /^In-Reply-To: <.+>\r?$/m);

    // Raised again after a stop (replay): the notice exists, so none is queued twice.
    await relay.relay.events.publishAndWait({ ...event, replay: true, at: new Date() });
    assert.equal((await relay.relay.store.list({ tag: noticeTag(event.eventId) })).items.length, 1);
    // A notice is not itself answered, and the message it reports on is not changed.
    assert.equal(notices().length, 1);
    assert.equal((await relay.status(queued.id))!.state, 'sent');
  });

  it('queues the notice of an entry raised again when the first raising did not get to it', async () => {
    const queued = await relay.send({ from: DEVICE, to: [UNKNOWN2], subject: 'Scan 43', text: 'attached' });
    assert.ok(queued.ok, JSON.stringify(queued));
    const first = await until(() => bounced.find((e) => e.id === queued.id), 15_000, 'the NDR to be read');
    const about = () => notices().filter((m) => m.raw.includes('Subject: Scan 43'));
    await until(() => about().length === 1 || undefined, 15_000, 'the first notice to reach Exchange');
    // What a node that stopped between the ledger and the notice leaves: an entry applied, no notice. Its
    // replay under another (never noticed) entry id stands for it here.
    const replayed: Bounced = { ...first, eventId: `${first.eventId.slice(0, -4)}0000`, replay: true, at: new Date() };
    await relay.relay.events.publishAndWait(replayed);
    assert.equal((await relay.relay.store.list({ tag: noticeTag(replayed.eventId) })).items.length, 1);
    await until(() => about().length === 2 || undefined, 15_000, 'the replayed notice to reach Exchange');
  });
});
