import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SERVE_SEMI_SPACE_MB } from '../../src/cli/node-flags.js';
import { CLI } from '../helpers/cli.js';
import { tempDir } from '../helpers/sandbox.js';

/**
 * Runs the built CLI with a preload that prints, at exit, the npm packages the CommonJS loader loaded
 * (every CommonJS package an ES module imports goes through it: fastify, pg, better-sqlite3, nodemailer,
 * prom-client, jsonwebtoken under MSAL, ...).
 */
function loadedPackages(
  args: string[],
  cwd: string,
  input = '',
  /** For a command that runs until stopped (serve): SIGTERM once stdout has printed this. */
  stopWhen?: RegExp,
): Promise<{ code: number | null; packages: string[]; stderr: string }> {
  const preload = `data:text/javascript,${encodeURIComponent(`
    import { createRequire } from 'node:module';
    const require = createRequire(${JSON.stringify(CLI)});
    process.on('exit', () => {
      const names = Object.keys(require.cache).map((p) => /node_modules[\\\\/]((?:@[^\\\\/]+[\\\\/])?[^\\\\/]+)/.exec(p)?.[1]).filter(Boolean);
      process.stderr.write('LOADED ' + JSON.stringify([...new Set(names)].sort()) + '\\n');
    });
  `)}`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', preload, CLI, ...args], { cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (stopWhen?.test(stdout)) child.kill('SIGTERM');
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      const line = stderr.split('\n').find((l) => l.startsWith('LOADED '));
      if (!line) return reject(new Error(`no LOADED line; stderr: ${stderr}`));
      resolve({ code, packages: JSON.parse(line.slice('LOADED '.length)) as string[], stderr });
    });
    child.stdin.end(input);
  });
}

/** A single node on SQLite with a plain listener on a free port and no HTTP door. */
const PLAIN_SERVE_CONFIG =
  'dataDir: ./data\nauth: { flow: client-secret, tenant: contoso.example, clientId: 00000000-0000-0000-0000-000000000001, clientSecret: unused }\n' +
  'mailboxes: [ { address: relay@contoso.example } ]\nsmtp: { listeners: [ { host: 127.0.0.1, port: 0, tls: none } ], allowlist: [ { cidr: 127.0.0.1/32 } ] }\nhttp: { enabled: false }\n';

/** Packages of the relay itself (HTTP, PostgreSQL, SMTP delivery, metrics, MSAL's JWT library). */
const RELAY_PACKAGES = ['fastify', 'pg', 'nodemailer', 'prom-client', 'jsonwebtoken'];

describe('CLI start-up', () => {
  it('loads only commander for --help, and only what a command needs when it runs', async () => {
    const dir = await tempDir();
    try {
      const help = await loadedPackages(['--help'], dir.path);
      assert.equal(help.code, 0, help.stderr);
      assert.deepEqual(help.packages, ['commander']);

      const user = await loadedPackages(['user', 'add', 'printer', '--password-stdin'], dir.path, 'a printer password\n');
      assert.equal(user.code, 0, user.stderr);
      assert.deepEqual(user.packages, ['commander']);

      await writeFile(
        join(dir.path, 'relay365.yaml'),
        'dataDir: ./data\nauth: { flow: client-secret, tenant: contoso.example, clientId: 00000000-0000-0000-0000-000000000001, clientSecret: unused }\nmailboxes: [ { address: relay@contoso.example } ]\n',
      );
      const queue = await loadedPackages(['queue', 'list'], dir.path);
      assert.equal(queue.code, 0, queue.stderr);
      assert.ok(queue.packages.includes('better-sqlite3'), `the SQLite outbox was read: ${queue.packages.join(', ')}`);
      assert.deepEqual(
        queue.packages.filter((p) => RELAY_PACKAGES.includes(p)),
        [],
      );

      // A single node on SQLite with a plain listener and no HTTP door: no pg, no fastify, no X.509 library.
      await writeFile(join(dir.path, 'relay365.yaml'), PLAIN_SERVE_CONFIG);
      const serve = await loadedPackages(['serve'], dir.path, '', /SMTP {2}127\.0\.0\.1:\d+/);
      // (smtp-server ships ES modules, which the CommonJS cache does not list: the stop on its listener line says it ran.)
      assert.ok(serve.packages.includes('better-sqlite3') && serve.packages.includes('prom-client'), `the relay ran: ${serve.packages.join(', ')}`);
      for (const unused of ['pg', 'fastify', '@peculiar/x509'])
        assert.ok(!serve.packages.includes(unused), `${unused} was loaded: ${serve.packages.join(', ')}`);

      // A STARTTLS listener without smtp.certFile: the first start makes the self-signed pair with
      // @peculiar/x509; every later start reads the pair with node:crypto and does not load it.
      const plain = await readFile(join(dir.path, 'relay365.yaml'), 'utf8');
      await writeFile(join(dir.path, 'relay365.yaml'), plain.replace('tls: none', 'tls: starttls'));
      const first = await loadedPackages(['serve'], dir.path, '', /TLS {3}certificate .*self-signed, generated/);
      assert.ok(first.packages.includes('@peculiar/x509'), `the certificate was made: ${first.packages.join(', ')}`);
      const again = await loadedPackages(['serve'], dir.path, '', /TLS {3}certificate .*self-signed, reused/);
      assert.ok(!again.packages.includes('@peculiar/x509'), `@peculiar/x509 was loaded to read the certificate: ${again.packages.join(', ')}`);
      await writeFile(join(dir.path, 'relay365.yaml'), plain);

      // With the HTTP door too: fastify, and still no pg.
      await writeFile(
        join(dir.path, 'relay365.yaml'),
        (await readFile(join(dir.path, 'relay365.yaml'), 'utf8')).replace('http: { enabled: false }', 'http: { enabled: true, port: 0 }'),
      );
      const withHttp = await loadedPackages(['serve'], dir.path, '', /SMTP {2}127\.0\.0\.1:\d+/);
      assert.ok(withHttp.packages.includes('fastify'), `the HTTP door ran: ${withHttp.packages.join(', ')}`);
      assert.ok(!withHttp.packages.includes('pg'), `pg was loaded: ${withHttp.packages.join(', ')}`);
    } finally {
      await dir.cleanup();
    }
  });

  it('runs serve as the same process with a young generation sized for a service, unless the operator sized it', { skip: process.platform !== 'linux' && 'reads /proc' }, async () => {
    const dir = await tempDir();
    try {
      await writeFile(join(dir.path, 'relay365.yaml'), PLAIN_SERVE_CONFIG);
      /** The command line of the process the CLI was started as, once it serves, and how it ended. */
      const serveCommandLine = (env: NodeJS.ProcessEnv): Promise<{ cmdline: string[]; code: number | null; stderr: string }> =>
        new Promise((resolve, reject) => {
          const child = spawn(process.execPath, [CLI, 'serve'], { cwd: dir.path, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
          let stdout = '';
          let stderr = '';
          let cmdline: string[] = [];
          let read = false;
          child.stdout.on('data', (d: Buffer) => {
            stdout += d.toString();
            // Once: a second SIGTERM would end the graceful stop at once (exit 130).
            if (!read && /SMTP {2}127\.0\.0\.1:\d+/.test(stdout)) {
              read = true;
              // The pid the CLI was started as: a re-exec keeps it, a child process would not.
              void readFile(`/proc/${child.pid}/cmdline`, 'utf8').then((text) => {
                cmdline = text.split('\0').filter(Boolean);
                child.kill('SIGTERM');
              }, reject);
            }
          });
          child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
          child.on('error', reject);
          child.on('close', (code) => resolve({ cmdline, code, stderr }));
        });

      const tuned = await serveCommandLine({ NODE_OPTIONS: '' });
      assert.equal(tuned.code, 0, tuned.stderr);
      assert.deepEqual(tuned.cmdline.slice(1), [`--max-semi-space-size=${SERVE_SEMI_SPACE_MB}`, CLI, 'serve'], tuned.cmdline.join(' '));

      const sized = await serveCommandLine({ NODE_OPTIONS: '--max-semi-space-size=16' });
      assert.equal(sized.code, 0, sized.stderr);
      assert.deepEqual(sized.cmdline.slice(1), [CLI, 'serve'], sized.cmdline.join(' '));
    } finally {
      await dir.cleanup();
    }
  });
});
