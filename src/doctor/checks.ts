import { lookup } from 'node:dns/promises';
import { access, constants } from 'node:fs/promises';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { rootCertificates, type PeerCertificate, type TLSSocket } from 'node:tls';
import { explainAadsts, explainConnectionError, explainSetupFinding, explainSmtpReply, findAadstsCode, type Explanation } from '../catalogue/index.js';
import { GUID, resolveSecret } from '../config/index.js';
import { createMailer, transportDescriptor } from '../delivery/index.js';
import { isRelay365Error } from '../errors.js';
import { createIdentity, decodeClaims, extraCas, reviewPermissions, summarizeToken, type TokenCacheStore } from '../identity/index.js';
import { scrubSecrets } from '../observe/index.js';
import { ProbeError, SmtpProbe, type SmtpReply } from './smtp-probe.js';
import { bouncesCheck } from './bounces-check.js';
import { credentialExpiryCheck } from './credential-checks.js';
import type { Check, CheckResult, DoctorContext, PausedMailbox } from './types.js';

/**
 * Audiences Exchange Online takes for SMTP AUTH (Microsoft Learn, "Authenticate an IMAP, POP or SMTP connection using OAuth"): the app-only and
 * delegated resource URIs, Exchange's resource app id, and the national clouds' resources.
 */
const GLOBAL_EXCHANGE_AUDIENCES = ['https://outlook.office365.com', 'https://outlook.office.com', '00000002-0000-0ff1-ce00-000000000000'];

/** Microsoft tolerates about five minutes of clock skew on token times (Entra token validation). */
const MAX_SKEW_SECONDS = 300;
/** Skew above this is worth a warning already. */
const WARN_SKEW_SECONDS = 60;

/** `[::1]`, `127.0.0.1` and `localhost` need no DNS. */
function literalHost(host: string): string | undefined {
  const bare = host.replace(/^\[|\]$/g, '');
  if (isIP(bare) !== 0) return 'an IP address';
  if (bare === 'localhost' || bare.endsWith('.localhost')) return 'a loopback name';
  return undefined;
}

/** The name to check the certificate against: certificates name hosts, so an IP address means the sandbox's `localhost`. */
function serverName(host: string): string {
  return isIP(host.replace(/^\[|\]$/g, '')) !== 0 ? 'localhost' : host;
}

/** A failing (or warning) result explained by a catalogue row. */
function explained(status: 'fail' | 'warn', detail: string, explanation: Explanation, extra: Partial<CheckResult> = {}): CheckResult {
  return { status, detail, cause: explanation.cause, fix: explanation.fix, ...(explanation.doc ? { doc: explanation.doc } : {}), ...extra };
}

/** A socket-level failure (DNS, TCP, TLS), explained by the catalogue's connection rows. */
function connectionFailure(err: unknown, where: string): CheckResult {
  const e = err as NodeJS.ErrnoException;
  const code = e.code ?? (err instanceof ProbeError ? err.code : undefined);
  const message = scrubSecrets(e.message ?? String(err));
  const explanation = explainConnectionError(code, message);
  const detail = `${where}: ${code ?? 'error'} (${message})`;
  if (explanation) return explained('fail', detail, explanation);
  return {
    status: 'fail',
    detail,
    cause: `The connection to ${where} failed: ${message}`,
    fix: 'Check the network path (firewall, proxy, DNS) between this machine and the host.',
  };
}

/** A reply other than the one expected, explained by the reply catalogue. */
function replyFailure(reply: SmtpReply, what: string, mailbox: string | undefined): CheckResult {
  return explained('fail', `${what}: the server answered ${reply.last}`, explainSmtpReply(reply.last, mailbox));
}

/** `lookup` with a deadline: a broken resolver can otherwise hang for minutes. */
async function resolveHost(host: string, timeoutMs: number): Promise<string[]> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(`no DNS answer for ${host} within ${timeoutMs} ms`), { code: 'EAI_AGAIN' })), timeoutMs);
  });
  try {
    const found = await Promise.race([lookup(host, { all: true }), deadline]);
    return found.map((a) => a.address);
  } finally {
    clearTimeout(timer);
  }
}

/** `host:port` of the SMTP endpoint the checks probe, as the report names it. */
function smtpAddress(ctx: DoctorContext): string {
  return `${ctx.cloud.smtpHost}:${ctx.cloud.smtpPort}`;
}

/** The name relay365 gives in EHLO: this machine's name, reduced to what RFC 5321 allows in a domain. */
function ehloName(): string {
  return hostname().replace(/[^A-Za-z0-9.-]/g, '-') || 'relay365';
}

/** The keywords of an EHLO reply (each line after the first, without the code). */
function ehloKeywords(reply: SmtpReply): string[] {
  return reply.lines.slice(1).map((l) => l.slice(4).trim());
}

function authMechanisms(keywords: string[]): string[] {
  const line = keywords.find((k) => /^AUTH[ =]/i.test(k));
  return line
    ? line
        .slice(5)
        .trim()
        .split(/\s+/)
        .map((m) => m.toUpperCase())
    : [];
}

function certName(cert: PeerCertificate | undefined, part: 'subject' | 'issuer'): string {
  const entry = cert?.[part] as Record<string, string | string[]> | undefined;
  const cn = entry?.CN;
  return (Array.isArray(cn) ? cn[0] : cn) ?? '(no CN)';
}

/** A TCP connection to the SMTP endpoint, with the delivery settings' connect and greeting timeouts (what the relay itself waits). */
function connectProbe(ctx: DoctorContext): Promise<SmtpProbe> {
  return SmtpProbe.connect(ctx.cloud.smtpHost, ctx.cloud.smtpPort, {
    connectMs: ctx.config.delivery.connectionTimeoutMs,
    replyMs: ctx.config.delivery.greetingTimeoutMs,
  });
}

/**
 * Connects, reads the greeting, says EHLO, upgrades with STARTTLS, checks the certificate and says
 * EHLO again: what the tcp, tls and ehlo checks do one by one, done at once when the AUTH check finds
 * the first connection closed. Throws when any step fails (those checks explain why).
 */
async function openSession(ctx: DoctorContext): Promise<SmtpProbe> {
  const probe = await connectProbe(ctx);
  try {
    if ((await probe.reply()).code !== 220) throw new Error('no 220 greeting');
    if ((await probe.command(`EHLO ${ehloName()}`)).code !== 250) throw new Error('EHLO refused');
    if ((await probe.command('STARTTLS')).code !== 220) throw new Error('STARTTLS refused');
    const socket = await probe.startTls(tlsOptions(ctx));
    if (!socket.authorized) throw new Error(`certificate not trusted: ${String(socket.authorizationError)}`);
    if ((await probe.command(`EHLO ${ehloName()}`)).code !== 250) throw new Error('EHLO refused after STARTTLS');
    return probe;
  } catch (err) {
    await probe.close();
    throw err;
  }
}

function tlsOptions(ctx: DoctorContext): { host: string; servername: string; minVersion: 'TLSv1.2'; ca?: string[] } {
  return {
    host: ctx.cloud.smtpHost,
    servername: serverName(ctx.cloud.smtpHost),
    // TLS 1.2 or newer only (Microsoft Learn, "National cloud deployments" and "POP, IMAP, and SMTP settings for Outlook.com"); an older server fails the handshake, which the catalogue explains.
    minVersion: 'TLSv1.2',
    // Node replaces its trust store when `ca` is given: keep the system roots beside the extra CAs.
    ...(ctx.extraCas.length > 0 ? { ca: [...ctx.extraCas, ...rootCertificates] } : {}),
  };
}

const FLOW_KIND: Record<string, string> = {
  'client-secret': 'app-only, client secret',
  'client-certificate': 'app-only, certificate',
  federated: 'app-only, workload identity federation',
  'managed-identity': 'app-only, Azure managed identity',
  'device-code': 'delegated, device code',
  'auth-code': 'delegated, browser sign-in',
  'token-command': 'external token command',
};

// ---- the checks, in the order of the setup steps ----

async function checkConfig(ctx: DoctorContext): Promise<CheckResult> {
  const { config } = ctx;
  const list = config.mailboxes;
  if (list.length === 0) {
    return {
      status: 'fail',
      detail: 'no mailbox is configured',
      cause: 'The config lists no mailbox under mailboxes:, so there is nothing to send as.',
      fix: 'Add one (mailboxes: [{ address: relay@contoso.com }]) or write a config with `relay365 init`.',
    };
  }
  const names = list.map((m) => m.address).join(', ');
  const requested = ctx.requestedMailbox;
  const mailbox = requested ? list.find((m) => m.address.toLowerCase() === requested.toLowerCase()) : list.length === 1 ? list[0] : undefined;
  if (!mailbox) {
    return requested
      ? {
          status: 'fail',
          detail: `${requested} is not configured`,
          cause: `${requested} is not one of the configured mailboxes (${names}).`,
          fix: `Pass --mailbox with one of ${names}, or add ${requested} under mailboxes: in the config.`,
        }
      : {
          status: 'fail',
          detail: `${list.length} mailboxes are configured`,
          cause: 'Several mailboxes are configured and none was chosen.',
          fix: `Choose one with --mailbox: ${names}.`,
        };
  }
  ctx.mailbox = mailbox.address;
  ctx.mailboxConfig = mailbox;
  ctx.transport = mailbox.transport;
  // The SMTP steps probe where this mailbox's transport submits (an HVE account: the HVE endpoint).
  const submission = transportDescriptor(mailbox.transport).endpoint(config, ctx.cloud, mailbox.address).smtp;
  if (submission) ctx.cloud = { ...ctx.cloud, smtpHost: submission.host, smtpPort: submission.port };
  const auth = { ...config.auth, ...mailbox.auth };
  ctx.auth = auth;

  const problems: Array<{ cause: string; fix: string }> = [];
  const warnings: Array<{ cause: string; fix: string }> = [];
  // The settings themselves (a flow, its tenant, client id, secret or command, their formats) are the
  // config's rules: loadConfig refused a config that breaks one, and this check then reports that
  // refusal (doctorReportForConfigError). What is left here is what only reading files can tell.
  if (auth.flow === 'client-secret' && auth.clientSecret !== undefined) {
    try {
      ctx.secrets.add(await resolveSecret(auth.clientSecret, ctx.env));
      if (!/^(env|file):/.test(auth.clientSecret)) {
        warnings.push({
          cause: 'The client secret is written in the config file itself.',
          fix: 'Move it out: clientSecret: env:RELAY365_CLIENT_SECRET (set in the environment) or clientSecret: file:/path/to/secret (mode 0600); then create a new secret, since this one has been on disk in clear.',
        });
      }
    } catch (err) {
      problems.push({
        cause: scrubSecrets((err as Error).message),
        fix: `Provide the secret where ${auth.clientSecret} points (e.g. export RELAY365_CLIENT_SECRET=<secret value> before starting relay365).`,
      });
    }
  }
  if (auth.flow === 'client-certificate') {
    const files = [auth.certificate?.keyFile, auth.certificate?.certFile].filter((f): f is string => f !== undefined);
    for (const file of files) {
      try {
        await access(file, constants.R_OK);
      } catch (err) {
        problems.push({
          cause: `Cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'}).`,
          fix: 'Check the path in auth.certificate and that relay365 may read the file.',
        });
      }
    }
  }
  try {
    ctx.extraCas = await extraCas(config);
  } catch (err) {
    problems.push({
      cause: scrubSecrets((err as Error).message),
      fix:
        config.cloud === 'sandbox'
          ? 'Point sandbox.caFile at the ca.pem the running sandbox wrote (in its --data-dir).'
          : 'Point network.caFile at a readable PEM file, or remove it.',
    });
  }
  const who = `${mailbox.address}: ${auth.flow ? (FLOW_KIND[auth.flow] ?? auth.flow) : 'no flow'}`;
  if (problems.length > 0) {
    return {
      status: 'fail',
      detail: `${who}; ${problems.length} problem(s)`,
      cause: problems.map((p) => p.cause).join(' '),
      fix: problems.map((p) => p.fix).join(' '),
      doc: 'docs/configuration.md',
    };
  }
  const app = auth.flow === 'token-command' ? '' : ` with app ${auth.clientId ?? '?'} in tenant ${auth.tenant ?? '?'}`;
  const detail = `${who}${app}, ${ctx.cloud.name} cloud${transportDescriptor(mailbox.transport).doctor.configNote}`;
  const data = { mailbox: mailbox.address, flow: auth.flow, cloud: ctx.cloud.name, transport: mailbox.transport };
  if (warnings.length > 0) return { status: 'warn', detail, cause: warnings.map((w) => w.cause).join(' '), fix: warnings.map((w) => w.fix).join(' '), data };
  return { status: 'pass', detail, data };
}

/** Passes when `host` needs no DNS or resolves within the network timeout; `unresolved` explains a lookup that failed. */
async function resolvesCheck(ctx: DoctorContext, host: string, unresolved: (err: unknown) => CheckResult): Promise<CheckResult> {
  const literal = literalHost(host);
  if (literal) return { status: 'pass', detail: `${host} is ${literal}: nothing to resolve`, data: { host } };
  try {
    const addresses = await resolveHost(host, ctx.config.network.timeoutMs);
    return { status: 'pass', detail: `${host} resolves to ${addresses.slice(0, 4).join(', ')}`, data: { host, addresses } };
  } catch (err) {
    return unresolved(err);
  }
}

async function checkDnsAuthority(ctx: DoctorContext): Promise<CheckResult> {
  if (ctx.auth?.flow === 'token-command') return { status: 'skip', detail: 'the token-command flow gets its tokens itself' };
  const host = new URL(ctx.cloud.authorityHost).hostname;
  return resolvesCheck(ctx, host, (err) => {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    const proxy = ctx.config.network.httpsProxy ?? ctx.env.HTTPS_PROXY ?? ctx.env.https_proxy;
    const explanation = explainSetupFinding('dns-authority', { host });
    // Through an HTTPS proxy, the proxy resolves the name (CONNECT host:443): local DNS does not matter.
    if (proxy) return explained('warn', `${host} does not resolve here (${code}); requests go through the proxy, which resolves it`, explanation);
    return explained('fail', `${host}: ${code}`, explanation, { data: { host, code } });
  });
}

async function checkDnsSmtp(ctx: DoctorContext): Promise<CheckResult> {
  return resolvesCheck(ctx, ctx.cloud.smtpHost, (err) => connectionFailure(err, ctx.cloud.smtpHost));
}

async function checkTcp(ctx: DoctorContext): Promise<CheckResult> {
  const { smtpHost, smtpPort } = ctx.cloud;
  const where = smtpAddress(ctx);
  const started = Date.now();
  try {
    ctx.probe = await connectProbe(ctx);
  } catch (err) {
    return connectionFailure(err, where);
  }
  let greeting: SmtpReply;
  try {
    greeting = await ctx.probe.reply();
  } catch (err) {
    return connectionFailure(err, `${where} (waiting for the greeting)`);
  }
  if (greeting.code !== 220) return replyFailure(greeting, `${where} greeting`, ctx.mailbox);
  return {
    status: 'pass',
    detail: `${where} answered in ${Date.now() - started} ms: ${greeting.last.slice(0, 120)}`,
    data: { host: smtpHost, port: smtpPort },
  };
}

async function checkTls(ctx: DoctorContext): Promise<CheckResult> {
  const probe = ctx.probe!;
  const where = smtpAddress(ctx);
  let socket: TLSSocket;
  try {
    const ehlo = await probe.command(`EHLO ${ehloName()}`);
    if (ehlo.code !== 250) return replyFailure(ehlo, 'EHLO', ctx.mailbox);
    if (!ehloKeywords(ehlo).some((k) => /^STARTTLS$/i.test(k))) {
      return explained('fail', `${where} does not offer STARTTLS (EHLO: ${ehloKeywords(ehlo).join(', ')})`, explainSetupFinding('starttls-missing'));
    }
    const starttls = await probe.command('STARTTLS');
    if (starttls.code !== 220) return replyFailure(starttls, 'STARTTLS', ctx.mailbox);
    socket = await probe.startTls(tlsOptions(ctx));
  } catch (err) {
    return connectionFailure(err, `${where} (STARTTLS)`);
  }
  const name = serverName(ctx.cloud.smtpHost);
  const cert = socket.getPeerCertificate();
  const protocol = socket.getProtocol() ?? 'unknown';
  const subject = certName(cert, 'subject');
  const issuer = certName(cert, 'issuer');
  const data = { protocol, cipher: socket.getCipher().name, subject, issuer, validTo: cert.valid_to, servername: name };
  if (!socket.authorized) {
    // Nothing was sent over this connection yet, and nothing will be: close it before any token could go.
    await probe.close();
    delete ctx.probe;
    const code = String(socket.authorizationError);
    const explanation = explainConnectionError(code) ?? {
      id: 'net-certificate',
      class: 'permanent' as const,
      cause: `The server's certificate is not trusted (${code}).`,
      fix: 'Add the issuing CA with network.caFile if a TLS-inspecting proxy sits in between; never turn verification off.',
    };
    const sandboxHint =
      ctx.cloud.name === 'sandbox' ? ' For the sandbox: sandbox.caFile must be the ca.pem that the running sandbox wrote (in its --data-dir).' : '';
    return explained(
      'fail',
      `certificate of ${where} (for ${subject}, issued by ${issuer}): ${code}`,
      { ...explanation, fix: explanation.fix + sandboxHint },
      { data },
    );
  }
  if (protocol !== 'TLSv1.2' && protocol !== 'TLSv1.3') {
    await probe.close();
    delete ctx.probe;
    return explained('fail', `${where} negotiated ${protocol}`, explainSetupFinding('tls-version', { version: protocol }), { data });
  }
  return {
    status: 'pass',
    detail: `${protocol} (${data.cipher}); certificate for ${subject} issued by ${issuer}, valid until ${cert.valid_to}; trusted, and it names ${name}`,
    data,
  };
}

async function checkEhlo(ctx: DoctorContext): Promise<CheckResult> {
  const probe = ctx.probe!;
  let ehlo: SmtpReply;
  try {
    ehlo = await probe.command(`EHLO ${ehloName()}`);
  } catch (err) {
    return connectionFailure(err, `${smtpAddress(ctx)} (EHLO)`);
  }
  if (ehlo.code !== 250) return replyFailure(ehlo, 'EHLO after STARTTLS', ctx.mailbox);
  const keywords = ehloKeywords(ehlo);
  const mechanisms = authMechanisms(keywords);
  if (!mechanisms.includes('XOAUTH2')) {
    return explained(
      'fail',
      `AUTH offered: ${mechanisms.join(' ') || 'none'}`,
      explainSetupFinding('xoauth2-missing', { offered: mechanisms.join(' ') || 'no AUTH at all' }),
      { data: { keywords } },
    );
  }
  return { status: 'pass', detail: `AUTH ${mechanisms.join(' ')}`, data: { keywords } };
}

/**
 * Asks the authority's discovery document directly. MSAL fetches it before any token request and, when
 * it fails (an unknown tenant answers 400 with AADSTS90002), reports only `endpoints_resolution_error`:
 * the answer itself says which AADSTS error it was.
 */
async function discoveryRefusal(ctx: DoctorContext): Promise<string | undefined> {
  const tenant = ctx.auth?.tenant;
  if (!ctx.identity || tenant === undefined) return undefined;
  const url = `${ctx.cloud.authorityHost}/${encodeURIComponent(tenant)}/v2.0/.well-known/openid-configuration`;
  try {
    const res = await ctx.identity.networkClient.send<Record<string, unknown> | string>('GET', url, {}, ctx.config.network.timeoutMs);
    if (res.status < 400 || typeof res.body !== 'object') return undefined;
    const codes = Array.isArray(res.body.error_codes) ? res.body.error_codes.filter((n): n is number => typeof n === 'number') : undefined;
    return findAadstsCode(typeof res.body.error_description === 'string' ? res.body.error_description : undefined, codes);
  } catch {
    return undefined; // unreachable: the token error's own explanation stands
  }
}

/** Explains why no token came: the AADSTS row, or what the identity error says. */
async function tokenFailure(err: unknown, ctx: DoctorContext): Promise<CheckResult> {
  const mailbox = ctx.mailbox ?? '<mailbox>';
  const message = scrubSecrets(err instanceof Error ? err.message : String(err));
  if (!isRelay365Error(err))
    return { status: 'fail', detail: 'no token', cause: message, fix: 'See the cause; run relay365 token --mailbox ' + mailbox + ' for details.' };
  const aadsts = typeof err.details?.aadsts === 'string' ? err.details.aadsts : undefined;
  const row = explainAadsts(aadsts);
  if (row) return explained('fail', `the identity platform refused the token request: ${aadsts ?? ''}`, row, { data: { code: err.code, aadsts } });
  const data = { code: err.code, ...(aadsts ? { aadsts } : {}) };
  switch (err.code) {
    case 'R365_LOGIN_REQUIRED':
      return {
        status: 'fail',
        detail: `${mailbox} has no usable sign-in`,
        cause: message,
        fix: `Sign in once: relay365 login --mailbox ${mailbox} (relay365 refreshes the token by itself afterwards).`,
        data,
      };
    case 'R365_TOKEN_ENDPOINT_UNAVAILABLE': {
      const refused = await discoveryRefusal(ctx);
      const refusedRow = explainAadsts(refused);
      if (refused && refusedRow)
        return explained('fail', `the authority's discovery document answered ${refused}`, refusedRow, { data: { ...data, aadsts: refused } });
      const net = explainConnectionError(undefined, message);
      if (net) return explained('fail', `the identity platform could not be reached: ${message.split('. ')[0] ?? message}`, net, { data });
      return {
        status: 'fail',
        detail: 'the identity platform could not be reached',
        cause: message,
        fix: 'Check DNS, the firewall (outbound HTTPS 443), HTTPS_PROXY and network.caFile (a TLS-inspecting proxy).',
        data,
      };
    }
    case 'R365_TOKEN_COMMAND_FAILED':
      return {
        status: 'fail',
        detail: 'the token command failed',
        cause: message,
        fix: 'Run the command by hand: it must print only the access token on stdout and exit 0.',
        data,
      };
    default:
      return { status: 'fail', detail: `no token (${err.code})`, cause: message, fix: `See docs/errors.md, ${err.code}.`, data };
  }
}

/** A token cache that keeps nothing. */
const EMPTY_CACHE: TokenCacheStore = { read: () => Promise.resolve(undefined), write: () => Promise.resolve() };

async function checkToken(ctx: DoctorContext): Promise<CheckResult> {
  const mailbox = ctx.mailbox!;
  try {
    // App-only: a cache that holds nothing, so that the secret or certificate is tried for real now (a cached
    // token would hide a secret that no longer works) and the doctor leaves the relay's cache alone.
    // Delegated: the real cache, which holds the sign-in.
    const appOnly =
      ctx.auth?.flow === 'client-secret' || ctx.auth?.flow === 'client-certificate' || ctx.auth?.flow === 'federated' || ctx.auth?.flow === 'managed-identity';
    const cacheStore = appOnly ? EMPTY_CACHE : ctx.cacheStore;
    ctx.identity = await createIdentity(ctx.config, { logger: ctx.logger, env: ctx.env, ...(cacheStore ? { cacheStore } : {}) });
    const token = await ctx.identity.provider.getToken(mailbox);
    ctx.accessToken = token.accessToken;
    ctx.secrets.add(token.accessToken);
    const minutes = Math.round((token.expiresOn.getTime() - Date.now()) / 60_000);
    return {
      status: 'pass',
      detail: `token for ${mailbox} (${FLOW_KIND[ctx.auth?.flow ?? ''] ?? 'token'}), valid until ${token.expiresOn.toISOString()} (${minutes} min)`,
      data: { expiresOn: token.expiresOn.toISOString() },
    };
  } catch (err) {
    return await tokenFailure(err, ctx);
  }
}

// eslint-disable-next-line @typescript-eslint/require-await
async function checkClaims(ctx: DoctorContext): Promise<CheckResult> {
  const token = ctx.accessToken!;
  const mailbox = ctx.mailbox!;
  const claims = decodeClaims(token);
  const s = summarizeToken(token);
  if (!claims || !s) {
    return {
      status: 'warn',
      detail: 'the token is opaque (not a JWT): its audience and permissions cannot be read here; the AUTH check tests it',
      cause: 'The token command printed something that is not a JWT; Microsoft access tokens for Exchange are JWTs.',
      fix: 'Check that the command prints the access_token field, not the id token or the whole JSON answer.',
    };
  }
  ctx.claims = claims;
  ctx.summary = s;
  const appOnly = s.kind === 'app-only';
  const servicePrincipalId = appOnly && typeof claims.oid === 'string' ? claims.oid : undefined;
  const failures: Explanation[] = [];
  const warnings: Explanation[] = [];
  const audiences = new Set([...GLOBAL_EXCHANGE_AUDIENCES, ctx.cloud.exchangeAppResource, ctx.cloud.exchangeDelegatedResource]);
  const descriptor = transportDescriptor(ctx.transport);
  if (!descriptor.doctor.exchangeSetupFindings) {
    // The transport's own audience and permission, from its descriptor: the least-privilege review knows both.
    for (const f of reviewPermissions(s, descriptor.permissions))
      if (f.level === 'fail') failures.push({ id: `permission-${f.permission}`, class: 'auth', cause: f.message, fix: f.fix ?? '' });
  } else {
    if (!s.audience.split(' ').some((a) => audiences.has(a))) failures.push(explainSetupFinding('token-audience', { audience: s.audience || '(no audience)' }));
    if (appOnly && !s.roles.includes('SMTP.SendAsApp')) {
      failures.push(
        explainSetupFinding(s.roles.length === 0 ? 'token-no-roles' : 'token-role-missing', {
          roles: s.roles.join(', '),
          clientId: s.appId ?? ctx.auth?.clientId,
        }),
      );
    }
    if (!appOnly && !s.scopes.includes('SMTP.Send')) failures.push(explainSetupFinding('token-scope-missing', { mailbox }));
  }
  if (!appOnly) {
    const own = [mailbox, ...(ctx.mailboxConfig?.aliases ?? [])].map((a) => a.toLowerCase());
    if (s.user && !own.includes(s.user.toLowerCase())) warnings.push(explainSetupFinding('token-user', { user: s.user, mailbox }));
  }
  const tenant = ctx.auth?.tenant;
  if (tenant && GUID.test(tenant) && s.tenantId && s.tenantId.toLowerCase() !== tenant.toLowerCase()) {
    failures.push(explainSetupFinding('token-tenant', { tokenTenant: s.tenantId, tenant }));
  }
  const now = Date.now();
  if (s.expiresAt && s.expiresAt.getTime() <= now) failures.push(explainSetupFinding('token-expired', { expiresAt: s.expiresAt.toISOString() }));
  const nbf = typeof claims.nbf === 'number' ? claims.nbf * 1000 : undefined;
  const ahead = Math.max(s.issuedAt ? s.issuedAt.getTime() : 0, nbf ?? 0) - now;
  const skew = Math.round(ahead / 1000);
  if (skew > MAX_SKEW_SECONDS) failures.push(explainSetupFinding('clock-skew', { skew: String(skew) }));
  else if (skew > WARN_SKEW_SECONDS) warnings.push(explainSetupFinding('clock-skew', { skew: String(skew) }));
  for (const finding of reviewPermissions(s, descriptor.permissions)) {
    if (finding.level === 'warn') warnings.push({ id: `permission-${finding.permission}`, class: 'permanent', cause: finding.message, fix: finding.fix ?? '' });
  }

  const granted = appOnly ? `roles ${s.roles.join(' ') || '(none)'}` : `scopes ${s.scopes.join(' ') || '(none)'}`;
  const minutes = s.expiresAt ? Math.round((s.expiresAt.getTime() - now) / 60_000) : undefined;
  const detail =
    `${s.kind} token of app ${s.appId ?? '?'}${s.appName ? ` (${s.appName})` : ''}${s.user ? ` for ${s.user}` : ''}: audience ${s.audience || '(none)'}, ${granted}, ` +
    `tenant ${s.tenantId ?? '?'}, expires ${s.expiresAt?.toISOString() ?? '?'}${minutes !== undefined ? ` (in ${minutes} min)` : ''}`;
  const data = {
    kind: s.kind,
    audience: s.audience,
    tenantId: s.tenantId,
    appId: s.appId,
    roles: s.roles,
    scopes: s.scopes,
    user: s.user,
    issuedAt: s.issuedAt?.toISOString(),
    expiresAt: s.expiresAt?.toISOString(),
    ...(servicePrincipalId ? { servicePrincipalId } : {}),
  };
  const shown = failures.length > 0 ? failures : warnings;
  if (shown.length === 0) return { status: 'pass', detail, data };
  return {
    status: failures.length > 0 ? 'fail' : 'warn',
    detail,
    cause: shown.map((e) => e.cause).join(' Also: '),
    fix: shown.map((e) => e.fix).join(' Also: '),
    ...(shown[0]?.doc ? { doc: shown[0].doc } : {}),
    data,
  };
}

async function checkAuth(ctx: DoctorContext): Promise<CheckResult> {
  const mailbox = ctx.mailbox!;
  const where = smtpAddress(ctx);
  let reply: SmtpReply;
  try {
    // The first connection may have timed out while the token was fetched: open a fresh one then.
    if (!ctx.probe || ctx.probe.closed) ctx.probe = await openSession(ctx);
    // Microsoft Learn, "Authenticate an IMAP, POP or SMTP connection using OAuth", SASL XOAUTH2: base64("user=" + mailbox + "\x01auth=Bearer " + token + "\x01\x01"), on one line.
    const initial = Buffer.from(`user=${mailbox}\x01auth=Bearer ${ctx.accessToken!}\x01\x01`).toString('base64');
    ctx.secrets.add(initial);
    reply = await ctx.probe.command(`AUTH XOAUTH2 ${initial}`);
    // Some servers first send a 334 with a base64 JSON error; the client answers it with an empty line.
    if (reply.code === 334) reply = await ctx.probe.command('');
  } catch (err) {
    return connectionFailure(err, `${where} (AUTH)`);
  }
  if (reply.code === 235) return { status: 'pass', detail: `Exchange accepted XOAUTH2 for ${mailbox}: ${reply.last}` };
  let explanation = explainSmtpReply(reply.last, mailbox);
  // The claims check has already vouched for audience and permission, so a plain 5.7.3 narrows to what only Exchange knows.
  if (explanation.id === 'smtp-535-5.7.3' && ctx.summary) {
    const servicePrincipalId = typeof ctx.claims?.oid === 'string' ? ctx.claims.oid : '<enterprise app object id>';
    const clientId = ctx.summary.appId ?? ctx.auth?.clientId ?? '<client id>';
    const narrowed = explainSetupFinding(ctx.summary.kind === 'app-only' ? 'auth-refused-app-only' : 'auth-refused-delegated', {
      mailbox,
      clientId,
      servicePrincipalId,
    });
    explanation = { ...narrowed, doc: narrowed.doc ?? explanation.doc };
  }
  return explained('fail', `Exchange answered ${reply.last}`, explanation, { data: { reply: reply.last, catalogueId: explanation.id } });
}

async function checkMailFrom(ctx: DoctorContext): Promise<CheckResult> {
  const mailbox = ctx.mailbox!;
  const probe = ctx.probe!;
  try {
    const reply = await probe.command(`MAIL FROM:<${mailbox}>`);
    if (reply.code !== 250) return replyFailure(reply, `MAIL FROM:<${mailbox}>`, mailbox);
    await probe.command('RSET');
    return {
      status: 'pass',
      detail: `MAIL FROM:<${mailbox}> answered ${reply.last} (Exchange checks the From address only after DATA: --send-test checks that)`,
    };
  } catch (err) {
    return connectionFailure(err, `${smtpAddress(ctx)} (MAIL FROM)`);
  } finally {
    // Exchange allows 3 connections per mailbox: free this one before the test sends open their own.
    await probe.close();
    delete ctx.probe;
  }
}

/** Sends one test message from `from` as the mailbox; a refusal is explained by the catalogue. */
async function sendTest(ctx: DoctorContext, from: string): Promise<CheckResult | undefined> {
  const mailbox = ctx.mailbox!;
  ctx.mailer ??= await createMailer(ctx.config, { logger: ctx.logger, env: ctx.env, pool: false, ...(ctx.cacheStore ? { cacheStore: ctx.cacheStore } : {}) });
  const now = new Date().toISOString();
  const result = await ctx.mailer.send(
    {
      from,
      to: ctx.sendTest!,
      subject: `relay365 doctor test message from ${from} (${now})`,
      text: `relay365 doctor sent this message as ${mailbox}${from === mailbox ? '' : ` with From: ${from}`} at ${now}, to check the setup end to end.\n`,
    },
    { mailbox },
  );
  if (result.ok) return undefined;
  const explanation = result.explanation ?? {
    id: 'send-unknown',
    class: result.class,
    cause: `The message was not sent (${result.class}).`,
    fix: 'See the reply.',
  };
  return explained('fail', `From ${from}: not sent${result.stage ? ` (at ${result.stage})` : ''}: ${result.reply ?? explanation.cause}`, {
    ...explanation,
    fix: explanation.fix.replaceAll('<From address>', from),
  });
}

async function checkSendTest(ctx: DoctorContext): Promise<CheckResult> {
  if (!ctx.sendTest) return { status: 'skip', detail: 'not asked: --send-test <address> sends a real message' };
  const failure = await sendTest(ctx, ctx.mailbox!);
  return failure ?? { status: 'pass', detail: `sent as ${ctx.mailbox!} to ${ctx.sendTest}` };
}

async function checkSendAs(ctx: DoctorContext): Promise<CheckResult> {
  if (!ctx.sendTest) return { status: 'skip', detail: 'not asked: --send-test <address> also sends one message from each alias' };
  const aliases = ctx.mailboxConfig?.aliases ?? [];
  if (aliases.length === 0) return { status: 'skip', detail: 'the mailbox has no aliases in the config: it sends only as itself' };
  for (const alias of aliases) {
    const failure = await sendTest(ctx, alias);
    if (failure) return failure;
  }
  return { status: 'pass', detail: `sent as ${aliases.join(', ')} through ${ctx.mailbox!} to ${ctx.sendTest}` };
}

/** How long ago, in words, for a pause's since-when. */
function ago(since: Date): string {
  const s = Math.max(0, Math.round((Date.now() - since.getTime()) / 1000));
  return s < 120 ? `${s} s ago` : s < 7200 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3600)} h ago`;
}

async function checkPaused(ctx: DoctorContext): Promise<CheckResult> {
  if (!ctx.pausedMailboxes) return { status: 'skip', detail: 'the outbox was not read (no pause reader given)' };
  let pauses: PausedMailbox[];
  try {
    pauses = await ctx.pausedMailboxes();
  } catch (err) {
    return {
      status: 'warn',
      detail: 'the outbox could not be read, so a pause cannot be ruled out',
      cause: err instanceof Error ? err.message : String(err),
      fix: 'Check queue.path (or queue.url) in the config; relay365 queue paused lists the paused mailboxes.',
    };
  }
  const mailbox = ctx.mailbox!.toLowerCase();
  const others = pauses.filter((p) => p.mailbox !== mailbox);
  const also = others.length > 0 ? `; also paused: ${others.map((p) => `${p.mailbox} (${p.explanation?.cause ?? p.reply ?? p.class})`).join('; ')}` : '';
  const pause = pauses.find((p) => p.mailbox === mailbox);
  if (!pause) return { status: 'pass', detail: `${ctx.mailbox!} is not paused${also}` };
  const requested = pause.resumeRequestedAt ? `; resume asked at ${pause.resumeRequestedAt.toISOString()}, waiting for a running relay365` : '';
  return {
    status: 'fail',
    detail: `paused since ${pause.since.toISOString()} (${ago(pause.since)})${pause.reply ? ` after ${pause.reply}` : ''}${requested}${also}`,
    cause: pause.explanation?.cause ?? `Exchange refused the mailbox (${pause.class}); its queue is kept, nothing is failed.`,
    fix:
      `${pause.explanation?.fix ?? 'See the reply above and docs/errors.md.'} Then resume it: relay365 queue resume ${pause.mailbox} ` +
      '(or wait: relay365 tries it again every queue.authPauseSeconds and resumes it when a send works).',
    doc: 'docs/operations.md',
    data: { since: pause.since.toISOString(), class: pause.class, explanationId: pause.explanation?.id },
  };
}

/**
 * Every check, in the order of the setup steps: its id, its title as the report shows it, the checks it needs
 * (one of them failing skips it, see run.ts) and what it does. The bounces and credential checks live in their own files.
 */
export const CHECKS: readonly Check[] = [
  { id: 'config', title: 'Config: the mailbox and its sign-in settings', run: checkConfig },
  { id: 'dns-authority', title: 'DNS: the identity platform host', dependsOn: ['config'], run: checkDnsAuthority },
  { id: 'dns-smtp', title: 'DNS: the SMTP host', dependsOn: ['config'], run: checkDnsSmtp },
  { id: 'tcp', title: 'TCP: the SMTP host answers', dependsOn: ['dns-smtp'], run: checkTcp },
  { id: 'tls', title: 'STARTTLS: TLS 1.2+ and a trusted certificate', dependsOn: ['tcp'], run: checkTls },
  { id: 'ehlo', title: 'EHLO after STARTTLS offers AUTH XOAUTH2', dependsOn: ['tls'], run: checkEhlo },
  { id: 'token', title: 'Token: the identity platform issues one', dependsOn: ['config', 'dns-authority'], run: checkToken },
  { id: 'claims', title: 'Token claims: audience, permission, tenant, expiry, clock', dependsOn: ['token'], run: checkClaims },
  { id: 'auth', title: 'AUTH XOAUTH2: Exchange accepts the token for the mailbox', dependsOn: ['ehlo', 'claims'], run: checkAuth },
  { id: 'mail-from', title: 'MAIL FROM: the mailbox may start a message', dependsOn: ['auth'], run: checkMailFrom },
  { id: 'send-test', title: 'Test message: sent as the mailbox', dependsOn: ['mail-from'], run: checkSendTest },
  { id: 'send-as', title: 'SendAs: the mailbox may send as its configured aliases', dependsOn: ['send-test'], run: checkSendAs },
  { id: 'paused', title: 'Outbox: relay365 has not paused the mailbox', dependsOn: ['config'], run: checkPaused },
  bouncesCheck,
  credentialExpiryCheck,
];
