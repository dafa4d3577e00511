import { spawn } from 'node:child_process';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/** Runs a program to completion, feeding `input` on stdin. */
export function run(
  cmd: string,
  args: string[],
  options: { input?: string; timeoutMs?: number; cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      ...(options.cwd ? { cwd: options.cwd } : {}),
      ...(options.env ? { env: options.env } : {}),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.on('error', () => undefined); // a program that does not read its input closes it early
    child.stdin.end(options.input ?? '');
  });
}

/**
 * A Postfix master.cf with only what a client that hands every message to a relayhost needs: no
 * `smtpd` (nothing listens), no chroot (the queue is a temporary folder without the files a chroot
 * needs), and `postlogd` so that the log goes to `maillog_file` rather than to a syslog that may not run.
 */
export const POSTFIX_MASTER_CF = `pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`;

/**
 * main.cf settings that keep a private Postfix instance to itself and to loopback: its own queue,
 * data and log under `dir`, no listener, no local delivery (every address is remote, so everything
 * goes to the relayhost), and the SMTP client bound to 127.0.0.1 (a connection anywhere but loopback
 * fails: the kernel does not route 127.0.0.1 as a source elsewhere).
 */
export function privatePostfixSettings(dir: string): Record<string, string> {
  return {
    compatibility_level: '3.6',
    queue_directory: join(dir, 'queue'),
    data_directory: join(dir, 'data'),
    maillog_file_prefixes: dir,
    maillog_file: join(dir, 'maillog'),
    inet_interfaces: 'loopback-only',
    inet_protocols: 'ipv4',
    smtp_bind_address: '127.0.0.1',
    mydestination: '',
    local_transport: 'error:local delivery is disabled in this test instance',
    myhostname: 'host.test.invalid',
    // A deferred message is retried soon enough for a test to see it, never for long.
    queue_run_delay: '1s',
    minimal_backoff_time: '1s',
    maximal_backoff_time: '2s',
    maximal_queue_lifetime: '1h',
    notify_classes: '',
  };
}

/** A private Postfix instance (config directory, queue, log) run by root with `postfix -c DIR`. */
export interface PostfixInstance {
  dir: string;
  /** Queues a message as `sendmail -C DIR -t` does for cron and scripts. */
  sendmail(message: string, args?: string[]): Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** The maillog so far. */
  log(): Promise<string>;
  /** Resolves with the maillog once it matches `pattern`; rejects after `timeoutMs`. */
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** `postqueue -p`: what is still queued. */
  queue(): Promise<string>;
  stop(): Promise<void>;
}

/**
 * Starts Postfix from `dir` (made here: main.cf from {@link privatePostfixSettings} plus `settings`,
 * master.cf, and `files`, e.g. a sasl_passwd, each run through `postmap` when its name is in `maps`).
 * Needs root, as `postfix start` does.
 */
export async function startPostfix(
  dir: string,
  settings: Record<string, string>,
  files: Record<string, string> = {},
  maps: string[] = [],
): Promise<PostfixInstance> {
  await mkdir(join(dir, 'queue'), { recursive: true });
  // Postfix's daemons run as the postfix user and must reach their queue: open the folders on the way.
  for (let d = dir; d !== dirname(d) && d.startsWith(tmpdir()) && d !== tmpdir(); d = dirname(d)) await chmod(d, 0o755);
  await mkdir(join(dir, 'data'), { recursive: true });
  await run('chown', ['postfix', join(dir, 'data')]);
  const main = { ...privatePostfixSettings(dir), ...settings };
  await writeFile(
    join(dir, 'main.cf'),
    Object.entries(main)
      .map(([k, v]) => `${k} = ${v}\n`)
      .join(''),
  );
  await writeFile(join(dir, 'master.cf'), POSTFIX_MASTER_CF);
  for (const [name, text] of Object.entries(files)) {
    await writeFile(join(dir, name), text);
    await chmod(join(dir, name), 0o600);
    if (maps.includes(name)) {
      const postmap = await run('postmap', ['-c', dir, join(dir, name)]);
      if (postmap.code !== 0) throw new Error(`postmap ${name}: ${postmap.stderr}`);
    }
  }
  const started = await run('postfix', ['-c', dir, 'start']);
  if (started.code !== 0) throw new Error(`postfix -c ${dir} start failed (${started.code}): ${started.stderr}${started.stdout}`);
  const log = async (): Promise<string> => readFile(join(dir, 'maillog'), 'utf8').catch(() => '');
  return {
    dir,
    sendmail: (message, args = ['-t']) => run('/usr/sbin/sendmail', ['-C', dir, ...args], { input: message }),
    log,
    async waitForLog(pattern, timeoutMs = 20_000) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const text = await log();
        if (pattern.test(text)) return text;
        if (Date.now() > end) throw new Error(`Postfix's log never matched ${String(pattern)}:\n${text}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    },
    async queue() {
      return (await run('postqueue', ['-c', dir, '-p'])).stdout;
    },
    async stop() {
      const pidText = await readFile(join(dir, 'queue', 'pid', 'master.pid'), 'utf8').catch(() => '');
      await run('postfix', ['-c', dir, 'stop']);
      // `postfix stop` returns before the master has gone; wait for it to end.
      const pid = Number(pidText.trim());
      const end = Date.now() + 10_000;
      while (pid > 0 && Date.now() < end) {
        try {
          process.kill(pid, 0);
        } catch {
          return;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    },
  };
}
