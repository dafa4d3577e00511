import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, readFile, readdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parse as parseYaml } from 'yaml';
import { loadConfig } from '../../src/config/load.js';
import { freePort, stop } from '../helpers/cli.js';
import { tempDir } from '../helpers/sandbox.js';

const REPO = new URL('../..', import.meta.url).pathname.replace(/\/$/, '');
const VERSION = (JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
/** A native build of better-sqlite3 under a shared, loaded machine can take minutes. */
const SLOW = { timeout: 20 * 60_000 };

/** Runs a command line in `sh` (as Docker's RUN does) or a program, and rejects with its output when it fails. */
function sh(command: string, cwd: string, env: NodeJS.ProcessEnv = {}): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    // Not npm's own variables (npm test sets npm_config_*, which would change what npm ci installs), nor NODE_ENV;
    // but the headers native addons build against (.ci/run sets npm_config_nodedir for the Node it installs).
    // Nor node:test's NODE_TEST_CONTEXT, which would make a `node --test` run here report to this test's runner.
    const clean = Object.fromEntries(
      Object.entries(process.env).filter(
        ([k]) => (!k.startsWith('npm_') || k === 'npm_config_nodedir') && k !== 'NODE_ENV' && k !== 'NODE_TEST_CONTEXT',
      ),
    );
    const child = spawn('sh', ['-c', command], { cwd, env: { ...clean, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-50_000)));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve({ stdout, stderr }) : reject(new Error(`${command} (in ${cwd}) exited ${code}:\n${stdout}\n${stderr}`))));
  });
}

/**
 * Starts `serve --sandbox` as `argv` says and resolves once it prints that it serves, with the HTTP
 * address it printed.
 */
function serveSandbox(argv: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<{ child: ChildProcess; http: string; stdout: () => string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-20_000)));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`serve --sandbox did not start; stdout: ${stdout}; stderr: ${stderr}`));
    }, 60_000);
    createInterface({ input: child.stdout }).on('line', (line) => {
      stdout += `${line}\n`;
      const m = /^ {2}HTTP {2}(http:\/\/\S+) /.exec(line);
      if (!m) return;
      clearTimeout(timer);
      resolve({ child, http: m[1]!, stdout: () => stdout });
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`serve --sandbox exited ${code}; stdout: ${stdout}; stderr: ${stderr}`));
    });
  });
}

/** Ports of their own, so that this test runs beside others and beside a demo on the defaults. */
async function ports(): Promise<{ smtp: number; http: number; env: NodeJS.ProcessEnv }> {
  const smtp = await freePort();
  const http = await freePort();
  return { smtp, http, env: { RELAY365_SMTP__LISTENERS: `[{host: 127.0.0.1, port: ${smtp}}]`, RELAY365_HTTP__PORT: String(http) } };
}

async function healthz(base: string): Promise<number> {
  const res = await fetch(`${base}/healthz`);
  assert.deepEqual(await res.json(), { status: 'ok' });
  return res.status;
}

/** The ```js block of docs/sandbox.md's "In your own app's tests": a user's test file. */
async function docsUserTest(): Promise<string> {
  const doc = await readFile(join(REPO, 'docs', 'sandbox.md'), 'utf8');
  const section = doc.slice(doc.indexOf("## In your own app's tests"));
  const m = /```js\n([\s\S]*?)```/.exec(section);
  assert.ok(m, "docs/sandbox.md has a js example under \"In your own app's tests\"");
  return m[1]!;
}

/** A CommonJS file of a user's project: both entries load with require() (Node's require(esm)). */
const REQUIRE_CJS = `const assert = require('node:assert/strict');
const relay365 = require('relay365');
const sandbox = require('relay365/sandbox');
for (const name of ['createRelay', 'createMailer', 'loadConfig', 'composeMessage', 'explainSmtpReply', 'Relay365Error'])
  assert.equal(typeof relay365[name], 'function', name);
assert.equal(typeof sandbox.startSandbox, 'function');
assert.equal(sandbox.DEFAULT_IDS.mailbox, 'relay@contoso.example');
console.log('required', Object.keys(relay365).length, Object.keys(sandbox).length);
`;

/** A TypeScript file of a user's project, type-checked against the installed declarations. */
const APP_TS = `import { createRelay, type SendResult } from 'relay365';
import { startSandbox, type SandboxMessage, type TestSandbox } from 'relay365/sandbox';

/** SendResult narrows on ok: a failure always has its explanation. */
export function explain(result: SendResult): string {
  return result.ok ? \`sent: \${result.reply ?? ''}\` : \`\${result.class}: \${result.explanation.cause} Fix: \${result.explanation.fix}\`;
}

export async function welcome(): Promise<SandboxMessage | undefined> {
  const sandbox: TestSandbox = await startSandbox({ scenario: (s) => void s.mailFlow.unknownRecipients.push('nobody@contoso.example') });
  const relay = await createRelay({ ...sandbox.config, dataDir: './data' });
  try {
    const queued = await relay.send({ from: sandbox.mailbox, to: 'ann@example.net', subject: 'Hi', text: 'Hello' });
    if (!queued.ok) throw new Error(\`\${queued.code}: \${queued.message}\`);
    const done = await relay.outcome(queued.id, { timeoutMs: 30_000 });
    if (done.state !== 'sent') throw new Error(done.lastReply);
    return sandbox.messages({ to: 'ann@example.net' })[0];
  } finally {
    await relay.close();
    await sandbox.close();
  }
}
`;

describe('installing relay365 the way users do', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    dir = await tempDir('relay365-install-');
  });
  after(async () => {
    await dir?.cleanup();
  });

  /** The packed tarball, installed globally into a prefix; once, for the tests that use it. */
  let installed: Promise<{ prefix: string; bin: string; files: string[] }> | undefined;
  const installGlobally = (): Promise<{ prefix: string; bin: string; files: string[] }> => (installed ??= packAndInstall());
  async function packAndInstall(): Promise<{ prefix: string; bin: string; files: string[] }> {
    // dist/ is what `npm test` built first (pretest); `npm pack` would run prepare and build it again.
    const packed = await sh(`npm pack --ignore-scripts --json --pack-destination ${JSON.stringify(dir.path)}`, REPO);
    const [info] = JSON.parse(packed.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
    const files = info!.files.map((f) => f.path);
    for (const needed of ['dist/cli/main.js', 'package.json', 'packaging/systemd/relay365.service', 'packaging/prepare.mjs', 'CHANGELOG.md', 'docs/operations.md'])
      assert.ok(files.includes(needed), `${needed} is in the package`);
    assert.deepEqual(
      files.filter((f) => /^(src|test|bench)\//.test(f)),
      [],
      'no sources or tests',
    );
    const prefix = join(dir.path, 'prefix');
    // From npm's cache where it has the packages (the registry otherwise); better-sqlite3 builds from source here.
    await sh(`npm install -g --prefix ${JSON.stringify(prefix)} --prefer-offline --no-audit --no-fund ${JSON.stringify(join(dir.path, info!.filename))}`, dir.path);
    return { prefix, bin: join(prefix, 'bin', 'relay365'), files };
  }

  it('installs the packed tarball globally into a prefix, whose relay365 prints its version and serves the sandbox', SLOW, async () => {
    const { prefix, bin, files } = await installGlobally();
    for (const needed of ['dist/index.d.ts', 'dist/sandbox/public.js', 'dist/sandbox/public.d.ts'])
      assert.ok(files.includes(needed), `${needed} is in the package`);
    assert.equal((await sh(`${JSON.stringify(bin)} --version`, dir.path)).stdout.trim(), VERSION);
    // The unit it prints runs this install's relay365.
    const unit = (await sh(`${JSON.stringify(bin)} service print systemd --config /etc/relay365/relay365.yaml`, dir.path)).stdout;
    assert.match(unit, new RegExp(`^ExecStart=${process.execPath} ${join(prefix, 'lib', 'node_modules', 'relay365', 'dist', 'cli', 'main.js')} serve `, 'm'));

    const work = join(dir.path, 'work');
    await mkdir(work);
    const { env } = await ports();
    const demo = await serveSandbox([bin, 'serve', '--sandbox'], work, env);
    try {
      assert.equal(await healthz(demo.http), 200);
      assert.ok(existsSync(join(work, 'data', 'relay365.db')), 'the demo keeps its data in ./data');
    } finally {
      assert.equal(await stop(demo.child), 0);
    }
  });

  it("a user's project with the installed package: docs/sandbox.md's node --test file sends through createRelay to relay365/sandbox (sent, and a refused recipient), require() loads both entries, and a .ts file type-checks under --strict", SLOW, async () => {
    const { prefix } = await installGlobally();
    const app = join(dir.path, 'app');
    await mkdir(join(app, 'node_modules'), { recursive: true });
    await mkdir(join(app, 'test'));
    // The installed package in the project's node_modules, as `npm link relay365` puts it: the same
    // files and dependencies a project's own install has, without building better-sqlite3 a second time.
    await symlink(join(prefix, 'lib', 'node_modules', 'relay365'), join(app, 'node_modules', 'relay365'), 'dir');
    await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'my-app', private: true, type: 'module' }, null, 2));
    await writeFile(join(app, 'test', 'mail.test.js'), await docsUserTest());
    await writeFile(join(app, 'require.cjs'), REQUIRE_CJS);
    await writeFile(join(app, 'app.ts'), APP_TS);
    await writeFile(
      join(app, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          module: 'nodenext',
          moduleResolution: 'nodenext',
          target: 'es2022',
          noEmit: true,
          types: ['node'],
          // The project's @types/node.
          typeRoots: [join(REPO, 'node_modules', '@types')],
          // Every declaration checked, relay365's and those it names (pg's and better-sqlite3's types
          // come with it: their @types packages are its dependencies).
          skipLibCheck: false,
        },
        files: ['app.ts'],
      }),
    );

    // `node --test` as docs/sandbox.md says, finding test/mail.test.js itself (a directory argument is a
    // file name to Node 22 and later, whose --test takes globs).
    const run = await sh(`${JSON.stringify(process.execPath)} --test --test-reporter=tap`, app);
    assert.match(run.stdout, /^# pass 2$/m, run.stdout);
    assert.match(run.stdout, /^# fail 0$/m, run.stdout);
    assert.match(run.stdout, /^ok \d+ - a recipient Exchange refuses is reported refused, the others sent$/m);

    const required = await sh(`${JSON.stringify(process.execPath)} require.cjs`, app);
    assert.match(required.stdout, /^required \d+ 2$/m, required.stdout + required.stderr);

    // This repository's TypeScript (a devDependency) with the project's tsconfig; it fails with every error it prints.
    await sh(`${JSON.stringify(process.execPath)} ${JSON.stringify(join(REPO, 'node_modules', 'typescript', 'bin', 'tsc'))} -p tsconfig.json`, app);
  });

  it("runs every command of the Dockerfile's build and production stages in a clean folder, and the result serves and passes its HEALTHCHECK", SLOW, async () => {
    const dockerfile = await readFile(join(REPO, 'Dockerfile'), 'utf8');
    const ignored = (await readFile(join(REPO, '.dockerignore'), 'utf8')).split('\n').filter((l) => l.trim() !== '' && !l.startsWith('#'));
    // Instructions, continuation lines joined, comments dropped.
    const instructions = dockerfile
      .replace(/\\\n/g, ' ')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'))
      .map((l) => {
        const [, op, rest] = /^(\S+)\s+(.*)$/.exec(l)!;
        return { op: op!.toUpperCase(), rest: rest! };
      });
    const args = new Map<string, string>();
    // Each stage's file system is a folder; a stage FROM an earlier one works in that one's folder (it
    // adds paths of its own only). The final stage is FROM the Node image: an empty folder.
    const roots = new Map<string, string>();
    let root = '';
    let workdir = '/';
    let env: Record<string, string> = {};
    const final: { env: Record<string, string>; user?: string; volumes: string[]; healthcheck?: string[]; entrypoint?: string[]; cmd?: string[] } = { env: {}, volumes: [] };
    const inRoot = (r: string, p: string): string => join(r, p.startsWith('/') ? p : join(workdir, p));
    const skipped: string[] = [];
    const npmCache = join(dir.path, 'docker', 'npm-cache');
    let stage = 0;
    for (const { op, rest } of instructions) {
      switch (op) {
        case 'ARG': {
          const [name, value] = rest.split('=');
          args.set(name!, value ?? '');
          break;
        }
        case 'FROM': {
          const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest)!;
          const image = m[1]!.replace(/\$\{(\w+)\}/g, (_, n: string) => args.get(n) ?? '');
          stage += 1;
          root = roots.get(image) ?? join(dir.path, 'docker', m[2] ?? `stage${stage}`);
          if (!roots.has(image)) {
            assert.match(image, /^node:24-bookworm-slim$/, 'a stage not FROM another starts from the Node image');
            workdir = '/';
            env = {};
          }
          await mkdir(root, { recursive: true });
          if (m[2]) roots.set(m[2], root);
          break;
        }
        case 'WORKDIR':
          workdir = rest;
          await mkdir(join(root, workdir), { recursive: true });
          break;
        case 'ENV':
          for (const pair of rest.split(/\s+/)) {
            const [name, value] = pair.split('=');
            env[name!] = value!;
          }
          break;
        case 'COPY': {
          const words = rest.split(/\s+/);
          const from = words.find((w) => w.startsWith('--from='))?.slice('--from='.length);
          const paths = words.filter((w) => !w.startsWith('--'));
          const target = paths.pop()!;
          for (const source of paths) {
            if (from === undefined) {
              assert.ok(!ignored.some((pattern) => source === pattern || source.startsWith(`${pattern}/`)), `.dockerignore leaves out ${source}`);
              await cp(join(REPO, source), target.endsWith('/') ? join(inRoot(root, target), source) : inRoot(root, target), { recursive: true });
            } else {
              // --chown is not applied: this test runs as one user.
              await cp(join(roots.get(from)!, source), inRoot(root, target), { recursive: true });
            }
          }
          break;
        }
        case 'RUN':
          if (rest.startsWith('apt-get ')) {
            // The toolchain the stage installs; this machine has it (checked), and the test does not install packages.
            for (const tool of ['python3', 'make', 'g++']) await sh(`command -v ${tool}`, REPO);
            skipped.push(rest);
            break;
          }
          // npm's cache is the image's own (/root/.npm, empty at first, shared by a stage FROM another), not
          // this machine's: the production stage's `npm cache clean --force` must not empty the user's.
          await sh(rest, inRoot(root, '.'), { ...env, npm_config_cache: npmCache });
          break;
        case 'USER':
          final.user = rest;
          break;
        case 'VOLUME':
          final.volumes.push(rest);
          break;
        case 'EXPOSE':
          break;
        case 'HEALTHCHECK':
          final.healthcheck = JSON.parse(/CMD\s+(\[.*\])$/.exec(rest)![1]!) as string[];
          break;
        case 'ENTRYPOINT':
          final.entrypoint = JSON.parse(rest) as string[];
          break;
        case 'CMD':
          final.cmd = JSON.parse(rest) as string[];
          break;
        default:
          assert.fail(`the test does not know the Dockerfile instruction ${op}`);
      }
    }
    final.env = env;
    assert.equal(skipped.length, 1, 'only the toolchain install is not run');
    assert.equal(final.user, 'node', 'runs as the unprivileged node user');
    assert.deepEqual(final.volumes, ['/var/lib/relay365']);
    assert.deepEqual(final.entrypoint, ['node', '/app/dist/cli/main.js']);
    assert.deepEqual(final.cmd, ['serve']);
    assert.equal(final.env.STATE_DIRECTORY, '/var/lib/relay365', 'dataDir defaults to the volume');
    // The final image holds the runtime dependencies only, beside dist/: no TypeScript, no tsx, no sources.
    const app = join(root, 'app');
    const modules = await readdir(join(app, 'node_modules'));
    assert.ok(modules.includes('better-sqlite3') && modules.includes('fastify'));
    assert.ok(!modules.includes('typescript') && !modules.includes('tsx') && !modules.includes('eslint'), modules.join(' '));
    assert.ok(!existsSync(join(app, 'src')));
    assert.ok(existsSync(join(root, 'var', 'lib', 'relay365')), 'the data folder exists in the image');

    // Started as the image starts it, with the config file RELAY365_CONFIG names, from the image's root.
    const { smtp, http } = await ports();
    await mkdir(join(root, 'etc', 'relay365'), { recursive: true });
    await writeFile(join(root, final.env.RELAY365_CONFIG!), `smtp:\n  listeners: [ { host: 0.0.0.0, port: ${smtp} } ]\nhttp: { host: 0.0.0.0, port: ${http} }\n`);
    const mapped = (word: string): string => (word.startsWith('/') ? join(root, word) : word === 'node' ? process.execPath : word);
    const imageEnv = Object.fromEntries(Object.entries(final.env).map(([k, v]) => [k, v.startsWith('/') ? join(root, v) : v]));
    const relay = await serveSandbox([...final.entrypoint, ...final.cmd, '--sandbox'].map(mapped), root, imageEnv);
    try {
      assert.equal(relay.http, `http://0.0.0.0:${http}`);
      assert.equal(await healthz(`http://127.0.0.1:${http}`), 200);
      const [program, ...rest] = final.healthcheck!.map(mapped);
      const check = await sh([program, ...rest].map((w) => JSON.stringify(w)).join(' '), root, imageEnv);
      assert.match(check.stdout, new RegExp(`^relay365 ready: http://127.0.0.1:${http}/healthz`));
      assert.ok(existsSync(join(root, 'var', 'lib', 'relay365', 'relay365.db')), 'data in the volume');
    } finally {
      assert.equal(await stop(relay.child), 0);
    }
  });

  it('describes in compose.yaml a two-node cluster on PostgreSQL whose nodes share the store and the key', async () => {
    const compose = parseYaml(await readFile(join(REPO, 'compose.yaml'), 'utf8'), { merge: true }) as {
      services: Record<
        string,
        {
          image?: string;
          build?: string;
          depends_on?: Record<string, { condition: string }>;
          healthcheck?: { test: string[] };
          volumes?: string[];
          environment?: Record<string, string>;
          ports?: string[];
        }
      >;
      volumes: Record<string, unknown>;
    };
    assert.deepEqual(Object.keys(compose.services).sort(), ['postgres', 'relay1', 'relay2']);
    const pg = compose.services.postgres!;
    assert.match(pg.image!, /^postgres:\d+/);
    assert.deepEqual(pg.healthcheck!.test.slice(0, 2), ['CMD', 'pg_isready']);
    const relays = [compose.services.relay1!, compose.services.relay2!];
    const declared = Object.keys(compose.volumes);
    const dataVolumes = new Set<string>();
    for (const relay of relays) {
      assert.equal(relay.build, '.', 'built from this Dockerfile');
      assert.deepEqual(relay.depends_on, { postgres: { condition: 'service_healthy' } });
      assert.deepEqual(relay.healthcheck!.test, ['CMD', 'node', '/app/dist/cli/main.js', 'service', 'ready', '--timeout', '5']);
      const env = relay.environment!;
      assert.equal(env.RELAY365_QUEUE__URL, 'postgresql://relay365@postgres:5432/relay365', 'the postgres service, password outside the URL');
      assert.match(env.RELAY365_SECRET_KEY!, /^\$\{RELAY365_SECRET_KEY:\?/, 'the same required key on every node');
      assert.match(env.PGPASSWORD!, /^\$\{RELAY365_PG_PASSWORD:\?/);
      const mounts = relay.volumes!;
      assert.ok(mounts.includes('./relay365.yaml:/etc/relay365/relay365.yaml:ro'));
      const data = mounts.find((m) => m.endsWith(':/var/lib/relay365'))!.split(':')[0]!;
      assert.ok(declared.includes(data), `${data} is declared`);
      dataVolumes.add(data);
      // What the node would run with: its environment (compose's ${...} filled in) over a sample config.
      const filled = Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v.replace(/\$\{(\w+)[^}]*\}/g, (_m, n: string) => `sample-${n}`)]));
      const config = await loadConfig({ env: filled });
      assert.equal(config.queue.url, 'postgresql://relay365@postgres:5432/relay365');
      assert.equal(config.http.host, '0.0.0.0');
      assert.deepEqual(
        config.smtp.listeners.map((l) => [l.host, l.port]),
        [['0.0.0.0', 2525]],
      );
    }
    assert.equal(dataVolumes.size, 2, 'each node has its own data volume');
    assert.ok(declared.includes(pg.volumes![0]!.split(':')[0]!));
    // The two nodes publish different host ports.
    assert.notDeepEqual(relays[0]!.ports, relays[1]!.ports);
  });
});
