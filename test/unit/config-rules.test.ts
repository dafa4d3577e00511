import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { z } from 'zod';
import { WEBHOOK_EVENT_TYPES, authSchema, configSchema, issuePath, loadConfig, type ConfigIssue } from '../../src/config/index.js';
import { hashPassword } from '../../src/ingress/smtp/password.js';
import { isRelay365Error } from '../../src/errors.js';
import { tempDir } from '../helpers/sandbox.js';
import { createMailer } from '../../src/delivery/index.js';
import { createRelay } from '../../src/runtime/index.js';

const TENANT = '5f0c6f2e-6b1e-4c55-9a43-2d1e7c3b9a10';
const CLIENT = '3c1b9a52-2f44-4d6e-8f0a-7b5e9d2c4a11';
const GOOD = { auth: { flow: 'client-secret', tenant: TENANT, clientId: CLIENT, clientSecret: 'env:S' }, mailboxes: [{ address: 'relay@contoso.com' }] };

/** loadConfig on a YAML file of `config`; the issues it refuses it with (none when it loads). */
async function issuesOf(config: unknown, env: NodeJS.ProcessEnv = {}): Promise<ConfigIssue[]> {
  const dir = await tempDir();
  try {
    const path = join(dir.path, 'relay365.yaml');
    await writeFile(path, JSON.stringify(config));
    await loadConfig({ path, env });
    return [];
  } catch (err) {
    assert.ok(isRelay365Error(err, 'R365_CONFIG_INVALID'), String(err));
    return err.details?.issues as ConfigIssue[];
  } finally {
    await dir.cleanup();
  }
}

describe('config rules, checked once at load time', () => {
  it('refuses 10.0.0.0/99 as smtp.allowlist[0].cidr, with every other problem of the file in the same error', async () => {
    const hash = await hashPassword('pw');
    const issues = await issuesOf({
      ...GOOD,
      auth: { ...GOOD.auth, clientId: 'my-app' },
      smtp: {
        users: [
          { name: 'printer', passwordHash: hash },
          { name: 'printer', passwordHash: 'scrypt$1000$8$1$c2FsdHNhbHQ=$aGFzaGhhc2hoYXNoaGFzaA==' },
        ],
        allowlist: [{ cidr: '192.168.1.0/24' }, { cidr: '10.0.0.0/99' }, { cidr: 'printer.lan' }, { cidr: 'fd00::/129' }],
      },
    });
    assert.deepEqual(
      issues.map((i) => `${i.path}: ${i.message}`).sort(),
      [
        "auth.clientId: my-app is not an application (client) id: a GUID from the app's Overview page",
        'smtp.allowlist[1].cidr: 10.0.0.0/99 is not a CIDR range: /99 is not a prefix length for IPv4 (0-32)',
        'smtp.allowlist[2].cidr: printer.lan is not a CIDR range: printer.lan is not an IPv4 or IPv6 address',
        'smtp.allowlist[3].cidr: fd00::/129 is not a CIDR range: /129 is not a prefix length for IPv6 (0-128)',
        'smtp.users[1].name: printer is listed twice',
        'smtp.users[1].passwordHash: scrypt N must be a power of two',
      ].sort(),
    );
  });

  it('gives the library (createMailer) the verdict loadConfig gives, with the same paths and messages', async () => {
    const broken = { ...GOOD, auth: { ...GOOD.auth, tenant: 'common' }, smtp: { allowlist: [{ cidr: '10.0.0.0/99' }] } };
    const loaded = await issuesOf(broken);
    assert.equal(loaded.length, 2, JSON.stringify(loaded));
    await assert.rejects(createMailer(broken as never), (err) => {
      assert.ok(isRelay365Error(err, 'R365_CONFIG_INVALID'));
      assert.deepEqual(err.details?.issues, loaded);
      assert.match(err.message, /smtp\.allowlist\[0\]\.cidr: 10\.0\.0\.0\/99 is not a CIDR range/);
      return true;
    });
  });

  it('gives the queued library (createRelay) the same verdict, before it opens anything', async () => {
    const broken = { ...GOOD, auth: { ...GOOD.auth, tenant: 'common' }, smtp: { allowlist: [{ cidr: '10.0.0.0/99' }] } };
    const loaded = await issuesOf(broken);
    await assert.rejects(createRelay(broken as never), (err) => {
      assert.ok(isRelay365Error(err, 'R365_CONFIG_INVALID'));
      assert.deepEqual(err.details?.issues, loaded);
      return true;
    });
  });

  it('refuses a rewritten sender that is no mailbox or alias, and reservedConnections that leave strangers no slot', async () => {
    const mailboxes = [{ address: 'relay@contoso.com', aliases: ['scanner@contoso.com'] }];
    const issues = await issuesOf({
      ...GOOD,
      mailboxes,
      smtp: {
        maxConnections: 10,
        reservedConnections: 10,
        users: [{ name: 'copier', passwordHash: await hashPassword('pw'), rewriteSender: { to: 'Scanner@contoso.com' } }],
        allowlist: [{ cidr: '192.0.2.0/24', rewriteSender: { to: 'someone@fabrikam.com' } }],
      },
    });
    assert.deepEqual(
      issues.map((i) => `${i.path}: ${i.message}`),
      [
        'smtp.reservedConnections: must be less than maxConnections (10): clients not yet logged in need at least one slot',
        'smtp.allowlist[0].rewriteSender.to: someone@fabrikam.com is neither a configured mailbox nor one of their aliases',
      ],
    );
  });

  it('lets a delegated mailbox read its NDRs (delegated Mail.ReadWrite), and refuses reading with a token command or a delegate sign-in', async () => {
    const delegated = { flow: 'device-code', tenant: TENANT, clientId: CLIENT };
    const read = { read: true };
    assert.deepEqual(await issuesOf({ auth: delegated, mailboxes: [{ address: 'alice@contoso.com', bounces: read }] }), []);
    const issues = await issuesOf({
      auth: delegated,
      mailboxes: [
        { address: 'shared@contoso.com', signInAs: 'alice@contoso.com', bounces: read },
        { address: 'cmd@contoso.com', auth: { flow: 'token-command', command: 'print-token' }, bounces: read },
      ],
    });
    assert.deepEqual(
      issues.map((i) => `${i.path}: ${i.message}`),
      [
        "mailboxes[0].bounces.read: shared@contoso.com: reading NDRs with a delegate's sign-in (signInAs alice@contoso.com) is not supported: read them with an app-only flow (Mail.Read scoped to the mailbox) (docs/bounces.md)",
        "mailboxes[1].bounces.read: cmd@contoso.com: the token command's token is the one it prints, for SMTP; reading NDRs needs a Microsoft Graph token: use an app-only flow or device-code/auth-code (docs/bounces.md)",
      ],
    );
  });

  it('accepts the ranges the relay can match: IPv4, IPv6, a bare address and an IPv4-mapped network', async () => {
    const issues = await issuesOf({ ...GOOD, smtp: { allowlist: [{ cidr: '10.0.0.0/8' }, { cidr: 'fd00::/8' }, { cidr: '192.0.2.7' }, { cidr: '::ffff:10.0.0.0/104' }] } });
    assert.deepEqual(issues, []);
  });

  it('refuses a tenant that is not one (common, organizations, a name) and a client id that is not a GUID, as init and doctor do', async () => {
    for (const [tenant, why] of [
      ['common', /common is not a tenant/],
      ['Organizations', /Organizations is not a tenant/],
      ['contoso', /neither a tenant id \(GUID\) nor a domain/],
    ] as const) {
      const issues = await issuesOf({ ...GOOD, auth: { ...GOOD.auth, tenant } });
      assert.equal(issues.length, 1, JSON.stringify(issues));
      assert.equal(issues[0]!.path, 'auth.tenant');
      assert.match(issues[0]!.message, why);
    }
    // Per-mailbox settings are checked by the same rule, at their own path.
    const issues = await issuesOf({ ...GOOD, mailboxes: [{ address: 'relay@contoso.com', auth: { clientId: 'relay365' } }] });
    assert.deepEqual(
      issues.map((i) => i.path),
      ['mailboxes[0].auth.clientId'],
    );
    assert.deepEqual(await issuesOf({ ...GOOD, auth: { ...GOOD.auth, tenant: 'contoso.onmicrosoft.com' } }), []);
  });

  it('refuses queue.encryptBodies with queue.url unless RELAY365_SECRET_KEY is set (a rule on the environment, at load time)', async () => {
    const shared = { ...GOOD, queue: { url: 'postgres://127.0.0.1/test', encryptBodies: true } };
    const issues = await issuesOf(shared, {});
    assert.deepEqual(
      issues.map((i) => i.path),
      ['queue.encryptBodies'],
    );
    assert.match(issues[0]!.message, /RELAY365_SECRET_KEY/);
    assert.deepEqual(await issuesOf(shared, { RELAY365_SECRET_KEY: 'a key shared by every node' }), []);
    assert.deepEqual(await issuesOf({ ...GOOD, queue: { encryptBodies: true } }, {}), [], 'one node: its key file serves');
  });

  it('gives a missing section the defaults written beside its fields', () => {
    const config = configSchema.parse({});
    const { delivery, auth, network, sandbox, queue, smtp } = configSchema.shape;
    for (const [name, section] of Object.entries({ delivery, auth, network, sandbox, queue, smtp })) {
      assert.deepEqual(config[name as keyof typeof config], (section as z.ZodType).parse(undefined), `${name}`);
    }
    assert.deepEqual(config.delivery, { maxConnections: 3, connectionTimeoutMs: 30_000, greetingTimeoutMs: 30_000, socketTimeoutMs: 120_000, maxMessagesPerConnection: 100 });
    assert.deepEqual(config.auth, authSchema.parse({}));
    assert.deepEqual(config.queue.retention, { bodies: '7d', records: '90d' });
    assert.deepEqual(config.smtp.tls, { names: [] });
    assert.deepEqual(config.smtp.listeners, [{ host: '127.0.0.1', port: 2525, tls: 'starttls', allowPlainAuth: false, greetingDelayMs: 0 }]);
  });

  it('lets a webhook subscribe to every event the relay sends to webhooks (mailbox.needs_login, message.recipient.refused too), and to nothing else', () => {
    const hook = (events: string[]) => configSchema.safeParse({ http: { webhooks: [{ url: 'https://hooks.example/r', secret: 'env:H', events }] } });
    assert.equal(hook([...WEBHOOK_EVENT_TYPES]).success, true);
    const refused = hook(['message.sent', 'message.opened']);
    assert.equal(refused.success, false);
    assert.deepEqual(
      refused.error.issues.map((i) => issuePath(i.path)),
      ['http.webhooks[0].events[1]'],
    );
  });

  it('writes paths as the docs do: fields dotted, list positions in brackets', () => {
    assert.equal(issuePath(['smtp', 'allowlist', 0, 'cidr']), 'smtp.allowlist[0].cidr');
    assert.equal(issuePath(['mailboxes', 2, 'aliases', 1]), 'mailboxes[2].aliases[1]');
    assert.equal(issuePath([]), '(root)');
  });
});
