import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import nodemailer from 'nodemailer';
import { DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';
import type { Scenario } from '../../src/sandbox/scenario.js';
import { httpsRequest } from '../helpers/https.js';
import { postForm } from '../helpers/identity-http.js';
import { scenario, startTestSandbox } from '../helpers/sandbox.js';

type TestSandbox = Sandbox & { dir: string };

const MAILBOX: string = DEFAULT_IDS.mailbox;
const TENANT = DEFAULT_IDS.tenantId;
const DOMAIN = DEFAULT_IDS.tenantDomain;
const HVE = `hve@${DOMAIN}`;
const HVE_PASSWORD = 'hve-account-password-1';
const NO_READ_APP = '7a7a7a7a-1111-4222-8333-444455556601';
const NO_CONSENT_APP = '7a7a7a7a-1111-4222-8333-444455556602';
const SCOPED_APP = '7a7a7a7a-1111-4222-8333-444455556603';
const SECRET = 'a-test-secret-for-the-extra-apps';

/** The scenario of these tests: a mailbox with a small MaxSendSize, unknown, full and unreachable recipients, an HVE account. */
function ndrScenario(change?: (s: Scenario) => void): Scenario {
  return scenario((s) => {
    const t = s.tenants[0]!;
    const app = t.apps.find((a) => a.clientId === DEFAULT_IDS.appClientId)!;
    app.roles = { exchange: ['SMTP.SendAsApp', 'Mail.Send'], graph: ['Mail.Send', 'Mail.Read', 'Mail.ReadWrite'] };
    const extra = (clientId: string, name: string, graph: string[], more: Partial<typeof app> = {}) => ({
      ...structuredClone(app),
      clientId,
      name,
      servicePrincipalId: undefined,
      secrets: [{ value: SECRET }],
      roles: { exchange: [], graph },
      ...more,
    });
    t.apps.push(
      extra(NO_READ_APP, 'send only', ['Mail.Send']),
      extra(NO_CONSENT_APP, 'no consent', ['Mail.Read'], { adminConsent: false }),
      extra(SCOPED_APP, 'scoped reader', ['Mail.Read'], { mailboxScope: [`other@${DOMAIN}`] }),
    );
    const relay = t.users.find((u) => u.upn === MAILBOX)!;
    relay.maxSendSizeBytes = 20_000;
    t.users.push({ ...structuredClone(relay), upn: HVE, id: 'e0e0e0e0-1111-4222-8333-444455556609', hve: true, hveApps: [DEFAULT_IDS.appClientId], password: HVE_PASSWORD, maxSendSizeBytes: null });
    s.mailFlow = {
      unknownRecipients: ['nobody@fabrikam.example', `ghost@${DOMAIN}`],
      fullMailboxes: ['full@tailspin.example'],
      unreachableDomains: ['down.example'],
      ndrDelayMs: 50,
      delayNotificationMs: 100,
      expirationMs: 700,
    };
    change?.(s);
  });
}

/** A token from the sandbox's token endpoint (client credentials), as relay365 gets one. */
async function clientToken(sb: Sandbox, scope: string, clientId: string = DEFAULT_IDS.appClientId, secret: string = DEFAULT_IDS.appSecret): Promise<string> {
  const res = await postForm(
    `${sb.authority(TENANT)}/oauth2/v2.0/token`,
    { grant_type: 'client_credentials', client_id: clientId, client_secret: secret, scope },
    { ca: sb.caPem },
  );
  assert.equal(res.status, 200, res.text);
  return res.json<{ access_token: string }>().access_token;
}

const EXCHANGE = 'https://outlook.office365.com/.default';
const GRAPH = 'https://graph.microsoft.com/.default';

async function graph(sb: Sandbox, token: string, path: string, init: { method?: string; body?: unknown; headers?: Record<string, string> } = {}) {
  const url = path.startsWith('https://') ? path : `${sb.baseUrl}/v1.0/users/${encodeURIComponent(MAILBOX)}${path}`;
  return httpsRequest(url, {
    method: init.method ?? 'GET',
    ca: sb.caPem,
    headers: { authorization: `Bearer ${token}`, ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}), ...init.headers },
    ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
  });
}

interface GraphMessage {
  id: string;
  internetMessageId: string;
  subject: string;
  from: { emailAddress: { address: string } };
  parentFolderId: string;
  isRead: boolean;
  categories: string[];
  receivedDateTime: string;
  '@removed'?: { reason: string };
}

/** Sends one message over real SMTP with nodemailer and XOAUTH2, as an SMTP client of Exchange does. */
async function sendMail(sb: TestSandbox, token: string, mail: { to: string[]; subject?: string; text?: string; user?: string; port?: number }) {
  const transport = nodemailer.createTransport({
    host: '127.0.0.1',
    port: mail.port ?? sb.smtpPort,
    secure: false,
    requireTLS: true,
    tls: { ca: sb.caPem, servername: 'localhost' },
    auth: { type: 'OAuth2', user: mail.user ?? MAILBOX, accessToken: token },
  });
  const messageId = `<${randomUUID()}@client.example>`;
  try {
    const info = await transport.sendMail({
      from: mail.user ?? MAILBOX,
      to: mail.to,
      subject: mail.subject ?? 'ndr test',
      text: mail.text ?? 'hello',
      messageId,
    });
    return { info, messageId };
  } finally {
    transport.close();
  }
}

/** Polls the Inbox through Graph until a message answering `messageId` is there (or fails after 5 s). */
async function waitForReport(sb: Sandbox, token: string, messageId: string, count = 1): Promise<Array<{ item: GraphMessage; mime: string }>> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const res = await graph(sb, token, '/mailFolders/inbox/messages?$top=100');
    assert.equal(res.status, 200, res.text);
    const found: Array<{ item: GraphMessage; mime: string }> = [];
    for (const item of res.json<{ value: GraphMessage[] }>().value) {
      const mime = await graph(sb, token, `/messages/${item.id}/$value`);
      assert.equal(mime.status, 200);
      if (mime.text.includes(`In-Reply-To: ${messageId}`)) found.push({ item, mime: mime.text });
    }
    if (found.length >= count) return found;
    if (Date.now() > deadline) assert.fail(`no report for ${messageId} in the Inbox after 5 s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The per-recipient blocks of a report's message/delivery-status part. */
function dsnRecipients(mime: string): Array<Record<string, string>> {
  const part = /Content-Type: message\/delivery-status\r\n\r\n([\s\S]*?)\r\n--/.exec(mime)?.[1] ?? '';
  return part
    .split(/\r\n\r\n/)
    .slice(1)
    .filter((b) => b.trim() !== '')
    .map((b) => Object.fromEntries(b.split('\r\n').map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()])));
}

describe('Exchange accepts with 250, then the NDR arrives in the Inbox (real SMTP, real tokens, Graph)', () => {
  let sb: TestSandbox;
  let smtpToken: string;
  let graphToken: string;
  before(async () => {
    sb = await startTestSandbox({ scenario: ndrScenario() });
    smtpToken = await clientToken(sb, EXCHANGE);
    graphToken = await clientToken(sb, GRAPH);
  });
  after(() => sb.close());

  it("bounces a message over the mailbox's MaxSendSize by a 5.2.3 NDR, readable through list and $value", async () => {
    const { info, messageId } = await sendMail(sb, smtpToken, { to: ['someone@example.net'], subject: 'big one', text: 'x'.repeat(30_000) });
    assert.match(info.response, /^250 2\.0\.0 OK /);
    assert.deepEqual(info.rejected, []);
    const [report] = await waitForReport(sb, graphToken, messageId);
    assert.equal(report!.item.subject, 'Undeliverable: big one');
    assert.equal(report!.item.from.emailAddress.address, `postmaster@${DOMAIN}`);
    assert.equal(report!.item.isRead, false);
    assert.match(report!.mime, /^Content-Type: multipart\/report; report-type=delivery-status;/m);
    const [r] = dsnRecipients(report!.mime);
    assert.equal(r!['Final-Recipient'], 'rfc822;someone@example.net');
    assert.equal(r!.Status, '5.2.3');
    assert.equal(r!['Diagnostic-Code'], 'smtp;550 5.2.3 RESOLVER.RST.SendSizeLimit.Sender; message too large for this sender');
    assert.match(report!.mime, /Your message wasn't delivered to anyone because it's too large\. The limit is 20 KB\. Your message is 3\d KB\./);
  });

  it('bounces an unknown address at another domain with 5.1.1 and the remote reply, and says nothing of the good recipient', async () => {
    const { info, messageId } = await sendMail(sb, smtpToken, { to: ['nobody@fabrikam.example', 'good@example.net'] });
    assert.match(info.response, /^250 /);
    assert.deepEqual(info.accepted, ['nobody@fabrikam.example', 'good@example.net']);
    const [report] = await waitForReport(sb, graphToken, messageId);
    const recipients = dsnRecipients(report!.mime);
    assert.deepEqual(
      recipients.map((r) => r['Final-Recipient']),
      ['rfc822;nobody@fabrikam.example'],
    );
    assert.equal(recipients[0]!.Status, '5.1.1');
    assert.equal(recipients[0]!.Action, 'failed');
    assert.equal(recipients[0]!['Remote-MTA'], 'dns;mx.fabrikam.example');
    assert.match(recipients[0]!['Diagnostic-Code']!, /^smtp;550 5\.1\.1 <nobody@fabrikam\.example>: Recipient address rejected/);
    assert.equal(report!.item.internetMessageId, /Message-ID:\r\n (<[^>]+>)/.exec(report!.mime)![1]);
  });

  it('refuses an unknown address at the tenant\'s own domain at RCPT with 550 5.1.10 and sends to the others', async () => {
    const { info } = await sendMail(sb, smtpToken, { to: [`ghost@${DOMAIN}`, 'good@example.net'] });
    assert.deepEqual(info.rejected, [`ghost@${DOMAIN}`]);
    assert.deepEqual(info.accepted, ['good@example.net']);
    const err = (info as unknown as { rejectedErrors: Array<{ response: string }> }).rejectedErrors[0]!;
    assert.equal(err.response, `550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient ghost@${DOMAIN} not found by SMTP address lookup`);
  });

  it('bounces a full mailbox with 5.2.2', async () => {
    const { messageId } = await sendMail(sb, smtpToken, { to: ['full@tailspin.example'] });
    const [report] = await waitForReport(sb, graphToken, messageId);
    const [r] = dsnRecipients(report!.mime);
    assert.equal(r!.Status, '5.2.2');
    assert.match(r!['Diagnostic-Code']!, /^smtp;554 5\.2\.2 mailbox full; STOREDRV\.Deliver\.Exception:QuotaExceededException/);
  });

  it('sends a delay notification (Action: delayed, 4.4.7) for an unreachable domain, then the expiry NDR', async () => {
    const { messageId } = await sendMail(sb, smtpToken, { to: ['someone@down.example'], subject: 'to a dead domain' });
    const [delay] = await waitForReport(sb, graphToken, messageId);
    assert.equal(delay!.item.subject, 'Delivery delayed: to a dead domain');
    const [d] = dsnRecipients(delay!.mime);
    assert.equal(d!.Action, 'delayed');
    assert.equal(d!.Status, '4.4.7');
    assert.ok(d!['Will-Retry-Until']);
    const reports = await waitForReport(sb, graphToken, messageId, 2);
    const expired = reports.find((r) => r.item.subject.startsWith('Undeliverable:'))!;
    const [e] = dsnRecipients(expired.mime);
    assert.equal(e!.Action, 'failed');
    assert.equal(e!['Diagnostic-Code'], 'smtp;550 4.4.7 QUEUE.Expired; message expired');
  });

  it('pages a delta round once through each item, then gives only new items and removals from its deltaLink', async () => {
    type Page = { value: GraphMessage[]; '@odata.nextLink'?: string; '@odata.deltaLink'?: string };
    const round = async (first: string): Promise<{ items: GraphMessage[]; deltaLink: string; pages: number }> => {
      const items: GraphMessage[] = [];
      let link: string | undefined = first;
      let pages = 0;
      for (;;) {
        const res = await graph(sb, graphToken, link, { headers: { prefer: 'odata.maxpagesize=2' } });
        assert.equal(res.status, 200, res.text);
        assert.equal(res.headers['preference-applied'], 'odata.maxpagesize=2');
        const page = res.json<Page>();
        assert.ok(page.value.length <= 2);
        pages += 1;
        // The reader moves what it read before asking for the next page: pages must not shift.
        items.push(...page.value);
        if (page['@odata.nextLink']) {
          link = page['@odata.nextLink'];
          assert.match(link, /\$skiptoken=/);
        } else {
          assert.match(page['@odata.deltaLink']!, /\$deltatoken=/);
          return { items, deltaLink: page['@odata.deltaLink']!, pages };
        }
      }
    };
    const inbox = (await graph(sb, graphToken, '/mailFolders/inbox/messages?$top=1000')).json<{ value: GraphMessage[] }>().value;
    assert.ok(inbox.length >= 5, `${inbox.length} reports so far`);
    const first = await round('/mailFolders/inbox/messages/delta?$select=subject,internetMessageId');
    assert.equal(first.items.length, inbox.length);
    assert.equal(new Set(first.items.map((i) => i.id)).size, inbox.length, 'each item once');
    assert.deepEqual(new Set(first.items.map((i) => i.id)), new Set(inbox.map((i) => i.id)));
    assert.ok(first.pages >= 3);
    assert.ok(first.items.every((i) => i.subject !== undefined && i.parentFolderId === undefined), '$select is kept across pages');

    const again = await round(first.deltaLink);
    assert.deepEqual(again.items, [], 'nothing changed');

    const { messageId } = await sendMail(sb, smtpToken, { to: ['nobody@fabrikam.example'], subject: 'one more' });
    const [fresh] = await waitForReport(sb, graphToken, messageId);
    const moved = await graph(sb, graphToken, `/messages/${first.items[0]!.id}/move`, { method: 'POST', body: { destinationId: 'deleteditems' } });
    assert.equal(moved.status, 201, moved.text);
    const next = await round(again.deltaLink);
    const removed = next.items.filter((i) => i['@removed']);
    const added = next.items.filter((i) => !i['@removed']);
    assert.deepEqual(
      added.map((i) => i.id),
      [fresh!.item.id],
    );
    assert.deepEqual(removed, [{ '@odata.type': '#microsoft.graph.message', id: first.items[0]!.id, '@removed': { reason: 'deleted' } }]);
  });

  it('with changeType=created, gives only messages that came in: a categorized one is not given again', async () => {
    type Page = { value: GraphMessage[]; '@odata.nextLink'?: string; '@odata.deltaLink'?: string };
    const drain = async (first: string): Promise<{ items: GraphMessage[]; deltaLink: string }> => {
      const items: GraphMessage[] = [];
      let link = first;
      for (;;) {
        const page = (await graph(sb, graphToken, link)).json<Page>();
        items.push(...page.value);
        if (!page['@odata.nextLink']) return { items, deltaLink: page['@odata.deltaLink']! };
        link = page['@odata.nextLink'];
      }
    };
    const start = await drain('/mailFolders/inbox/messages/delta?changeType=created&$select=subject,categories');
    assert.ok(start.items.length > 0);
    const patched = await graph(sb, graphToken, `/messages/${start.items[0]!.id}`, { method: 'PATCH', body: { categories: ['relay365 report'] } });
    assert.equal(patched.status, 200);
    assert.deepEqual((await drain(start.deltaLink)).items, [], 'an update is not a creation');
    const bad = await graph(sb, graphToken, '/mailFolders/inbox/messages/delta?$deltatoken=not-a-token');
    assert.equal(bad.status, 410, 'an unusable state token: start over');
  });

  it('moves, categorizes and marks read, and finds or creates a folder by display name', async () => {
    const list = (await graph(sb, graphToken, '/mailFolders/inbox/messages')).json<{ value: GraphMessage[] }>().value;
    const target = list[0]!;
    const patched = await graph(sb, graphToken, `/messages/${target.id}`, { method: 'PATCH', body: { isRead: true, categories: ['relay365 report'] } });
    assert.equal(patched.status, 200, patched.text);
    assert.deepEqual(patched.json<GraphMessage>().categories, ['relay365 report']);
    assert.equal(patched.json<GraphMessage>().isRead, true);

    const none = await graph(sb, graphToken, `/mailFolders/inbox/childFolders?$filter=${encodeURIComponent("displayName eq 'relay365 reports'")}`);
    assert.deepEqual(none.json<{ value: unknown[] }>().value, []);
    const created = await graph(sb, graphToken, '/mailFolders/inbox/childFolders', { method: 'POST', body: { displayName: 'relay365 reports' } });
    assert.equal(created.status, 201, created.text);
    const folder = created.json<{ id: string; displayName: string }>();
    const twice = await graph(sb, graphToken, '/mailFolders/inbox/childFolders', { method: 'POST', body: { displayName: 'relay365 reports' } });
    assert.equal(twice.status, 409);
    assert.equal(twice.json<{ error: { code: string } }>().error.code, 'ErrorFolderExists');
    const found = await graph(sb, graphToken, `/mailFolders/inbox/childFolders?$filter=${encodeURIComponent("displayName eq 'relay365 reports'")}`);
    assert.deepEqual(
      found.json<{ value: Array<{ id: string }> }>().value.map((f) => f.id),
      [folder.id],
    );

    const moved = await graph(sb, graphToken, `/messages/${target.id}/move`, { method: 'POST', body: { destinationId: folder.id } });
    assert.equal(moved.status, 201);
    const m = moved.json<GraphMessage>();
    assert.equal(m.parentFolderId, folder.id);
    assert.notEqual(m.id, target.id, 'an item moved to another folder has a new id');
    assert.equal((await graph(sb, graphToken, `/messages/${target.id}`)).status, 404);
    const inFolder = (await graph(sb, graphToken, `/mailFolders/${folder.id}/messages`)).json<{ value: GraphMessage[] }>().value;
    assert.deepEqual(
      inFolder.map((i) => i.id),
      [m.id],
    );
  });

  it('shows what the mailbox holds on /sandbox/mailboxes/UPN, with the size that counts toward its quota', async () => {
    const res = await httpsRequest(`${sb.baseUrl}/sandbox/mailboxes/${encodeURIComponent(MAILBOX)}`, { ca: sb.caPem });
    assert.equal(res.status, 200);
    const body = res.json<{ usedBytes: number; folders: Array<{ wellKnownName: string | null; displayName: string; messages: Array<{ size: number; subject: string }> }> }>();
    const inbox = body.folders.find((f) => f.wellKnownName === 'inbox')!;
    assert.ok(inbox.messages.length > 0);
    assert.ok(inbox.messages.every((m) => /^(Undeliverable|Delivery delayed):/.test(m.subject)));
    assert.equal(body.usedBytes, body.folders.flatMap((f) => f.messages).reduce((sum, m) => sum + m.size, 0));
    assert.equal((await httpsRequest(`${sb.baseUrl}/sandbox/mailboxes/nobody%40nowhere.example`, { ca: sb.caPem })).status, 404);
  });

  it("pages a folder's list with $top and @odata.nextLink", async () => {
    const all = (await graph(sb, graphToken, '/mailFolders/inbox/messages?$top=1000')).json<{ value: GraphMessage[] }>().value;
    const seen: string[] = [];
    let link: string | undefined = '/mailFolders/inbox/messages?$top=2&$select=subject';
    while (link) {
      const page: { value: GraphMessage[]; '@odata.nextLink'?: string } = (await graph(sb, graphToken, link)).json();
      assert.ok(page.value.length <= 2);
      seen.push(...page.value.map((i) => i.id));
      link = page['@odata.nextLink'];
    }
    assert.deepEqual(seen, all.map((i) => i.id));
  });

  it('answers a token without Mail.Read with 403, one without roles with 401, and an app outside its RBAC scope with the RAOP 403', async () => {
    const noRead = await graph(sb, await clientToken(sb, GRAPH, NO_READ_APP, SECRET), '/mailFolders/inbox/messages/delta');
    assert.equal(noRead.status, 403);
    assert.deepEqual(noRead.json<{ error: { code: string; message: string } }>().error.code, 'ErrorAccessDenied');
    const noRoles = await graph(sb, await clientToken(sb, GRAPH, NO_CONSENT_APP, SECRET), '/mailFolders/inbox/messages');
    assert.equal(noRoles.status, 401);
    assert.equal(noRoles.json<{ error: { code: string } }>().error.code, 'NoPermissionsInAccessToken');
    const scoped = await graph(sb, await clientToken(sb, GRAPH, SCOPED_APP, SECRET), '/mailFolders/inbox/messages');
    assert.equal(scoped.status, 403);
    assert.match(scoped.json<{ error: { message: string } }>().error.message, /\[RAOP\]/);
    const exchangeToken = await graph(sb, smtpToken, '/mailFolders/inbox/messages');
    assert.equal(exchangeToken.status, 401, 'an Exchange token is not a Graph token');
    // Reading is not writing: a Mail.Read-only app cannot move.
    const anyId = (await graph(sb, graphToken, '/mailFolders/inbox/messages')).json<{ value: GraphMessage[] }>().value[0]!.id;
    const move = await graph(sb, await clientToken(sb, GRAPH, SCOPED_APP, SECRET), `/messages/${anyId}/move`, { method: 'POST', body: { destinationId: 'deleteditems' } });
    assert.equal(move.status, 403);
  });

  it('counts the NDRs toward the mailbox quota, with the Sent Items copies (554 5.2.2 once they fill it)', async () => {
    const user = () => sb.state.scenario.tenants[0]!.users.find((u) => u.upn === MAILBOX)!;
    const held = sb.state.mail.usedBytes(MAILBOX);
    assert.ok(held > 4096, 'the reports so far take space');
    // Every accepted message's Sent Items copy counts; the next message is about as big as the last small one.
    const sent = sb.state.messages.filter((m) => m.mailbox === MAILBOX).reduce((sum, m) => sum + m.size, 0);
    const next = sb.state.messages.filter((m) => m.mailbox === MAILBOX && m.size < 4096).at(-1)!.size;
    const s = structuredClone(sb.state.scenario);
    // Room for the next message if the Inbox were not counted (half the reports' size to spare), but not with it.
    s.tenants[0]!.users.find((u) => u.upn === MAILBOX)!.mailboxQuotaBytes = user().mailboxUsedBytes + sent + next + Math.floor(held / 2);
    sb.state.setScenario(s);
    try {
      await assert.rejects(sendMail(sb, smtpToken, { to: ['someone@example.net'] }), (err: { response?: string }) => {
        assert.match(err.response ?? '', /^554 5\.2\.2 mailbox full; STOREDRV\.Submission\.Exception:QuotaExceededException/);
        return true;
      });
    } finally {
      const back = structuredClone(sb.state.scenario);
      back.tenants[0]!.users.find((u) => u.upn === MAILBOX)!.mailboxQuotaBytes = null;
      sb.state.setScenario(back);
    }
  });
});

describe('the tenant external recipient rate limit: 250, then an NDR for the recipients over it', () => {
  let sb: TestSandbox;
  before(async () => {
    sb = await startTestSandbox({
      scenario: ndrScenario((s) => {
        s.tenants[0]!.externalRecipientsPerDay = 2;
      }),
    });
  });
  after(() => sb.close());

  it('computes the limit from the licences as Microsoft gives it, 5,000 for a trial tenant', () => {
    const t = structuredClone(sb.state.scenario.tenants[0]!);
    delete t.externalRecipientsPerDay;
    t.licenses = 100;
    assert.equal(sb.state.externalRecipientLimit(t), 22_059, '500 x 100^0.7 + 9,500 (22,059 in Microsoft\'s table)');
    t.licenses = 1;
    assert.equal(sb.state.externalRecipientLimit(t), 10_000);
    t.trial = true;
    assert.equal(sb.state.externalRecipientLimit(t), 5_000);
  });

  it('bounces the external recipients beyond the limit with 5.7.233; internal recipients and HVE mail do not count', async () => {
    const smtpToken = await clientToken(sb, EXCHANGE);
    const graphToken = await clientToken(sb, GRAPH);
    const { info, messageId } = await sendMail(sb, smtpToken, { to: ['a@example.net', `colleague@${DOMAIN}`, 'b@example.net', 'c@example.net'] });
    assert.match(info.response, /^250 /);
    assert.equal(info.accepted.length, 4);
    const [report] = await waitForReport(sb, graphToken, messageId);
    const recipients = dsnRecipients(report!.mime);
    assert.deepEqual(
      recipients.map((r) => [r['Final-Recipient'], r.Status]),
      [['rfc822;c@example.net', '5.7.233']],
    );
    assert.match(recipients[0]!['Diagnostic-Code']!, /tenant external recipient rate limit/);
    // HVE traffic is outside TERRL (Exchange Team blog, 2025-02-24): the limit is used up, yet no NDR.
    const hve = await sendMail(sb, smtpToken, { to: ['d@example.net'], user: HVE, port: sb.hveSmtpPort });
    assert.match(hve.info.response, /^250 /);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(sb.state.counters.reportsDelivered, 1);
  });
});

describe('High Volume Email: its own endpoint, HVE accounts only', () => {
  let sb: TestSandbox;
  let smtpToken: string;
  before(async () => {
    sb = await startTestSandbox({ scenario: ndrScenario() });
    smtpToken = await clientToken(sb, EXCHANGE);
  });
  after(() => sb.close());

  it('takes an HVE account with an app on its Allowed Apps list, or its password, on the HVE endpoint', async () => {
    const { info } = await sendMail(sb, smtpToken, { to: [`colleague@${DOMAIN}`], user: HVE, port: sb.hveSmtpPort });
    assert.match(info.response, /^250 2\.0\.0 OK /);
    assert.equal(sb.state.messages.at(-1)!.mailbox, HVE);
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: sb.hveSmtpPort,
      requireTLS: true,
      tls: { ca: sb.caPem, servername: 'localhost' },
      auth: { user: HVE, pass: HVE_PASSWORD },
    });
    try {
      const sent = await transport.sendMail({ from: HVE, to: `colleague@${DOMAIN}`, subject: 'basic', text: 'x' });
      assert.match(sent.response, /^250 /);
      await assert.rejects(
        nodemailer
          .createTransport({ host: '127.0.0.1', port: sb.hveSmtpPort, requireTLS: true, tls: { ca: sb.caPem, servername: 'localhost' }, auth: { user: HVE, pass: 'wrong' } })
          .sendMail({ from: HVE, to: `colleague@${DOMAIN}`, text: 'x' }),
        (err: { response?: string }) => /^535 5\.7\.3 Authentication unsuccessful/.test(err.response ?? ''),
      );
    } finally {
      transport.close();
    }
  });

  it('refuses a regular mailbox on the HVE endpoint, and an HVE account on the submission endpoint', async () => {
    await assert.rejects(sendMail(sb, smtpToken, { to: ['x@example.net'], port: sb.hveSmtpPort }), (err: { response?: string }) =>
      /^535 5\.7\.3 Authentication unsuccessful/.test(err.response ?? ''),
    );
    await assert.rejects(sendMail(sb, smtpToken, { to: ['x@example.net'], user: HVE }), (err: { response?: string }) =>
      /^535 5\.7\.3 Authentication unsuccessful/.test(err.response ?? ''),
    );
  });

  it('refuses an app that is not on the HVE account\'s Allowed Apps list', async () => {
    const s = structuredClone(sb.state.scenario);
    s.tenants[0]!.users.find((u) => u.upn === HVE)!.hveApps = [];
    sb.state.setScenario(s);
    await assert.rejects(sendMail(sb, smtpToken, { to: [`colleague@${DOMAIN}`], user: HVE, port: sb.hveSmtpPort }), (err: { response?: string }) =>
      /^535 5\.7\.3/.test(err.response ?? ''),
    );
  });
});
