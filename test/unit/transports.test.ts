import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MAILBOX_TRANSPORTS, configSchema, type Config } from '../../src/config/index.js';
import { GraphTransport, MailboxTransports, SmtpTransport, TRANSPORTS, reviewTransportPermissions, type TransportContext } from '../../src/delivery/index.js';
import { CHECKS } from '../../src/doctor/checks.js';
import { Relay365Error } from '../../src/errors.js';
import {
  RETRYABLE,
  cloudEndpoints,
  scopesFor,
  tokenFailure,
  type Identity,
  type TokenProvider,
  type TokenSummary,
} from '../../src/identity/index.js';
import { silentLogger } from '../../src/observe/index.js';

const CLOUDS = ['global', 'usgov', 'usgov-dod', 'china'] as const;

function summary(over: Partial<TokenSummary>): TokenSummary {
  return {
    kind: 'app-only',
    audience: 'https://outlook.office365.com',
    tenantId: undefined,
    appId: undefined,
    appName: undefined,
    user: undefined,
    roles: [],
    scopes: [],
    issuedAt: undefined,
    expiresAt: undefined,
    ...over,
  };
}

/** A transport context whose token provider refuses every token the way identity does. */
function context(config: Config, getToken: () => Promise<never>): TransportContext {
  const provider = { getToken, invalidate: () => undefined } as unknown as TokenProvider;
  const identity = { cloud: cloudEndpoints(config), provider, networkClient: { send: () => Promise.reject(new Error('no network in this test')) } } as unknown as Identity;
  return { config, identity, logger: silentLogger(), ca: [], connectionCaps: new Map(), pool: false };
}

const config = configSchema.parse({
  auth: { flow: 'client-secret', tenant: 'contoso.onmicrosoft.com', clientId: '00000000-0000-0000-0000-000000000001', clientSecret: 'not-used' },
  mailboxes: [{ address: 'relay@contoso.com' }, { address: 'graph@contoso.com', transport: 'graph' }],
});

describe('transport descriptors', () => {
  it('has one descriptor for every transport name the config accepts, under that name', () => {
    assert.deepEqual(Object.keys(TRANSPORTS).sort(), [...MAILBOX_TRANSPORTS].sort());
    for (const [name, d] of Object.entries(TRANSPORTS)) assert.equal(d.name, name);
  });

  it('declares the same scopes identity asks tokens with, in every cloud', () => {
    for (const d of Object.values(TRANSPORTS))
      for (const cloud of CLOUDS)
        for (const appOnly of [true, false]) {
          const endpoints = cloudEndpoints({ cloud, sandbox: {} as Config['sandbox'] });
          assert.deepEqual(d.scopes(endpoints, appOnly), scopesFor(endpoints, appOnly, d.name), `${d.name} ${cloud} appOnly=${appOnly}`);
        }
    const global = cloudEndpoints({ cloud: 'global', sandbox: {} as Config['sandbox'] });
    assert.deepEqual(TRANSPORTS.graph.scopes(global, false), ['https://graph.microsoft.com/Mail.Send', 'offline_access']);
  });

  it('names only real doctor checks, catalogue rows with unique ids, and each throttling limit with its source', () => {
    const ids = new Set(CHECKS.map((c) => c.id));
    for (const d of Object.values(TRANSPORTS)) {
      for (const skip of d.doctor.skips) assert.ok(ids.has(skip), `${d.name} skips unknown check ${skip}`);
      assert.ok(d.catalogue.length > 0, `${d.name} has catalogue rows`);
      assert.equal(new Set(d.catalogue.map((r) => r.id)).size, d.catalogue.length, `${d.name}: catalogue ids are unique`);
      assert.ok(d.throttling.length > 0);
      for (const limit of d.throttling) assert.match(limit.source, /^https:\/\/learn\.microsoft\.com\//, `${d.name}: ${limit.limit}`);
    }
    assert.deepEqual(TRANSPORTS.smtp.doctor.skips, [], 'every check applies to an SMTP mailbox');
    assert.ok(TRANSPORTS.graph.doctor.skips.includes('auth') && !TRANSPORTS.graph.doctor.skips.includes('claims'));
  });

  it("reviews a token against the mailbox's own transport: an Exchange token passes for SMTP and fails for Graph", () => {
    const exchange = summary({ roles: ['SMTP.SendAsApp'] });
    assert.deepEqual(
      reviewTransportPermissions(exchange, 'smtp').filter((f) => f.level !== 'ok'),
      [],
    );
    const asGraph = reviewTransportPermissions(exchange, 'graph').filter((f) => f.level === 'fail');
    assert.deepEqual(asGraph.map((f) => f.permission).sort(), ['Mail.Send', 'audience']);
    assert.match(asGraph.find((f) => f.permission === 'Mail.Send')!.fix!, /Microsoft Graph, Application/);
    const graph = summary({ audience: 'https://graph.microsoft.com', roles: ['Mail.Send'] });
    const findings = reviewTransportPermissions(graph, 'graph');
    assert.equal(findings.filter((f) => f.level === 'fail').length, 0);
    assert.match(findings.find((f) => f.permission === 'Mail.Send')!.message, /ANY mailbox/);
  });
});

describe('where each transport sends', () => {
  it("names Exchange's SMTP host, the HVE endpoint for an HVE account, and Graph's host", () => {
    const hveConfig = configSchema.parse({
      auth: { flow: 'client-secret', tenant: 'contoso.onmicrosoft.com', clientId: '00000000-0000-0000-0000-000000000001', clientSecret: 'not-used' },
      mailboxes: [{ address: 'relay@contoso.com' }, { address: 'bulk@contoso.com', hve: true }],
    });
    const cloud = cloudEndpoints(hveConfig);
    assert.deepEqual(TRANSPORTS.smtp.endpoint(hveConfig, cloud, 'relay@contoso.com'), {
      where: 'smtp.office365.com:587',
      how: 'SMTP AUTH XOAUTH2 over STARTTLS',
      smtp: { host: 'smtp.office365.com', port: 587 },
    });
    assert.deepEqual(TRANSPORTS.smtp.endpoint(hveConfig, cloud, 'Bulk@contoso.com').smtp, { host: 'smtp-hve.office365.com', port: 587 });
    assert.equal(TRANSPORTS.graph.endpoint(hveConfig, cloud, 'relay@contoso.com').smtp, undefined, 'Graph opens no SMTP session');
    assert.equal(TRANSPORTS.graph.endpoint(hveConfig, cloud, 'relay@contoso.com').where, 'https://graph.microsoft.com');
  });
});

describe('MailboxTransports', () => {
  it('builds each transport from its descriptor once, when a mailbox first needs it, and follows a reload', async () => {
    const transports = new MailboxTransports(config.mailboxes, context(config, () => Promise.reject(new Error('unused'))));
    const smtp = transports.transportOf('Relay@Contoso.com');
    assert.ok(smtp instanceof SmtpTransport);
    assert.equal(transports.transportOf('relay@contoso.com'), smtp, 'one SMTP transport for every SMTP mailbox');
    assert.ok(transports.transportOf('graph@contoso.com') instanceof GraphTransport);
    assert.ok(transports.transportOf('unknown@contoso.com') instanceof SmtpTransport, 'a mailbox not configured goes out through SMTP');
    transports.update([{ address: 'relay@contoso.com', transport: 'graph' }]);
    assert.ok(transports.transportOf('relay@contoso.com') instanceof GraphTransport, 'moved to Graph by a reload');
    await transports.close();
  });
});

describe('one failure vocabulary', () => {
  it('classifies a refused token the same way for every transport: auth, not retryable, with the AADSTS row', () => {
    const refused = new Relay365Error('R365_TOKEN_REJECTED', 'The identity platform refused a token for relay@contoso.com: AADSTS7000215.', {
      details: { mailbox: 'relay@contoso.com', aadsts: 'AADSTS7000215', catalogueId: 'aadsts-7000215' },
    });
    const f = tokenFailure(refused, 'relay@contoso.com');
    assert.deepEqual(
      { kind: f.kind, class: f.class, retryable: f.retryable, code: f.code, id: f.explanation.id, catalogueId: f.catalogueId },
      { kind: 'token', class: 'auth', retryable: false, code: 'R365_TOKEN_REJECTED', id: 'r365_token_rejected', catalogueId: 'aadsts-7000215' },
    );
    // nodemailer relabels an error of its token callback EAUTH and keeps relay365's code as originalCode.
    const relabelled = Object.assign(new Relay365Error('R365_LOGIN_REQUIRED', 'relay@contoso.com must sign in again.'), { originalCode: 'R365_LOGIN_REQUIRED' });
    (relabelled as unknown as { code: string }).code = 'EAUTH';
    const login = tokenFailure(relabelled, 'relay@contoso.com');
    assert.equal(login.code, 'R365_LOGIN_REQUIRED');
    assert.equal(login.explanation.fix, 'relay365 login --mailbox relay@contoso.com');
    const unreachable = tokenFailure(new Relay365Error('R365_TOKEN_ENDPOINT_UNAVAILABLE', 'down', { retryable: true }), 'x@contoso.com');
    assert.deepEqual([unreachable.class, unreachable.retryable], ['transient', true]);
    const odd = tokenFailure(new Error('boom client_secret=abc'), 'x@contoso.com');
    assert.deepEqual([odd.class, odd.retryable, odd.explanation.id], ['transient', true, 'token-unknown']);
  });

  it('says which classes are worth retrying', () => {
    assert.deepEqual(
      Object.entries(RETRYABLE).filter(([, r]) => r).map(([c]) => c).sort(),
      ['throttled', 'transient'],
    );
  });

  it('reports a token failure of a Graph send in that vocabulary, without trying a second time', async () => {
    let asked = 0;
    const ctx = context(config, () => {
      asked++;
      return Promise.reject(new Relay365Error('R365_TOKEN_REJECTED', 'refused', { details: { catalogueId: 'aadsts-7000222' } }));
    });
    const transport = TRANSPORTS.graph.build(ctx);
    const result = await transport.send('graph@contoso.com', { raw: Buffer.from('Subject: x\r\n\r\nx\r\n'), envelope: { from: 'graph@contoso.com', to: ['a@example.net'] } });
    assert.equal(result.ok, false);
    assert.equal(result.stage, 'token');
    assert.equal(result.errorCode, 'R365_TOKEN_REJECTED');
    assert.deepEqual([result.failure?.kind, result.failure?.class, result.failure?.catalogueId], ['token', 'auth', 'aadsts-7000222']);
    assert.equal(asked, 1);
    await transport.close();
  });
});
