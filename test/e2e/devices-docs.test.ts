import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { stringify } from 'yaml';
import { hashPassword } from '../../src/ingress/smtp/index.js';
import { CLI, stop } from '../helpers/cli.js';
import { POSTFIX_MASTER_CF, privatePostfixSettings, run } from '../helpers/postfix.js';
import { tempDir } from '../helpers/sandbox.js';

const DOC = new URL('../../docs/devices.md', import.meta.url);
const FULL = process.env.RELAY365_FULL_TESTS === '1';
/** The relay's name and LAN address in the private network the examples run in. */
const RELAY_NAME = 'relay.example.lan';
const RELAY_ADDRESS = '192.0.2.25';
/** The local users' password the page's examples use. */
const PASSWORD = 'its-password';

/** Every ```sh or ```bash block of the page, in order (as test/e2e/http-api-docs.test.ts reads its page). */
function shellExamples(markdown: string): string[] {
  return [...markdown.matchAll(/^```(?:sh|bash)\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
}

/** Every ```python block of the page. */
function pythonExamples(markdown: string): string[] {
  return [...markdown.matchAll(/^```python\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
}

/** Why the examples cannot run here, or undefined when they can. */
async function missing(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'root (the examples write /etc in a private mount namespace and start Postfix)';
  for (const tool of ['unshare', 'nsenter', 'ip', 'swaks', 'curl', 'msmtp', 'postfix', 'openssl', 'python3'])
    if ((await run('sh', ['-c', `command -v ${tool}`])).code !== 0) return tool;
  if ((await run('unshare', ['--mount', '--net', 'true'])).code !== 0) return 'permission to make namespaces (unshare --mount --net)';
  return undefined;
}

/**
 * docs/devices.md runs as written in a private network and mount namespace, which the test makes so
 * that the page's names and paths are real there and nowhere else: `relay.example.lan` is 192.0.2.25
 * (an address on the namespace's own loopback device, in its /etc/hosts), port 2525 is free, and /etc
 * is an overlay, so the examples' /etc/postfix, /etc/msmtprc and /etc/relay365 never touch the
 * machine's. Nothing in the namespace can reach another host: it has no other network device.
 */
describe('docs/devices.md: every shell and Python example runs as written against relay365 serve --sandbox', { timeout: 240_000 }, () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let serve: ChildProcess | undefined;
  const printed: string[] = [];
  let postfixStarted = false;
  let reason: string | undefined;

  /** Runs `program args` inside the namespace, in the demo's folder. */
  const inside = (args: string[], input = ''): Promise<{ code: number | null; stdout: string; stderr: string }> =>
    run('nsenter', ['--target', String(serve!.pid), '--mount', '--net', `--wd=${dir.path}`, '--', ...args], { input, timeoutMs: 60_000 });
  const shell = (script: string): Promise<{ code: number | null; stdout: string; stderr: string }> => inside(['bash', '-c', `set -eo pipefail\n${script}`]);

  before(async () => {
    reason = await missing();
    if (reason) {
      if (FULL) throw new Error(`docs/devices.md's examples need ${reason}; .ci/run installs the tools and runs as root`);
      return;
    }
    dir = await tempDir('relay365-devices-docs-');
    // Postfix's daemons (user postfix) must reach their queue under this folder.
    await chmod(dir.path, 0o755);
    const hash = await hashPassword(PASSWORD);
    await writeFile(
      join(dir.path, 'relay365.yaml'),
      stringify({
        smtp: {
          hostname: RELAY_NAME,
          listeners: [{ host: '0.0.0.0', port: 2525, tls: 'starttls' }],
          users: [
            { name: 'app', passwordHash: hash },
            { name: 'postfix', passwordHash: hash },
          ],
        },
      }),
    );
    await mkdir(join(dir.path, 'etc-upper'));
    await mkdir(join(dir.path, 'etc-work'));
    const setup = [
      'set -e',
      'ip link set lo up',
      `ip addr add ${RELAY_ADDRESS}/32 dev lo`,
      `mount -t overlay overlay -o lowerdir=/etc,upperdir=${dir.path}/etc-upper,workdir=${dir.path}/etc-work /etc`,
      `echo '${RELAY_ADDRESS} ${RELAY_NAME}' >> /etc/hosts`,
      `exec '${process.execPath}' '${CLI}' serve --sandbox`,
    ].join('\n');
    const env = { ...process.env };
    for (const name of Object.keys(env)) if (name.startsWith('RELAY365_')) delete env[name];
    // unshare execs bash, which execs node: the child's pid is the relay's, and the namespace's.
    serve = spawn('unshare', ['--mount', '--net', '--propagation', 'private', '--', 'bash', '-c', setup], {
      cwd: dir.path,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    serve.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-5000)));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`serve --sandbox did not start: ${stderr}`)), 90_000);
      serve!.once('exit', (code) => reject(new Error(`serve --sandbox exited ${code}: ${stderr}`)));
      createInterface({ input: serve!.stdout! }).on('line', (line) => {
        printed.push(line);
        if (/sandbox: what arrived/.test(line)) {
          clearTimeout(timer);
          resolve();
        }
      });
    });

    // What the page leaves to the reader: copying relay.crt to the client (here the same machine), and
    // a Postfix of its own. The namespace's Postfix keeps its queue and log in this folder and looks names
    // up in /etc/hosts (this network has no DNS server); the example adds the smarthost settings.
    const copied = await shell('mkdir -p /etc/relay365 && cp data/tls/relay.crt /etc/relay365/relay.crt');
    assert.equal(copied.code, 0, copied.stderr);
    const pdir = join(dir.path, 'postfix');
    const settings = { ...privatePostfixSettings(pdir), smtp_bind_address: '', smtp_host_lookup: 'native', myhostname: 'host.example.lan' };
    await mkdir(join(pdir, 'queue'), { recursive: true });
    await mkdir(join(pdir, 'data'), { recursive: true });
    await run('chown', ['postfix', join(pdir, 'data')]);
    await writeFile(
      join(dir.path, 'main.cf'),
      Object.entries(settings)
        .map(([k, v]) => `${k} = ${v}\n`)
        .join(''),
    );
    await writeFile(join(dir.path, 'master.cf'), POSTFIX_MASTER_CF);
    const started = await shell('mkdir -p /etc/postfix && cp main.cf master.cf /etc/postfix/ && postfix start');
    assert.equal(started.code, 0, started.stderr + started.stdout);
    postfixStarted = true;
  });

  after(async () => {
    // Postfix first: its master would otherwise keep the namespace (and its /etc overlay) alive.
    if (postfixStarted) await shell('postfix stop; for i in $(seq 50); do postfix status >/dev/null 2>&1 || exit 0; sleep 0.2; done');
    if (serve) await stop(serve);
    await dir?.cleanup();
  });

  /** The messages "Exchange Online" received, by subject. */
  async function arrived(subject: string, timeoutMs = 45_000): Promise<string> {
    const mailDir = join(dir.path, 'data', 'sandbox', 'mail');
    const end = Date.now() + timeoutMs;
    for (;;) {
      for (const file of await readdir(mailDir).catch(() => [])) {
        const text = await readFile(join(mailDir, file), 'utf8');
        if (text.includes(`Subject: ${subject}`)) return text;
      }
      if (Date.now() > end) throw new Error(`no message "${subject}" reached the sandbox; relay said:\n${printed.join('\n')}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  it('runs the certificate check, swaks, curl, Python, msmtp and Postfix examples, and each message reaches the sandbox verified', async (t) => {
    if (reason) return t.skip(`needs ${reason}`);
    const markdown = await readFile(DOC, 'utf8');
    const blocks = shellExamples(markdown);
    assert.equal(blocks.length, 5, 'a shell example was added or removed: give it its checks here');
    const [check, swaks, curl, msmtp, postfix] = blocks as [string, string, string, string, string];
    const python = pythonExamples(markdown);
    assert.equal(python.length, 1);

    // The fingerprint and names the reader compares are the ones serve printed.
    const fingerprint = printed.map((l) => /^\s+SHA-256 (\S+)$/.exec(l)?.[1]).find(Boolean);
    assert.ok(fingerprint, `serve printed the certificate's SHA-256:\n${printed.join('\n')}`);
    assert.ok(
      printed.some((l) => /^\s+TLS\s+certificate \S+data\/tls\/relay\.crt \(self-signed, generated\)$/.test(l)),
      printed.join('\n'),
    );
    const names = printed.map((l) => /^\s+names (.+)$/.exec(l)?.[1]).find(Boolean) ?? '';
    assert.ok(names.split(', ').includes(RELAY_NAME) && names.split(', ').includes(RELAY_ADDRESS), names);
    const checked = await shell(check);
    assert.equal(checked.code, 0, checked.stderr);
    assert.match(checked.stdout, new RegExp(`sha256 Fingerprint=${fingerprint}`, 'i'));
    assert.match(checked.stdout, new RegExp(`DNS:${RELAY_NAME.replaceAll('.', '\\.')}`));
    assert.match(checked.stdout, new RegExp(`IP Address:${RELAY_ADDRESS.replaceAll('.', '\\.')}`));

    const viaSwaks = await shell(swaks);
    assert.equal(viaSwaks.code, 0, viaSwaks.stdout + viaSwaks.stderr);
    assert.match(viaSwaks.stdout, /250 2\.0\.0 OK queued as/);
    await arrived('swaks through relay365');

    const viaCurl = await shell(curl);
    assert.equal(viaCurl.code, 0, viaCurl.stdout + viaCurl.stderr);
    await arrived('curl through relay365');

    const viaPython = await inside(['python3', '-c', python[0]!]);
    assert.equal(viaPython.code, 0, viaPython.stderr);
    await arrived('Python through relay365');

    const viaMsmtp = await shell(msmtp);
    assert.equal(viaMsmtp.code, 0, viaMsmtp.stdout + viaMsmtp.stderr);
    assert.match(await arrived('msmtp through relay365'), /^From: relay@contoso\.example\r?$/m);

    // Postfix: root's mail, its sender mapped to the mailbox, over a verified connection.
    const viaPostfix = await shell(postfix);
    assert.equal(viaPostfix.code, 0, viaPostfix.stdout + viaPostfix.stderr);
    const cron = await arrived('cron: disk check');
    assert.match(cron, /^From: root <relay@contoso\.example>\r?$/m);
    const log = await readFile(join(dir.path, 'postfix', 'maillog'), 'utf8');
    assert.match(log, /Verified TLS connection established to relay\.example\.lan\[192\.0\.2\.25\]:2525/);
    assert.match(log, /status=sent \(250 2\.0\.0 OK queued as/);
  });
});
