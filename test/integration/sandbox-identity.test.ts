import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { SignJWT, decodeJwt, importPKCS8 } from 'jose';
import { ConfidentialClientApplication, CryptoProvider, PublicClientApplication } from '@azure/msal-node';
import { DEFAULT_IDS as ids, createClientCertificate, type Scenario } from '../../src/sandbox/index.js';
import { scenario, startTestSandbox } from '../helpers/sandbox.js';
import { httpsRequest } from '../helpers/https.js';
import { postForm, type FormResponse } from '../helpers/identity-http.js';
import { msalSandboxConfig } from '../helpers/msal-network.js';

const run = promisify(execFile);

type TestSandbox = Awaited<ReturnType<typeof startTestSandbox>>;

const EXCHANGE_APP_SCOPE = 'https://outlook.office365.com/.default';
const SMTP_SEND = 'https://outlook.office.com/SMTP.Send';
const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

/** Starts a sandbox on the default scenario changed by `change`, runs `fn`, always closes it. */
async function withSandbox(change: ((s: Scenario) => void) | undefined, fn: (sandbox: TestSandbox) => Promise<void>): Promise<void> {
  const sandbox = await startTestSandbox({ scenario: scenario(change) });
  try {
    await fn(sandbox);
  } finally {
    await sandbox.close();
  }
}

function tokenUrl(sandbox: TestSandbox, tenant: string = ids.tenantId): string {
  return `${sandbox.baseUrl}/${tenant}/oauth2/v2.0/token`;
}

function token(sandbox: TestSandbox, fields: Record<string, string>, tenant?: string): Promise<FormResponse> {
  return postForm(tokenUrl(sandbox, tenant), fields, { ca: sandbox.caPem });
}

function appSecretRequest(overrides: Record<string, string> = {}): Record<string, string> {
  return { grant_type: 'client_credentials', client_id: ids.appClientId, client_secret: ids.appSecret, scope: EXCHANGE_APP_SCOPE, ...overrides };
}

interface ErrorBody {
  error: string;
  error_description: string;
  error_codes: number[];
  timestamp: string;
  trace_id: string;
  correlation_id: string;
  error_uri: string;
}

/** Asserts Microsoft's error shape, status, `error` and AADSTS code; returns the body. */
function assertAadsts(res: FormResponse, status: number, error: string, code: number): ErrorBody {
  assert.equal(res.status, status, res.text);
  const body = res.json<ErrorBody>();
  assert.equal(body.error, error);
  assert.deepEqual(body.error_codes, [code]);
  assert.match(
    body.error_description,
    new RegExp(
      `^AADSTS${code}: .+\\r\\nTrace ID: [0-9a-f-]{36}\\r\\nCorrelation ID: [0-9a-f-]{36}\\r\\nTimestamp: \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\dZ$`,
      's',
    ),
  );
  assert.match(body.timestamp, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/);
  assert.match(body.trace_id, /^[0-9a-f-]{36}$/);
  assert.equal(body.error_uri, `https://login.microsoftonline.com/error?code=${code}`);
  return body;
}

function pkcePair(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

/** Follows the authorize endpoint for an autoApprove user and returns the code from the redirect. */
async function authorizeCode(sandbox: TestSandbox, input: { scope: string; challenge: string; redirectUri?: string; clientId?: string }): Promise<string> {
  const query = new URLSearchParams({
    client_id: input.clientId ?? ids.publicClientId,
    response_type: 'code',
    redirect_uri: input.redirectUri ?? 'http://localhost:53123/',
    scope: input.scope,
    state: 'st-1',
    code_challenge: input.challenge,
    code_challenge_method: 'S256',
    login_hint: ids.mailbox,
  });
  const res = await httpsRequest(`${sandbox.baseUrl}/${ids.tenantId}/oauth2/v2.0/authorize?${query.toString()}`, { ca: sandbox.caPem });
  assert.equal(res.status, 302, res.text);
  const location = new URL(String(res.headers.location));
  assert.equal(location.searchParams.get('state'), 'st-1');
  const code = location.searchParams.get('code');
  assert.ok(code, `no code in ${location.toString()}`);
  return code;
}

/** Starts a device code flow over plain HTTP. */
async function startDeviceCode(
  sandbox: TestSandbox,
  clientId: string,
  scope: string,
): Promise<{ device_code: string; user_code: string; interval: number; expires_in: number; verification_uri: string; message: string }> {
  const res = await postForm(`${sandbox.baseUrl}/${ids.tenantId}/oauth2/v2.0/devicecode`, { client_id: clientId, scope }, { ca: sandbox.caPem });
  assert.equal(res.status, 200, res.text);
  return res.json();
}

/** Plays the person at /devicelogin. */
function approveDevice(sandbox: TestSandbox, userCode: string, username: string, password?: string): Promise<FormResponse> {
  return postForm(`${sandbox.baseUrl}/devicelogin`, { user_code: userCode, username, ...(password !== undefined ? { password } : {}) }, { ca: sandbox.caPem });
}

describe('sandbox identity platform', () => {
  describe('discovery and keys', () => {
    it('publishes a v2.0 OpenID configuration by tenant id or domain, whose issuer names the tenant id', async () => {
      await withSandbox(undefined, async (sandbox) => {
        for (const tenant of [ids.tenantId, ids.tenantDomain]) {
          const res = await httpsRequest(`${sandbox.baseUrl}/${tenant}/v2.0/.well-known/openid-configuration`, { ca: sandbox.caPem });
          assert.equal(res.status, 200);
          const doc = res.json<Record<string, unknown>>();
          const authority = `${sandbox.baseUrl}/${ids.tenantId}`;
          assert.equal(doc.issuer, `${authority}/v2.0`);
          assert.equal(doc.token_endpoint, `${authority}/oauth2/v2.0/token`);
          assert.equal(doc.authorization_endpoint, `${authority}/oauth2/v2.0/authorize`);
          assert.equal(doc.device_authorization_endpoint, `${authority}/oauth2/v2.0/devicecode`);
          assert.equal(doc.jwks_uri, `${authority}/discovery/v2.0/keys`);
          assert.ok((doc.response_types_supported as string[]).includes('code'));
        }
      });
    });

    it('serves the signing keys at the tenant and common key endpoints, and they verify issued tokens', async () => {
      await withSandbox(undefined, async (sandbox) => {
        const tenantKeys = await httpsRequest(`${sandbox.baseUrl}/${ids.tenantId}/discovery/v2.0/keys`, { ca: sandbox.caPem });
        const commonKeys = await httpsRequest(`${sandbox.baseUrl}/common/discovery/keys`, { ca: sandbox.caPem });
        assert.equal(tenantKeys.status, 200);
        assert.deepEqual(tenantKeys.json(), sandbox.issuer.jwks());
        assert.deepEqual(commonKeys.json(), sandbox.issuer.jwks());
        const res = await token(sandbox, appSecretRequest());
        const header = JSON.parse(Buffer.from(res.json<{ access_token: string }>().access_token.split('.')[0]!, 'base64url').toString()) as { kid: string };
        const { keys } = tenantKeys.json<{ keys: Array<{ kid: string }> }>();
        assert.ok(keys.some((k) => k.kid === header.kid));
      });
    });
  });

  describe('client credentials', () => {
    it('gives curl an app-only Exchange token with SMTP.SendAsApp for a client secret', async () => {
      await withSandbox(undefined, async (sandbox) => {
        const { stdout } = await run('/usr/bin/curl', [
          '--silent',
          '--show-error',
          '--cacert',
          sandbox.caPath,
          '-d',
          'grant_type=client_credentials',
          '-d',
          `client_id=${ids.appClientId}`,
          '--data-urlencode',
          `client_secret=${ids.appSecret}`,
          '--data-urlencode',
          `scope=${EXCHANGE_APP_SCOPE}`,
          tokenUrl(sandbox),
        ]);
        const body = JSON.parse(stdout) as Record<string, unknown>;
        assert.deepEqual(Object.keys(body).sort(), ['access_token', 'expires_in', 'ext_expires_in', 'token_type']);
        assert.equal(body.token_type, 'Bearer');
        assert.equal(body.expires_in, 3600);
        const accessToken = String(body.access_token);
        assert.ok(accessToken.length >= 1500, `token is ${accessToken.length} characters, real ones are 1.5 to 2.5 KB`);
        const claims = await sandbox.issuer.verify(accessToken);
        assert.equal(claims.aud, 'https://outlook.office365.com');
        assert.deepEqual(claims.roles, ['SMTP.SendAsApp']);
        assert.equal(claims.tid, ids.tenantId);
        assert.equal(claims.appid, ids.appClientId);
        assert.equal(claims.iss, `https://sts.windows.net/${ids.tenantId}/`);
        assert.equal(claims.appidacr, '1');
        assert.equal(claims.oid, ids.appServicePrincipalId);
        assert.equal(claims.upn, undefined);
        assert.equal(sandbox.state.counters.tokenRequestsByGrant.client_credentials, 1);
        assert.equal(sandbox.state.counters.tokenRequestsByClient[ids.appClientId], 1);
      });
    });

    it('issues a Graph token with Mail.Send for the Graph .default scope and accepts HTTP Basic client authentication', async () => {
      await withSandbox(undefined, async (sandbox) => {
        const basic = Buffer.from(`${encodeURIComponent(ids.appClientId)}:${encodeURIComponent(ids.appSecret)}`).toString('base64');
        const res = await httpsRequest(tokenUrl(sandbox), {
          method: 'POST',
          ca: sandbox.caPem,
          headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${basic}` },
          body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'https://graph.microsoft.com/.default' }).toString(),
        });
        assert.equal(res.status, 200, res.text);
        const claims = decodeJwt(res.json<{ access_token: string }>().access_token);
        assert.equal(claims.aud, 'https://graph.microsoft.com');
        assert.deepEqual(claims.roles, ['Mail.Send']);
      });
    });

    it('issues an app-only token without roles when the app has no admin consent', async () => {
      await withSandbox(
        (s) => {
          s.tenants[0]!.apps[0]!.adminConsent = false;
        },
        async (sandbox) => {
          const res = await token(sandbox, appSecretRequest());
          assert.equal(res.status, 200, res.text);
          assert.equal(decodeJwt(res.json<{ access_token: string }>().access_token).roles, undefined);
        },
      );
    });

    it('gives MSAL Node ConfidentialClientApplication a token for a client secret', async () => {
      await withSandbox(undefined, async (sandbox) => {
        const cca = new ConfidentialClientApplication(
          msalSandboxConfig({
            baseUrl: sandbox.baseUrl,
            caPem: sandbox.caPem,
            tenant: ids.tenantId,
            clientId: ids.appClientId,
            auth: { clientSecret: ids.appSecret },
          }),
        );
        const result = await cca.acquireTokenByClientCredential({ scopes: [EXCHANGE_APP_SCOPE] });
        assert.ok(result?.accessToken);
        const claims = await sandbox.issuer.verify(result.accessToken);
        assert.deepEqual(claims.roles, ['SMTP.SendAsApp']);
        assert.equal(claims.aud, 'https://outlook.office365.com');
      });
    });

    it('gives MSAL Node a token for a certificate credential signed PS256 with an x5t#S256 thumbprint', async () => {
      const cert = await createClientCertificate();
      await withSandbox(
        (s) => {
          s.tenants[0]!.apps[0]!.certificates = [{ pem: cert.certPem }];
        },
        async (sandbox) => {
          const cca = new ConfidentialClientApplication(
            msalSandboxConfig({
              baseUrl: sandbox.baseUrl,
              caPem: sandbox.caPem,
              tenant: ids.tenantDomain,
              clientId: ids.appClientId,
              auth: { clientCertificate: { thumbprintSha256: cert.thumbprintSha256, privateKey: cert.keyPem } },
            }),
          );
          const result = await cca.acquireTokenByClientCredential({ scopes: [EXCHANGE_APP_SCOPE] });
          assert.ok(result?.accessToken);
          const claims = await sandbox.issuer.verify(result.accessToken);
          assert.equal(claims.appidacr, '2');
          assert.deepEqual(claims.roles, ['SMTP.SendAsApp']);
        },
      );
    });

    it('gives MSAL Node a token for a certificate credential signed RS256 with an x5t (SHA-1) thumbprint', async () => {
      const cert = await createClientCertificate();
      await withSandbox(
        (s) => {
          s.tenants[0]!.apps[0]!.certificates = [{ pem: cert.certPem }];
        },
        async (sandbox) => {
          const cca = new ConfidentialClientApplication(
            msalSandboxConfig({
              baseUrl: sandbox.baseUrl,
              caPem: sandbox.caPem,
              tenant: ids.tenantId,
              clientId: ids.appClientId,
              auth: { clientCertificate: { thumbprint: cert.thumbprintSha1, privateKey: cert.keyPem } },
            }),
          );
          const result = await cca.acquireTokenByClientCredential({ scopes: [EXCHANGE_APP_SCOPE] });
          assert.equal((await sandbox.issuer.verify(result!.accessToken)).appidacr, '2');
        },
      );
    });
  });

  describe('device code flow', () => {
    it('lets MSAL Node PublicClientApplication sign a user in with a device code approved at /devicelogin, and refresh silently', async () => {
      await withSandbox(
        (s) => {
          s.token.deviceCodeIntervalSeconds = 1;
        },
        async (sandbox) => {
          const pca = new PublicClientApplication(
            msalSandboxConfig({ baseUrl: sandbox.baseUrl, caPem: sandbox.caPem, tenant: ids.tenantId, clientId: ids.publicClientId }),
          );
          let approval: Promise<FormResponse> | undefined;
          const result = await pca.acquireTokenByDeviceCode({
            scopes: [SMTP_SEND],
            deviceCodeCallback: (response) => {
              assert.equal(response.verificationUri, `${sandbox.baseUrl}/devicelogin`);
              assert.match(response.userCode, /^[A-Z0-9]{9}$/);
              approval = approveDevice(sandbox, response.userCode, ids.user, ids.userPassword);
            },
          });
          assert.equal((await approval!).status, 200);
          assert.ok(result);
          assert.equal(result.account?.username, ids.user);
          assert.equal(result.account?.tenantId, ids.tenantId);
          assert.ok(result.scopes.includes(SMTP_SEND), `scopes: ${result.scopes.join(' ')}`);
          const claims = await sandbox.issuer.verify(result.accessToken);
          assert.equal(claims.aud, 'https://outlook.office.com');
          assert.equal(claims.scp, 'SMTP.Send');
          assert.equal(claims.upn, ids.user);
          assert.equal(claims.idtyp, 'user');
          assert.match(pca.getTokenCache().serialize(), /"RefreshToken":\{"[^"]/);

          const refreshed = await pca.acquireTokenSilent({ account: result.account, scopes: [SMTP_SEND], forceRefresh: true });
          assert.notEqual(refreshed.accessToken, result.accessToken);
          assert.equal(sandbox.state.counters.tokenRequestsByGrant.refresh_token, 1);
        },
      );
    });

    it('refuses the token of a user Conditional Access blocks with AADSTS53003, at the token endpoint', async () => {
      await withSandbox(
        (s) => {
          const user = s.tenants[0]!.users.find((u) => u.upn === ids.mailbox)!;
          user.blockedByConditionalAccess = true;
        },
        async (sandbox) => {
          const started = await startDeviceCode(sandbox, ids.publicClientId, SMTP_SEND);
          const approved = await approveDevice(sandbox, started.user_code, ids.mailbox);
          assert.equal(approved.status, 200, approved.text);
          const body = assertAadsts(
            await token(sandbox, { grant_type: DEVICE_CODE_GRANT, client_id: ids.publicClientId, device_code: started.device_code }),
            400,
            'invalid_grant',
            53003,
          );
          assert.match(
            body.error_description,
            /^AADSTS53003: Access has been blocked by Conditional Access policies\. The access policy does not allow token issuance\./,
          );
        },
      );
    });

    it('answers authorization_pending (AADSTS70016) until the user approves, then tokens with id_token and client_info, then no second redemption', async () => {
      await withSandbox(undefined, async (sandbox) => {
        const started = await startDeviceCode(sandbox, ids.publicClientId, `${SMTP_SEND} openid profile offline_access`);
        assert.equal(started.interval, 5);
        assert.equal(started.expires_in, 900);
        assert.ok(started.message.includes(started.user_code));
        const poll = { grant_type: DEVICE_CODE_GRANT, client_id: ids.publicClientId, device_code: started.device_code };

        assertAadsts(await token(sandbox, poll), 400, 'authorization_pending', 70016);

        const wrongPassword = await approveDevice(sandbox, started.user_code, ids.user, 'not-the-password');
        assert.equal(wrongPassword.status, 400);
        assert.match(wrongPassword.text, /AADSTS50126/);
        assertAadsts(await token(sandbox, poll), 400, 'authorization_pending', 70016);

        // The relay mailbox is autoApprove: no password needed; the code is typed in lower case with a dash.
        const typed = `${started.user_code.slice(0, 4)}-${started.user_code.slice(4)}`.toLowerCase();
        const approved = await approveDevice(sandbox, typed, ids.mailbox);
        assert.equal(approved.status, 200, approved.text);

        const res = await token(sandbox, poll);
        assert.equal(res.status, 200, res.text);
        const body = res.json<Record<string, string>>();
        assert.equal(body.token_type, 'Bearer');
        assert.equal(body.scope, `${SMTP_SEND} openid profile offline_access`);
        assert.ok(body.refresh_token);
        const idToken = decodeJwt(body.id_token!);
        assert.equal(idToken.iss, `${sandbox.baseUrl}/${ids.tenantId}/v2.0`);
        assert.equal(idToken.aud, ids.publicClientId);
        assert.equal(idToken.preferred_username, ids.mailbox);
        assert.deepEqual(JSON.parse(Buffer.from(body.client_info!, 'base64url').toString()), { uid: ids.mailboxId, utid: ids.tenantId });

        assertAadsts(await token(sandbox, poll), 400, 'invalid_grant', 70000);
        assert.equal(sandbox.state.counters.tokenErrors.AADSTS70016, 2);
      });
    });

    it('answers expired_token (AADSTS70020) at the token endpoint once the device code lifetime has passed, and AADSTS70019 on the sign-in page', async () => {
      await withSandbox(
        (s) => {
          s.token.deviceCodeLifetimeSeconds = 1;
        },
        async (sandbox) => {
          const started = await startDeviceCode(sandbox, ids.publicClientId, SMTP_SEND);
          await new Promise((r) => setTimeout(r, 1100));
          assertAadsts(
            await token(sandbox, { grant_type: DEVICE_CODE_GRANT, client_id: ids.publicClientId, device_code: started.device_code }),
            400,
            'expired_token',
            70020,
          );
          const late = await approveDevice(sandbox, started.user_code, ids.mailbox);
          assert.equal(late.status, 400);
          assert.match(late.text, /AADSTS70019/);
        },
      );
    });

    it('answers AADSTS65001 when neither an admin nor the user consented to the delegated scope', async () => {
      await withSandbox(
        (s) => {
          s.tenants[0]!.apps[1]!.adminConsent = false;
        },
        async (sandbox) => {
          const started = await startDeviceCode(sandbox, ids.publicClientId, `${SMTP_SEND} offline_access`);
          assert.equal((await approveDevice(sandbox, started.user_code, ids.user, ids.userPassword)).status, 200);
          const body = assertAadsts(
            await token(sandbox, { grant_type: DEVICE_CODE_GRANT, client_id: ids.publicClientId, device_code: started.device_code }),
            400,
            'invalid_grant',
            65001,
          );
          assert.match(body.error_description, new RegExp(ids.publicClientId));
        },
      );
    });

    it('grants the delegated scope when the user consented without admin consent, and refuses an unregistered scope with AADSTS65001', async () => {
      await withSandbox(
        (s) => {
          s.tenants[0]!.apps[1]!.adminConsent = false;
          s.tenants[0]!.users[1]!.consentedApps = [ids.publicClientId];
        },
        async (sandbox) => {
          const ok = await startDeviceCode(sandbox, ids.publicClientId, SMTP_SEND);
          await approveDevice(sandbox, ok.user_code, ids.user, ids.userPassword);
          const res = await token(sandbox, { grant_type: DEVICE_CODE_GRANT, client_id: ids.publicClientId, device_code: ok.device_code });
          assert.equal(res.status, 200, res.text);
          assert.equal(res.json<Record<string, unknown>>().refresh_token, undefined, 'no refresh token without offline_access');

          const unregistered = await startDeviceCode(sandbox, ids.publicClientId, 'https://outlook.office.com/IMAP.AccessAsUser.All');
          await approveDevice(sandbox, unregistered.user_code, ids.user, ids.userPassword);
          assertAadsts(
            await token(sandbox, { grant_type: DEVICE_CODE_GRANT, client_id: ids.publicClientId, device_code: unregistered.device_code }),
            400,
            'invalid_grant',
            65001,
          );
        },
      );
    });

    it('refuses the device code grant to a confidential app that sends no secret (AADSTS7000218)', async () => {
      await withSandbox(undefined, async (sandbox) => {
        const started = await startDeviceCode(sandbox, ids.appClientId, SMTP_SEND);
        assertAadsts(
          await token(sandbox, { grant_type: DEVICE_CODE_GRANT, client_id: ids.appClientId, device_code: started.device_code }),
          401,
          'invalid_client',
          7000218,
        );
      });
    });
  });

  describe('authorization code with PKCE', () => {
    it('redirects an autoApprove login_hint straight back with a code that MSAL Node redeems with its verifier', async () => {
      await withSandbox(
        (s) => {
          s.tenants[0]!.apps[1]!.redirectUris = ['http://localhost/callback'];
        },
        async (sandbox) => {
          const pca = new PublicClientApplication(
            msalSandboxConfig({ baseUrl: sandbox.baseUrl, caPem: sandbox.caPem, tenant: ids.tenantId, clientId: ids.publicClientId }),
          );
          const { verifier, challenge } = await new CryptoProvider().generatePkceCodes();
          const redirectUri = 'http://127.0.0.1:47111/callback';
          const url = await pca.getAuthCodeUrl({
            scopes: [SMTP_SEND],
            redirectUri,
            codeChallenge: challenge,
            codeChallengeMethod: 'S256',
            loginHint: ids.mailbox,
            state: 'xyz',
          });
          const res = await httpsRequest(url, { ca: sandbox.caPem });
          // The registered http://localhost/callback matches any loopback host and port, as Entra allows for native apps.
          assert.equal(res.status, 302, res.text);
          const location = new URL(String(res.headers.location));
          assert.equal(`${location.origin}${location.pathname}`, redirectUri);
          assert.equal(location.searchParams.get('state'), 'xyz');
          const result = await pca.acquireTokenByCode({ code: location.searchParams.get('code')!, scopes: [SMTP_SEND], redirectUri, codeVerifier: verifier });
          assert.equal(result.account?.username, ids.mailbox);
          const claims = await sandbox.issuer.verify(result.accessToken);
          assert.equal(claims.scp, 'SMTP.Send');
          assert.equal(claims.aud, 'https://outlook.office.com');
          assert.equal(claims.appidacr, '0');
        },
      );
    });

    it('refuses a code with the wrong verifier (AADSTS501481) and a code redeemed twice (AADSTS54005)', async () => {
      await withSandbox(undefined, async (sandbox) => {
        const { verifier, challenge } = pkcePair();
        const redeem = (code: string, codeVerifier: string): Promise<FormResponse> =>
          token(sandbox, {
            grant_type: 'authorization_code',
            client_id: ids.publicClientId,
            code,
            redirect_uri: 'http://localhost:53123/',
            code_verifier: codeVerifier,
            scope: SMTP_SEND,
          });

        const first = await authorizeCode(sandbox, { scope: SMTP_SEND, challenge });
        assertAadsts(await redeem(first, pkcePair().verifier), 400, 'invalid_grant', 501481);

        const second = await authorizeCode(sandbox, { scope: SMTP_SEND, challenge });
        assert.equal((await redeem(second, verifier)).status, 200);
        assertAadsts(await redeem(second, verifier), 400, 'invalid_grant', 54005);
      });
    });

    it('shows an error page for a redirect URI the app did not register (AADSTS50011), without redirecting', async () => {
      await withSandbox(undefined, async (sandbox) => {
        const query = new URLSearchParams({
          client_id: ids.publicClientId,
          response_type: 'code',
          redirect_uri: 'https://evil.example/cb',
          scope: SMTP_SEND,
          login_hint: ids.mailbox,
        });
        const res = await httpsRequest(`${sandbox.baseUrl}/${ids.tenantId}/oauth2/v2.0/authorize?${query.toString()}`, { ca: sandbox.caPem });
        assert.equal(res.status, 400);
        assert.equal(res.headers.location, undefined);
        assert.match(res.text, /AADSTS50011/);
      });
    });

    it('shows a sign-in form to a person and redirects with a code once the password matches', async () => {
      await withSandbox(undefined, async (sandbox) => {
        const { challenge } = pkcePair();
        const query = new URLSearchParams({
          client_id: ids.publicClientId,
          response_type: 'code',
          redirect_uri: 'http://localhost:40000/',
          scope: `${SMTP_SEND} offline_access`,
          state: 's',
          code_challenge: challenge,
          code_challenge_method: 'S256',
        });
        const page = await httpsRequest(`${sandbox.baseUrl}/${ids.tenantId}/oauth2/v2.0/authorize?${query.toString()}`, { ca: sandbox.caPem });
        assert.equal(page.status, 200);
        assert.match(String(page.headers['content-type']), /text\/html/);
        const action = /<form method="post" action="([^"]+)"/.exec(page.text)?.[1];
        assert.ok(action);
        const hidden = Object.fromEntries(
          [...page.text.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)].map((m) => [m[1]!, m[2]!.replace(/&amp;/g, '&')]),
        );
        assert.equal(hidden.code_challenge, challenge);

        const wrong = await postForm(`${sandbox.baseUrl}${action}`, { ...hidden, username: ids.user, password: 'nope' }, { ca: sandbox.caPem });
        assert.equal(wrong.status, 200);
        assert.match(wrong.text, /AADSTS50126/);

        const signedIn = await postForm(`${sandbox.baseUrl}${action}`, { ...hidden, username: ids.user, password: ids.userPassword }, { ca: sandbox.caPem });
        assert.equal(signedIn.status, 302, signedIn.text);
        const location = new URL(String(signedIn.headers.location));
        assert.equal(location.searchParams.get('state'), 's');
        assert.ok(location.searchParams.get('code'));
      });
    });
  });

  describe('refresh tokens', () => {
    it('gives a new refresh token with each use without revoking the used one; a revoke (TokensValidFrom) answers AADSTS50173', async () => {
      await withSandbox(undefined, async (sandbox) => {
        const { verifier, challenge } = pkcePair();
        const scope = `${SMTP_SEND} offline_access`;
        const code = await authorizeCode(sandbox, { scope, challenge });
        const redeemed = await token(sandbox, {
          grant_type: 'authorization_code',
          client_id: ids.publicClientId,
          code,
          redirect_uri: 'http://localhost:53123/',
          code_verifier: verifier,
          scope,
        });
        assert.equal(redeemed.status, 200, redeemed.text);
        const first = redeemed.json<{ refresh_token: string }>().refresh_token;

        const refresh = (refreshToken: string): Promise<FormResponse> =>
          token(sandbox, { grant_type: 'refresh_token', client_id: ids.publicClientId, refresh_token: refreshToken, scope });
        const rotated = await refresh(first);
        assert.equal(rotated.status, 200, rotated.text);
        const second = rotated.json<{ refresh_token: string; access_token: string }>().refresh_token;
        assert.ok(second && second !== first);

        // Microsoft Learn "Refresh tokens in the Microsoft identity platform": refresh tokens are not
        // revoked when used to get new access tokens. The first one still works, and so does the second.
        const reused = await refresh(first);
        assert.equal(reused.status, 200, reused.text);
        assert.equal((await refresh(second)).status, 200);
        assert.equal(sandbox.state.counters.tokenErrors.AADSTS50173, undefined);

        // A password change or Revoke-MgUserSignInSession sets the user's TokensValidFrom: every refresh
        // token issued before it is revoked.
        await new Promise((r) => setTimeout(r, 5));
        const revokedAt = new Date();
        const changed = structuredClone(sandbox.state.scenario);
        changed.tenants[0]!.users.find((u) => u.upn === ids.mailbox)!.tokensValidFrom = revokedAt.toISOString();
        sandbox.state.setScenario(changed);
        for (const old of [first, second]) {
          const body = assertAadsts(await refresh(old), 400, 'invalid_grant', 50173);
          assert.match(body.error_description, /^AADSTS50173: The provided grant has expired due to it being revoked, a fresh auth token is needed\./);
          assert.match(body.error_description, new RegExp(`TokensValidFrom date \\(before which tokens are not valid\\) for this user is '${revokedAt.toISOString().slice(0, 19)}\\.\\d{7}Z'`));
        }
        // A new sign-in after the revoke works again.
        const again = await authorizeCode(sandbox, { scope, challenge });
        const fresh = await token(sandbox, {
          grant_type: 'authorization_code',
          client_id: ids.publicClientId,
          code: again,
          redirect_uri: 'http://localhost:53123/',
          code_verifier: verifier,
          scope,
        });
        assert.equal(fresh.status, 200, fresh.text);
        assert.equal((await refresh(fresh.json<{ refresh_token: string }>().refresh_token)).status, 200);
      });
    });

    it('answers AADSTS700082 for a refresh token past its lifetime', async () => {
      await withSandbox(
        (s) => {
          s.token.refreshTokenLifetimeSeconds = 1;
        },
        async (sandbox) => {
          const { verifier, challenge } = pkcePair();
          const scope = `${SMTP_SEND} offline_access`;
          const code = await authorizeCode(sandbox, { scope, challenge });
          const redeemed = await token(sandbox, {
            grant_type: 'authorization_code',
            client_id: ids.publicClientId,
            code,
            redirect_uri: 'http://localhost:53123/',
            code_verifier: verifier,
          });
          await new Promise((r) => setTimeout(r, 1100));
          const res = await token(sandbox, {
            grant_type: 'refresh_token',
            client_id: ids.publicClientId,
            refresh_token: redeemed.json<{ refresh_token: string }>().refresh_token,
          });
          assertAadsts(res, 400, 'invalid_grant', 700082);
        },
      );
    });
  });

  describe('AADSTS errors', () => {
    it('answers AADSTS90002 for an unknown tenant, at the token endpoint and at discovery, echoing the client-request-id', async () => {
      await withSandbox(undefined, async (sandbox) => {
        const correlationId = randomUUID();
        const res = await postForm(tokenUrl(sandbox, 'fabrikam.example'), appSecretRequest(), {
          ca: sandbox.caPem,
          headers: { 'client-request-id': correlationId },
        });
        const body = assertAadsts(res, 400, 'invalid_request', 90002);
        assert.equal(body.correlation_id, correlationId);
        assert.match(body.error_description, /Tenant 'fabrikam\.example' not found/);
        const discovery = await httpsRequest(`${sandbox.baseUrl}/fabrikam.example/v2.0/.well-known/openid-configuration`, { ca: sandbox.caPem });
        assertAadsts(discovery, 400, 'invalid_request', 90002);
        assert.equal(sandbox.state.counters.tokenErrors.AADSTS90002, 1);
      });
    });

    it('answers AADSTS700016 (unauthorized_client) for an unknown client id', async () => {
      await withSandbox(undefined, async (sandbox) => {
        const unknown = randomUUID();
        const body = assertAadsts(await token(sandbox, appSecretRequest({ client_id: unknown })), 400, 'unauthorized_client', 700016);
        assert.match(body.error_description, new RegExp(unknown));
      });
    });

    it("answers AADSTS7000215 (HTTP 401) for a wrong secret and for the secret's id pasted instead of its value", async () => {
      const secretId = randomUUID();
      await withSandbox(
        (s) => {
          s.tenants[0]!.apps[0]!.secrets = [{ value: ids.appSecret, id: secretId }];
        },
        async (sandbox) => {
          assertAadsts(await token(sandbox, appSecretRequest({ client_secret: 'wrong' })), 401, 'invalid_client', 7000215);
          assertAadsts(await token(sandbox, appSecretRequest({ client_secret: secretId })), 401, 'invalid_client', 7000215);
          assert.equal(sandbox.state.counters.tokenErrors.AADSTS7000215, 2);
        },
      );
    });

    it('answers AADSTS7000222 for an expired client secret', async () => {
      await withSandbox(
        (s) => {
          s.tenants[0]!.apps[0]!.secrets = [{ value: ids.appSecret, expiresAt: '2020-01-01T00:00:00Z' }];
        },
        async (sandbox) => {
          assertAadsts(await token(sandbox, appSecretRequest()), 401, 'invalid_client', 7000222);
        },
      );
    });

    it('answers AADSTS1002012 (invalid_scope) for a delegated scope or a bare permission with client credentials, and AADSTS70011 for a missing scope', async () => {
      await withSandbox(undefined, async (sandbox) => {
        const delegated = assertAadsts(await token(sandbox, appSecretRequest({ scope: SMTP_SEND })), 400, 'invalid_scope', 1002012);
        assert.match(
          delegated.error_description,
          /^AADSTS1002012: The provided value for scope https:\/\/outlook\.office\.com\/SMTP\.Send is not valid\. Client credential flows must have a scope value with \/\.default suffixed to the resource identifier \(application ID URI\)\./,
        );
        assertAadsts(await token(sandbox, appSecretRequest({ scope: 'SMTP.Send' })), 400, 'invalid_scope', 1002012);
        const { scope: _scope, ...noScope } = appSecretRequest();
        assertAadsts(await token(sandbox, noScope), 400, 'invalid_scope', 70011);
        assertAadsts(await token(sandbox, appSecretRequest({ scope: 'https://api.unknown.example/.default' })), 400, 'invalid_resource', 500011);
      });
    });

    it('answers AADSTS700022 for a delegated scope naming two resources', async () => {
      await withSandbox(undefined, async (sandbox) => {
        const res = await postForm(
          `${sandbox.baseUrl}/${ids.tenantId}/oauth2/v2.0/devicecode`,
          { client_id: ids.publicClientId, scope: `${SMTP_SEND} https://graph.microsoft.com/Mail.Send` },
          { ca: sandbox.caPem },
        );
        assertAadsts(res, 400, 'invalid_scope', 700022);
      });
    });

    it('answers AADSTS700027 for a client assertion signed by an unregistered key or with a wrong audience, and AADSTS700024 for an expired one', async () => {
      const registered = await createClientCertificate();
      const other = await createClientCertificate();
      await withSandbox(
        (s) => {
          s.tenants[0]!.apps[0]!.certificates = [{ pem: registered.certPem }];
        },
        async (sandbox) => {
          const now = Math.floor(Date.now() / 1000);
          const assertion = async (input: { key: string; thumbprintSha1: string; aud?: string; exp?: number }): Promise<string> =>
            new SignJWT({ jti: randomUUID() })
              .setProtectedHeader({ alg: 'RS256', typ: 'JWT', x5t: Buffer.from(input.thumbprintSha1, 'hex').toString('base64url') })
              .setIssuer(ids.appClientId)
              .setSubject(ids.appClientId)
              .setAudience(input.aud ?? tokenUrl(sandbox))
              .setNotBefore(now - 60)
              .setExpirationTime(input.exp ?? now + 600)
              .sign(await importPKCS8(input.key, 'RS256'));
          const request = async (jwt: string): Promise<FormResponse> =>
            token(sandbox, {
              grant_type: 'client_credentials',
              client_id: ids.appClientId,
              client_assertion_type: JWT_BEARER,
              client_assertion: jwt,
              scope: EXCHANGE_APP_SCOPE,
            });

          assert.equal((await request(await assertion({ key: registered.keyPem, thumbprintSha1: registered.thumbprintSha1 }))).status, 200);
          // Another key under the registered certificate's thumbprint: the signature does not verify.
          assertAadsts(await request(await assertion({ key: other.keyPem, thumbprintSha1: registered.thumbprintSha1 })), 401, 'invalid_client', 700027);
          // Another certificate altogether: its thumbprint is not registered.
          const unregistered = assertAadsts(
            await request(await assertion({ key: other.keyPem, thumbprintSha1: other.thumbprintSha1 })),
            401,
            'invalid_client',
            700027,
          );
          assert.match(unregistered.error_description, new RegExp(other.thumbprintSha1));
          assertAadsts(
            await request(
              await assertion({
                key: registered.keyPem,
                thumbprintSha1: registered.thumbprintSha1,
                aud: 'https://login.microsoftonline.com/x/oauth2/v2.0/token',
              }),
            ),
            401,
            'invalid_client',
            700027,
          );
          assertAadsts(
            await request(await assertion({ key: registered.keyPem, thumbprintSha1: registered.thumbprintSha1, exp: now - 3600 })),
            401,
            'invalid_client',
            700024,
          );
        },
      );
    });
  });

  describe('token faults', () => {
    it('answers HTTP 503 for a status fault, counts it, then recovers when the fault is used up', async () => {
      await withSandbox(
        (s) => {
          s.faults.token = [{ status: 503, count: 1, latencyMs: 0 }];
        },
        async (sandbox) => {
          const faulted = await token(sandbox, appSecretRequest());
          assert.equal(faulted.status, 503);
          assert.equal(faulted.json<{ error: string }>().error, 'temporarily_unavailable');
          assert.equal(sandbox.state.counters.tokenErrors['503'], 1);
          assert.equal((await token(sandbox, appSecretRequest())).status, 200);
        },
      );
    });

    it('delays the answer by a latency fault and answers an AADSTS fault from the error table', async () => {
      await withSandbox(
        (s) => {
          s.faults.token = [
            { latencyMs: 300, count: 1 },
            { aadsts: 'AADSTS50076', count: 1, latencyMs: 0 },
          ];
        },
        async (sandbox) => {
          const started = Date.now();
          const slow = await token(sandbox, appSecretRequest());
          assert.equal(slow.status, 200);
          assert.ok(Date.now() - started >= 290, `answered after ${Date.now() - started} ms`);
          assertAadsts(await token(sandbox, appSecretRequest()), 400, 'invalid_grant', 50076);
          assert.equal((await token(sandbox, appSecretRequest())).status, 200);
        },
      );
    });
  });

  describe('malformed requests', () => {
    it('answers a 400 error body, never a crash, for a missing grant_type, a garbage body, a JSON body, an XML body, an oversized body and a GET', async () => {
      await withSandbox(undefined, async (sandbox) => {
        const { grant_type: _grantType, ...noGrant } = appSecretRequest();
        assertAadsts(await token(sandbox, noGrant), 400, 'invalid_request', 900144);

        const send = (contentType: string, body: string | Buffer): Promise<FormResponse> =>
          httpsRequest(tokenUrl(sandbox), { method: 'POST', ca: sandbox.caPem, headers: { 'content-type': contentType }, body });
        assertAadsts(await send('application/x-www-form-urlencoded', '%%%&&&=\u0000==%zz&grant_type'), 400, 'invalid_request', 900144);
        assertAadsts(await send('application/json', JSON.stringify(appSecretRequest())), 400, 'invalid_request', 900144);
        assertAadsts(await send('application/json', '{"grant_type":'), 400, 'invalid_request', 900144);
        assertAadsts(await send('application/xml', randomBytes(512)), 400, 'invalid_request', 900144);
        assertAadsts(
          await send('application/x-www-form-urlencoded', `grant_type=client_credentials&junk=${'a'.repeat(1024 * 1024 + 10)}`),
          400,
          'invalid_request',
          9002313,
        );
        assertAadsts(await token(sandbox, appSecretRequest({ grant_type: 'password' })), 400, 'unsupported_grant_type', 70003);
        assertAadsts(await httpsRequest(tokenUrl(sandbox), { ca: sandbox.caPem }), 400, 'invalid_request', 900561);

        const noBody = await httpsRequest(tokenUrl(sandbox), { method: 'POST', ca: sandbox.caPem });
        assertAadsts(noBody, 400, 'invalid_request', 900144);
        assert.equal((await token(sandbox, appSecretRequest())).status, 200, 'the endpoint still works');
        assert.equal(sandbox.state.counters.tokenRequestsByGrant['(none)'], 6);
      });
    });
  });
});
