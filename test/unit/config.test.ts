import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadConfig, resolveSecret } from '../../src/config/index.js';
import { isRelay365Error, type Relay365Error } from '../../src/errors.js';
import { tempDir } from '../helpers/sandbox.js';

describe('loadConfig', () => {
  it('applies defaults when no file is given', async () => {
    const config = await loadConfig({ env: {} });
    assert.equal(config.dataDir, './data');
    assert.equal(config.log.level, 'info');
    assert.ok(Object.isFrozen(config) && Object.isFrozen(config.log));
  });

  it('lets RELAY365_* variables naming a config field override the file, nested with __, and leaves other RELAY365_* variables alone', async () => {
    const dir = await tempDir();
    try {
      const path = join(dir.path, 'relay365.yaml');
      await writeFile(path, 'dataDir: /var/lib/relay365\nlog:\n  level: warn\n');
      const config = await loadConfig({
        path,
        env: { RELAY365_LOG__LEVEL: 'debug', RELAY365_SECRET_KEY: 'k', RELAY365_CLIENT_SECRET: 'a secret the config refers to', RELAY365_FULL_TESTS: '1' },
      });
      assert.equal(config.dataDir, '/var/lib/relay365');
      assert.equal(config.log.level, 'debug');
    } finally {
      await dir.cleanup();
    }
  });

  it('reports every problem at once, each with its dotted path', async () => {
    const dir = await tempDir();
    try {
      const path = join(dir.path, 'relay365.yaml');
      await writeFile(path, 'dataDir: ""\nlog:\n  level: loud\nunknownKey: 1\n');
      await assert.rejects(loadConfig({ path, env: {} }), (err: Relay365Error) => {
        assert.ok(isRelay365Error(err, 'R365_CONFIG_INVALID'));
        const issues = (err.details?.issues ?? []) as Array<{ path: string }>;
        const paths = issues.map((i) => i.path).sort();
        assert.deepEqual(paths, ['(root)', 'dataDir', 'log.level']);
        assert.match(err.message, /log\.level/);
        assert.match(err.message, /unknownKey/);
        return true;
      });
    } finally {
      await dir.cleanup();
    }
  });

  it('takes mailboxes[].signInAs for a delegated flow only', async () => {
    const dir = await tempDir();
    try {
      const path = join(dir.path, 'relay365.yaml');
      const write = (flow: string) =>
        writeFile(
          path,
          `auth: { flow: ${flow}, tenant: contoso.onmicrosoft.com, clientId: 00000000-0000-0000-0000-000000000001${flow === 'client-secret' ? ', clientSecret: env:S' : ''} }\n` +
            'mailboxes:\n  - address: shared@contoso.com\n    signInAs: alice@contoso.com\n',
        );
      await write('auth-code');
      const ok = await loadConfig({ path, env: {} });
      assert.equal(ok.mailboxes[0]!.signInAs, 'alice@contoso.com');
      await write('client-secret');
      await assert.rejects(loadConfig({ path, env: {} }), (err: Relay365Error) => {
        const issues = (err.details?.issues ?? []) as Array<{ path: string; message: string }>;
        assert.ok(issues.some((i) => i.path === 'mailboxes[0].signInAs' && /delegated flow/.test(i.message)), JSON.stringify(issues));
        return true;
      });
    } finally {
      await dir.cleanup();
    }
  });

  it('names a missing file and a file that is not YAML', async () => {
    await assert.rejects(loadConfig({ path: '/nonexistent/relay365.yaml', env: {} }), (err: Relay365Error) => {
      assert.equal(err.code, 'R365_CONFIG_NOT_FOUND');
      assert.match(err.message, /\/nonexistent\/relay365\.yaml/);
      return true;
    });
    const dir = await tempDir();
    try {
      const path = join(dir.path, 'bad.yaml');
      await writeFile(path, 'log: [unclosed\n');
      await assert.rejects(loadConfig({ path, env: {} }), { code: 'R365_CONFIG_INVALID' });
    } finally {
      await dir.cleanup();
    }
  });

  it('names the line and column of a YAML syntax error without quoting the line, which may hold a secret', async () => {
    const dir = await tempDir();
    try {
      const path = join(dir.path, 'relay365.yaml');
      // A plain secret with a ": " inside is a YAML error on the very line that holds it.
      await writeFile(path, 'auth:\n  flow: client-secret\n  clientSecret: Qx8~s3cr3t: tail\n');
      await assert.rejects(loadConfig({ path, env: {} }), (err: Relay365Error) => {
        assert.equal(err.code, 'R365_CONFIG_INVALID');
        assert.match(err.message, /is not valid YAML \(line 3, column \d+\): /);
        const everything = JSON.stringify({ message: err.message, details: err.details, cause: String(err.cause), stack: err.stack });
        assert.doesNotMatch(everything, /s3cr3t/);
        return true;
      });
    } finally {
      await dir.cleanup();
    }
  });
});

describe('resolveSecret', () => {
  it('reads env: and file: references and never quotes the secret in its errors', async () => {
    assert.equal(await resolveSecret('env:MY_SECRET', { MY_SECRET: 's3cr3t' }), 's3cr3t');
    const dir = await tempDir();
    try {
      const file = join(dir.path, 'secret');
      await writeFile(file, 'from-file\n', { mode: 0o600 });
      assert.equal(await resolveSecret(`file:${file}`), 'from-file');
      await assert.rejects(resolveSecret('env:UNSET_VAR', {}), (err: Relay365Error) => {
        assert.equal(err.code, 'R365_SECRET_UNRESOLVED');
        assert.match(err.message, /UNSET_VAR/);
        return true;
      });
      await assert.rejects(resolveSecret(`file:${file}.missing`), { code: 'R365_SECRET_UNRESOLVED' });
    } finally {
      await dir.cleanup();
    }
  });
});
