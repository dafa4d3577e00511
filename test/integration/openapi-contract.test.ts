/**
 * The OpenAPI document as a client generator reads it: the served /openapi.json linted by Redocly's
 * recommended rules, its contract (operation ids, public endpoints, headers, the shared Error), and a
 * client generated from it by openapi-typescript that type-checks under `tsc --strict` and then sends
 * a message through the running relay.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createConfig, lintFromString } from '@redocly/openapi-core';
import openapiTS, { astToString } from 'openapi-typescript';
import { generateApiKey, openSqliteIntegrationStore } from '../../src/ingress/http/index.js';
import { startRelay, type Relay } from '../../src/runtime/index.js';
import { DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';
import { sandboxConfig } from '../helpers/config.js';
import { scenario, startTestSandbox, tempDir } from '../helpers/sandbox.js';
import { until } from '../helpers/wait.js';

const MAILBOX = DEFAULT_IDS.mailbox;
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'] as const;

interface Operation {
  operationId?: string;
  security?: unknown[];
  parameters?: Array<{ $ref?: string; in?: string; name?: string; schema?: Record<string, unknown> }>;
  responses: Record<string, { headers?: Record<string, unknown>; content?: Record<string, { schema?: { $ref?: string } }> }>;
}

interface OpenApiDocument {
  openapi: string;
  servers?: Array<{ url: string }>;
  paths: Record<string, Partial<Record<(typeof METHODS)[number], Operation>>>;
  components: { schemas?: Record<string, unknown>; parameters?: Record<string, { name: string; in: string }> };
}

/** Every operation of the document, with its path and method. */
function operations(doc: OpenApiDocument): Array<{ where: string; op: Operation }> {
  return Object.entries(doc.paths).flatMap(([path, item]) =>
    METHODS.flatMap((method) => (item[method] ? [{ where: `${method.toUpperCase()} ${path}`, op: item[method] }] : [])),
  );
}

/** Runs a program to its end; resolves with its exit code and output. */
function run(command: string, args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv }): Promise<{ code: number | null; output: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolvePromise({ code, output }));
  });
}

/** A user's client of the relay, written against the generated types: it sends and reads the message back. */
const CLIENT = `import createClient from 'openapi-fetch';
import type { components, paths } from './relay365-api.js';

const [baseUrl, key, from] = process.argv.slice(2);
if (baseUrl === undefined || key === undefined || from === undefined) throw new Error('usage: client.js <baseUrl> <apiKey> <from>');
const client = createClient<paths>({ baseUrl, headers: { authorization: \`Bearer \${key}\` } });

// The body is typed by the document: an unknown field or a wrong type would not compile.
const body: paths['/v1/messages']['post']['requestBody']['content']['application/json'] = {
  from,
  to: ['someone@example.net'],
  subject: 'From a generated client',
  text: 'Typed by openapi-typescript, sent by openapi-fetch.',
  tags: ['generated-client'],
  metadata: { order: '42' },
};
const sent = await client.POST('/v1/messages', { body, params: { header: { 'Idempotency-Key': 'generated-client-1' } } });
if (sent.error !== undefined) {
  const error: components['schemas']['Error'] = sent.error;
  throw new Error(\`send refused: \${error.error.code} \${error.error.message}\`);
}
// 202 (queued) and 200 (validateOnly) are the two answers; only the queued one has an id.
if (!('id' in sent.data)) throw new Error('expected a queued message, got a validateOnly answer');
const id: string = sent.data.id;
const createdAt: string = sent.data.createdAt;
const sendAt: string | null = sent.data.sendAt;

const got = await client.GET('/v1/messages/{id}', { params: { path: { id } } });
if (got.error !== undefined) throw new Error(\`read refused: \${got.error.error.code}\`);
const recipients: string[] = got.data.recipients.map((r) => r.address);
console.log(
  JSON.stringify({
    status: sent.response.status,
    location: sent.response.headers.get('location'),
    id,
    createdAt,
    sendAt,
    read: { status: got.response.status, id: got.data.id, state: got.data.state, tags: got.data.tags, metadata: got.data.metadata, recipients },
  }),
);
`;

describe('OpenAPI document', () => {
  let sandbox: Sandbox & { dir: string };
  let dir: { path: string; cleanup: () => Promise<void> };
  let relay: Relay;
  let key: string;
  let doc: OpenApiDocument;
  let source: string;

  before(async () => {
    sandbox = await startTestSandbox({ scenario: scenario((s) => void (s.limits.unlimited = true)) });
    dir = await tempDir();
    const store = await openSqliteIntegrationStore(resolve(dir.path, 'relay365.db'));
    const made = generateApiKey();
    await store.createApiKey({ name: 'generated-client', hash: made.hash, prefix: made.prefix, scopes: ['send', 'read', 'admin'] });
    await store.close();
    key = made.key;
    relay = await startRelay(sandboxConfig(sandbox, dir.path, { smtp: { enabled: false }, mailboxes: [{ address: MAILBOX }], http: { port: 0 } }));
    const response = await fetch(`${relay.httpAddress!}/openapi.json`);
    assert.equal(response.status, 200);
    source = await response.text();
    doc = JSON.parse(source) as OpenApiDocument;
  });
  after(async () => {
    await relay?.close();
    await dir?.cleanup();
    await sandbox?.close();
  });

  it("passes Redocly's recommended rules with no error (warnings are printed)", async (t) => {
    const config = await createConfig({ extends: ['recommended'] });
    const problems = await lintFromString({ source, absoluteRef: `${relay.httpAddress!}/openapi.json`, config });
    const lines = problems.map((p) => `${p.severity} ${p.ruleId}: ${p.message} at ${p.location.map((l) => l.pointer).join(', ')}`);
    for (const line of lines) t.diagnostic(line);
    assert.deepEqual(
      lines.filter((l) => l.startsWith('error')),
      [],
      'redocly lint (recommended) finds errors in /openapi.json',
    );
  });

  it('names every operation, marks the public endpoints public and the others as needing an API key', () => {
    const all = operations(doc);
    assert.ok(all.length >= 16, `the document lists the API (${all.length} operations)`);
    const unnamed = all.filter(({ op }) => typeof op.operationId !== 'string' || !/^[a-z][A-Za-z]+$/.test(op.operationId)).map((o) => o.where);
    assert.deepEqual(unnamed, [], 'every operation has a camelCase operationId');
    const ids = all.map(({ op }) => op.operationId);
    assert.equal(new Set(ids).size, ids.length, 'operationIds are unique');
    const byId = new Map(all.map(({ where, op }) => [op.operationId, where]));
    for (const [id, where] of [
      ['sendMessage', 'POST /v1/messages'],
      ['sendMime', 'POST /v1/messages/mime'],
      ['listMessages', 'GET /v1/messages'],
      ['getMessage', 'GET /v1/messages/{id}'],
      ['retryMessage', 'POST /v1/messages/{id}/retry'],
      ['cancelMessage', 'DELETE /v1/messages/{id}'],
      ['listMailboxes', 'GET /v1/mailboxes'],
      ['resumeMailbox', 'POST /v1/mailboxes/{mailbox}/resume'],
      ['listSuppressions', 'GET /v1/suppressions'],
    ])
      assert.equal(byId.get(id), where, id);

    assert.deepEqual(doc.servers, [{ url: '/', description: 'This relay365 (the address /openapi.json was fetched from).' }]);
    for (const path of ['/healthz', '/readyz', '/metrics', '/openapi.json']) assert.deepEqual(doc.paths[path]?.get?.security, [], `${path} is public`);
    for (const { where, op } of all.filter((o) => o.where.includes(' /v1/'))) assert.deepEqual(op.security, [{ apiKey: [] }], where);
  });

  it('declares the Idempotency-Key header once and uses it on the sends, the Location of a 202, and one Error for every error reply', () => {
    assert.deepEqual([doc.components.parameters?.IdempotencyKey?.name, doc.components.parameters?.IdempotencyKey?.in], ['Idempotency-Key', 'header']);
    for (const path of ['/v1/messages', '/v1/messages/mime']) {
      const send = doc.paths[path]?.post;
      assert.ok(send?.parameters, `${path} has parameters`);
      assert.ok(
        send.parameters.some((p) => p.$ref === '#/components/parameters/IdempotencyKey'),
        `${path} takes Idempotency-Key`,
      );
      assert.ok(!send.parameters.some((p) => p.in === 'header' && p.name?.toLowerCase() === 'idempotency-key'), `${path}: no inline copy`);
      assert.ok(send.responses['202']?.headers?.Location, `${path}: the 202 has Location`);
    }
    assert.ok(doc.components.schemas?.Error, 'components/schemas/Error');
    for (const { where, op } of operations(doc)) {
      for (const [status, response] of Object.entries(op.responses).filter(([s]) => /^[45]/.test(s) && s !== '503')) {
        assert.equal(response.content?.['application/json']?.schema?.$ref, '#/components/schemas/Error', `${where} ${status}`);
      }
    }
    const limit = doc.paths['/v1/messages']?.get?.parameters?.find((p) => p.name === 'limit');
    assert.deepEqual(limit?.schema, { type: 'integer', minimum: 1, maximum: 500 });
  });

  it('takes limit as a number from the query string, and refuses 0, 501 and words with the same error', async () => {
    const get = async (path: string) => {
      const response = await fetch(`${relay.httpAddress!}${path}`, { headers: { authorization: `Bearer ${key}` } });
      return { status: response.status, body: (await response.json()) as { items?: unknown[]; error?: { code: string; message: string; field?: string } } };
    };
    for (const path of ['/v1/messages', '/v1/suppressions']) {
      assert.equal((await get(`${path}?limit=500`)).status, 200, `${path}?limit=500`);
      assert.equal((await get(`${path}?limit=1`)).status, 200, `${path}?limit=1`);
      for (const bad of ['0', '501', 'ten', '2.5', '-1']) {
        const refused = await get(`${path}?limit=${bad}`);
        assert.deepEqual(refused, {
          status: 400,
          body: { error: { code: 'R365_HTTP_INVALID_REQUEST', message: `limit must be a whole number between 1 and 500 (got "${bad}").`, field: 'limit' } },
        });
      }
    }
  });

  it('generates types with openapi-typescript that a client type-checks under --strict, and that client sends through the relay', async () => {
    const work = await tempDir('relay365-openapi-client-');
    try {
      const ast = await openapiTS(JSON.parse(source) as Parameters<typeof openapiTS>[0], { silent: true });
      await writeFile(join(work.path, 'relay365-api.ts'), astToString(ast));
      await writeFile(join(work.path, 'client.ts'), CLIENT);
      // The client docs/http-api.md shows ("Generating a client"), as a reader would copy it.
      const page = await readFile(join(ROOT, 'docs/http-api.md'), 'utf8');
      const docsClient = [...page.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]!).find((code) => code.includes('createClient<paths>'));
      assert.ok(docsClient, 'docs/http-api.md shows a generated client');
      await writeFile(join(work.path, 'docs-client.ts'), docsClient);
      await writeFile(join(work.path, 'package.json'), JSON.stringify({ type: 'module' }));
      await writeFile(
        join(work.path, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: {
            target: 'ES2022',
            module: 'NodeNext',
            moduleResolution: 'NodeNext',
            lib: ['ES2023', 'DOM'],
            types: ['node'],
            strict: true,
            noUncheckedIndexedAccess: true,
            outDir: 'out',
          },
          files: ['client.ts', 'docs-client.ts', 'relay365-api.ts'],
        }),
      );
      // The client resolves openapi-fetch and @types/node from this project, as an installed app would from its own.
      await mkdir(join(work.path, 'out'));
      await symlink(join(ROOT, 'node_modules'), join(work.path, 'node_modules'), 'dir');
      const compiled = await run(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], { cwd: work.path });
      assert.equal(compiled.code, 0, `tsc --strict on the generated client:\n${compiled.output}`);

      const ran = await run(process.execPath, ['out/client.js', relay.httpAddress!, key, MAILBOX], { cwd: work.path });
      assert.equal(ran.code, 0, ran.output);
      const result = JSON.parse(ran.output.trim().split('\n').pop()!) as {
        status: number;
        location: string | null;
        id: string;
        sendAt: string | null;
        read: { status: number; id: string; state: string; tags: string[]; metadata: Record<string, string>; recipients: string[] };
      };
      assert.equal(result.status, 202);
      assert.equal(result.location, `/v1/messages/${result.id}`);
      assert.equal(result.sendAt, null);
      assert.equal(result.read.status, 200);
      assert.equal(result.read.id, result.id);
      assert.ok(['queued', 'sending', 'sent'].includes(result.read.state), result.read.state);
      assert.deepEqual([result.read.tags, result.read.metadata, result.read.recipients], [['generated-client'], { order: '42' }, ['someone@example.net']]);

      const fromDocs = await run(process.execPath, ['out/docs-client.js'], {
        cwd: work.path,
        env: { RELAY365_URL: relay.httpAddress!, RELAY365_API_KEY: key },
      });
      assert.equal(fromDocs.code, 0, fromDocs.output);
      const docsResult = JSON.parse(fromDocs.output.trim().split('\n').pop()!) as { status: number; location: string; id: string; state: string };
      assert.deepEqual([docsResult.status, docsResult.location], [202, `/v1/messages/${docsResult.id}`]);
      assert.ok(['queued', 'sending', 'sent'].includes(docsResult.state), docsResult.state);

      // And the sandbox (Microsoft) takes it.
      await until(
        async () => {
          const r = await fetch(`${relay.httpAddress!}/v1/messages/${result.id}`, { headers: { authorization: `Bearer ${key}` } });
          return ((await r.json()) as { state: string }).state === 'sent';
        },
        15_000,
        'the generated client’s message to be sent',
      );
    } finally {
      await work.cleanup();
    }
  });
});
