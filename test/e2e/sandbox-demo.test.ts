import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DEFAULT_IDS } from '../../src/sandbox/index.js';
import { freePort, runCli, startSandboxDemo, stop, type SandboxDemo } from '../helpers/cli.js';
import { httpsRequest } from '../helpers/https.js';
import { tempDir } from '../helpers/sandbox.js';

const MAILBOX = DEFAULT_IDS.mailbox;

/** The demo on free ports (tests run beside other relays); otherwise exactly what `npm start` runs. */
async function startDemo(cwd: string): Promise<SandboxDemo> {
  const [smtp, http] = await Promise.all([freePort(), freePort()]);
  return startSandboxDemo(cwd, { RELAY365_SMTP__LISTENERS: `[{ host: 127.0.0.1, port: ${smtp} }]`, RELAY365_HTTP__PORT: String(http) });
}

/** `sandbox: what arrived  https://localhost:PORT/sandbox/messages  (CA /path/ca.pem)` from the start-up text. */
function sandboxEndpoints(stdout: string): { messagesUrl: string; caPath: string } {
  const m = /what arrived\s+(https:\/\/\S+\/sandbox\/messages)\s+\(CA (\S+)\)/.exec(stdout);
  assert.ok(m, `the start-up text names the sandbox's messages and CA:\n${stdout}`);
  return { messagesUrl: m[1]!, caPath: m[2]! };
}

async function mode(path: string): Promise<string> {
  return ((await stat(path)).mode & 0o777).toString(8);
}

describe('the sandbox demo (npm start) and the commands of a second shell (built CLI)', () => {
  it('explains in serve --help what a second shell can run against the demo, and where the config and the password are', async () => {
    const { code, stdout } = await runCli(['serve', '--help']);
    assert.equal(code, 0);
    for (const text of [
      './data/sandbox/relay365.yaml',
      './data/sandbox/admin-password',
      'relay365 doctor',
      'relay365 test --to you@example.net',
      'relay365 token',
      'relay365 apikey create --name my-app',
      'relay365 queue list',
    ])
      assert.ok(stdout.includes(text), `serve --help mentions ${text}`);
    assert.doesNotMatch(stdout, /else the config of the sandbox demo/, 'serve itself never reads a demo config');
  });

  it('lets doctor, test and token in the same folder reach the running demo, with no flag and no config of their own', async () => {
    const dir = await tempDir('relay365-demo-');
    let demo: SandboxDemo | undefined;
    try {
      demo = await startDemo(dir.path);
      const configFile = join(dir.path, 'data', 'sandbox', 'relay365.yaml');
      assert.match(demo.stdout, /In a second shell, in this folder \(the commands read data\/sandbox\/relay365\.yaml/);
      for (const step of [
        'npx relay365 doctor',
        'npx relay365 test --to you@example.net',
        'npx relay365 apikey create --name my-app',
        'npx relay365 queue list',
      ])
        assert.ok(demo.stdout.includes(step), `the start-up text shows ${step}:\n${demo.stdout}`);

      // The file holds what reaches the sandbox, and no secret: those are files of their own, 0600.
      const written = await readFile(configFile, 'utf8');
      assert.equal(await mode(configFile), '600');
      assert.match(written, /^# relay365 serve --sandbox, pid \d+, running since /);
      assert.match(written, /cloud: sandbox/);
      assert.ok(!written.includes(DEFAULT_IDS.appSecret), 'the app secret is referred to, not written');
      assert.match(written, /clientSecret: file:\S+app-secret/);
      assert.equal(await mode(join(dir.path, 'data', 'sandbox', 'app-secret')), '600');

      const doctor = await runCli(['doctor'], { cwd: dir.path, timeoutMs: 60_000 });
      assert.equal(doctor.code, 0, `doctor: ${doctor.stdout}${doctor.stderr}`);
      assert.match(doctor.stdout, /\[pass\] AUTH XOAUTH2: Exchange accepts the token for the mailbox/);
      assert.match(doctor.stdout, new RegExp(`Every check passed: relay365 can send as ${MAILBOX.replace('.', '\\.')}`));
      assert.doesNotMatch(doctor.stdout, /\[(FAIL|warn)\]/);

      const test = await runCli(['test', '--to', 'someone@example.net'], { cwd: dir.path, timeoutMs: 60_000 });
      assert.equal(test.code, 0, `test: ${test.stdout}${test.stderr}`);
      assert.match(test.stdout, /^C: AUTH XOAUTH2 <redacted>$/m);
      assert.match(test.stdout, new RegExp(`^sent as ${MAILBOX.replace('.', '\\.')}: 250 2\\.0\\.0 OK`, 'm'));

      // It reached the demo's own sandbox: Exchange (the sandbox) lists the message.
      const { messagesUrl, caPath } = sandboxEndpoints(demo.stdout);
      const arrived = await httpsRequest(messagesUrl, { ca: await readFile(caPath, 'utf8') });
      const messages = arrived.json<{ messages: Array<{ mailbox: string; envelope: { rcptTo: string[] }; subject: string }> }>().messages;
      assert.deepEqual(
        messages.map((m) => [m.mailbox, m.envelope.rcptTo, /^relay365 test message/.test(m.subject)]),
        [[MAILBOX, ['someone@example.net'], true]],
      );

      const token = await runCli(['token'], { cwd: dir.path, timeoutMs: 60_000 });
      assert.equal(token.code, 0, token.stderr);
      assert.match(token.stdout, /^roles\s+SMTP\.SendAsApp$/m);

      assert.equal(await stop(demo.child), 0);
      demo = undefined;
      assert.match(await readFile(configFile, 'utf8'), /^# relay365 serve --sandbox, pid \d+, stopped at /);
      const after = await runCli(['test', '--to', 'someone@example.net'], { cwd: dir.path });
      assert.equal(after.code, 1);
      assert.match(after.stderr, /The sandbox demo that wrote data\/sandbox\/relay365\.yaml \(relay365 serve --sandbox, pid \d+\) has stopped/);
      assert.match(after.stderr, /Start the demo again \(npm start\)/);
      assert.match(after.stderr, /\[R365_CONFIG_NOT_FOUND\]$/m);
      const doctorAfter = await runCli(['doctor'], { cwd: dir.path });
      assert.equal(doctorAfter.code, 1);
      assert.match(
        doctorAfter.stdout,
        /\[FAIL\] Config: .*: the sandbox demo has stopped\n {2}cause: The sandbox demo that wrote data\/sandbox\/relay365\.yaml .* has stopped/,
      );
      assert.match(doctorAfter.stdout, /^ {2}fix: Start the demo again \(npm start, or relay365 serve --sandbox\)/m);
      // Its config still reads its outbox when asked for by name.
      const queue = await runCli(['queue', 'list', '--config', 'data/sandbox/relay365.yaml'], { cwd: dir.path });
      assert.equal(queue.code, 0, queue.stderr);
    } finally {
      if (demo) await stop(demo.child, 'SIGKILL');
      await dir.cleanup();
    }
  });

  it('keeps the dashboard password across restarts, and a demo killed with SIGKILL is reported as stopped', async () => {
    const dir = await tempDir('relay365-demo-');
    let demo: SandboxDemo | undefined;
    try {
      demo = await startDemo(dir.path);
      const password = /password (\S+) {2}\(kept in data\/sandbox\/admin-password, mode 0600\)/.exec(demo.stdout)?.[1];
      assert.ok(password && password.length >= 16, `a generated password is printed:\n${demo.stdout}`);
      const passwordFile = join(dir.path, 'data', 'sandbox', 'admin-password');
      assert.equal(await mode(passwordFile), '600');
      assert.equal((await readFile(passwordFile, 'utf8')).trim(), password);
      assert.ok(!(await readFile(join(dir.path, 'data', 'sandbox', 'relay365.yaml'), 'utf8')).includes(password), 'the config refers to the file');
      assert.doesNotMatch(demo.stderr(), new RegExp(password), 'no log line holds it');

      // A second demo on the same folder would replace the CA and the config the first one's commands read.
      const ca = await readFile(join(dir.path, 'data', 'sandbox', 'ca.pem'), 'utf8');
      const second = await runCli(['serve', '--sandbox'], { cwd: dir.path, env: { RELAY365_HTTP__PORT: '0', RELAY365_SMTP__LISTENERS: '[{ port: 0 }]' } });
      assert.equal(second.code, 1);
      assert.match(second.stderr, /A sandbox demo already runs on this data folder \(relay365 serve --sandbox, pid \d+, data\/sandbox\/relay365\.yaml\)/);
      assert.match(second.stderr, /\[R365_SANDBOX_START_FAILED\]/);
      assert.equal(await readFile(join(dir.path, 'data', 'sandbox', 'ca.pem'), 'utf8'), ca, 'the running demo keeps its CA');
      assert.equal(await stop(demo.child), 0);

      demo = await startDemo(dir.path);
      assert.ok(demo.stdout.includes(`password ${password} `), 'the second start prints the same password');
      // No graceful stop: the file still says "running", but its process is gone.
      await stop(demo.child, 'SIGKILL');
      demo = undefined;
      assert.match(await readFile(join(dir.path, 'data', 'sandbox', 'relay365.yaml'), 'utf8'), /^# relay365 serve --sandbox, pid \d+, running since /);
      const token = await runCli(['token'], { cwd: dir.path });
      assert.equal(token.code, 1);
      assert.match(token.stderr, /has stopped.*\[R365_CONFIG_NOT_FOUND\]/s);
    } finally {
      if (demo) await stop(demo.child, 'SIGKILL');
      await dir.cleanup();
    }
  });
});
