import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_IDS as ids, type Scenario } from '../../src/sandbox/index.js';
import { RECORDED_AADSTS_ERRORS } from '../../src/sandbox/recorded-replies.js';
import { scenario, startTestSandbox } from '../helpers/sandbox.js';
import { httpsRequest } from '../helpers/https.js';
import { postForm, type FormResponse } from '../helpers/identity-http.js';

/**
 * The identity platform codes admins meet today, each produced by what causes it in Entra, over real
 * HTTPS, in Entra's response shape; the description must read like the text users pasted (the
 * fixture's RECORDED_AADSTS_ERRORS), with only the ids, names and dates differing.
 */

type TestSandbox = Awaited<ReturnType<typeof startTestSandbox>>;

const SMTP_SEND = 'https://outlook.office.com/SMTP.Send';
const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

async function withSandbox(change: ((s: Scenario) => void) | undefined, fn: (sandbox: TestSandbox) => Promise<void>): Promise<void> {
  const sandbox = await startTestSandbox({ scenario: scenario(change) });
  try {
    await fn(sandbox);
  } finally {
    await sandbox.close();
  }
}

function token(sandbox: TestSandbox, fields: Record<string, string>): Promise<FormResponse> {
  return postForm(`${sandbox.baseUrl}/${ids.tenantId}/oauth2/v2.0/token`, fields, { ca: sandbox.caPem });
}

interface ErrorBody {
  error: string;
  error_description: string;
  error_codes: number[];
  timestamp: string;
  trace_id: string;
  correlation_id: string;
  error_uri: string;
  suberror?: string;
}

/** Entra's error shape: status, `error`, the code in `error_codes`, the description with its trace, correlation and time lines. */
function assertAadsts(res: FormResponse, status: number, error: string, code: number): ErrorBody {
  assert.equal(res.status, status, res.text);
  const body = res.json<ErrorBody>();
  assert.equal(body.error, error, res.text);
  assert.deepEqual(body.error_codes, [code]);
  assert.match(
    body.error_description,
    new RegExp(`^AADSTS${code}: .+\\r\\nTrace ID: ${body.trace_id}\\r\\nCorrelation ID: ${body.correlation_id}\\r\\nTimestamp: ${body.timestamp}$`, 's'),
  );
  assert.match(body.timestamp, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/);
  assert.match(body.trace_id, /^[0-9a-f-]{36}$/);
  assert.match(body.correlation_id, /^[0-9a-f-]{36}$/);
  assert.equal(body.error_uri, `https://login.microsoftonline.com/error?code=${code}`);
  return body;
}

/**
 * The description's first sentence equals the start of a text users pasted for the code (the
 * fixture), so the sandbox speaks Entra's words rather than the team's.
 */
function assertPastedWording(description: string, code: number): void {
  const ours = description.split('\r\n')[0]!;
  const pasted = RECORDED_AADSTS_ERRORS.filter((e) => e.row === `aadsts-${code}`).map((e) => e.text.replace(/^\([a-z_]+\) /, ''));
  assert.ok(pasted.length > 0, `the fixture has texts for ${code}`);
  // Ids and times differ from tenant to tenant: compare the words around them.
  const masked = (t: string): string => t.replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi, '<id>');
  const firstSentence = (t: string): string => /^AADSTS\d+: [^.]+\./.exec(masked(t))?.[0] ?? masked(t);
  assert.ok(
    pasted.some((p) => firstSentence(p) === firstSentence(ours)),
    `${firstSentence(ours)} is not how users saw it: ${pasted.map(firstSentence).join(' | ')}`,
  );
}

async function startDeviceCode(sandbox: TestSandbox, scope = SMTP_SEND, clientId = ids.publicClientId): Promise<{ device_code: string; user_code: string }> {
  const res = await postForm(`${sandbox.baseUrl}/${ids.tenantId}/oauth2/v2.0/devicecode`, { client_id: clientId, scope }, { ca: sandbox.caPem });
  assert.equal(res.status, 200, res.text);
  return res.json();
}

function approveDevice(sandbox: TestSandbox, userCode: string, username: string, extra: Record<string, string> = {}): Promise<FormResponse> {
  return postForm(`${sandbox.baseUrl}/devicelogin`, { user_code: userCode, username, ...extra }, { ca: sandbox.caPem });
}

function redeem(sandbox: TestSandbox, deviceCode: string, extra: Record<string, string> = {}): Promise<FormResponse> {
  return token(sandbox, { grant_type: DEVICE_CODE_GRANT, client_id: ids.publicClientId, device_code: deviceCode, ...extra });
}

/** A device code sign-in of the autoApprove relay mailbox, with offline_access: returns the token response. */
async function signIn(sandbox: TestSandbox): Promise<{ access_token: string; refresh_token: string }> {
  const started = await startDeviceCode(sandbox, `${SMTP_SEND} offline_access`);
  assert.equal((await approveDevice(sandbox, started.user_code, ids.mailbox)).status, 200);
  const res = await redeem(sandbox, started.device_code);
  assert.equal(res.status, 200, res.text);
  return res.json();
}

function refresh(sandbox: TestSandbox, refreshToken: string): Promise<FormResponse> {
  return token(sandbox, { grant_type: 'refresh_token', client_id: ids.publicClientId, refresh_token: refreshToken, scope: `${SMTP_SEND} offline_access` });
}

function relayMailbox(s: Scenario): Scenario['tenants'][number]['users'][number] {
  return s.tenants[0]!.users.find((u) => u.upn === ids.mailbox)!;
}

/** Changes the running sandbox's scenario (what an admin does in the portal mid-run). */
function changeScenario(sandbox: TestSandbox, change: (s: Scenario) => void): void {
  const next = structuredClone(sandbox.state.scenario);
  change(next);
  sandbox.state.setScenario(next);
}

describe('identity platform codes from their triggers', () => {
  it('AADSTS50057: a disabled user is refused at the sign-in page, and a refresh after the account was disabled is refused at the token endpoint', async () => {
    await withSandbox(undefined, async (sandbox) => {
      const signedIn = await signIn(sandbox);
      changeScenario(sandbox, (s) => (relayMailbox(s).accountEnabled = false));
      const body = assertAadsts(await refresh(sandbox, signedIn.refresh_token), 400, 'invalid_grant', 50057);
      assertPastedWording(body.error_description, 50057);
      const started = await startDeviceCode(sandbox);
      const page = await approveDevice(sandbox, started.user_code, ids.mailbox);
      assert.equal(page.status, 400);
      assert.match(page.text, /AADSTS50057: The user account is disabled\./);
    });
  });

  it('AADSTS50055: an expired password is refused at sign-in, while a refresh token from before keeps working', async () => {
    await withSandbox(undefined, async (sandbox) => {
      const signedIn = await signIn(sandbox);
      changeScenario(sandbox, (s) => (relayMailbox(s).passwordExpired = true));
      assert.equal((await refresh(sandbox, signedIn.refresh_token)).status, 200);
      // A person at the authorize page, with the right password.
      const query = new URLSearchParams({
        client_id: ids.publicClientId,
        response_type: 'code',
        redirect_uri: 'http://localhost:53123/',
        scope: SMTP_SEND,
      });
      const form = await httpsRequest(`${sandbox.baseUrl}/${ids.tenantId}/oauth2/v2.0/authorize?${query.toString()}`, { ca: sandbox.caPem });
      assert.equal(form.status, 200);
      const hidden = Object.fromEntries([...form.text.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)].map((m) => [m[1]!, m[2]!.replaceAll('&amp;', '&')]));
      const page = await postForm(
        `${sandbox.baseUrl}/${ids.tenantId}/oauth2/v2.0/authorize`,
        { ...hidden, username: ids.user, password: ids.userPassword },
        { ca: sandbox.caPem },
      );
      // Alice's password is not expired: she gets her code; the expired mailbox cannot sign in.
      assert.equal(page.status, 302, page.text);
      const expired = await approveDevice(sandbox, (await startDeviceCode(sandbox)).user_code, ids.mailbox);
      assert.equal(expired.status, 400);
      assert.match(expired.text, /AADSTS50055: Password is expired\./);
    });
  });

  it('AADSTS7000112: a disabled application gets no token (unauthorized_client), naming the app', async () => {
    await withSandbox(
      (s) => (s.tenants[0]!.apps[0]!.enabled = false),
      async (sandbox) => {
        const body = assertAadsts(
          await token(sandbox, { grant_type: 'client_credentials', client_id: ids.appClientId, client_secret: ids.appSecret, scope: 'https://outlook.office365.com/.default' }),
          400,
          'unauthorized_client',
          7000112,
        );
        assert.match(body.error_description, new RegExp(`^AADSTS7000112: Application '${ids.appClientId}'\\(relay365 \\(app-only\\)\\) is disabled\\.`));
        // The other app of the tenant is not affected.
        assert.equal((await startDeviceCode(sandbox)).device_code.length > 0, true);
      },
    );
  });

  it('AADSTS650057: a delegated sign-in for a resource the app registration lists no permission of (invalid_client); client credentials still get a token, without roles', async () => {
    await withSandbox(
      (s) => {
        s.tenants[0]!.apps[1]!.delegatedScopes = { exchange: [], graph: ['Mail.Send'] };
        s.tenants[0]!.apps[0]!.roles = { exchange: [], graph: ['Mail.Send'] };
      },
      async (sandbox) => {
        const started = await startDeviceCode(sandbox);
        assert.equal((await approveDevice(sandbox, started.user_code, ids.mailbox)).status, 200);
        const body = assertAadsts(await redeem(sandbox, started.device_code), 401, 'invalid_client', 650057);
        assertPastedWording(body.error_description, 650057);
        assert.match(
          body.error_description,
          /Resource value from request: https:\/\/outlook\.office\.com\. Resource app ID: 00000002-0000-0ff1-ce00-000000000000\. List of valid resources from app registration: 00000003-0000-0000-c000-000000000000\./,
        );
        // Graph, which it lists, works.
        const graph = await startDeviceCode(sandbox, 'https://graph.microsoft.com/Mail.Send');
        assert.equal((await approveDevice(sandbox, graph.user_code, ids.mailbox)).status, 200);
        assert.equal((await redeem(sandbox, graph.device_code)).status, 200);
        // An app-only request for Exchange gets its token, with no roles in it (what admins meet when
        // the app has Graph Mail.Send but not SMTP.SendAsApp).
        const app = await token(sandbox, { grant_type: 'client_credentials', client_id: ids.appClientId, client_secret: ids.appSecret, scope: 'https://outlook.office365.com/.default' });
        assert.equal(app.status, 200, app.text);
        const claims = await sandbox.issuer.verify(app.json<{ access_token: string }>().access_token);
        assert.equal(claims.roles, undefined);
      },
    );
  });

  it('AADSTS700025: a public client that sends a client secret is refused (invalid_client)', async () => {
    await withSandbox(undefined, async (sandbox) => {
      const started = await startDeviceCode(sandbox);
      assert.equal((await approveDevice(sandbox, started.user_code, ids.mailbox)).status, 200);
      const body = assertAadsts(await redeem(sandbox, started.device_code, { client_secret: 'a-secret-it-does-not-have' }), 401, 'invalid_client', 700025);
      assertPastedWording(body.error_description, 700025);
      assert.equal((await redeem(sandbox, started.device_code)).status, 200);
    });
  });

  it('AADSTS530035: Security Defaults that block the sign-in answer at the token endpoint; app-only tokens are not subject to them', async () => {
    await withSandbox(
      (s) => (s.tenants[0]!.securityDefaults = 'block'),
      async (sandbox) => {
        const started = await startDeviceCode(sandbox);
        assert.equal((await approveDevice(sandbox, started.user_code, ids.mailbox)).status, 200);
        const body = assertAadsts(await redeem(sandbox, started.device_code), 400, 'invalid_grant', 530035);
        assert.match(
          body.error_description,
          /^AADSTS530035: Access has been blocked by security defaults\. This is due to the request using legacy auth or being deemed unsafe by security defaults policies\./,
        );
        const app = await token(sandbox, { grant_type: 'client_credentials', client_id: ids.appClientId, client_secret: ids.appSecret, scope: 'https://outlook.office365.com/.default' });
        assert.equal(app.status, 200, app.text);
      },
    );
  });

  it('AADSTS53003: a tenant Conditional Access block stops delegated tokens, including refreshes of tokens issued before it', async () => {
    await withSandbox(undefined, async (sandbox) => {
      const signedIn = await signIn(sandbox);
      changeScenario(sandbox, (s) => (s.tenants[0]!.conditionalAccess = { block: true, requireMfa: false, signInFrequencySeconds: null }));
      const body = assertAadsts(await refresh(sandbox, signedIn.refresh_token), 400, 'invalid_grant', 53003);
      assertPastedWording(body.error_description, 53003);
    });
  });

  it('AADSTS50076: Conditional Access requiring MFA asks the person for it at the sign-in page, and refuses at the token endpoint a sign-in made without it', async () => {
    await withSandbox(
      (s) => {
        s.tenants[0]!.conditionalAccess = { block: false, requireMfa: true, signInFrequencySeconds: null };
        s.tenants[0]!.users.find((u) => u.upn === ids.user)!.mfaCode = '424242';
      },
      async (sandbox) => {
        // The relay mailbox is approved without a person and has no authenticator: no MFA, so no token.
        const started = await startDeviceCode(sandbox);
        assert.equal((await approveDevice(sandbox, started.user_code, ids.mailbox)).status, 200);
        const body = assertAadsts(await redeem(sandbox, started.device_code), 400, 'invalid_grant', 50076);
        assertPastedWording(body.error_description, 50076);
        assert.match(body.error_description, /to access '00000002-0000-0ff1-ce00-000000000000'\./);

        // Alice at the page: the password alone is not enough; with her code she gets her token.
        const second = await startDeviceCode(sandbox);
        const noCode = await approveDevice(sandbox, second.user_code, ids.user, { password: ids.userPassword });
        assert.equal(noCode.status, 400);
        assert.match(noCode.text, /AADSTS50076: Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication/);
        const wrongCode = await approveDevice(sandbox, second.user_code, ids.user, { password: ids.userPassword, otp: '000000' });
        assert.equal(wrongCode.status, 400);
        const withCode = await approveDevice(sandbox, second.user_code, ids.user, { password: ids.userPassword, otp: '424242' });
        assert.equal(withCode.status, 200, withCode.text);
        const res = await redeem(sandbox, second.device_code);
        assert.equal(res.status, 200, res.text);
      },
    );
  });

  it('AADSTS70043: a refresh past the sign-in frequency is interaction_required, naming the sign-in time and the allowed lifetime', async () => {
    await withSandbox(undefined, async (sandbox) => {
      const before = new Date();
      const signedIn = await signIn(sandbox);
      assert.equal((await refresh(sandbox, signedIn.refresh_token)).status, 200);
      changeScenario(sandbox, (s) => (relayMailbox(s).conditionalAccess = { block: false, requireMfa: false, signInFrequencySeconds: 1 }));
      await new Promise((r) => setTimeout(r, 1100));
      const body = assertAadsts(await refresh(sandbox, signedIn.refresh_token), 400, 'interaction_required', 70043);
      assertPastedWording(body.error_description, 70043);
      const issued = /The token was issued on (\S+) and the maximum allowed lifetime for this request is 1\./.exec(body.error_description);
      assert.ok(issued, body.error_description);
      assert.match(issued[1]!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$/);
      assert.ok(Math.abs(Date.parse(issued[1]!) - before.getTime()) < 5000, `issued ${issued[1]} vs ${before.toISOString()}`);
      // A new sign-in is a fresh start.
      const again = await signIn(sandbox);
      assert.equal((await refresh(sandbox, again.refresh_token)).status, 200);
    });
  });

  it('AADSTS70020: a device code redeemed after its lifetime is expired_token', async () => {
    await withSandbox(
      (s) => (s.token.deviceCodeLifetimeSeconds = 1),
      async (sandbox) => {
        const started = await startDeviceCode(sandbox);
        await new Promise((r) => setTimeout(r, 1100));
        const body = assertAadsts(await redeem(sandbox, started.device_code), 400, 'expired_token', 70020);
        assertPastedWording(body.error_description, 70020);
      },
    );
  });

  it('AADSTS1002012: client credentials with a permission instead of {resource}/.default', async () => {
    await withSandbox(undefined, async (sandbox) => {
      const body = assertAadsts(
        await token(sandbox, { grant_type: 'client_credentials', client_id: ids.appClientId, client_secret: ids.appSecret, scope: 'User.Read' }),
        400,
        'invalid_scope',
        1002012,
      );
      // Word for word the text pasted in msgraph-sdk-python#181 (which asked for User.Read).
      assert.ok(RECORDED_AADSTS_ERRORS.some((e) => e.text === body.error_description.split('\r\n')[0]));
    });
  });

  it('refresh tokens stay valid after use: the same one three times, then AADSTS50173 only after a revoke', async () => {
    await withSandbox(undefined, async (sandbox) => {
      const signedIn = await signIn(sandbox);
      for (let i = 0; i < 3; i += 1) assert.equal((await refresh(sandbox, signedIn.refresh_token)).status, 200);
      await new Promise((r) => setTimeout(r, 5));
      changeScenario(sandbox, (s) => (relayMailbox(s).tokensValidFrom = new Date().toISOString()));
      const body = assertAadsts(await refresh(sandbox, signedIn.refresh_token), 400, 'invalid_grant', 50173);
      assertPastedWording(body.error_description, 50173);
    });
  });
});

