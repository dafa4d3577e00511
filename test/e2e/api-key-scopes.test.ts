import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startRelay, type Relay } from '../../src/runtime/index.js';
import { DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';
import { runCli } from '../helpers/cli.js';
import { sandboxConfig } from '../helpers/config.js';
import { startTestSandbox, tempDir } from '../helpers/sandbox.js';

const MAILBOX = DEFAULT_IDS.mailbox;
const NOREPLY = `noreply@${DEFAULT_IDS.tenantDomain}`;

describe('API key scopes and senders (relay365 apikey create --scope/--sender, the built CLI)', () => {
  let sandbox: Sandbox & { dir: string };
  let dir: { path: string; cleanup: () => Promise<void> };
  let relay: Relay;
  let configFile: string;

  before(async () => {
    sandbox = await startTestSandbox();
    dir = await tempDir();
    configFile = join(dir.path, 'relay365.yaml');
    await writeFile(configFile, `dataDir: ${dir.path}\n`, { mode: 0o600 });
    relay = await startRelay(sandboxConfig(sandbox, dir.path, { http: { port: 0 }, mailboxes: [{ address: MAILBOX, aliases: [NOREPLY] }] }));
  });
  after(async () => {
    await relay.close();
    await sandbox.close();
    await dir.cleanup();
  });

  async function createKey(...args: string[]): Promise<string> {
    const out = await runCli(['apikey', 'create', '--config', configFile, '--json', ...args]);
    assert.equal(out.code, 0, out.stderr);
    return (JSON.parse(out.stdout) as { key: string }).key;
  }

  function call(key: string, method: string, path: string, body?: unknown) {
    return fetch(`${relay.httpAddress}/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
  }

  it('gives a new key send and read only: it sends and reads, and gets 403 for retry, cancel and the doctor', async () => {
    const key = await createKey('--name', 'app');
    const sent = await call(key, 'POST', '/messages', { from: MAILBOX, to: 'alice@example.net', subject: 'x', text: 'x' });
    assert.equal(sent.status, 202);
    const { id } = (await sent.json()) as { id: string };
    assert.equal((await call(key, 'GET', `/messages/${id}`)).status, 200);
    assert.equal((await call(key, 'GET', '/mailboxes')).status, 200);
    for (const [method, path] of [
      ['POST', `/messages/${id}/retry`],
      ['DELETE', `/messages/${id}`],
      ['GET', `/mailboxes/${MAILBOX}/doctor`],
    ] as const) {
      const res = await call(key, method, path);
      const body = (await res.json()) as { error: { code: string; message: string } };
      assert.equal(res.status, 403, `${method} ${path}`);
      assert.equal(body.error.code, 'R365_HTTP_FORBIDDEN');
      assert.match(body.error.message, /needs the admin scope/);
    }
  });

  it('keeps a read-only key from sending, and an admin key may do what the others may not', async () => {
    const reader = await createKey('--name', 'monitor', '--scope', 'read');
    const refused = await call(reader, 'POST', '/messages', { from: MAILBOX, to: 'alice@example.net', subject: 'x', text: 'x' });
    assert.equal(refused.status, 403);
    assert.equal((await call(reader, 'GET', '/messages')).status, 200);
    const admin = await createKey('--name', 'ops', '--scope', 'admin');
    const doctor = await call(admin, 'GET', `/mailboxes/${MAILBOX}/doctor`);
    assert.equal(doctor.status, 200);
    const tokensAfterFirst = sandbox.state.counters.tokenRequests;
    // A second run within the minute answers with the first report: no new token request, no new Exchange connections.
    assert.equal((await call(admin, 'GET', `/mailboxes/${MAILBOX}/doctor`)).status, 200);
    assert.equal(sandbox.state.counters.tokenRequests, tokensAfterFirst);
  });

  it('holds a key with --sender to its senders in the envelope and in From', async () => {
    const key = await createKey('--name', 'billing', '--sender', NOREPLY);
    const ok = await call(key, 'POST', '/messages', { from: NOREPLY, to: 'alice@example.net', subject: 'x', text: 'x' });
    assert.equal(ok.status, 202, await ok.clone().text());
    const asMailbox = await call(key, 'POST', '/messages', { from: MAILBOX, to: 'alice@example.net', subject: 'x', text: 'x' });
    assert.equal(asMailbox.status, 403);
    assert.match(((await asMailbox.json()) as { error: { message: string } }).error.message, new RegExp(`may send only as ${NOREPLY}, not as ${MAILBOX}`));
    const raw = `From: ${MAILBOX}\r\nSubject: x\r\n\r\nx\r\n`;
    const mime = await call(key, 'POST', '/messages/mime', { raw, encoding: 'utf8', envelope: { from: NOREPLY, to: ['alice@example.net'] } });
    assert.equal(mime.status, 403, 'the header From counts, not only the envelope');
  });

  it('lists each key with what it may do, and refuses an unknown scope with R365_CLI_OPTION_INVALID', async () => {
    const list = await runCli(['apikey', 'list', '--config', configFile, '--json']);
    const keys = JSON.parse(list.stdout) as Array<{ name: string; scopes: string[]; senders: string[] | null }>;
    assert.deepEqual(keys.find((k) => k.name === 'app')?.scopes, ['send', 'read']);
    assert.deepEqual(keys.find((k) => k.name === 'billing')?.senders, [NOREPLY]);
    const bad = await runCli(['apikey', 'create', '--config', configFile, '--scope', 'send,root']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /R365_CLI_OPTION_INVALID/);
    assert.match(bad.stderr, /--scope takes send, read, admin/);
  });
});
