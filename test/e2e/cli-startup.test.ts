import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CLI } from '../helpers/cli.js';
import { tempDir } from '../helpers/sandbox.js';

/**
 * Runs the built CLI with a preload that prints, at exit, the npm packages the CommonJS loader loaded
 * (every CommonJS package an ES module imports goes through it: fastify, pg, better-sqlite3, nodemailer,
 * prom-client, jsonwebtoken under MSAL, ...).
 */
function loadedPackages(args: string[], cwd: string, input = ''): Promise<{ code: number | null; packages: string[]; stderr: string }> {
  const preload = `data:text/javascript,${encodeURIComponent(`
    import { createRequire } from 'node:module';
    const require = createRequire(${JSON.stringify(CLI)});
    process.on('exit', () => {
      const names = Object.keys(require.cache).map((p) => /node_modules[\\\\/]((?:@[^\\\\/]+[\\\\/])?[^\\\\/]+)/.exec(p)?.[1]).filter(Boolean);
      process.stderr.write('LOADED ' + JSON.stringify([...new Set(names)].sort()) + '\\n');
    });
  `)}`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', preload, CLI, ...args], { cwd, stdio: ['pipe', 'ignore', 'pipe'] });
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
    } finally {
      await dir.cleanup();
    }
  });
});
