import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import {
  AADSTS_CATALOGUE,
  GRAPH_ERROR_CATALOGUE,
  SMTP_REPLY_CATALOGUE,
  explainAadsts,
  explainConnectionError,
  explainGraphError,
  explainSmtpReply,
  findAadstsCode,
} from '../../src/catalogue/index.js';
import { RECORDED_AADSTS_ERRORS, RECORDED_GRAPH_ERRORS, RECORDED_SMTP_REPLIES } from '../../src/sandbox/recorded-replies.js';

/**
 * Reply texts as Microsoft gives them (shared/M365.md, "Reply catalogue seed"; the `[...]` suffixes as
 * Exchange Online appends them). Each must land on its own catalogue row.
 */
const RECORDED: Array<[reply: string, id: string, cls: string]> = [
  [
    '535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information. [SN4PR0501CA0054.namprd05.prod.outlook.com]',
    'smtp-535-5.7.139-tenant',
    'auth',
  ],
  [
    '535 5.7.139 Authentication unsuccessful, the request did not meet the criteria to be authenticated successfully. Contact your administrator. [DM6PR02CA0091.namprd02.prod.outlook.com]',
    'smtp-535-5.7.139-criteria',
    'auth',
  ],
  ['535 5.7.139 Authentication unsuccessful, basic authentication is disabled. [BN9PR03CA0112.namprd03.prod.outlook.com]', 'smtp-535-5.7.139-basic', 'auth'],
  [
    "535 5.7.139 Authentication unsuccessful, user is locked by your organization's security defaults policy. Contact your administrator. [AM0PR02CA0123.eurprd02.prod.outlook.com]",
    'smtp-535-5.7.139-security-defaults',
    'auth',
  ],
  ['535 5.7.3 Authentication unsuccessful [PH0PR07CA0025.namprd07.prod.outlook.com]', 'smtp-535-5.7.3', 'auth'],
  ['530 5.7.57 Client not authenticated to send mail. [MW4PR03CA0262.namprd03.prod.outlook.com]', 'smtp-530-5.7.57', 'auth'],
  [
    '554 5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to process message due to a permanent exception with message Cannot submit message.',
    'smtp-554-5.2.0-sendas',
    'permanent',
  ],
  ['550 5.7.60 SMTP; Client does not have permissions to send as this sender', 'smtp-550-5.7.60', 'permanent'],
  ['432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded [Hostname=BY5PR04MB6964.namprd04.prod.outlook.com]', 'smtp-432-4.3.2-threads', 'throttled'],
  [
    '554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message due to a permanent exception with message Cannot submit message.',
    'smtp-554-5.2.0-quota',
    'throttled',
  ],
  ['550 5.1.8 Access denied, bad outbound sender', 'smtp-550-5.1.8', 'blocked'],
  ['421 4.7.66 TLS 1.0 and 1.1 are not supported. Please upgrade/update your client to support TLS 1.2.', 'smtp-421-4.7.66', 'permanent'],
  ['451 4.7.500 Server busy. Please try again later. [PR1P264CA0012.FRAP264.PROD.OUTLOOK.COM]', 'smtp-451-4.7.500', 'transient'],
  ['421 4.3.2 Service not available', 'smtp-421-4.3.2', 'transient'],
  ['552 5.3.4 Message size exceeds fixed maximum message size', 'smtp-552-5.3.4', 'permanent'],
  ['452 4.5.3 Too many recipients', 'smtp-452-4.5.3', 'permanent'],
  ['550 5.5.4 Too many recipients', 'smtp-550-5.5.4', 'permanent'],
  // shared/M365.md's wording of a reply no public paste was found for (see src/sandbox/recorded-replies.ts).
  ['554 5.2.2 mailbox full; STOREDRV.Submission.Exception:QuotaExceededException.MapiExceptionQuotaExceeded', 'smtp-554-5.2.2-mailbox-full', 'blocked'],
];

describe('the reply catalogue', () => {
  it('maps every recorded Exchange Online reply to its row, class, cause and fix', () => {
    for (const [reply, id, cls] of RECORDED) {
      const e = explainSmtpReply(reply, 'relay@contoso.com');
      assert.equal(e.id, id, reply);
      assert.equal(e.class, cls, reply);
      assert.ok(e.cause.length > 10 && e.fix.length > 10, `${id} explains itself`);
      assert.ok(!e.fix.includes('{mailbox}'), 'the mailbox is filled in');
    }
  });

  it('gives every reply users pasted in public threads its specific row and class', () => {
    for (const entry of RECORDED_SMTP_REPLIES) {
      assert.match(entry.source, /^https:\/\//, `${entry.reply} names its source`);
      const reply = entry.code === undefined ? entry.reply : `${entry.code} ${entry.reply}`;
      const e = explainSmtpReply(reply, 'relay@contoso.com');
      assert.equal(e.id, entry.row, `${reply} (${entry.source})`);
      assert.equal(e.class, entry.class, reply);
      assert.ok(!e.id.endsWith('-unknown'), `${reply} has a specific row`);
    }
  });

  it('tells the worker what to do beyond the class: fewer connections, a day-window hold', () => {
    assert.deepEqual(explainSmtpReply('432 4.3.2 Concurrent connections limit exceeded.').handling, { lowerConcurrency: true });
    assert.deepEqual(explainSmtpReply('554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException').handling, {
      holdUntilRecipientWindowFrees: true,
    });
    assert.equal(explainSmtpReply('535 5.7.3 Authentication unsuccessful').handling, undefined);
  });

  it('has a recorded reply for every SMTP row (no untested row)', () => {
    const tested = new Set([...RECORDED.map(([, id]) => id), ...RECORDED_SMTP_REPLIES.map((e) => e.row)]);
    assert.deepEqual(
      SMTP_REPLY_CATALOGUE.map((r) => r.id).filter((id) => !tested.has(id)),
      [],
    );
  });

  it('falls back to the RFC 3463 class for replies it does not know', () => {
    assert.equal(explainSmtpReply('450 4.2.1 Mailbox busy').class, 'transient');
    assert.equal(explainSmtpReply('550 5.1.1 User unknown').class, 'permanent');
    assert.equal(explainSmtpReply('535 5.7.8 Bad credentials').class, 'auth');
    assert.equal(explainSmtpReply('250 2.0.0 OK').class, 'sent');
    assert.equal(explainSmtpReply('garbage').id, 'smtp-unparsable');
  });

  it('finds the code in every token error users pasted and gives it its row and class', () => {
    for (const entry of RECORDED_AADSTS_ERRORS) {
      assert.match(entry.source, /^https:\/\//, `${entry.text} names its source`);
      const code = findAadstsCode(entry.text) ?? entry.code;
      const row = explainAadsts(code);
      assert.equal(row?.id, entry.row, `${entry.text} (${entry.source})`);
      assert.equal(row.class, entry.class, entry.text);
      assert.ok(row.cause.length > 10 && row.fix.length > 10, `${entry.row} explains itself`);
    }
  });

  it('has a pasted text for every identity code the sandbox gives (row ids aadsts-<code>)', () => {
    const recorded = new Set(RECORDED_AADSTS_ERRORS.map((e) => e.row));
    const needed = [70020, 1002012, 70043, 50057, 50055, 7000112, 650057, 700025, 530035, 53003, 50076, 50173, 7000222, 700027, 65001, 50126, 700016, 90002];
    assert.deepEqual(
      needed.map((n) => `aadsts-${n}`).filter((id) => !recorded.has(id)),
      [],
    );
  });

  it('tells the Security Defaults and Conditional Access cases apart from SMTP AUTH being off', () => {
    // For an OAuth login they act at the token endpoint; turning Security Defaults off is not the fix.
    for (const code of ['AADSTS530035', 'AADSTS53003', 'AADSTS50076']) {
      const row = explainAadsts(code)!;
      assert.match(row.cause, /token endpoint/, code);
      assert.doesNotMatch(row.fix, /(disable|turn off|switch off) (the )?Security Defaults/i, code);
    }
    assert.doesNotMatch(explainSmtpReply("535 5.7.139 Authentication unsuccessful, user is locked by your organization's security defaults policy.").fix, /(disable|turn off) Security Defaults/i);
    assert.match(explainSmtpReply('535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.').fix, /Set-TransportConfig -SmtpClientAuthenticationDisabled \$false/);
  });

  it('explains every AADSTS row and finds codes in error bodies and messages', () => {
    for (const [code, row] of Object.entries(AADSTS_CATALOGUE)) {
      assert.equal(explainAadsts(code), row);
      assert.match(row.id, /^aadsts-\d+$/);
      assert.ok(row.fix.length > 10, `${code} has a fix`);
    }
    assert.equal(findAadstsCode('invalid_client: AADSTS7000222: The provided client secret keys for app ... are expired.'), 'AADSTS7000222');
    assert.equal(findAadstsCode(undefined, [700016]), 'AADSTS700016');
    assert.equal(explainAadsts('AADSTS1'), undefined);
  });

  it('gives every Graph error users pasted its row and class, at the status pasted or, when the paste lacks it, at any', () => {
    for (const entry of RECORDED_GRAPH_ERRORS) {
      assert.match(entry.source, /^https:\/\//, `${entry.code} names its source`);
      for (const status of entry.status !== undefined ? [entry.status] : [400, 403, 404, 500]) {
        const e = explainGraphError(status, entry.code, 'relay@contoso.com', entry.message);
        assert.equal(e.id, entry.row, `${status} ${entry.code}: ${entry.message} (${entry.source})`);
        assert.equal(e.class, entry.class, `${entry.code} ${entry.message}`);
        assert.ok(!e.fix.includes('{mailbox}') && !e.cause.includes('{mailbox}'), 'the mailbox is filled in');
      }
    }
  });

  it('tells an app scoped away from the mailbox (RAOP) from one without Mail.Send, and explains both with the Exchange commands', () => {
    // shared/M365.md's wording of the RAOP refusal (no public paste of it with a citable address was found).
    const raop = explainGraphError(403, 'ErrorAccessDenied', 'relay@contoso.com', 'Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly AccessPolicy settings.');
    assert.equal(raop.id, 'graph-403-access-denied-scoped');
    for (const command of ['New-ServicePrincipal', 'New-ManagementScope', 'New-ManagementRoleAssignment -App', '-CustomResourceScope', 'Test-ServicePrincipalAuthorization'])
      assert.ok(raop.fix.includes(command), command);
    // Without the message (an older caller) the code's general row still names both causes.
    assert.equal(explainGraphError(403, 'ErrorAccessDenied').id, 'graph-403-access-denied');
    assert.match(explainGraphError(401, 'NoPermissionsInAccessToken').fix, /Mail\.Send.*Grant admin consent/);
    assert.deepEqual(explainGraphError(429, 'ApplicationThrottled', 'a@b.c', 'Application is over its MailboxConcurrency limit.').handling, { lowerConcurrency: true });
  });

  it('has a recorded answer for every Graph row with a code', () => {
    const recorded = new Set(RECORDED_GRAPH_ERRORS.map((e) => e.row));
    const untested = GRAPH_ERROR_CATALOGUE.filter((r) => r.code !== undefined && !recorded.has(r.id)).map((r) => r.id);
    // ErrorInvalidRecipients and ErrorMimeContentInvalidBase64String: no public paste found yet.
    assert.deepEqual(untested, ['graph-400-invalid-recipients', 'graph-400-mime-base64']);
  });

  it('records at least 40 SMTP replies and 25 identity and Graph errors, each from a public source', () => {
    assert.ok(RECORDED_SMTP_REPLIES.length >= 40, `${RECORDED_SMTP_REPLIES.length} SMTP replies`);
    assert.ok(RECORDED_AADSTS_ERRORS.length + RECORDED_GRAPH_ERRORS.length >= 25, 'identity and Graph errors');
    const sources = [...RECORDED_SMTP_REPLIES, ...RECORDED_AADSTS_ERRORS, ...RECORDED_GRAPH_ERRORS].map((e) => e.source);
    for (const source of sources) assert.match(source, /^https:\/\/(github\.com|learn\.microsoft\.com|pastebin\.com)\//, source);
  });

  it('has a row in docs/errors.md for every catalogue row, and none for a row that does not exist', async () => {
    const doc = await readFile(new URL('../../docs/errors.md', import.meta.url), 'utf8');
    const documented = new Set([...doc.matchAll(/^\| `((?:smtp|graph|aadsts)-[^`]+)` \|/gm)].map((m) => m[1]));
    const rows = [...SMTP_REPLY_CATALOGUE, ...GRAPH_ERROR_CATALOGUE, ...Object.values(AADSTS_CATALOGUE)].map((r) => r.id);
    assert.deepEqual(
      rows.filter((id) => !documented.has(id)),
      [],
      'catalogue rows missing from docs/errors.md',
    );
    assert.deepEqual(
      [...documented].filter((id) => !rows.includes(id!)),
      [],
      'docs/errors.md lists rows the catalogue lacks',
    );
  });

  it('takes a 454 to STARTTLS or AUTH for what RFC 3207 and RFC 4954 say it is: a temporary failure, retried, the mailbox not paused', () => {
    for (const reply of ['454 4.7.0 TLS not available due to temporary reason', '454 4.7.0 Temporary authentication failure']) {
      assert.equal(explainSmtpReply(reply).class, 'transient', reply);
    }
  });

  it('names connection failures by their Node and OpenSSL codes', () => {
    assert.equal(explainConnectionError('ECONNREFUSED')?.class, 'transient');
    assert.equal(
      explainConnectionError(undefined, 'Hostname/IP does not match certificate: ERR_TLS_CERT_ALTNAME_INVALID')?.id,
      'net-err_tls_cert_altname_invalid',
    );
    // An untrusted certificate blocks the mailbox (paused, queue kept), it does not bounce the message.
    for (const code of ['SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_HAS_EXPIRED', 'ERR_TLS_CERT_ALTNAME_INVALID'])
      assert.equal(explainConnectionError(code)?.class, 'blocked', code);
    assert.equal(explainConnectionError('ECONNRESET')?.class, 'transient');
    assert.equal(explainConnectionError('E_SOMETHING_ELSE'), undefined);
  });
});
