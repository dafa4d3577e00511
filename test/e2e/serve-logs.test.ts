import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import nodemailer from 'nodemailer';
import { parse as parseYaml } from 'yaml';
import { hashPassword } from '../../src/ingress/smtp/password.js';
import { DEFAULT_IDS } from '../../src/sandbox/default-ids.js';
import { CLI, stop } from '../helpers/cli.js';
import { tempDir } from '../helpers/sandbox.js';

/**
 * The built `relay365 serve --sandbox` as an operator runs it: its own process, the default log level,
 * JSON lines on stderr. The test drives it over real SMTP and HTTP and reads back what it logged and
 * what /metrics says; promtool (Debian package `prometheus`) judges the scrape and the shipped rules.
 */

const RULES = new URL('../../docs/prometheus/relay365-rules.yml', import.meta.url).pathname;
const PROMTOOL = '/usr/bin/promtool';
const PASSWORD = 'printer-pass-Xq7v9Lw2';
const WRONG_PASSWORD = 'wrong-guess-Zr4k8Mn1';

/** Why promtool cannot run, or false. In CI (RELAY365_FULL_TESTS=1) a missing promtool fails instead of skipping. */
function promtoolMissing(): string | false {
  if (existsSync(PROMTOOL)) return false;
  const why = `${PROMTOOL} is missing (apt-get install prometheus)`;
  if (process.env.RELAY365_FULL_TESTS === '1') throw new Error(`${why}: RELAY365_FULL_TESTS=1 runs every suite, so the promtool tests fail instead of skipping`);
  return why;
}

function promtool(args: string[], input?: string): { code: number | null; out: string } {
  const res = spawnSync(PROMTOOL, args, { input, encoding: 'utf8', timeout: 30_000 });
  return { code: res.status, out: `${res.stdout}${res.stderr}` };
}

interface Serve {
  child: ChildProcess;
  smtpPort: number;
  httpAddress: string;
  /** The JSON lines written to stderr so far (a line that is no JSON fails the test). */
  lines: () => Array<Record<string, unknown>>;
  stderr: () => string;
}

async function startServe(config: string, cwd: string): Promise<Serve> {
  // No RELAY365_LOG__LEVEL: the default level must be what the relay logs at.
  const env = { ...process.env };
  delete env.RELAY365_LOG__LEVEL;
  const child = spawn(process.execPath, [CLI, 'serve', '--sandbox', '--config', config], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    let smtpPort: number | undefined;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`serve --sandbox did not print its listeners in 30 s; stderr: ${stderr}`));
    }, 30_000);
    createInterface({ input: child.stdout }).on('line', (line) => {
      const smtp = /^ {2}SMTP {2}127\.0\.0\.1:(\d+) /.exec(line);
      if (smtp) smtpPort = Number(smtp[1]);
      const http = /^ {2}HTTP {2}(http:\/\/\S+) /.exec(line);
      if (http && smtpPort !== undefined) {
        clearTimeout(timer);
        resolve({
          child,
          smtpPort,
          httpAddress: http[1]!,
          stderr: () => stderr,
          lines: () =>
            stderr
              .split('\n')
              .filter((l) => l.trim() !== '')
              .map((l) => {
                try {
                  return JSON.parse(l) as Record<string, unknown>;
                } catch {
                  throw new Error(`serve wrote a stderr line that is not JSON: ${l}`);
                }
              }),
        });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`serve --sandbox exited with ${code}; stderr: ${stderr}`));
    });
  });
}

/** Waits until `find` returns a value for the lines logged so far. */
async function waitForLine<T>(serve: Serve, find: (lines: Array<Record<string, unknown>>) => T | undefined, what: string): Promise<T> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const found = find(serve.lines());
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`no log line for ${what} in 20 s; stderr: ${serve.stderr()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function transport(port: number, auth: { user: string; pass: string }): ReturnType<typeof nodemailer.createTransport> {
  // The relay's self-signed certificate is not what this test is about (smtp-certificate.test.ts is).
  return nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, requireTLS: true, tls: { rejectUnauthorized: false }, auth });
}

describe('serve: the log and the metrics of a running relay', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let serve: Serve;
  let messageId: string;

  before(async () => {
    dir = await tempDir('relay365-serve-logs-');
    const config = join(dir.path, 'relay365.yaml');
    const yaml = [
      `dataDir: ${join(dir.path, 'data')}`,
      'smtp:',
      '  listeners: [{ host: 127.0.0.1, port: 0, tls: starttls }]',
      `  users: [{ name: printer, passwordHash: '${await hashPassword(PASSWORD)}', allowedSenders: ['${DEFAULT_IDS.mailbox}'] }]`,
      'http:',
      '  port: 0',
    ].join('\n');
    await writeFile(config, `${yaml}\n`, { mode: 0o600 });
    serve = await startServe(config, dir.path);

    const printer = transport(serve.smtpPort, { user: 'printer', pass: PASSWORD });
    try {
      const info = (await printer.sendMail({ from: DEFAULT_IDS.mailbox, to: 'you@example.net', subject: 'watched', text: 'hello' })) as { response: string };
      const id = /queued as (\S+)/.exec(info.response)?.[1];
      assert.ok(id, `the 250 names the message id: ${info.response}`);
      messageId = id;
      await assert.rejects(printer.sendMail({ from: 'ceo@fabrikam.example', to: 'you@example.net', subject: 'not mine', text: 'x' }), /550 5\.7\.1/);
    } finally {
      printer.close();
    }
    const guesser = transport(serve.smtpPort, { user: 'printer', pass: WRONG_PASSWORD });
    try {
      await assert.rejects(guesser.verify(), /535 5\.7\.8/);
    } finally {
      guesser.close();
    }
  });

  after(async () => {
    if (serve) await stop(serve.child);
    await dir?.cleanup();
  });

  test("logs at the default level one JSON line per step of a message's life, the refused sender and the failed login, and no secret", async () => {
    const sent = await waitForLine(serve, (ls) => ls.find((l) => l.event === 'message.sent' && l.id === messageId), 'message.sent');
    assert.match(String(sent.reply), /^250 /);
    assert.equal(sent.mailbox, DEFAULT_IDS.mailbox);
    const lines = serve.lines();
    const queued = lines.find((l) => l.event === 'message.queued' && l.id === messageId);
    assert.ok(queued, 'a message.queued line');
    assert.equal(queued.source, 'smtp');
    assert.ok(
      lines.find((l) => l.msg === 'SMTP message queued' && l.id === messageId && l.user === 'printer'),
      'the SMTP front door logs the message it accepted',
    );
    const at = (event: string): number => lines.findIndex((l) => l.event === event && l.id === messageId);
    assert.ok(at('message.queued') < at('message.sent'), 'queued comes before sent');

    const refused = lines.find((l) => l.event === 'sender.refused');
    assert.ok(refused, 'a sender.refused line');
    assert.equal(refused.sender, 'ceo@fabrikam.example');
    assert.equal(refused.user, 'printer');
    assert.match(String(refused.reply), /^550 5\.7\.1 /);

    const failed = lines.find((l) => l.event === 'login.failed');
    assert.ok(failed, 'a login.failed line');
    assert.equal(failed.attemptedUser, 'printer');
    assert.equal(failed.client, '127.0.0.1');
    assert.match(String(failed.reply), /^535 5\.7\.8 /);

    assert.ok(lines.find((l) => l.event === 'listener.started' && l.port === serve.smtpPort), 'the SMTP listener start is logged');
    assert.ok(lines.find((l) => l.event === 'listener.started' && l.url === serve.httpAddress), 'the HTTP listener start is logged');
    for (const l of lines) assert.equal(typeof l.level, 'number', `a pino line: ${JSON.stringify(l)}`);

    const text = serve.stderr();
    for (const secret of [PASSWORD, WRONG_PASSWORD, DEFAULT_IDS.appSecret, Buffer.from(`\0printer\0${PASSWORD}`).toString('base64')]) {
      assert.ok(!text.includes(secret), `the log holds a secret: ${secret}`);
    }
    // No token either: a JWT, or an XOAUTH2 string (base64 of `user=...`).
    assert.doesNotMatch(text, /eyJ[\w-]{10,}\.[\w-]{10,}/);
    assert.doesNotMatch(text, /dXNlcj[\w+/=]{20,}/);
  });

  test('/metrics counts the front door from 0, passes promtool check metrics, and has every metric the shipped rules use', { skip: promtoolMissing() }, async () => {
    await waitForLine(serve, (ls) => ls.find((l) => l.event === 'message.sent'), 'message.sent');
    // One request before the scrape, so relay365_http_requests_total has a series.
    assert.equal((await fetch(`${serve.httpAddress}/healthz`)).status, 200);
    const res = await fetch(`${serve.httpAddress}/metrics`);
    assert.equal(res.status, 200);
    const scrape = await res.text();

    const sample = (name: string, labels = ''): number => {
      const line = scrape.split('\n').find((l) => l.startsWith(`${name}${labels} `));
      assert.ok(line, `${name}${labels} is in the scrape`);
      return Number(line.split(' ').at(-1));
    };
    assert.equal(sample('relay365_smtp_messages_accepted_total'), 1);
    assert.equal(sample('relay365_smtp_senders_refused_total'), 1);
    assert.equal(sample('relay365_smtp_auth_failures_total', '{reason="invalid"}'), 1);
    // Known label values are there at 0 before their first event, so increase() sees the first one.
    assert.equal(sample('relay365_smtp_auth_failures_total', '{reason="locked"}'), 0);
    assert.equal(sample('relay365_smtp_lockouts_total'), 0);
    assert.equal(sample('relay365_smtp_connections_total', '{outcome="refused"}'), 0);
    assert.ok(sample('relay365_smtp_connections_total', '{outcome="accepted"}') >= 2);
    assert.equal(sample('relay365_message_events_total', '{event="failed"}'), 0);
    assert.equal(sample('relay365_token_requests_total', `{mailbox="${DEFAULT_IDS.mailbox}",outcome="failure"}`), 0);
    assert.equal(sample('relay365_http_requests_total', '{method="GET",route="/healthz",status="200"}'), 1);
    const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    assert.equal(sample('relay365_build_info', `{version="${version}",node="${process.versions.node}"}`), 1);
    // Node's process metrics under their standard names, for stock Node.js dashboards.
    sample('process_cpu_seconds_total');
    assert.match(scrape, /^nodejs_eventloop_lag_seconds /m);
    assert.doesNotMatch(scrape, /relay365_process_|relay365_nodejs_/);

    // The scrape parses (a parse error is exit 1). The only lint findings (exit 3) allowed are prom-client's
    // three gauges named *_total, kept under those names because stock Node.js dashboards query them.
    const checked = promtool(['check', 'metrics'], scrape);
    const findings = checked.out.split('\n').filter((l) => l.trim() !== '');
    const known = /^nodejs_active_(handles|requests|resources)_total non-counter metrics should not have "_total" suffix$/;
    assert.ok(checked.code === 0 || (checked.code === 3 && findings.length > 0), checked.out);
    for (const finding of findings) assert.match(finding, known, `promtool check metrics: ${checked.out}`);

    // Every metric a rule uses is exported (`up` is Prometheus's own, set per scrape).
    const rules = parseYaml(await readFile(RULES, 'utf8')) as {
      groups: Array<{ rules: Array<{ alert: string; expr: string }> }>;
    };
    const exported = new Set([...scrape.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!));
    const used = rules.groups.flatMap((g) => g.rules.flatMap((r) => [...r.expr.matchAll(/\b(?:relay365|nodejs|process)_[a-z_]+\b/g)].map((m) => [r.alert, m[0]])));
    assert.ok(used.length >= 10, 'the rules use the metrics');
    for (const [alert, name] of used) {
      const base = name!.replace(/_(bucket|sum|count)$/, '');
      assert.ok(exported.has(name!) || exported.has(base), `${alert} uses ${name}, which /metrics does not export`);
    }
  });

  test('promtool check rules accepts the shipped rules file', { skip: promtoolMissing() }, () => {
    const checked = promtool(['check', 'rules', RULES]);
    assert.equal(checked.code, 0, checked.out);
    assert.match(checked.out, /SUCCESS: \d+ rules found/);
  });

  test('logs the shutdown and the listener stop, and exits 0 on SIGTERM', async () => {
    const code = await stop(serve.child);
    assert.equal(code, 0, serve.stderr());
    const lines = serve.lines();
    assert.ok(lines.find((l) => l.event === 'relay.stopping'), 'a line when the shutdown begins');
    assert.ok(lines.find((l) => l.event === 'listener.stopped' && l.port === serve.smtpPort), 'the SMTP listener stop is logged');
    assert.ok(lines.find((l) => l.event === 'listener.stopped' && l.url === serve.httpAddress), 'the HTTP listener stop is logged');
    assert.equal(lines.at(-1)?.event, 'relay.stopped', 'the last line says the relay stopped');
  });
});
