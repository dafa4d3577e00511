import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { CLI, freePort, stop } from '../helpers/cli.js';
import { httpsRequest } from '../helpers/https.js';
import { tempDir } from '../helpers/sandbox.js';

const DOC = new URL('../../docs/http-api.md', import.meta.url);
/** The address the examples are written for; the one substitution the test makes. */
const DOC_ADDRESS = 'http://127.0.0.1:8025';

/** Every ```sh or ```bash block of the page, in order. */
export function shellExamples(markdown: string): string[] {
  return [...markdown.matchAll(/^```(?:sh|bash)\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
}

interface BlockRun {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Each curl request of the block: its status, method and URL (from the curl wrapper's --write-out on stderr). */
  requests: Array<{ status: number; method: string; url: string }>;
  /** The JSON bodies printed on stdout, one a line. */
  bodies: Array<Record<string, unknown>>;
}

describe('docs/http-api.md: every shell example runs as written against relay365 serve --sandbox', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let serve: ChildProcess;
  let httpAddress: string;
  let sandboxUrl: string;
  let ca: string;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    dir = await tempDir('relay365-http-docs-');
    const httpPort = await freePort();
    httpAddress = `http://127.0.0.1:${httpPort}`;
    // Only ports differ from the demo's defaults (so that the test shares the machine), and a long auth
    // pause, so that the message the last example retries and cancels stays waiting meanwhile.
    await writeFile(
      join(dir.path, 'relay365.yaml'),
      stringify({ http: { port: httpPort }, smtp: { listeners: [{ host: '127.0.0.1', port: 0, tls: 'starttls' }] }, queue: { authPauseSeconds: 600 } }),
    );
    // relay365 and curl as a user's shell finds them: the built CLI as the package's bin, and curl
    // through a wrapper that only adds --write-out, the status of each request, on stderr.
    const bin = join(dir.path, 'bin');
    await mkdir(bin);
    const realCurl = (await promisify(execFile)('sh', ['-c', 'command -v curl'])).stdout.trim();
    await writeFile(join(bin, 'relay365'), `#!/bin/sh\nexec '${process.execPath}' '${CLI}' "$@"\n`);
    await writeFile(join(bin, 'curl'), `#!/bin/sh\nexec '${realCurl}' -w '\\n%{stderr}HTTP %{http_code} %{method} %{url_effective}\\n' "$@"\n`);
    await chmod(join(bin, 'relay365'), 0o755);
    await chmod(join(bin, 'curl'), 0o755);
    env = { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}` };
    for (const name of Object.keys(env)) if (name.startsWith('RELAY365_')) delete env[name];

    serve = spawn(process.execPath, [CLI, 'serve', '--sandbox'], { cwd: dir.path, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    serve.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-5000)));
    const started = await new Promise<{ url: string; caPath: string }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`serve --sandbox did not start: ${stderr}`)), 60_000);
      serve.once('exit', (code) => reject(new Error(`serve --sandbox exited ${code}: ${stderr}`)));
      createInterface({ input: serve.stdout! }).on('line', (line) => {
        const m = /sandbox: what arrived\s+(\S+)\/sandbox\/messages\s+\(CA (.+)\)$/.exec(line);
        if (m) {
          clearTimeout(timer);
          resolve({ url: m[1]!, caPath: m[2]! });
        }
      });
    });
    sandboxUrl = started.url;
    ca = await readFile(started.caPath, 'utf8');
  });

  after(async () => {
    if (serve) await stop(serve);
    await dir?.cleanup();
  });

  /** Runs one example in bash in the demo's folder, with what the earlier ones exported. */
  async function runBlock(block: string): Promise<BlockRun> {
    const script = `set -eo pipefail\nif [ -f .examples-env ]; then . ./.examples-env; fi\n${block.replaceAll(DOC_ADDRESS, httpAddress)}\nexport -p > .examples-env\n`;
    return new Promise((resolve, reject) => {
      const child = spawn('bash', ['-c', script], { cwd: dir.path, env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
      child.on('error', reject);
      child.on('close', (code) => {
        clearTimeout(timer);
        const requests = [...stderr.matchAll(/^HTTP (\d{3}) (\S+) (\S+)$/gm)].map((m) => ({ status: Number(m[1]), method: m[2]!, url: m[3]! }));
        const bodies = stdout
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l) as Record<string, unknown>);
        resolve({ code, stdout, stderr, requests, bodies });
      });
    });
  }

  async function api(path: string, init: { method?: string; body?: unknown } = {}): Promise<{ status: number; body: Record<string, unknown> }> {
    const key = /RELAY365_API_KEY="?([^"\n]+)"?/.exec(await readFile(join(dir.path, '.examples-env'), 'utf8'))![1]!;
    const response = await fetch(httpAddress + path, {
      method: init.method ?? (init.body !== undefined ? 'POST' : 'GET'),
      headers: { authorization: `Bearer ${key}`, ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  }

  async function waitForState(id: string, states: string[]): Promise<Record<string, unknown>> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const { body } = await api(`/v1/messages/${id}`);
      if (states.includes(String(body.state))) return body;
      if (Date.now() > deadline) throw new Error(`message ${id} is ${String(body.state)}, not ${states.join(' or ')}: ${JSON.stringify(body)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  const ok = (run: BlockRun, statuses: number[]): void => {
    assert.equal(run.code, 0, `the example failed:\n${run.stdout}\n${run.stderr}`);
    assert.deepEqual(
      run.requests.map((r) => r.status),
      statuses,
      `statuses of ${run.requests.map((r) => `${r.method} ${r.url}`).join(', ')}:\n${run.stdout}`,
    );
    assert.doesNotMatch(run.stdout, /"error":/);
  };

  it('runs the API key, send, raw MIME, follow-up, retry and cancel examples, each answering as the page says', async () => {
    const blocks = shellExamples(await readFile(DOC, 'utf8'));
    assert.equal(blocks.length, 6, 'a shell example was added or removed: give it its checks here');
    const sent: string[] = [];

    // API keys: the key is exported for the examples that follow; old-app is created, then revoked.
    const keys = await runBlock(blocks[0]!);
    ok(keys, []);
    assert.match(await readFile(join(dir.path, '.examples-env'), 'utf8'), /RELAY365_API_KEY="?r365_[A-Za-z0-9_-]{40,}/);
    assert.match(keys.stdout, /key_\S+\s+\S+…\s+billing-app\s+send,read,admin\s+created/);
    assert.match(keys.stdout, /API key key_\S+ \(old-app\) revoked\./);

    // POST /v1/messages with every field: 202, queued for the sandbox's mailbox.
    assert.ok(blocks[1]!.includes(DOC_ADDRESS));
    const send = await runBlock(blocks[1]!);
    ok(send, [202]);
    assert.match(send.stdout, /^HTTP\/1\.1 202 Accepted\r?$/m);
    assert.match(send.stdout, /^location: \/v1\/messages\/[0-9a-f-]{36}\r?$/im);
    const accepted = send.bodies[0]!;
    assert.deepEqual([accepted.state, accepted.mailbox], ['queued', 'relay@contoso.example']);
    assert.deepEqual((accepted.envelope as { to: string[] }).to, ['alice@example.net', 'accounts@example.net', 'archive@contoso.example']);
    sent.push(String(accepted.id));

    // POST /v1/messages/mime: the message.eml the example writes, base64.
    const mime = await runBlock(blocks[2]!);
    ok(mime, [202]);
    assert.equal(mime.bodies[0]!.state, 'queued');
    assert.deepEqual(mime.bodies[0]!.envelope, { from: 'noreply@contoso.example', to: ['alice@example.net'] });
    sent.push(String(mime.bodies[0]!.id));

    // Following a message: its id kept from the 202, then GET by it.
    const follow = await runBlock(blocks[3]!);
    ok(follow, [202, 200]);
    // The 202's body went into $ID; the GET's URL ends with it, and its body is the one printed.
    const followedId = /\/v1\/messages\/([0-9a-f-]{36})$/.exec(follow.requests[1]!.url)?.[1];
    const followed = follow.bodies[0]!;
    assert.equal(follow.bodies.length, 1);
    assert.equal(followed.id, followedId);
    assert.ok(['queued', 'sending', 'sent'].includes(String(followed.state)), String(followed.state));
    assert.ok(Array.isArray(followed.attempts));
    sent.push(String(followedId));

    // Each was sent as the sandbox allows (a From it refuses would fail with SendAsDenied).
    for (const id of sent) assert.equal((await waitForState(id, ['sent', 'failed'])).state, 'sent', id);
    const arrived = await httpsRequest(`${sandboxUrl}/sandbox/messages`, { ca });
    const subjects = arrived.json<{ messages: Array<{ subject: string }> }>().messages.map((m) => m.subject);
    assert.deepEqual(subjects.sort(), ['Hello', 'Invoice 2026-0042', 'Invoice 2026-0042']);

    // What the page says the test does before the retry and cancel examples: SMTP AUTH off in the
    // sandbox, for new connections and (a fault) on the one the relay keeps open, so the next message
    // is deferred and its mailbox paused.
    const scenario = (await httpsRequest(`${sandboxUrl}/sandbox/scenario`, { ca })).json<{
      tenants: Array<{ smtpAuthEnabled: boolean }>;
      faults: { smtp: unknown[] };
    }>();
    for (const tenant of scenario.tenants) tenant.smtpAuthEnabled = false;
    scenario.faults.smtp.push({
      stage: 'mail',
      reply: '535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.',
      count: 10,
    });
    const put = await httpsRequest(`${sandboxUrl}/sandbox/scenario`, {
      method: 'PUT',
      ca,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(scenario),
    });
    assert.equal(put.status, 200, put.text);
    const waiting = await api('/v1/messages', { body: { from: 'relay@contoso.example', to: 'bob@example.net', subject: 'Waits', text: 'x' } });
    assert.equal(waiting.status, 202);
    const waitingId = String(waiting.body.id);
    await waitForState(waitingId, ['deferred']);

    const later = await runBlock(blocks[4]!);
    ok(later, [200, 200, 200, 200, 200]);
    const [list, retried, cancelled, mailboxes] = later.bodies;
    assert.deepEqual(
      (list!.items as Array<{ id: string }>).map((m) => m.id),
      [waitingId],
    );
    assert.deepEqual(retried, { id: waitingId, state: 'queued' });
    assert.deepEqual(cancelled, { id: waitingId, state: 'cancelled' });
    const relay = (mailboxes!.items as Array<{ address: string; paused: boolean }>).find((m) => m.address === 'relay@contoso.example');
    assert.equal(relay?.paused, true);

    // Batch, scheduled send, tags and search: two queued (the mailbox is paused meanwhile), Bob's an hour ahead, found by tag and recipient.
    const batch = await runBlock(blocks[5]!);
    ok(batch, [200, 200]);
    const [answer, found] = batch.bodies as [
      { queued: number; refused: number; items: Array<{ index: number; status: number; id: string; sendAt: string | null; tags: string[] }> },
      { items: Array<{ id: string; tags: string[]; metadata: Record<string, string>; sendAt: string | null; state: string }> },
    ];
    assert.deepEqual([answer.queued, answer.refused, answer.items.map((i) => [i.index, i.status])], [2, 0, [[0, 202], [1, 202]]]);
    assert.equal(answer.items[0]!.sendAt, null);
    const at = Date.parse(answer.items[1]!.sendAt ?? '');
    assert.ok(at > Date.now() + 3_000_000 && at <= Date.now() + 3_600_000, `sendAt an hour ahead: ${answer.items[1]!.sendAt}`);
    assert.deepEqual(
      found.items.map((m) => [m.id, m.tags, m.metadata, m.state]),
      [[answer.items[1]!.id, ['welcome'], { customer: 'c-42' }, 'queued']],
    );
  });
});
