import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { resumeAfterLogin } from '../../src/cli/commands/login.js';
import type { RelayEvent } from '../../src/observe/index.js';
import { startRelay } from '../../src/runtime/index.js';
import { explainAadsts } from '../../src/catalogue/index.js';
import { composeMessage, SmtpTransport } from '../../src/delivery/index.js';
import { createIdentity, extraCas, type Identity } from '../../src/identity/index.js';
import { isRelay365Error, type Relay365Error } from '../../src/errors.js';
import { DEFAULT_IDS as ids, type Sandbox, type Scenario } from '../../src/sandbox/index.js';
import { sandboxConfig } from '../helpers/config.js';
import { httpsRequest } from '../helpers/https.js';
import { scenario, startTestSandbox, tempDir } from '../helpers/sandbox.js';
import { smtpAuthWorks } from '../helpers/smtp.js';
import { until } from '../helpers/wait.js';

/**
 * Conditional Access, Security Defaults and shared-mailbox delegation as relay365 meets them: through
 * its own identity code (MSAL device code flow, its token provider, its catalogue) and its own SMTP
 * transport, against the sandbox over real HTTPS and SMTP.
 */

const ALICE = ids.user;
const SHARED = 'shared@contoso.example';
const SHARED_ID = '5a5a5a5a-1111-4222-8333-444455556666';

async function withSandbox(change: (s: Scenario) => void, fn: (sandbox: Sandbox) => Promise<void>): Promise<void> {
  const sandbox = await startTestSandbox({
    scenario: scenario((s) => {
      s.tenants[0]!.users.find((u) => u.upn === ALICE)!.autoApprove = true;
      change(s);
    }),
  });
  try {
    await fn(sandbox);
  } finally {
    await sandbox.close();
  }
}

/**
 * relay365's identity for Alice with the auth code + PKCE flow (the public client of the default
 * scenario). MSAL's device code polling reports an error answer as `post_request_failed:
 * invalid_grant` without its description; relay365's network client keeps the description for the
 * sign-in to explain (tested below).
 */
async function aliceIdentity(sandbox: Sandbox, dataDir: string): Promise<Identity> {
  return createIdentity(
    sandboxConfig(sandbox, dataDir, {
      auth: { flow: 'auth-code', tenant: ids.tenantId, clientId: ids.publicClientId },
      mailboxes: [{ address: ALICE }],
    }),
  );
}

/**
 * Follows the authorize URL as a browser would: the sandbox signs the auto-approved user in (login_hint)
 * and answers with a form_post page, which the browser posts to MSAL's loopback listener.
 */
async function followAuthorize(sandbox: Sandbox, url: string): Promise<void> {
  const res = await httpsRequest(url, { ca: sandbox.caPem });
  assert.equal(res.status, 200, `authorize answered ${res.status}: ${res.text.slice(0, 200)}`);
  const action = /<form method="post" action="([^"]+)"/.exec(res.text)?.[1]?.replaceAll('&amp;', '&');
  assert.ok(action, 'a form_post page');
  const fields = new URLSearchParams();
  for (const m of res.text.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)) fields.set(m[1]!, m[2]!.replaceAll('&amp;', '&'));
  assert.ok(fields.get('code'), 'an authorization code');
  await new Promise<void>((resolve, reject) => {
    const req = httpRequest(action, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' } }, (r) => {
      r.resume();
      r.on('end', () => resolve());
    });
    req.on('error', reject);
    req.end(fields.toString());
  });
}

/** Runs relay365's browser sign-in for Alice. */
async function loginAlice(sandbox: Sandbox, identity: Identity): Promise<void> {
  await identity.delegated(ALICE)!.loginWithBrowser(ALICE, (url) => followAuthorize(sandbox, url));
}

/** The sign-in fails at the token endpoint with `code`, and relay365 explains it from its catalogue. */
async function assertRefusedAtTokenEndpoint(promise: Promise<unknown>, code: string, sandbox: Sandbox): Promise<Relay365Error> {
  let caught: Relay365Error | undefined;
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(isRelay365Error(err), String(err));
    caught = err;
    return true;
  });
  const details = caught!.details as { aadsts?: string; catalogueId?: string };
  assert.equal(details.aadsts, code, caught!.message);
  assert.equal(details.catalogueId, `aadsts-${code.slice(6)}`);
  const row = explainAadsts(code)!;
  assert.ok(caught!.message.includes(row.cause), caught!.message);
  // The token endpoint said so: the sandbox counted the error there, not at SMTP.
  assert.ok((sandbox.state.counters.tokenErrors[code] ?? 0) >= 1, JSON.stringify(sandbox.state.counters.tokenErrors));
  assert.equal(sandbox.state.counters.smtpConnections, 0);
  return caught!;
}

describe('Conditional Access and Security Defaults through relay365 (token endpoint)', () => {
  it('Security Defaults that block the sign-in: AADSTS530035 at the token endpoint, explained; app-only sending is not subject to it', async () => {
    await withSandbox(
      (s) => (s.tenants[0]!.securityDefaults = 'block'),
      async (sandbox) => {
        const dir = await tempDir();
        const identity = await aliceIdentity(sandbox, dir.path);
        try {
          await assertRefusedAtTokenEndpoint(loginAlice(sandbox, identity), 'AADSTS530035', sandbox);
          assert.doesNotMatch(explainAadsts('AADSTS530035')!.fix, /(disable|turn off) (the )?Security Defaults/i);
        } finally {
          identity.close();
        }
        const app = await createIdentity(sandboxConfig(sandbox, dir.path));
        try {
          const token = await app.provider.getToken(ids.mailbox);
          assert.ok(await smtpAuthWorks(sandbox, ids.mailbox, token.accessToken));
        } finally {
          app.close();
          await dir.cleanup();
        }
      },
    );
  });

  it('a Conditional Access block: AADSTS53003 at the token endpoint, explained', async () => {
    await withSandbox(
      (s) => (s.tenants[0]!.users.find((u) => u.upn === ALICE)!.conditionalAccess = { block: true, requireMfa: false, signInFrequencySeconds: null }),
      async (sandbox) => {
        const dir = await tempDir();
        const identity = await aliceIdentity(sandbox, dir.path);
        try {
          await assertRefusedAtTokenEndpoint(loginAlice(sandbox, identity), 'AADSTS53003', sandbox);
        } finally {
          identity.close();
          await dir.cleanup();
        }
      },
    );
  });

  it('a Conditional Access block at a device code sign-in (relay365 login): AADSTS53003 explained, though MSAL keeps only invalid_grant', async () => {
    await withSandbox(
      (s) => (s.tenants[0]!.users.find((u) => u.upn === ALICE)!.conditionalAccess = { block: true, requireMfa: false, signInFrequencySeconds: null }),
      async (sandbox) => {
        const dir = await tempDir();
        const identity = await createIdentity(
          sandboxConfig(sandbox, dir.path, {
            auth: { flow: 'device-code', tenant: ids.tenantId, clientId: ids.publicClientId },
            mailboxes: [{ address: ALICE }],
          }),
        );
        const password = sandbox.state.scenario.tenants[0]!.users.find((u) => u.upn === ALICE)!.password!;
        try {
          const login = identity.delegated(ALICE)!.loginWithDeviceCode(ALICE, (info) => {
            void httpsRequest(`${sandbox.baseUrl}/devicelogin`, {
              method: 'POST',
              ca: sandbox.caPem,
              headers: { 'content-type': 'application/x-www-form-urlencoded' },
              body: new URLSearchParams({ user_code: info.userCode, username: ALICE, password }).toString(),
            });
          });
          await assertRefusedAtTokenEndpoint(login, 'AADSTS53003', sandbox);
        } finally {
          identity.close();
          await dir.cleanup();
        }
      },
    );
  });

  it('MFA required and not done: AADSTS50076 at the token endpoint, explained; once done, the token works at SMTP (nothing is refused there)', async () => {
    await withSandbox(
      (s) => (s.tenants[0]!.securityDefaults = 'on'),
      async (sandbox) => {
        const dir = await tempDir();
        const identity = await aliceIdentity(sandbox, dir.path);
        try {
          await assertRefusedAtTokenEndpoint(loginAlice(sandbox, identity), 'AADSTS50076', sandbox);
          // Alice sets up her authenticator (a code the sandbox's approval uses): the sign-in does MFA.
          const next = structuredClone(sandbox.state.scenario);
          next.tenants[0]!.users.find((u) => u.upn === ALICE)!.mfaCode = '135790';
          sandbox.state.setScenario(next);
          await loginAlice(sandbox, identity);
          const token = await identity.provider.getToken(ALICE);
          assert.ok(await smtpAuthWorks(sandbox, ALICE, token.accessToken));
        } finally {
          identity.close();
          await dir.cleanup();
        }
      },
    );
  });

  it('a sign-in frequency past: the refresh answers AADSTS70043 and relay365 asks for a new sign-in', async () => {
    await withSandbox(
      (s) => (s.tenants[0]!.conditionalAccess = { block: false, requireMfa: false, signInFrequencySeconds: 1 }),
      async (sandbox) => {
        const dir = await tempDir();
        const identity = await aliceIdentity(sandbox, dir.path);
        try {
          await loginAlice(sandbox, identity);
          await new Promise((r) => setTimeout(r, 1200));
          const err = await assertRefusedAtTokenEndpoint(identity.delegated(ALICE)!.acquire(ALICE, { force: true }), 'AADSTS70043', sandbox);
          assert.equal(err.code, 'R365_LOGIN_REQUIRED');
          assert.match(err.message, /relay365 login --mailbox/);
        } finally {
          identity.close();
          await dir.cleanup();
        }
      },
    );
  });
});

describe('a shared mailbox through a delegate with FullAccess (relay365 SMTP transport)', () => {
  function withShared(fullAccess: string[]): (s: Scenario) => void {
    return (s) => {
      s.tenants[0]!.users.push({
        ...structuredClone(s.tenants[0]!.users.find((u) => u.upn === ALICE)!),
        upn: SHARED,
        id: SHARED_ID,
        displayName: 'Shared mailbox',
        password: undefined,
        autoApprove: false,
        fullAccessApps: [],
        sendAs: [],
        fullAccessUsers: fullAccess,
        sendAsUsers: [ALICE],
      });
    };
  }

  /** relay365's identity for the shared mailbox, signed in for by Alice (`mailboxes[].signInAs`), as a user configures it. */
  async function sharedIdentity(sandbox: Sandbox, dataDir: string): Promise<Identity> {
    const identity = await createIdentity(
      sandboxConfig(sandbox, dataDir, {
        auth: { flow: 'auth-code', tenant: ids.tenantId, clientId: ids.publicClientId },
        mailboxes: [{ address: SHARED, signInAs: ALICE }],
      }),
    );
    // `relay365 login --mailbox shared@...` signs Alice in (the login hint is hers).
    const account = await identity.delegated(SHARED)!.loginWithBrowser(SHARED, (url) => followAuthorize(sandbox, url));
    assert.equal(account.username.toLowerCase(), ALICE.toLowerCase());
    return identity;
  }

  /** relay365's SMTP transport sending from the shared mailbox with the identity's tokens (XOAUTH2 user= the shared address). */
  async function sendAsShared(sandbox: Sandbox, identity: Identity, dataDir: string): Promise<Awaited<ReturnType<SmtpTransport['send']>>> {
    const config = sandboxConfig(sandbox, dataDir);
    const transport = new SmtpTransport({
      cloud: identity.cloud,
      tokens: identity.provider,
      delivery: config.delivery,
      ca: await extraCas(config),
      pool: false,
    });
    try {
      const message = await composeMessage({ from: SHARED, to: 'bob@example.net', subject: 'from the shared mailbox', text: 'hello' });
      return await transport.send(SHARED, { raw: message.raw, envelope: message.envelope });
    } finally {
      await transport.close();
    }
  }

  it('sends as the shared mailbox when the signed-in user has FullAccess on it', async () => {
    await withSandbox(withShared([ALICE]), async (sandbox) => {
      const dir = await tempDir();
      const identity = await sharedIdentity(sandbox, dir.path);
      try {
        const result = await sendAsShared(sandbox, identity, dir.path);
        assert.equal(result.ok, true, JSON.stringify(result));
        assert.match(result.reply ?? '', /^250 /);
        const received = sandbox.state.messages.at(-1)!;
        assert.equal(received.mailbox, SHARED);
        assert.equal(received.envelope.mailFrom, SHARED);
      } finally {
        identity.close();
        await dir.cleanup();
      }
    });
  });

  it('is refused at AUTH when the user has no FullAccess on the shared mailbox', async () => {
    await withSandbox(withShared([]), async (sandbox) => {
      const dir = await tempDir();
      const identity = await sharedIdentity(sandbox, dir.path);
      try {
        const result = await sendAsShared(sandbox, identity, dir.path);
        assert.equal(result.ok, false);
        assert.equal(result.class, 'auth');
        assert.match(result.reply ?? '', /^535 5\.7\.3 Authentication unsuccessful/);
        assert.equal(sandbox.state.messages.length, 0);
      } finally {
        identity.close();
        await dir.cleanup();
      }
    });
  });
});

describe('a delegated mailbox whose sign-in ended (relay365 serve, its outbox, login)', () => {
  it('pauses only that mailbox with mailbox.needs_login, keeps its queue, and resumes it at once after relay365 login', async () => {
    await withSandbox(
      () => undefined,
      async (sandbox) => {
        const dir = await tempDir();
        const env = { ...process.env, RELAY365_SECRET_KEY: randomBytes(32).toString('base64') };
        // The app-only default mailbox and Alice's own, delegated, never signed in (as after AADSTS70043 or a revoke).
        const config = sandboxConfig(sandbox, dir.path, {
          smtp: { enabled: false },
          mailboxes: [{ address: ids.mailbox }, { address: ALICE, auth: { flow: 'auth-code', clientId: ids.publicClientId } }],
          queue: { authPauseSeconds: 3600 },
        });
        const relay = await startRelay(config, { env });
        const events: RelayEvent[] = [];
        relay.events.subscribe((e) => events.push(e));
        try {
          const enqueue = async (from: string) => {
            const m = await composeMessage({ from, to: 'bob@example.net', subject: `from ${from}`, text: 'x' });
            return relay.enqueue({ mailbox: from, envelope: m.envelope, raw: m.raw, source: { kind: 'library' } });
          };
          const alices = await enqueue(ALICE);
          await until(() => events.some((e) => e.type === 'mailbox.needs_login' && e.mailbox === ALICE), 10_000, 'mailbox.needs_login').catch(
            (err: unknown) => {
              console.error(JSON.stringify(events));
              throw err;
            },
          );
          const needs = events.find((e) => e.type === 'mailbox.needs_login')!;
          assert.match(needs.type === 'mailbox.needs_login' ? needs.fix : '', /relay365 login --mailbox alice@/);
          // The other mailbox is not held.
          const other = await enqueue(ids.mailbox);
          await until(async () => (await relay.store.get(other.id))?.state === 'sent', 10_000, 'the app-only mailbox to send');
          assert.equal((await relay.store.get(alices.id))?.state, 'deferred', "Alice's message waits, not failed");
          assert.equal((await relay.store.mailboxPauses()).map((p) => p.mailbox).join(), ALICE);

          // What relay365 login does: Alice signs in (the same encrypted token cache), then asks for the resume.
          const login = await createIdentity(config, { env });
          try {
            await login.delegated(ALICE)!.loginWithBrowser(ALICE, (url) => followAuthorize(sandbox, url));
          } finally {
            login.close();
          }
          const started = Date.now();
          assert.ok(await resumeAfterLogin(config, ALICE), 'the pause was found and a resume asked');
          // Within seconds, not at the next probe an hour away (queue.authPauseSeconds 3600).
          await until(async () => (await relay.store.get(alices.id))?.state === 'sent', 15_000, "Alice's queue sent after the login");
          assert.ok(Date.now() - started < 15_000);
          assert.ok(events.some((e) => e.type === 'mailbox.resumed' && e.mailbox === ALICE));
          assert.deepEqual(await relay.store.mailboxPauses(), []);
        } finally {
          await relay.close();
          await dir.cleanup();
        }
      },
    );
  });
});

describe('a delegated sign-in that ends between sends (relay365 serve, a background refresh)', () => {
  it('tells mailbox.needs_login at the refresh, before any send meets it and without pausing the mailbox, and once only', async () => {
    await withSandbox(
      (s) => {
        // Tokens of 8 s (refreshed ahead at 70%, in the background), a sign-in frequency of 4 s.
        s.token.lifetimeSeconds = 8;
        s.tenants[0]!.conditionalAccess = { block: false, requireMfa: false, signInFrequencySeconds: 4 };
      },
      async (sandbox) => {
        const dir = await tempDir();
        const env = { ...process.env, RELAY365_SECRET_KEY: randomBytes(32).toString('base64') };
        const config = sandboxConfig(sandbox, dir.path, {
          smtp: { enabled: false },
          mailboxes: [{ address: ALICE, auth: { flow: 'auth-code', clientId: ids.publicClientId } }],
          queue: { authPauseSeconds: 3600 },
        });
        const login = await createIdentity(config, { env });
        try {
          await login.delegated(ALICE)!.loginWithBrowser(ALICE, (url) => followAuthorize(sandbox, url));
        } finally {
          login.close();
        }
        const relay = await startRelay(config, { env });
        const events: RelayEvent[] = [];
        relay.events.subscribe((e) => events.push(e));
        const needsLogin = () => events.filter((e) => e.type === 'mailbox.needs_login' && e.mailbox === ALICE);
        const enqueue = async (subject: string) => {
          const m = await composeMessage({ from: ALICE, to: 'bob@example.net', subject, text: 'x' });
          return relay.enqueue({ mailbox: ALICE, envelope: m.envelope, raw: m.raw, source: { kind: 'library' } });
        };
        try {
          const first = await enqueue('within the sign-in');
          await until(async () => (await relay.store.get(first.id))?.state === 'sent', 10_000, 'the first message to send');
          assert.deepEqual(needsLogin(), [], 'nothing to tell while the sign-in holds');
          // No send asks now: the provider's own refresh meets AADSTS70043.
          await until(() => needsLogin().length > 0, 15_000, 'mailbox.needs_login from the background refresh');
          assert.ok((sandbox.state.counters.tokenErrors.AADSTS70043 ?? 0) >= 1, JSON.stringify(sandbox.state.counters.tokenErrors));
          const told = needsLogin()[0]!;
          assert.ok(told.type === 'mailbox.needs_login');
          assert.equal(told.fix, `relay365 login --mailbox ${ALICE}`);
          assert.match(told.cause, /sign-in|signed in|login/i);
          assert.deepEqual(await relay.store.mailboxPauses(), [], 'told, not paused: no send has met the refusal');
          assert.ok(!events.some((e) => e.type === 'mailbox.paused'));

          // A send now goes on a session Exchange already authenticated, or meets the refusal and pauses the
          // mailbox; either way the sign-in's end is not told a second time.
          const second = await enqueue('after the sign-in ended');
          await until(
            async () => {
              const state = (await relay.store.get(second.id))?.state;
              return state === 'sent' || (state === 'deferred' && (await relay.store.mailboxPauses()).length === 1);
            },
            15_000,
            'the second message to be sent or held',
          );
          assert.equal(needsLogin().length, 1, JSON.stringify(needsLogin()));
        } finally {
          await relay.close();
          await dir.cleanup();
        }
      },
    );
  });
});
