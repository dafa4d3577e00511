import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';
import { runCli } from '../helpers/cli.js';
import { sandboxSettings } from '../helpers/config.js';
import { parseWithPython } from '../helpers/python-mime.js';
import { scenario, startTestSandbox, tempDir } from '../helpers/sandbox.js';

describe('relay365 send, relay365 test and the library example (built package against the sandbox)', () => {
  let sandbox: Sandbox & { dir: string };
  let dir: { path: string; cleanup: () => Promise<void> };
  let config: string;
  const env = { APP_SECRET: DEFAULT_IDS.appSecret };

  before(async () => {
    dir = await tempDir();
    sandbox = await startTestSandbox({ scenario: scenario((s) => void (s.limits.unlimited = true)) });
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
    await sandbox.close();
    await dir.cleanup();
  });

  it("send delivers a message with a UTF-8 subject and an attachment, and prints Exchange's reply", async () => {
    const file = join(dir.path, 'report.csv');
    await writeFile(file, 'a,b\n1,2\n');
    const res = await runCli(
      ['send', '--config', config, '--from', DEFAULT_IDS.mailbox, '--to', 'ops@example.net', '--subject', 'Rapport ✓', '--text', 'Voilà', '--attach', file],
      { env },
    );
    assert.equal(res.code, 0, res.stdout + res.stderr);
    assert.match(res.stdout, /^sent as relay@contoso\.example: 250 2\.0\.0 OK/m);
    const parsed = await parseWithPython(sandbox.state.messages.at(-1)!.raw);
    assert.equal(parsed.subject, 'Rapport ✓');
    assert.equal(parsed.text?.trim(), 'Voilà');
    assert.equal(parsed.attachments[0]?.filename, 'report.csv');
  });

  it('send --eml sends the file byte for byte (a missing Date added) and --json reports a refusal with its explanation', async () => {
    const eml = join(dir.path, 'm.eml');
    const raw = 'From: relay@contoso.example\r\nTo: ops@example.net\r\nSubject: raw\r\nMessage-ID: <raw-1@contoso.example>\r\n\r\nraw body\r\n';
    await writeFile(eml, raw);
    const ok = await runCli(['send', '--config', config, '--from', DEFAULT_IDS.mailbox, '--to', 'ops@example.net', '--eml', eml], { env });
    assert.equal(ok.code, 0, ok.stderr);
    // Byte for byte behind the Date it lacks (RFC 5322 3.6), which every door adds.
    const sent = sandbox.state.messages.at(-1)!.raw.toString();
    assert.ok(sent.endsWith(raw), sent);
    assert.match(sent.slice(0, -raw.length), /^Date: [^\r\n]+ \+0000\r\n$/);
    const denied = await runCli(
      ['send', '--config', config, '--from', 'boss@contoso.example', '--to', 'ops@example.net', '--text', 'x', '--mailbox', DEFAULT_IDS.mailbox, '--json'],
      { env },
    );
    assert.equal(denied.code, 1);
    const result = JSON.parse(denied.stdout) as { ok: boolean; class: string; explanation: { fix: string } };
    assert.equal(result.ok, false);
    assert.equal(result.class, 'permanent');
    assert.match(result.explanation.fix, /Add-RecipientPermission/);
  });

  it('test prints the SMTP transcript with AUTH redacted and no token anywhere', async () => {
    const res = await runCli(['test', '--config', config, '--to', 'ops@example.net'], { env });
    assert.equal(res.code, 0, res.stdout + res.stderr);
    const out = res.stdout + res.stderr;
    assert.match(out, /C: AUTH XOAUTH2 <redacted>/);
    assert.match(out, /S: 235 2\.7\.0 Authentication successful/);
    assert.match(out, /250-AUTH LOGIN XOAUTH2/);
    assert.ok(!/eyJ[\w-]{10,}/.test(out), 'no JWT in the output');
    assert.ok(!/dXNlcj[\w+/=]{10,}/.test(out), 'no XOAUTH2 string in the output');
    assert.ok(!out.includes(DEFAULT_IDS.appSecret));
    const body = (await parseWithPython(sandbox.state.messages.at(-1)!.raw)).text ?? '';
    assert.match(body, /Auth:\s+OAuth2 \(client-secret\), SMTP AUTH XOAUTH2 over STARTTLS/);
  });

  it('the library example in examples/ sends through the sandbox', async () => {
    const example = fileURLToPath(new URL('../../examples/send-with-library.mjs', import.meta.url));
    const before = sandbox.state.messages.length;
    const { stdout } = await new Promise<{ stdout: string }>((resolve, reject) =>
      execFile(process.execPath, [example, 'friend@example.net'], { env: { ...process.env, ...env, RELAY365_CONFIG: config } }, (err, out, errOut) =>
        err ? reject(new Error(`${err.message}\n${errOut}`)) : resolve({ stdout: out }),
      ),
    );
    assert.match(stdout, /^sent: 250 2\.0\.0 OK/);
    assert.equal(sandbox.state.messages.length, before + 1);
    assert.deepEqual(sandbox.state.messages.at(-1)!.envelope.rcptTo, ['friend@example.net']);
  });

  it('the queued library example in examples/ queues through the outbox, then sends through the sandbox', async () => {
    const example = fileURLToPath(new URL('../../examples/queue-with-library.mjs', import.meta.url));
    const before = sandbox.state.messages.length;
    const { stdout } = await new Promise<{ stdout: string }>((resolve, reject) =>
      execFile(process.execPath, [example, 'queued@example.net'], { env: { ...process.env, ...env, RELAY365_CONFIG: config } }, (err, out, errOut) =>
        err ? reject(new Error(`${err.message}\n${errOut}`)) : resolve({ stdout: out }),
      ),
    );
    const id = /^queued: (\S+)$/m.exec(stdout)?.[1];
    assert.ok(id, stdout);
    assert.match(stdout, /^sent: 250 2\.0\.0 OK/m);
    assert.match(stdout, /^ {2}queued@example\.net: accepted$/m);
    assert.equal(sandbox.state.messages.length, before + 1);
    assert.deepEqual(sandbox.state.messages.at(-1)!.envelope.rcptTo, ['queued@example.net']);
  });
});
