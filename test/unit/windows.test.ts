import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SERVE_SEMI_SPACE_MB } from '../../src/cli/node-flags.js';
import { loadConfig } from '../../src/config/load.js';
import { CommandSource, parseCommandLine, tokenCommandSpawn } from '../../src/identity/command-source.js';
import { ownerOnlyAclArgs, restrictToOwner, sidFromWhoami } from '../../src/identity/owner-only.js';
import { tempDir } from '../helpers/sandbox.js';

describe('the token command without /bin/sh', () => {
  it('splits a simple command into argv as sh would, quotes and escapes included', () => {
    assert.deepEqual(parseCommandLine('oauth2.py --token relay@contoso.example'), ['oauth2.py', '--token', 'relay@contoso.example']);
    assert.deepEqual(parseCommandLine(`az account get-access-token --query "accessToken" -o 'tsv'`), [
      'az',
      'account',
      'get-access-token',
      '--query',
      'accessToken',
      '-o',
      'tsv',
    ]);
    assert.deepEqual(parseCommandLine(`"/opt/my tools/get token" 'a  b' c\\ d "say \\"hi\\"" ''`), ['/opt/my tools/get token', 'a  b', 'c d', 'say "hi"', '']);
    assert.deepEqual(parseCommandLine('  get-token\t--json  '), ['get-token', '--json']);
  });

  it('leaves to the shell a line that uses shell syntax', () => {
    for (const line of [
      'get-token | jq -r .access_token',
      'get-token > /tmp/t; cat /tmp/t',
      'get-token "$MAILBOX"',
      'get-token `whoami`',
      'TENANT=contoso get-token',
      'get-token ~/.token',
      'cat /run/secrets/*',
      'get-token && echo',
      'exit 3',
      'cd /opt/helper',
      "get-token 'unbalanced",
      '',
    ])
      assert.equal(parseCommandLine(line), undefined, line);
  });

  it('starts a simple command as argv on Linux and macOS, shell syntax through sh, everything through cmd.exe on Windows', () => {
    assert.deepEqual(tokenCommandSpawn('get-token --for relay', 'linux'), { file: 'get-token', args: ['--for', 'relay'], shell: false });
    assert.deepEqual(tokenCommandSpawn('get-token --for relay', 'darwin'), { file: 'get-token', args: ['--for', 'relay'], shell: false });
    assert.deepEqual(tokenCommandSpawn('get-token | tr -d x', 'linux'), { file: 'get-token | tr -d x', args: [], shell: true });
    // cmd.exe semantics (Node's shell: true on win32 runs `cmd.exe /d /s /c "<line>"`): az.cmd and other batch files start only that way.
    assert.deepEqual(tokenCommandSpawn('az account get-access-token --query accessToken -o tsv', 'win32'), {
      file: 'az account get-access-token --query accessToken -o tsv',
      args: [],
      shell: true,
    });
  });

  it('runs a helper by argv and takes the token it prints, with RELAY365_MAILBOX set', async () => {
    const dir = await tempDir();
    try {
      const script = join(dir.path, 'get token.mjs');
      await writeFile(script, "process.stdout.write('tok-' + process.env.RELAY365_MAILBOX + '\\r\\n');\n");
      // A path with a space, quoted: the argv parser keeps it one word (no shell to do it).
      const source = new CommandSource(`"${process.execPath}" "${script}"`, 10_000);
      const token = await source.acquire('relay@contoso.example');
      assert.equal(token.accessToken, 'tok-relay@contoso.example');
      // Opaque token: re-run after 5 minutes.
      assert.ok(token.expiresOn.getTime() > Date.now() + 290_000 && token.expiresOn.getTime() < Date.now() + 310_000);
      // A program that does not exist is named, not run by a shell that would print 'not found'.
      await assert.rejects(new CommandSource(join(dir.path, 'no-such-helper'), 10_000).acquire('relay@contoso.example'), /could not start: spawn .*no-such-helper ENOENT/);
    } finally {
      await dir.cleanup();
    }
  });
});

describe('key files on Windows', () => {
  it('restricts a file to the account relay365 runs as (its SID from whoami) with icacls on win32, and chmods it 0600 elsewhere', async () => {
    // whoami /user /fo csv /nh as LocalService, as a virtual service account, and as a domain user.
    assert.equal(sidFromWhoami('"nt authority\\local service","S-1-5-19"\r\n'), 'S-1-5-19');
    assert.equal(sidFromWhoami('"nt service\\relay365","S-1-5-80-1234-5678"\r\n'), 'S-1-5-80-1234-5678');
    assert.equal(sidFromWhoami('"contoso\\svc-relay","S-1-5-21-1-2-3-1105"'), 'S-1-5-21-1-2-3-1105');
    assert.equal(sidFromWhoami('ERROR: access denied'), undefined);
    assert.deepEqual(ownerOnlyAclArgs('C:\\ProgramData\\relay365\\secret.key', 'S-1-5-19'), [
      'C:\\ProgramData\\relay365\\secret.key',
      '/inheritance:r',
      '/grant:r',
      '*S-1-5-19:F',
    ]);
    const ran: Array<[string, string[]]> = [];
    const windows = (file: string, args: string[]): Promise<string> => {
      ran.push([file, args]);
      return Promise.resolve(file === 'whoami' ? '"nt authority\\local service","S-1-5-19"\r\n' : 'processed file: C:\\data\\secret.key\r\n');
    };
    await restrictToOwner('C:\\data\\secret.key', { platform: 'win32', run: windows });
    assert.deepEqual(ran, [
      ['whoami', ['/user', '/fo', 'csv', '/nh']],
      ['icacls', ['C:\\data\\secret.key', '/inheritance:r', '/grant:r', '*S-1-5-19:F']],
    ]);
    await assert.rejects(
      restrictToOwner('C:\\data\\secret.key', { platform: 'win32', run: (file) => (file === 'whoami' ? Promise.resolve('"a","S-1-5-19"') : Promise.reject(new Error('icacls exited 1332'))) }),
      /icacls exited 1332/,
    );
    await assert.rejects(restrictToOwner('C:\\data\\secret.key', { platform: 'win32', run: () => Promise.resolve('') }), /printed no SID/);
    const dir = await tempDir();
    try {
      const file = join(dir.path, 'secret.key');
      await writeFile(file, 'k');
      await chmod(file, 0o644);
      await restrictToOwner(file, { platform: 'linux', run: () => Promise.reject(new Error('icacls must not run on linux')) });
      assert.equal(((await stat(file)).mode & 0o777).toString(8), '600');
    } finally {
      await dir.cleanup();
    }
  });
});

describe('a config file saved on Windows', () => {
  it('reads with CRLF line endings, and a file: secret written by Notepad loses its CRLF', async () => {
    const dir = await tempDir();
    try {
      const lf = [
        'dataDir: data',
        'log:',
        '  level: warn',
        'smtp:',
        '  listeners:',
        '    - { host: 127.0.0.1, port: 2525, tls: starttls }',
        '  users:',
        '    - name: printer',
        '      passwordHash: "scrypt$16384$8$1$c2FsdHNhbHQ=$aGFzaGhhc2hoYXNoaGFzaA=="',
        '      allowedSenders: ["@contoso.example"]',
        'http:',
        '  adminPassword: file:admin-password',
        '',
      ].join('\n');
      await writeFile(join(dir.path, 'lf.yaml'), lf);
      await writeFile(join(dir.path, 'crlf.yaml'), lf.replace(/\n/g, '\r\n'));
      await writeFile(join(dir.path, 'admin-password'), 'correct horse\r\n');
      const fromLf = await loadConfig({ path: join(dir.path, 'lf.yaml'), env: {} });
      const fromCrlf = await loadConfig({ path: join(dir.path, 'crlf.yaml'), env: {} });
      assert.deepEqual(fromCrlf, fromLf);
      assert.equal(fromCrlf.smtp.users[0]!.passwordHash, 'scrypt$16384$8$1$c2FsdHNhbHQ=$aGFzaGhhc2hoYXNoaGFzaA==');
      const { resolveSecret } = await import('../../src/config/secret.js');
      assert.equal(await resolveSecret(fromCrlf.http.adminPassword!, {}), 'correct horse');
    } finally {
      await dir.cleanup();
    }
  });
});

describe('the Windows service sample', () => {
  it('ships packaging/windows/relay365-service.xml as docs/operations.md shows it, well formed, starting serve with the documented install paths', async () => {
    const { readFile } = await import('node:fs/promises');
    const xml = await readFile(new URL('../../packaging/windows/relay365-service.xml', import.meta.url), 'utf8');
    const doc = await readFile(new URL('../../docs/operations.md', import.meta.url), 'utf8');
    assert.ok(doc.includes('```xml\n' + xml + '```'), 'docs/operations.md shows the shipped file');
    // Every element closes in order (comments dropped, self-closing tags ignored).
    const stack: string[] = [];
    for (const [, close, name, selfClosing] of xml.replace(/<!--[\s\S]*?-->/g, '').matchAll(/<(\/?)([A-Za-z]+)[^>]*?(\/?)>/g)) {
      if (selfClosing) continue;
      if (close) assert.equal(stack.pop(), name, `</${name}> closes what is open`);
      else stack.push(name!);
    }
    assert.deepEqual(stack, []);
    const element = (name: string): string | undefined => new RegExp(`<${name}>([^<]*)</${name}>`).exec(xml)?.[1];
    assert.equal(element('id'), 'relay365');
    assert.equal(element('executable'), 'C:\\Program Files\\nodejs\\node.exe');
    // npm install -g --prefix "C:\Program Files\relay365" puts packages in <prefix>\node_modules on Windows.
    assert.match(doc, /npm install -g --prefix "C:\\Program Files\\relay365" relay365-/);
    // Node's flag first: Windows has no process.execve, so serve cannot size its young generation itself (src/cli/node-flags.ts).
    assert.equal(
      element('arguments'),
      `--max-semi-space-size=${SERVE_SEMI_SPACE_MB} "C:\\Program Files\\relay365\\node_modules\\relay365\\dist\\cli\\main.js" serve --config "C:\\ProgramData\\relay365\\relay365.yaml"`,
    );
    // WinSW sends Ctrl+C and waits stoptimeout: at least the graceful stop's 90 s, as the systemd unit allows.
    assert.equal(element('stoptimeout'), '90 sec');
  });
});
