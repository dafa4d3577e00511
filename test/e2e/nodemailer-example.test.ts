/**
 * examples/nodemailer-switch.mjs, an app that sends with nodemailer and was switched to relay365 by
 * its createTransport line, run as a user runs it (node, importing the built package) against the sandbox.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';
import { sandboxSettings } from '../helpers/config.js';
import { parseWithPython } from '../helpers/python-mime.js';
import { scenario, startTestSandbox, tempDir } from '../helpers/sandbox.js';

const EXAMPLE = fileURLToPath(new URL('../../examples/nodemailer-switch.mjs', import.meta.url));
// Refused by Exchange at RCPT (550 5.1.10): it does not exist at the tenant's own domain.
const NOBODY = `nobody@${DEFAULT_IDS.tenantDomain}`;

describe('the nodemailer example, switched to relay365 by one line (built package against the sandbox)', () => {
  let sandbox: Sandbox & { dir: string };
  let dir: { path: string; cleanup: () => Promise<void> };
  let config: string;

  const run = (to: string): Promise<{ code: number; stdout: string; stderr: string }> =>
    new Promise((resolve) =>
      execFile(
        process.execPath,
        [EXAMPLE, to],
        { env: { ...process.env, APP_SECRET: DEFAULT_IDS.appSecret, RELAY365_CONFIG: config, MAIL_FROM: DEFAULT_IDS.mailbox } },
        (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
      ),
    );

  before(async () => {
    dir = await tempDir();
    sandbox = await startTestSandbox({
      scenario: scenario((s) => {
        s.limits.unlimited = true;
        s.mailFlow.unknownRecipients = [NOBODY];
      }),
    });
    config = join(dir.path, 'relay365.yaml');
    await writeFile(
      config,
      stringify({
        dataDir: join(dir.path, 'data'),
        ...sandboxSettings(sandbox),
        auth: { flow: 'client-secret', tenant: DEFAULT_IDS.tenantId, clientId: DEFAULT_IDS.appClientId, clientSecret: 'env:APP_SECRET' },
        mailboxes: [{ address: DEFAULT_IDS.mailbox }],
      }),
    );
  });
  after(async () => {
    await sandbox?.close();
    await dir?.cleanup();
  });

  it("sends nodemailer's message, attachment and all, through the outbox to the sandbox and prints nodemailer's info", async () => {
    const res = await run('billing@example.net');
    assert.equal(res.code, 0, res.stdout + res.stderr);
    const messageId = /^sent (<[^>]+>): 250 2\.0\.0 OK/m.exec(res.stdout)?.[1];
    assert.ok(messageId, res.stdout);
    assert.match(res.stdout, /^ {2}accepted: billing@example\.net$/m);
    assert.match(res.stdout, /^ {2}rejected: -$/m);
    const got = sandbox.state.messages.find((m) => m.raw.toString('utf8').includes(messageId));
    assert.ok(got, 'the sandbox received the message');
    assert.deepEqual(got.envelope.rcptTo, ['billing@example.net']);
    const parsed = await parseWithPython(got.raw);
    assert.equal(parsed.subject, 'Your invoice');
    assert.equal(parsed.attachments[0]?.filename, 'invoice.txt');
  });

  it("reports the recipient Exchange refused as nodemailer's SMTP transport does, and exits 1", async () => {
    const before = sandbox.state.messages.length;
    const res = await run(NOBODY);
    assert.equal(res.code, 1, res.stdout + res.stderr);
    assert.match(res.stdout, /^refused \(EENVELOPE\): Message \S+ failed after 1 attempt\(s\): 550 5\.1\.10 .+ Fix: /m);
    assert.equal(sandbox.state.messages.length, before);
  });
});
