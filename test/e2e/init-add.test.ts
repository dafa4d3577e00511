import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'yaml';
import { verifyPassword } from '../../src/ingress/smtp/password.js';
import { runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/sandbox.js';

// A config as a person keeps it: comments above and beside fields, an order of their own, a flow list.
const CONFIG = `# relay365 for the second floor (ticket 4711)
dataDir: ./data

auth:
  flow: client-secret
  tenant: contoso.onmicrosoft.com
  clientId: 00000000-0000-0000-0000-000000000001
  clientSecret: env:RELAY365_CLIENT_SECRET # rotated every June

# printers send as this one
mailboxes:
  - address: printer@contoso.com # the shared mailbox
    aliases: [scan@contoso.com]

smtp:
  # devices on the office LAN only
  allowlist:
    - cidr: 10.0.0.0/8
`;

const mode = async (path: string): Promise<number> => (await stat(path)).mode & 0o777;

describe('relay365 init --add-mailbox / --add-user on an existing config', () => {
  it('adds a mailbox and a user keeping every comment and the order, refuses duplicates changing nothing, and config check passes after', async () => {
    const dir = await tempDir();
    try {
      const file = join(dir.path, 'relay365.yaml');
      await writeFile(file, CONFIG);
      await chmod(file, 0o644);

      const added = await runCli(['init', '--add-mailbox', 'reception@contoso.com', '-o', file]);
      assert.equal(added.code, 0, added.stderr);
      assert.match(added.stdout, /Added mailbox reception@contoso\.com/);
      assert.match(added.stdout, /systemctl reload relay365/);
      const afterMailbox = await readFile(file, 'utf8');
      // The original text is all there, in its order; the new mailbox follows the one before it.
      assert.equal(afterMailbox, CONFIG.replace('    aliases: [scan@contoso.com]\n', '    aliases: [scan@contoso.com]\n  - address: reception@contoso.com\n'));
      assert.equal(await mode(file), 0o644, 'a mailbox holds no secret: the mode is kept');

      const user = await runCli(['init', '--add-user', 'scanner', '--password-stdin', '-o', file], { input: 'correct horse battery\n' });
      assert.equal(user.code, 0, user.stderr);
      assert.match(user.stdout, /Added SMTP user scanner/);
      const afterUser = await readFile(file, 'utf8');
      assert.ok(afterUser.startsWith(afterMailbox.trimEnd()), afterUser);
      assert.ok(!afterUser.includes('correct horse battery'), 'the password itself is never written');
      const users = (parse(afterUser) as { smtp: { users: Array<{ name: string; passwordHash: string }> } }).smtp.users;
      assert.equal(users.length, 1);
      assert.equal(users[0]!.name, 'scanner');
      assert.equal(await verifyPassword('correct horse battery', users[0]!.passwordHash), true);
      assert.equal(await mode(file), 0o640, 'with a password hash in it: none for others; the group (the service reads through it) keeps its access');

      // Duplicates: an address (in any case), an alias, a user name; each refused, the file unchanged.
      for (const args of [
        ['--add-mailbox', 'Printer@Contoso.com'],
        ['--add-mailbox', 'scan@contoso.com'],
        ['--add-user', 'scanner', '--password-stdin'],
      ]) {
        const refused = await runCli(['init', ...args, '-o', file], { input: 'another password\n' });
        assert.equal(refused.code, 1, `${args.join(' ')}: ${refused.stdout}`);
        assert.match(refused.stderr, /Nothing was changed/);
        assert.match(refused.stderr, /already/);
        assert.equal(await readFile(file, 'utf8'), afterUser, `${args.join(' ')} left the file as it was`);
      }
      // A change that would make the config invalid is not written either.
      const bad = await runCli(['init', '--add-mailbox', 'not-an-address', '-o', file]);
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /not an e-mail address/);
      assert.deepEqual((await readdir(dir.path)).sort(), ['relay365.yaml'], 'no temporary file left behind');

      const check = await runCli(['config', 'check', '--config', file], { env: { RELAY365_CLIENT_SECRET: 'x' } });
      assert.equal(check.code, 0, check.stdout + check.stderr);
    } finally {
      await dir.cleanup();
    }
  });

  it('says which file it could not read, and how to write one', async () => {
    const dir = await tempDir();
    try {
      const missing = await runCli(['init', '--add-mailbox', 'a@contoso.com', '-o', join(dir.path, 'none.yaml')]);
      assert.notEqual(missing.code, 0);
      assert.match(missing.stderr, /Cannot read config file .*none\.yaml: ENOENT/);
      assert.match(missing.stderr, /relay365 init/);
    } finally {
      await dir.cleanup();
    }
  });
});
