import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SignJWT, generateKeyPair } from 'jose';
import nodemailer from 'nodemailer';
import { createLogger } from '../../src/observe/index.js';
import { DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';
import type { App, Scenario, Tenant, User } from '../../src/sandbox/scenario.js';
import { scenario, startTestSandbox } from '../helpers/sandbox.js';
import { SmtpWire, xoauth2, type WireReply } from '../helpers/smtp-wire.js';

type TestSandbox = Sandbox & { dir: string };

const HOST = 'SANDBOX01.namprd00.prod.outlook.com';
const FRONTEND = 'SANDBOX01.outlook.office365.com';
const MAILBOX: string = DEFAULT_IDS.mailbox;

/** Microsoft's replies, as the tests expect them byte for byte (shared/M365.md reply catalogue). */
/**
 * A reply without the `[HOST TIMESTAMP ID]` tail Exchange appends to its refusals since 2023
 * (e.g. https://github.com/simonrob/email-oauth2-proxy/issues/193); the tail itself is checked once.
 */
function untail(line: string): string {
  const m = / \[(\S+) (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) ([0-9A-F]{16})\]$/.exec(line);
  return m ? line.slice(0, m.index) : line;
}

const R = {
  authOk: '235 2.7.0 Authentication successful',
  auth535: '535 5.7.3 Authentication unsuccessful',
  basic: '535 5.7.139 Authentication unsuccessful, basic authentication is disabled.',
  mailboxOff: '535 5.7.139 Authentication unsuccessful, the request did not meet the criteria to be authenticated successfully.',
  tenantOff: '535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.',
  securityDefaults: "535 5.7.139 Authentication unsuccessful, user is locked by your organization's security defaults policy.",
  unrecognizedAuth: '504 5.7.4 Unrecognized authentication type',
  notAuthenticated: '530 5.7.57 Client not authenticated to send mail.',
  tooBig: '552 5.3.4 Message size exceeds fixed maximum message size',
  tooManyRcpts: '452 4.5.3 Too many recipients',
  // Since 2021 (https://github.com/sabuhish/fastapi-mail/issues/75).
  threadLimit: `432 4.3.2 Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_sending for more information. [Hostname=${HOST}]`,
  // Today's wording names both addresses (https://github.com/gophish/gophish/issues/2900).
  sendAsDenied:
    '554 5.2.252 SendAsDenied; relay@contoso.example not allowed to send as ceo@contoso.example; STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to process message due to a permanent exception with message [BeginDiagnosticData]Cannot submit message.',
  quota:
    '554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message due to a permanent exception with message Cannot submit message.',
} as const;

const ACCEPTED = new RegExp(`^250 2\\.0\\.0 OK <[^<>\\s]+> \\[Hostname=${HOST.replace(/\./g, '\\.')}\\]$`);

function tenantOf(sb: Sandbox, index = 0): Tenant {
  return sb.state.scenario.tenants[index]!;
}

function appOf(tenant: Tenant, clientId: string = DEFAULT_IDS.appClientId): App {
  return tenant.apps.find((a) => a.clientId === clientId)!;
}

function userOf(tenant: Tenant, upn: string): User {
  return tenant.users.find((u) => u.upn === upn)!;
}

/** An app-only Exchange token, as the client credentials grant issues it. */
async function appToken(
  sb: Sandbox,
  overrides: { tenant?: Tenant; app?: App; audience?: string; roles?: string[]; lifetimeSeconds?: number } = {},
): Promise<string> {
  const tenant = overrides.tenant ?? tenantOf(sb);
  const { token } = await sb.issuer.accessToken({
    tenant,
    app: overrides.app ?? appOf(tenant),
    audience: overrides.audience ?? 'https://outlook.office365.com',
    roles: overrides.roles ?? ['SMTP.SendAsApp'],
    lifetimeSeconds: overrides.lifetimeSeconds ?? 3600,
    clientAuth: '1',
  });
  return token;
}

/** A delegated Exchange token for `upn`, as the device code flow issues it. */
async function delegatedToken(sb: Sandbox, upn: string, scopes = ['SMTP.Send']): Promise<string> {
  const tenant = tenantOf(sb);
  const { token } = await sb.issuer.accessToken({
    tenant,
    app: appOf(tenant, DEFAULT_IDS.publicClientId),
    user: userOf(tenant, upn),
    scopes,
    audience: 'https://outlook.office.com',
    lifetimeSeconds: 3600,
    clientAuth: '0',
  });
  return token;
}

/** Connects, upgrades with STARTTLS and sends `AUTH XOAUTH2 <initial response>`. */
async function authenticate(sb: Sandbox, token: string, user = MAILBOX): Promise<{ wire: SmtpWire; auth: WireReply }> {
  const { wire } = await SmtpWire.connect(sb.smtpPort);
  await wire.secure(sb.caPem);
  const auth = await wire.command(`AUTH XOAUTH2 ${xoauth2(user, token)}`);
  return { wire, auth };
}

/** A small message with CRLF line ends, ready for DATA. */
function message(from: string, extra = ''): string {
  return `From: ${from}\r\nTo: someone@example.net\r\nSubject: sandbox test\r\nMessage-ID: <${randomUUID()}@client.example>\r\n${extra}\r\nHello from the test.\r\n`;
}

/** MAIL, RCPT for each recipient, DATA and the message; returns each reply. */
async function submit(
  wire: SmtpWire,
  opts: { from?: string; rcpts?: string[]; data: string },
): Promise<{ mail: WireReply; rcpts: WireReply[]; data?: WireReply }> {
  const mail = await wire.command(`MAIL FROM:<${opts.from ?? MAILBOX}>`);
  const rcpts: WireReply[] = [];
  for (const r of opts.rcpts ?? ['someone@example.net']) rcpts.push(await wire.command(`RCPT TO:<${r}>`));
  if (mail.code !== 250 || !rcpts.some((r) => r.code === 250)) return { mail, rcpts };
  const go = await wire.command('DATA');
  assert.equal(go.last, '354 Start mail input; end with <CRLF>.<CRLF>');
  const body = opts.data.replace(/^\./gm, '..');
  wire.writeRaw(`${body}${body.endsWith('\r\n') ? '' : '\r\n'}.\r\n`);
  return { mail, rcpts, data: await wire.reply() };
}

function run(file: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((res) => {
    execFile(file, args, { timeout: 20_000, env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      res({ code, stdout, stderr });
    });
  });
}

async function eventually(check: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** No reply may carry two enhanced codes (smtp-server's in front of Microsoft's). */
function assertSingleEnhancedCodes(transcript: string): void {
  assert.doesNotMatch(transcript, /^\d{3}[ -][245]\.\d{1,3}\.\d{1,3} [245]\.\d{1,3}\.\d{1,3} /m);
}

describe('Exchange SMTP submission: greeting, capabilities and AUTH', () => {
  let sb: TestSandbox;
  before(async () => {
    sb = await startTestSandbox();
  });
  after(() => sb.close());

  it('greets like smtp.office365.com and offers STARTTLS, but no AUTH, before TLS', async () => {
    const { wire, greeting } = await SmtpWire.connect(sb.smtpPort);
    assert.match(
      greeting.last,
      new RegExp(
        `^220 ${FRONTEND.replace(/\./g, '\\.')} Microsoft ESMTP MAIL Service ready at (Sun|Mon|Tue|Wed|Thu|Fri|Sat), [1-9]\\d? [A-Z][a-z]{2} \\d{4} \\d{2}:\\d{2}:\\d{2} \\+0000 \\[[0-9A-F]{16}\\]$`,
      ),
    );
    const ehlo = await wire.command('EHLO client.example');
    assert.deepEqual(ehlo.lines, [
      `250-${FRONTEND} Hello [127.0.0.1]`,
      '250-SIZE 157286400',
      '250-PIPELINING',
      '250-DSN',
      '250-ENHANCEDSTATUSCODES',
      '250-STARTTLS',
      '250-8BITMIME',
      '250 SMTPUTF8',
    ]);
    await wire.quit();
  });

  it('advertises AUTH LOGIN XOAUTH2 only after STARTTLS (TLS 1.2 or newer)', async () => {
    const { wire } = await SmtpWire.connect(sb.smtpPort);
    await wire.command('EHLO client.example');
    const ready = await wire.startTls(sb.caPem, { maxVersion: 'TLSv1.2' });
    assert.equal(ready.last, '220 2.0.0 SMTP server ready');
    const ehlo = await wire.command('EHLO client.example');
    assert.deepEqual(ehlo.lines, [
      `250-${FRONTEND} Hello [127.0.0.1]`,
      '250-SIZE 157286400',
      '250-PIPELINING',
      '250-DSN',
      '250-ENHANCEDSTATUSCODES',
      '250-AUTH LOGIN XOAUTH2',
      '250-8BITMIME',
      '250 SMTPUTF8',
    ]);
    await wire.quit();
  });

  it('refuses a TLS 1.1 handshake', async () => {
    const { wire } = await SmtpWire.connect(sb.smtpPort);
    await wire.command('EHLO client.example');
    // The server's own alert, not a client-side refusal (M365.md: TLS 1.2 or newer only).
    await assert.rejects(wire.startTls(sb.caPem, { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' }), /protocol version/);
    wire.destroy();
  });

  it("answers AUTH before STARTTLS with Exchange's 504 5.7.4 and keeps the token unread", async () => {
    const token = await appToken(sb);
    const { wire } = await SmtpWire.connect(sb.smtpPort);
    await wire.command('EHLO client.example');
    const reply = await wire.command(`AUTH XOAUTH2 ${xoauth2(MAILBOX, token)}`);
    assert.equal(reply.last, R.unrecognizedAuth);
    assert.ok(wire.transcript.includes(`\r\n${R.unrecognizedAuth}\r\n`));
    assert.equal((await wire.command('AUTH LOGIN')).last, R.unrecognizedAuth);
    await wire.quit();
  });

  it('answers MAIL FROM before AUTH with 530 5.7.57, before and after STARTTLS', async () => {
    const { wire } = await SmtpWire.connect(sb.smtpPort);
    await wire.command('EHLO client.example');
    assert.equal(untail((await wire.command(`MAIL FROM:<${MAILBOX}>`)).last), R.notAuthenticated);
    await wire.startTls(sb.caPem);
    await wire.command('EHLO client.example');
    assert.equal(untail((await wire.command(`MAIL FROM:<${MAILBOX}> SIZE=100`)).last), R.notAuthenticated);
    await wire.quit();
  });

  it('refuses AUTH LOGIN with a password: 535 5.7.139 basic authentication is disabled', async () => {
    const { wire } = await SmtpWire.connect(sb.smtpPort);
    await wire.secure(sb.caPem);
    assert.equal((await wire.command('AUTH LOGIN')).last, '334 VXNlcm5hbWU6');
    assert.equal((await wire.command(Buffer.from(MAILBOX).toString('base64'))).last, '334 UGFzc3dvcmQ6');
    assert.equal(untail((await wire.command(Buffer.from('hunter2').toString('base64'))).last), R.basic);
    // With the user name as initial response, as Outlook and many devices send it.
    assert.equal((await wire.command(`AUTH LOGIN ${Buffer.from(MAILBOX).toString('base64')}`)).last, '334 UGFzc3dvcmQ6');
    assert.equal(untail((await wire.command(Buffer.from('hunter2').toString('base64'))).last), R.basic);
    await wire.quit();
  });

  it('refuses AUTH PLAIN and CRAM-MD5, which Exchange does not offer, with 504 5.7.4', async () => {
    const { wire } = await SmtpWire.connect(sb.smtpPort);
    await wire.secure(sb.caPem);
    assert.equal((await wire.command(`AUTH PLAIN ${Buffer.from(`\0${MAILBOX}\0pw`).toString('base64')}`)).last, R.unrecognizedAuth);
    assert.equal((await wire.command('AUTH CRAM-MD5')).last, R.unrecognizedAuth);
    await wire.quit();
  });

  it('accepts XOAUTH2 with a real-sized token on one ~3 KB AUTH line', async () => {
    const token = await appToken(sb);
    assert.ok(token.length >= 1500, `token is ${token.length} characters`);
    const line = `AUTH XOAUTH2 ${xoauth2(MAILBOX, token)}`;
    assert.ok(line.length > 2000, `AUTH line is ${line.length} octets`);
    const before = sb.state.counters.smtpReplies['235 2.7.0'] ?? 0;
    const { wire, auth } = await authenticate(sb, token);
    assert.equal(auth.last, R.authOk);
    assert.equal(sb.state.counters.smtpReplies['235 2.7.0'], before + 1);
    await wire.quit();
  });

  it('accepts the XOAUTH2 response sent after a 334 continuation', async () => {
    const token = await appToken(sb);
    const { wire } = await SmtpWire.connect(sb.smtpPort);
    await wire.secure(sb.caPem);
    const cont = await wire.command('AUTH XOAUTH2');
    assert.equal(cont.last, '334 ');
    assert.equal((await wire.command(xoauth2(MAILBOX, token))).last, R.authOk);
    assert.equal((await wire.command('AUTH XOAUTH2')).code, 503, 'a second AUTH is a bad sequence');
    await wire.quit();
  });

  it('accepts a message and answers 250 2.0.0 OK <Message-ID> [Hostname=...] with single enhanced codes throughout', async () => {
    const { wire, auth } = await authenticate(sb, await appToken(sb));
    assert.equal(auth.last, R.authOk);
    const data = message(MAILBOX);
    const sent = await submit(wire, { data });
    assert.equal(sent.mail.last, '250 2.1.0 Sender OK');
    assert.equal(sent.rcpts[0]!.last, '250 2.1.5 Recipient OK');
    const messageId = /^Message-ID: (<[^>]+>)/m.exec(data)![1]!;
    assert.equal(sent.data!.last, `250 2.0.0 OK ${messageId} [Hostname=${HOST}]`);
    assert.equal((await wire.command('RSET')).last, '250 2.0.0 Resetting');
    assert.equal((await wire.command('NOOP')).last, '250 2.0.0 OK');
    assert.equal((await wire.command('QUIT')).last, '221 2.0.0 Service closing transmission channel');
    assertSingleEnhancedCodes(wire.transcript);
    const stored = sb.state.messages.at(-1)!;
    assert.equal(stored.raw.toString('utf8'), data);
    assert.equal(stored.reply, sent.data!.last);
    assert.deepEqual(stored.envelope, { mailFrom: MAILBOX, rcptTo: ['someone@example.net'] });
    assert.equal(stored.appId, DEFAULT_IDS.appClientId);
    assert.equal(stored.tenantId, DEFAULT_IDS.tenantId);
    wire.destroy();
  });

  it('makes up a Message-ID for the reply when the message has none', async () => {
    const { wire } = await authenticate(sb, await appToken(sb));
    const sent = await submit(wire, { data: `From: ${MAILBOX}\r\nSubject: no id\r\n\r\nbody\r\n` });
    assert.match(sent.data!.last, ACCEPTED);
    await wire.quit();
  });
});

describe('Exchange SMTP submission: XOAUTH2 token checks', () => {
  let sb: TestSandbox;
  const FABRIKAM_APP = randomUUID();
  before(async () => {
    sb = await startTestSandbox({
      scenario: scenario((s) => {
        const contoso = s.tenants[0]!;
        const relay = contoso.users[0]!;
        const noSpApp = { ...structuredClone(contoso.apps[0]!), clientId: randomUUID(), exchangeServicePrincipal: false, secrets: [] };
        contoso.apps.push(noSpApp);
        relay.fullAccessApps.push(noSpApp.clientId);
        const like = (upn: string, change: Partial<User> = {}): User => ({ ...structuredClone(relay), upn, id: randomUUID(), sendAs: [], ...change });
        contoso.users.push(
          like('mbx-off@contoso.example', { smtpAuthEnabled: false }),
          like('blocked@contoso.example', { blockedByConditionalAccess: true }),
          like('no-full-access@contoso.example', { fullAccessApps: [] }),
          like('no-mailbox@contoso.example', { mailbox: false }),
        );
        s.tenants.push({
          ...structuredClone(contoso),
          id: randomUUID(),
          domain: 'fabrikam.example',
          smtpAuthEnabled: false,
          apps: [{ ...structuredClone(contoso.apps[0]!), clientId: FABRIKAM_APP, servicePrincipalId: randomUUID() }],
          users: [
            { ...structuredClone(relay), upn: 'printer@fabrikam.example', id: randomUUID(), sendAs: [], fullAccessApps: [FABRIKAM_APP] },
            { ...structuredClone(relay), upn: 'ceo@fabrikam.example', id: randomUUID(), sendAs: [], fullAccessApps: [FABRIKAM_APP], smtpAuthEnabled: true },
          ],
        });
      }),
    });
  });
  after(() => sb.close());

  async function authReply(token: string, user = MAILBOX): Promise<string> {
    const { wire, auth } = await authenticate(sb, token, user);
    await wire.quit();
    return untail(auth.last);
  }

  it('accepts an app-only token with SMTP.SendAsApp for a mailbox the app has FullAccess on', async () => {
    assert.equal(await authReply(await appToken(sb)), R.authOk);
  });

  it('accepts a delegated token with SMTP.Send for the signed-in user', async () => {
    assert.equal(await authReply(await delegatedToken(sb, MAILBOX)), R.authOk);
  });

  it('ends an AUTH refusal with [HOST TIMESTAMP ID], as Exchange has since 2023', async () => {
    const before = Date.now();
    const { wire, auth } = await authenticate(sb, await appToken(sb, { lifetimeSeconds: -60 }));
    await wire.quit();
    const m = /^535 5\.7\.3 Authentication unsuccessful \[(\S+) (\S+) ([0-9A-F]{16})\]$/.exec(auth.last);
    assert.ok(m, auth.last);
    assert.equal(m[1], HOST);
    assert.ok(Date.parse(m[2]!) >= before - 1000 && Date.parse(m[2]!) <= Date.now() + 1000, 'the timestamp is now');
  });

  it('refuses an expired token with 535 5.7.3', async () => {
    assert.equal(await authReply(await appToken(sb, { lifetimeSeconds: -60 })), R.auth535);
  });

  it('refuses a Microsoft Graph token (wrong audience) with 535 5.7.3', async () => {
    const token = await appToken(sb, { audience: 'https://graph.microsoft.com', roles: ['Mail.Send'] });
    assert.equal(await authReply(token), R.auth535);
  });

  it('refuses an app-only token without the SMTP.SendAsApp role with 535 5.7.3', async () => {
    assert.equal(await authReply(await appToken(sb, { roles: [] })), R.auth535);
    assert.equal(await authReply(await appToken(sb, { roles: ['IMAP.AccessAsApp'] })), R.auth535);
  });

  it('refuses an app whose service principal was never registered in Exchange (New-ServicePrincipal)', async () => {
    const app = tenantOf(sb).apps.find((a) => !a.exchangeServicePrincipal)!;
    assert.equal(await authReply(await appToken(sb, { app })), R.auth535);
  });

  it('refuses an app without FullAccess on the mailbox', async () => {
    assert.equal(await authReply(await appToken(sb), 'no-full-access@contoso.example'), R.auth535);
  });

  it('refuses a user without a mailbox, an unknown user, and a mailbox of another tenant', async () => {
    const token = await appToken(sb);
    assert.equal(await authReply(token, 'no-mailbox@contoso.example'), R.auth535);
    assert.equal(await authReply(token, 'nobody@contoso.example'), R.auth535);
    assert.equal(await authReply(token, 'ceo@fabrikam.example'), R.auth535);
  });

  it('refuses a delegated token without SMTP.Send, or used for another mailbox', async () => {
    assert.equal(await authReply(await delegatedToken(sb, MAILBOX, ['Mail.Read'])), R.auth535);
    assert.equal(await authReply(await delegatedToken(sb, DEFAULT_IDS.user), MAILBOX), R.auth535);
  });

  it('refuses a token with alg none, and one signed by another key', async () => {
    const real = await appToken(sb);
    const payload = real.split('.')[1]!;
    const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url')}.${payload}.`;
    assert.equal(await authReply(none), R.auth535);
    const { privateKey } = await generateKeyPair('RS256');
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Record<string, unknown>;
    const forged = await new SignJWT(claims).setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: sb.issuer.kid }).sign(privateKey);
    assert.equal(await authReply(forged), R.auth535);
  });

  it('answers XOAUTH2 data that is not base64 or not user/auth with 535 5.7.3', async () => {
    const { wire } = await SmtpWire.connect(sb.smtpPort);
    await wire.secure(sb.caPem);
    assert.equal(untail((await wire.command('AUTH XOAUTH2 %%%not-base64%%%')).last), R.auth535);
    assert.equal(untail((await wire.command(`AUTH XOAUTH2 ${Buffer.from('hello world').toString('base64')}`)).last), R.auth535);
    assert.equal(untail((await wire.command(`AUTH XOAUTH2 ${xoauth2(MAILBOX, 'not.a.jwt')}`)).last), R.auth535);
    assert.equal((await wire.command(`AUTH XOAUTH2 ${xoauth2(MAILBOX, await appToken(sb))}`)).last, R.authOk, 'the session survives');
    await wire.quit();
  });

  it('refuses a mailbox with SMTP AUTH disabled (Set-CASMailbox) with 535 5.7.139', async () => {
    assert.equal(await authReply(await appToken(sb), 'mbx-off@contoso.example'), R.mailboxOff);
  });

  it('refuses a tenant with SMTP AUTH disabled (Set-TransportConfig), unless the mailbox enables it', async () => {
    const fabrikam = tenantOf(sb, 1);
    const token = await appToken(sb, { tenant: fabrikam, app: appOf(fabrikam, FABRIKAM_APP) });
    assert.equal(await authReply(token, 'printer@fabrikam.example'), R.tenantOff);
    assert.equal(await authReply(token, 'ceo@fabrikam.example'), R.authOk);
  });

  it('takes an app-only token for a mailbox whose user Conditional Access blocks (it acts at the token endpoint, on users)', async () => {
    assert.equal(await authReply(await appToken(sb), 'blocked@contoso.example'), R.authOk);
  });

  it('counts every auth result by code', () => {
    const c = sb.state.counters.smtpReplies;
    assert.ok((c['535 5.7.3'] ?? 0) >= 12, JSON.stringify(c));
    // Mailbox off and tenant off; Conditional Access refuses at the token endpoint, not here.
    assert.equal(c['535 5.7.139'], 2);
    assert.ok((c['235 2.7.0'] ?? 0) >= 3);
  });
});

describe('Exchange SMTP submission: store driver decisions at the end of DATA', () => {
  let sb: TestSandbox;
  let token: string;
  before(async () => {
    sb = await startTestSandbox({
      scenario: scenario((s) => {
        s.limits.recipientsPerMessage = 3;
        s.limits.maxMessageBytes = 4096;
        s.tenants[0]!.users[0]!.aliases = ['relay.alias@contoso.example'];
      }),
    });
    token = await appToken(sb);
  });
  after(() => sb.close());

  it('accepts From as the mailbox, an alias or an address it holds SendAs on, keeping the exact bytes', async () => {
    const { wire } = await authenticate(sb, token);
    for (const from of [MAILBOX, 'relay.alias@contoso.example', `"No Reply" <noreply@${DEFAULT_IDS.tenantDomain}>`]) {
      const data = message(from, 'X-Test: caf\u00e9 8-bit \u00fc\r\n') + '.leading dot line\r\n..two dots\r\n';
      const sent = await submit(wire, { from: MAILBOX, data });
      assert.match(sent.data!.last, ACCEPTED, from);
      assert.deepEqual(sb.state.messages.at(-1)!.raw, Buffer.from(data, 'utf8'));
    }
    await wire.quit();
  });

  it('refuses a From the mailbox has no SendAs right on with 554 5.2.252 SendAsDenied naming both addresses', async () => {
    const { wire } = await authenticate(sb, token);
    const count = sb.state.messages.length;
    assert.equal((await submit(wire, { data: message('ceo@contoso.example') })).data!.last, R.sendAsDenied);
    // The envelope sender is checked as well.
    assert.equal((await submit(wire, { from: 'ceo@contoso.example', data: message(MAILBOX) })).data!.last, R.sendAsDenied);
    assert.equal(sb.state.messages.length, count);
    assert.equal(sb.state.counters.smtpReplies['554 5.2.252'], 2);
    await wire.quit();
  });

  it('refuses the recipient beyond recipientsPerMessage with 452 4.5.3 and sends to the others', async () => {
    const { wire } = await authenticate(sb, token);
    const sent = await submit(wire, { rcpts: ['a@example.net', 'b@example.net', 'c@example.net', 'd@example.net'], data: message(MAILBOX) });
    assert.deepEqual(
      sent.rcpts.map((r) => r.last),
      ['250 2.1.5 Recipient OK', '250 2.1.5 Recipient OK', '250 2.1.5 Recipient OK', R.tooManyRcpts],
    );
    assert.match(sent.data!.last, ACCEPTED);
    assert.deepEqual(sb.state.messages.at(-1)!.envelope.rcptTo, ['a@example.net', 'b@example.net', 'c@example.net']);
    await wire.quit();
  });

  it("advertises SIZE 157286400 whatever the mailbox's limit, and refuses MAIL FROM with SIZE= over it with 552 5.3.4", async () => {
    const { wire } = await authenticate(sb, token);
    const ehlo = await wire.command('EHLO client.example');
    assert.ok(ehlo.lines.includes('250-SIZE 157286400'), 'Exchange advertises 150 MB to everyone (emayili#147 transcript)');
    assert.equal((await wire.command(`MAIL FROM:<${MAILBOX}> SIZE=157286401`)).last, R.tooBig);
    assert.equal((await wire.command('RSET')).last, '250 2.0.0 Resetting');
    assert.equal((await wire.command(`MAIL FROM:<${MAILBOX}> SIZE=5000`)).last, '250 2.1.0 Sender OK', "the mailbox's own limit is applied after DATA");
    await wire.quit();
  });

  it("takes a message over the mailbox's MaxSendSize with 250 and bounces it by a 5.2.3 NDR in the Inbox", async () => {
    const { wire } = await authenticate(sb, token);
    const count = sb.state.messages.length;
    const sent = await submit(wire, { data: message(MAILBOX) + 'x'.repeat(78).concat('\r\n').repeat(60) });
    assert.match(sent.data!.last, ACCEPTED, 'Exchange accepts it and bounces it later (MS Learn KB 3146087)');
    assert.equal(sb.state.messages.length, count + 1);
    await wire.quit();
    const inbox = sb.state.mail.folder(MAILBOX, 'inbox')!;
    const deadline = Date.now() + 5000;
    while (sb.state.mail.items(MAILBOX, inbox.id).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const [ndr] = sb.state.mail.items(MAILBOX, inbox.id);
    assert.ok(ndr, 'an NDR arrives in the Inbox');
    const text = ndr.raw.toString('latin1');
    assert.match(text, /^Status: 5\.2\.3$/m);
    assert.match(text, /^Diagnostic-Code: smtp;550 5\.2\.3 RESOLVER\.RST\.SendSizeLimit\.Sender; message too large for this sender$/m);
  });
});

describe('Exchange SMTP submission: message and recipient rate limits', () => {
  let sb: TestSandbox;
  before(async () => {
    sb = await startTestSandbox({
      scenario: scenario((s) => {
        // A minute lasts 1 s and a day 24 min.
        s.limits.timeScale = 60;
        s.limits.messagesPerMinute = 2;
        s.limits.recipientsPerDay = 5;
        const relay = s.tenants[0]!.users[0]!;
        s.tenants[0]!.users.push({ ...structuredClone(relay), upn: 'bulk@contoso.example', id: randomUUID(), sendAs: [] });
      }),
    });
  });
  after(() => sb.close());

  it('delays the message beyond messagesPerMinute until the minute has room, and never refuses it (Exchange carries the excess over)', async () => {
    const { wire } = await authenticate(sb, await appToken(sb));
    const first = Date.now();
    assert.match((await submit(wire, { data: message(MAILBOX) })).data!.last, ACCEPTED);
    assert.match((await submit(wire, { data: message(MAILBOX) })).data!.last, ACCEPTED);
    assert.ok(Date.now() - first < 900, 'the first two go at once');
    assert.match((await submit(wire, { data: message(MAILBOX) })).data!.last, ACCEPTED);
    // The scaled minute is 1 s: the third message's reply waits until the first leaves the window.
    assert.ok(Date.now() - first >= 950, `the third was answered after ${Date.now() - first} ms`);
    assert.equal(sb.state.counters.throttled, 0);
    assert.equal(sb.state.counters.smtpReplies['554 5.2.0'], undefined);
    await wire.quit();
  });

  it('refuses a message that would go over recipientsPerDay with 554 5.2.0 SubmissionQuotaExceeded', async () => {
    const { wire } = await authenticate(sb, await appToken(sb), 'bulk@contoso.example');
    const rcpts = ['a@example.net', 'b@example.net', 'c@example.net'];
    assert.match((await submit(wire, { from: 'bulk@contoso.example', rcpts, data: message('bulk@contoso.example') })).data!.last, ACCEPTED);
    assert.equal((await submit(wire, { from: 'bulk@contoso.example', rcpts, data: message('bulk@contoso.example') })).data!.last, R.quota);
    assert.match(
      (await submit(wire, { from: 'bulk@contoso.example', rcpts: ['a@example.net', 'b@example.net'], data: message('bulk@contoso.example') })).data!.last,
      ACCEPTED,
      'two more recipients still fit in the day',
    );
    assert.equal(sb.state.counters.throttled, 1);
    await wire.quit();
  });
});

describe('Exchange SMTP submission: concurrent connections per mailbox', () => {
  let sb: TestSandbox;
  before(async () => {
    sb = await startTestSandbox();
  });
  after(() => sb.close());

  it('gives the 4th concurrent connection 432 4.3.2 sender thread limit exceeded while the first three send', async () => {
    const token = await appToken(sb);
    const wires: SmtpWire[] = [];
    for (let i = 0; i < 4; i++) {
      const { wire, auth } = await authenticate(sb, token);
      assert.equal(auth.last, R.authOk);
      wires.push(wire);
    }
    assert.equal(sb.state.connectionCount(MAILBOX), 4);
    assert.equal(sb.state.counters.maxConcurrentByMailbox[MAILBOX], 4);
    assert.equal((await submit(wires[3]!, { data: message(MAILBOX) })).data!.last, R.threadLimit);
    assert.equal(sb.state.counters.throttled, 1);
    for (const wire of wires.slice(0, 3)) assert.match((await submit(wire, { data: message(MAILBOX) })).data!.last, ACCEPTED);
    await wires[0]!.quit();
    await eventually(() => sb.state.connectionCount(MAILBOX) === 3);
    assert.match((await submit(wires[3]!, { data: message(MAILBOX) })).data!.last, ACCEPTED, 'a freed thread lets the 4th send');
    for (const wire of wires.slice(1)) await wire.quit();
    await eventually(() => sb.state.connectionCount(MAILBOX) === 0);
  });
});

describe('Exchange SMTP submission: scenario faults', () => {
  let sb: TestSandbox;
  let token: string;
  before(async () => {
    sb = await startTestSandbox();
    token = await appToken(sb);
  });
  after(() => sb.close());

  function faults(list: Scenario['faults']['smtp']): void {
    sb.state.setScenario(scenario((s) => (s.faults.smtp = list)));
  }

  it('answers a forced reply at RCPT once, then recovers', async () => {
    faults([{ stage: 'rcpt', reply: '451 4.7.500 Server busy. Please try again later.', drop: false, count: 1, mailbox: MAILBOX }]);
    const { wire } = await authenticate(sb, token);
    assert.equal((await wire.command(`MAIL FROM:<${MAILBOX}>`)).last, '250 2.1.0 Sender OK');
    assert.equal((await wire.command('RCPT TO:<a@example.net>')).last, '451 4.7.500 Server busy. Please try again later.');
    assert.equal((await wire.command('RCPT TO:<a@example.net>')).last, '250 2.1.5 Recipient OK');
    assertSingleEnhancedCodes(wire.transcript);
    await wire.quit();
  });

  it('answers a throttling fault at the end of DATA and counts it as throttling', async () => {
    faults([{ stage: 'data', reply: R.threadLimit, drop: false, count: 1 }]);
    const before = sb.state.counters.throttled;
    const count = sb.state.messages.length;
    const { wire } = await authenticate(sb, token);
    assert.equal((await submit(wire, { data: message(MAILBOX) })).data!.last, R.threadLimit);
    assert.equal(sb.state.counters.throttled, before + 1);
    assert.equal(sb.state.messages.length, count);
    assert.match((await submit(wire, { data: message(MAILBOX) })).data!.last, ACCEPTED);
    await wire.quit();
  });

  it('answers a forced AUTH reply instead of checking the token', async () => {
    faults([{ stage: 'auth', reply: '454 4.7.0 Temporary authentication failure', drop: false, count: 1 }]);
    const { wire, auth } = await authenticate(sb, token);
    assert.equal(auth.last, '454 4.7.0 Temporary authentication failure');
    assert.equal((await wire.command(`AUTH XOAUTH2 ${xoauth2(MAILBOX, token)}`)).last, R.authOk);
    await wire.quit();
  });

  it('drops the connection without a reply at MAIL FROM', async () => {
    faults([{ stage: 'mail', drop: true, count: 1 }]);
    const { wire } = await authenticate(sb, token);
    await eventually(() => sb.state.connectionCount(MAILBOX) === 1);
    wire.write(`MAIL FROM:<${MAILBOX}>`);
    await wire.waitClosed();
    assert.ok(wire.transcript.endsWith(`${R.authOk}\r\n`), 'nothing was answered to MAIL');
    await eventually(() => sb.state.connectionCount(MAILBOX) === 0);
  });

  it('replaces the greeting with a forced reply, or drops the connection at connect', async () => {
    faults([
      { stage: 'connect', reply: '421 4.3.2 Service not available', drop: false, count: 1 },
      { stage: 'connect', drop: true, count: 1 },
    ]);
    const { wire, greeting } = await SmtpWire.connect(sb.smtpPort);
    assert.equal(greeting.last, '421 4.3.2 Service not available');
    await wire.waitClosed();
    await assert.rejects(SmtpWire.connect(sb.smtpPort), /connection closed/);
    faults([]);
    const ok = await SmtpWire.connect(sb.smtpPort);
    assert.equal(ok.greeting.code, 220);
    await ok.wire.quit();
  });
});

describe('Exchange SMTP submission: malformed input', () => {
  let sb: TestSandbox;
  let token: string;
  const logLines: string[] = [];
  before(async () => {
    const logger = createLogger({ level: 'debug', destination: { write: (line: string) => void logLines.push(line) } });
    sb = await startTestSandbox({ logger });
    token = await appToken(sb);
  });
  after(() => sb.close());

  it("answers an unknown command with Exchange's 500 5.3.3", async () => {
    const { wire } = await SmtpWire.connect(sb.smtpPort);
    assert.equal((await wire.command('XYZZY plugh')).last, `500 5.3.3 Unrecognized command 'unknown' [${HOST}]`);
    assert.equal((await wire.command('EHLO client.example')).code, 250);
    await wire.quit();
  });

  it('answers NUL bytes and binary garbage with an error and keeps the session', async () => {
    const { wire } = await authenticate(sb, token);
    wire.writeRaw('NO\x00OP\r\n');
    assert.equal((await wire.reply()).code, 500);
    wire.writeRaw(Buffer.from([0xff, 0xfe, 0x00, 0x01, 0x80, 0x0d, 0x0a]));
    assert.equal((await wire.reply()).code, 500);
    assert.equal((await wire.command(`MAIL FROM:<re\x00lay@contoso.example>`)).code, 501);
    assert.equal((await wire.command('NOOP')).last, '250 2.0.0 OK');
    assert.match((await submit(wire, { data: message(MAILBOX) })).data!.last, ACCEPTED);
    await wire.quit();
  });

  it('closes a connection that sends a 20 KB line with a 421', async () => {
    const { wire } = await SmtpWire.connect(sb.smtpPort);
    wire.write(`EHLO ${'a'.repeat(20_000)}`);
    assert.equal((await wire.reply()).code, 421);
    await wire.waitClosed();
  });

  it('survives a client that disconnects in the middle of DATA, storing nothing', async () => {
    const count = sb.state.messages.length;
    const { wire } = await authenticate(sb, token);
    await wire.command(`MAIL FROM:<${MAILBOX}>`);
    await wire.command('RCPT TO:<a@example.net>');
    await wire.command('DATA');
    wire.writeRaw(`From: ${MAILBOX}\r\nSubject: cut\r\n\r\n${'half a message '.repeat(500)}`);
    await new Promise((r) => setTimeout(r, 50));
    wire.destroy();
    await eventually(() => sb.state.connectionCount(MAILBOX) === 0);
    assert.equal(sb.state.messages.length, count);
  });

  it('keeps serving: a good send after all the garbage succeeds', async () => {
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: sb.smtpPort,
      secure: false,
      requireTLS: true,
      tls: { ca: sb.caPem },
      auth: { type: 'OAuth2', user: MAILBOX, accessToken: token },
    });
    const info = await transport.sendMail({ from: MAILBOX, to: 'x@example.net', subject: 'still here', text: 'ok' });
    assert.match(info.response, ACCEPTED);
    transport.close();
  });

  it('logs refusals and acceptances without tokens or XOAUTH2 strings', async () => {
    const expired = await appToken(sb, { lifetimeSeconds: -60 });
    assert.equal(untail((await authenticate(sb, expired)).auth.last), R.auth535);
    const log = logLines.join('');
    assert.match(log, /XOAUTH2 refused.*ERR_JWT_EXPIRED|ERR_JWT_EXPIRED.*XOAUTH2 refused/);
    assert.match(log, /XOAUTH2 accepted/);
    assert.match(log, /message accepted/);
    for (const secret of [token, expired, xoauth2(MAILBOX, token), token.split('.')[2]!]) assert.ok(!log.includes(secret), 'a token reached the log');
  });
});

describe('Exchange SMTP submission: real clients', () => {
  let sb: TestSandbox;
  let token: string;
  before(async () => {
    sb = await startTestSandbox();
    token = await appToken(sb);
  });
  after(() => sb.close());

  it('takes a message from curl --oauth2-bearer, byte for byte', async () => {
    const data = `From: ${MAILBOX}\r\nTo: x@example.net\r\nSubject: from curl\r\n\r\n.a line with a leading dot\r\nGr\u00fc\u00dfe\r\n`;
    const file = join(sb.dir, 'curl.eml');
    await writeFile(file, data);
    const res = await run('/usr/bin/curl', [
      '--silent',
      '--show-error',
      '--url',
      `smtp://127.0.0.1:${sb.smtpPort}`,
      '--ssl-reqd',
      '--cacert',
      sb.caPath,
      '--mail-from',
      MAILBOX,
      '--mail-rcpt',
      'x@example.net',
      '--upload-file',
      file,
      '--user',
      MAILBOX,
      '--oauth2-bearer',
      token,
    ]);
    assert.equal(res.code, 0, res.stderr);
    const stored = sb.state.messages.at(-1)!;
    assert.deepEqual(stored.raw, Buffer.from(data, 'utf8'));
    assert.deepEqual(stored.envelope, { mailFrom: MAILBOX, rcptTo: ['x@example.net'] });
    assert.equal(stored.via, 'smtp');
  });

  it('sends with curl using a token curl got from the sandbox token endpoint (client credentials)', async () => {
    const tokenRes = await run('/usr/bin/curl', [
      '--silent',
      '--show-error',
      '--fail-with-body',
      '--cacert',
      sb.caPath,
      '--data-urlencode',
      'grant_type=client_credentials',
      '--data-urlencode',
      `client_id=${DEFAULT_IDS.appClientId}`,
      '--data-urlencode',
      `client_secret=${DEFAULT_IDS.appSecret}`,
      '--data-urlencode',
      'scope=https://outlook.office365.com/.default',
      `${sb.baseUrl}/${DEFAULT_IDS.tenantId}/oauth2/v2.0/token`,
    ]);
    assert.equal(tokenRes.code, 0, tokenRes.stdout + tokenRes.stderr);
    const { access_token: accessToken, token_type: tokenType } = JSON.parse(tokenRes.stdout) as { access_token: string; token_type: string };
    assert.equal(tokenType, 'Bearer');
    const data = `From: ${MAILBOX}\r\nTo: w@example.net\r\nSubject: token from the endpoint\r\n\r\nhello\r\n`;
    const file = join(sb.dir, 'curl-endpoint.eml');
    await writeFile(file, data);
    const res = await run('/usr/bin/curl', [
      '--silent',
      '--show-error',
      '--url',
      `smtp://127.0.0.1:${sb.smtpPort}`,
      '--ssl-reqd',
      '--cacert',
      sb.caPath,
      '--mail-from',
      MAILBOX,
      '--mail-rcpt',
      'w@example.net',
      '--upload-file',
      file,
      '--user',
      MAILBOX,
      '--oauth2-bearer',
      accessToken,
    ]);
    assert.equal(res.code, 0, res.stderr);
    const stored = sb.state.messages.at(-1)!;
    assert.deepEqual(stored.raw, Buffer.from(data, 'utf8'));
    assert.equal(stored.appId, DEFAULT_IDS.appClientId);
  });

  it("takes a message from Python's smtplib (STARTTLS, AUTH XOAUTH2 initial response, sendmail)", async () => {
    const data = `From: ${MAILBOX}\r\nTo: y@example.net\r\nSubject: from python\r\n\r\n.dot first\r\nline two\r\n`;
    const file = join(sb.dir, 'python.eml');
    await writeFile(file, data);
    const script = [
      'import os, smtplib, ssl',
      "ctx = ssl.create_default_context(cafile=os.environ['CA'])",
      "s = smtplib.SMTP('127.0.0.1', int(os.environ['PORT']), local_hostname='python.example', timeout=10)",
      's.ehlo()',
      's.starttls(context=ctx)',
      's.ehlo()',
      "auth = 'user=' + os.environ['MAILBOX'] + '\\x01auth=Bearer ' + os.environ['TOKEN'] + '\\x01\\x01'",
      "code, text = s.auth('XOAUTH2', lambda challenge=None: auth, initial_response_ok=True)",
      'print(code, text.decode())',
      "refused = s.sendmail(os.environ['MAILBOX'], ['y@example.net'], open(os.environ['MSG'], 'rb').read())",
      'print(refused)',
      's.quit()',
    ].join('\n');
    const res = await run('python3', ['-c', script], { CA: sb.caPath, PORT: String(sb.smtpPort), MAILBOX, TOKEN: token, MSG: file });
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout, '235 2.7.0 Authentication successful\n{}\n');
    const stored = sb.state.messages.at(-1)!;
    assert.deepEqual(stored.raw, Buffer.from(data, 'utf8'));
    assert.deepEqual(stored.envelope.rcptTo, ['y@example.net']);
  });

  it('takes a message from nodemailer with auth type OAuth2 and answers with its Message-ID', async () => {
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: sb.smtpPort,
      secure: false,
      requireTLS: true,
      tls: { ca: sb.caPem },
      auth: { type: 'OAuth2', user: MAILBOX, accessToken: token },
    });
    const info = await transport.sendMail({ from: `Relay <${MAILBOX}>`, to: 'z@example.net', subject: 'from nodemailer', text: 'hello' });
    transport.close();
    assert.equal(info.response, `250 2.0.0 OK ${info.messageId} [Hostname=${HOST}]`);
    const stored = sb.state.messages.at(-1)!;
    assert.equal(stored.reply, info.response);
    assert.match(stored.raw.toString(), /^Subject: from nodemailer\r$/m);
  });

  it('gives swaks, sending a password with AUTH LOGIN, the basic-authentication-disabled reply', async () => {
    const res = await run('/usr/bin/swaks', [
      '--server',
      '127.0.0.1',
      '--port',
      String(sb.smtpPort),
      '--tls',
      '--auth',
      'LOGIN',
      '--auth-user',
      MAILBOX,
      '--auth-password',
      'hunter2',
      '--from',
      MAILBOX,
      '--to',
      'x@example.net',
    ]);
    assert.notEqual(res.code, 0);
    assert.ok(res.stdout.includes(`<~* ${R.basic}`), res.stdout);
  });

  it('counts connections and the replies it decided', () => {
    const c = sb.state.counters;
    assert.ok(c.smtpConnections >= 4);
    assert.ok((c.smtpReplies['250 2.0.0'] ?? 0) >= 3);
    assert.equal(c.smtpReplies['535 5.7.139'], 1);
  });
});
