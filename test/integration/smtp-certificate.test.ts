import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { configSchema, type ConfigInput } from '../../src/config/index.js';
import { createSmtpIngress, hashPassword, type SmtpIngress } from '../../src/ingress/smtp/index.js';
import { createLogger } from '../../src/observe/index.js';
import { Router, openSqliteStore, type OutboxStore } from '../../src/outbox/index.js';
import { run, startPostfix } from '../helpers/postfix.js';
import { tempDir } from '../helpers/sandbox.js';

/** A name the relay is configured with (smtp.hostname), which clients verify at 127.0.0.1. */
const NAME = 'relay.lan.test';
/** A second configured name (smtp.tls.names). */
const LISTED = 'mail.lan.test';
/** A name in no certificate: every client must refuse the relay under it. */
const WRONG = 'other.lan.test';
const PASSWORD = 'device-Secret-9!';
const MAILBOX = 'relay@contoso.example';
const FULL = process.env.RELAY365_FULL_TESTS === '1';

interface Relay {
  ingress: SmtpIngress;
  port: number;
  store: OutboxStore;
  enqueued: string[];
  close(): Promise<void>;
}

async function startRelay(dir: string, smtp: ConfigInput['smtp'], db = 'outbox'): Promise<Relay> {
  const config = configSchema.parse({
    dataDir: dir,
    auth: { flow: 'client-secret', tenant: 'contoso.example', clientId: '00000000-0000-0000-0000-000000000001', clientSecret: 'unused' },
    mailboxes: [{ address: MAILBOX }],
    smtp,
  });
  await mkdir(dir, { recursive: true });
  const store = await openSqliteStore(join(dir, `${db}.db`));
  await store.migrate();
  const enqueued: string[] = [];
  const ingress = createSmtpIngress({
    config: config.smtp,
    limits: config.limits,
    dataDir: config.dataDir,
    router: new Router(config.mailboxes),
    outbox: {
      enqueue: async (message) => {
        const stored = await store.enqueue(message);
        enqueued.push(stored.id);
        return stored;
      },
    },
    logger: createLogger({ level: 'silent' }),
  });
  const listeners = await ingress.listen();
  return {
    ingress,
    port: listeners[0]!.port,
    store,
    enqueued,
    async close() {
      await ingress.close();
      await store.close();
    },
  };
}

/** A TLS handshake that verifies the relay's certificate under `servername` (no SMTP: implicit TLS listener). */
function handshake(port: number, ca: string, servername: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, ca, servername }, () => {
      socket.end();
      resolve();
    });
    socket.on('error', reject);
  });
}

/** Whether a tool is on the PATH; under RELAY365_FULL_TESTS=1 a missing one fails the test instead of skipping it. */
async function need(t: { skip(message: string): void }, tool: string): Promise<boolean> {
  const found = (await run('sh', ['-c', `command -v ${tool}`])).code === 0;
  if (found) return true;
  if (FULL) assert.fail(`${tool} is not installed (.ci/run installs it)`);
  t.skip(`${tool} is not installed`);
  return false;
}

describe('the generated SMTP certificate', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    dir = await tempDir('relay365-cert-');
  });
  after(async () => {
    await dir?.cleanup();
  });

  it("names smtp.hostname, smtp.tls.names, the machine's addresses for a 0.0.0.0 listener and loopback, and reports its path and SHA-256", async (t) => {
    if (!(await need(t, 'openssl'))) return;
    const relay = await startRelay(dir.path, {
      hostname: NAME,
      tls: { names: [LISTED, '10.9.8.7', 'fd00:0::25'] },
      listeners: [{ host: '0.0.0.0', port: 0, tls: 'implicit' }],
    });
    try {
      const cert = relay.ingress.certificate()!;
      assert.equal(cert.path, join(dir.path, 'tls', 'relay.crt'));
      assert.equal(cert.origin, 'generated');
      const ipv4 = Object.values(networkInterfaces())
        .flatMap((l) => l ?? [])
        .filter((i) => i.family === 'IPv4')
        .map((i) => i.address);
      assert.ok(ipv4.length > 1, `this machine has more than loopback: ${ipv4.join(', ')}`);
      for (const name of [NAME, LISTED, 'localhost', '10.9.8.7', 'fd00::25', '127.0.0.1', '::1', ...ipv4])
        assert.ok(cert.names.includes(name), `${name} in ${cert.names.join(', ')}`);
      // What openssl, not Node, reads from the file.
      const text = (await run('openssl', ['x509', '-noout', '-fingerprint', '-sha256', '-ext', 'subjectAltName', '-in', cert.path])).stdout;
      assert.match(text, new RegExp(`sha256 Fingerprint=${cert.sha256}`, 'i'));
      assert.match(text, new RegExp(`DNS:${LISTED.replaceAll('.', '\\.')}\\b`));
      for (const address of ipv4) assert.match(text, new RegExp(`IP Address:${address.replaceAll('.', '\\.')}\\b`));
      // A client verifying a configured name or an interface address gets through; any other name is refused.
      const pem = await readFile(cert.path, 'utf8');
      await handshake(relay.port, pem, NAME);
      await handshake(relay.port, pem, LISTED);
      await assert.rejects(handshake(relay.port, pem, WRONG), /ERR_TLS_CERT_ALTNAME_INVALID|does not match|not in the cert's altnames/i);
    } finally {
      await relay.close();
    }
  });

  it('is reused while its names stay, and replaced when they change, the old pair kept beside it under its time', async () => {
    const smtp = (names: string[]): ConfigInput['smtp'] => ({ hostname: NAME, tls: { names }, listeners: [{ host: '127.0.0.1', port: 0, tls: 'implicit' }] });
    const data = join(dir.path, 'restarts');
    const first = await startRelay(data, smtp([LISTED]), 'first');
    const before = first.ingress.certificate()!;
    await first.close();

    const same = await startRelay(data, smtp([LISTED]), 'same');
    assert.deepEqual([same.ingress.certificate()!.origin, same.ingress.certificate()!.sha256], ['reused', before.sha256]);
    await same.close();

    const oldPem = await readFile(before.path, 'utf8');
    const oldKey = await readFile(join(data, 'tls', 'relay.key'), 'utf8');
    const changed = await startRelay(data, smtp([LISTED, 'scanner.lan.test']), 'changed');
    try {
      const now = changed.ingress.certificate()!;
      assert.equal(now.origin, 'generated');
      assert.notEqual(now.sha256, before.sha256);
      assert.ok(now.names.includes('scanner.lan.test'));
      assert.equal(now.path, before.path);
      assert.match(now.replacedPath ?? '', /relay\.\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}Z\.crt$/);
      assert.equal(await readFile(now.replacedPath!, 'utf8'), oldPem);
      assert.equal(await readFile(now.replacedPath!.replace(/\.crt$/, '.key'), 'utf8'), oldKey);
      assert.equal(new X509Certificate(await readFile(now.path, 'utf8')).fingerprint256, now.sha256);
      await handshake(changed.port, await readFile(now.path, 'utf8'), 'scanner.lan.test');
      const files = (await readdir(join(data, 'tls'))).filter((f) => !f.endsWith('.tmp')).sort();
      assert.equal(files.length, 4, files.join(', '));
    } finally {
      await changed.close();
    }
  });
});

describe('clients that verify the relay by a configured name (at 127.0.0.1, the name given as the one to verify)', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let relay: Relay;
  let certPath: string;

  before(async () => {
    dir = await tempDir('relay365-tls-clients-');
    relay = await startRelay(dir.path, {
      hostname: NAME,
      tls: { names: [LISTED] },
      listeners: [{ host: '127.0.0.1', port: 0, tls: 'starttls' }],
      users: [{ name: 'device', passwordHash: await hashPassword(PASSWORD) }],
    });
    certPath = relay.ingress.certificate()!.path;
  });
  after(async () => {
    await relay?.close();
    await dir?.cleanup();
  });

  const message = (subject: string, from = MAILBOX): string => `From: ${from}\nTo: you@example.net\nSubject: ${subject}\n\nhello\n`;

  /** The raw message the relay queued last, once one more than `count` was queued. */
  async function queuedAfter(count: number): Promise<{ envelopeFrom: string; raw: string }> {
    const end = Date.now() + 20_000;
    while (relay.enqueued.length <= count) {
      if (Date.now() > end) throw new Error('the relay queued nothing');
      await new Promise((r) => setTimeout(r, 100));
    }
    const id = relay.enqueued[count]!;
    return { envelopeFrom: (await relay.store.get(id))!.envelope.from, raw: (await relay.store.getRaw(id))!.toString('utf8') };
  }

  it("Python's default TLS context (cafile=the relay's certificate) verifies the relay as relay.lan.test, and refuses it as other.lan.test", async (t) => {
    if (!(await need(t, 'python3'))) return;
    // smtplib verifies the name it connected to; this SMTP connects to 127.0.0.1 under that name, as a DNS entry would.
    const script = [
      'import smtplib, socket, ssl, sys',
      'name, port, cafile, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]',
      'class At127(smtplib.SMTP):',
      '    def _get_socket(self, host, port, timeout):',
      '        return socket.create_connection(("127.0.0.1", port), timeout)',
      'with At127(name, port) as s:',
      '    try:',
      '        s.starttls(context=ssl.create_default_context(cafile=cafile))',
      '    except ssl.SSLCertVerificationError as e:',
      '        print("refused:", e.verify_message); sys.exit(3)',
      '    s.login("device", password)',
      '    s.sendmail("relay@contoso.example", ["you@example.net"], sys.stdin.read())',
      '    print("sent")',
    ].join('\n');
    const count = relay.enqueued.length;
    const ok = await run('python3', ['-c', script, NAME, String(relay.port), certPath, PASSWORD], { input: message('python') });
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match((await queuedAfter(count)).raw, /Subject: python/);
    const refused = await run('python3', ['-c', script, WRONG, String(relay.port), certPath, PASSWORD], { input: message('python wrong') });
    assert.equal(refused.code, 3, refused.stdout + refused.stderr);
    assert.match(refused.stdout, /refused: Hostname mismatch/);
    assert.equal(relay.enqueued.length, count + 1, 'nothing sent under the wrong name');
  });

  it('msmtp in sendmail mode (msmtp -t, as PHP mail() and cron use it) verifies the relay as mail.lan.test, and refuses it as other.lan.test', async (t) => {
    if (!(await need(t, 'msmtp'))) return;
    const rc = (name: string): string =>
      [
        'defaults',
        'tls on',
        'tls_starttls on',
        `tls_trust_file ${certPath}`,
        'auth on',
        'account relay',
        'host 127.0.0.1',
        `port ${relay.port}`,
        `tls_host_override ${name}`,
        'user device',
        `password ${PASSWORD}`,
        `from ${MAILBOX}`,
        'account default : relay',
        '',
      ].join('\n');
    const file = join(dir.path, 'msmtprc');
    const count = relay.enqueued.length;
    await writeFile(file, rc(LISTED));
    await chmod(file, 0o600);
    const ok = await run('msmtp', ['-C', file, '-t'], { input: message('msmtp') });
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match((await queuedAfter(count)).raw, /Subject: msmtp/);
    await writeFile(file, rc(WRONG));
    const refused = await run('msmtp', ['-C', file, '-t'], { input: message('msmtp wrong') });
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /TLS certificate verification failed|does not match|hostname/i);
    assert.equal(relay.enqueued.length, count + 1, 'nothing sent under the wrong name');
  });

  it("Postfix as smarthost client (policy 'secure match=relay.lan.test') verifies the relay, maps root's mail to the mailbox, and defers without AUTH under another name", async (t) => {
    if (!(await need(t, 'postfix'))) return;
    if (process.getuid?.() !== 0) {
      if (FULL) assert.fail('Postfix runs as root (postfix start); CI runs as root');
      return t.skip('postfix start needs root');
    }
    const pdir = join(dir.path, 'postfix');
    const next = `[127.0.0.1]:${relay.port}`;
    const policy = (name: string): string => `${next} secure match=${name}\n`;
    const postfix = await startPostfix(
      pdir,
      {
        relayhost: next,
        smtp_tls_policy_maps: `hash:${join(pdir, 'tls_policy')}`,
        // A copy, as a client machine has it (the relay's tls folder is 0700).
        smtp_tls_CAfile: join(pdir, 'relay365.crt'),
        smtp_sasl_auth_enable: 'yes',
        smtp_sasl_password_maps: `hash:${join(pdir, 'sasl_passwd')}`,
        smtp_sasl_security_options: 'noanonymous',
        smtp_sasl_tls_security_options: 'noanonymous',
        sender_canonical_maps: `regexp:${join(pdir, 'sender_canonical')}`,
        smtp_tls_loglevel: '1',
      },
      {
        'relay365.crt': await readFile(certPath, 'utf8'),
        tls_policy: policy(NAME),
        sasl_passwd: `${next} device:${PASSWORD}\n`,
        sender_canonical: '!/@contoso\\.example$/ relay@contoso.example\n',
      },
      ['tls_policy', 'sasl_passwd'],
    );
    try {
      // Cron's mail: from root, no From header naming the mailbox.
      const count = relay.enqueued.length;
      const cron = await postfix.sendmail('Subject: cron: disk check\n\n/ is 91% full\n', ['-f', 'root', 'ops@example.net']);
      assert.equal(cron.code, 0, cron.stderr);
      await postfix.waitForLog(/status=sent \(250 2\.0\.0 OK queued as/);
      const queued = await queuedAfter(count);
      assert.equal(queued.envelopeFrom, MAILBOX);
      assert.match(queued.raw, /^From: root <relay@contoso\.example>\r$/m);
      assert.match(await postfix.log(), /Verified TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]/);

      // The same relay under a name its certificate lacks: deferred, and the password never sent.
      await writeFile(join(pdir, 'tls_policy'), policy(WRONG));
      assert.equal((await run('postmap', ['-c', pdir, join(pdir, 'tls_policy')])).code, 0);
      assert.equal((await run('postfix', ['-c', pdir, 'reload'])).code, 0);
      await new Promise((r) => setTimeout(r, 1000));
      const second = await postfix.sendmail('Subject: must not go\n\nx\n', ['-f', 'root', 'ops@example.net']);
      assert.equal(second.code, 0, second.stderr);
      const log = await postfix.waitForLog(/status=deferred \(Server certificate not verified\)/);
      assert.match(log, /server certificate verification failed for 127\.0\.0\.1\[127\.0\.0\.1\]:\d+: num=62:hostname mismatch/);
      assert.match(await postfix.queue(), /Server certificate not verified/);
      assert.equal(relay.enqueued.length, count + 1, 'nothing sent under the wrong name');
    } finally {
      await postfix.stop();
    }
    assert.ok(!existsSync(join(pdir, 'queue', 'pid', 'master.pid')) || (await run('postfix', ['-c', pdir, 'status'])).code !== 0, 'Postfix stopped');
  });
});
