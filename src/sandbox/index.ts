import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { AddressInfo } from 'node:net';
import Fastify from 'fastify';
import type { SMTPServer } from 'smtp-server';
import { Relay365Error } from '../errors.js';
import { silentLogger, type Logger } from '../observe/index.js';
import { defaultScenario, type Scenario } from './scenario.js';
import { SandboxState } from './state.js';
import { createSandboxTls, type SandboxTls } from './tls.js';
import { TokenIssuer } from './tokens.js';
import { identityRoutes } from './identity-routes.js';
import { managedIdentityRoutes } from './managed-identity.js';
import { graphRoutes } from './graph-routes.js';
import { graphApplicationRoutes } from './graph-applications.js';
import { graphMailRoutes } from './graph-mail-routes.js';
import { adminRoutes } from './admin-routes.js';
import { createExchangeSmtp } from './exchange-smtp.js';

export { defaultScenario, parseScenario, loadScenario, DEFAULT_IDS, RESOURCES, type Scenario, type ScenarioInput } from './scenario.js';
export { SandboxState, type ReceivedMessage, type SandboxCounters } from './state.js';
export { TokenIssuer } from './tokens.js';
export { createSandboxTls, createClientCertificate, certificateThumbprints, type CertificatePair } from './tls.js';

export interface SandboxOptions {
  scenario?: Scenario;
  /** Address both listeners bind to (default 127.0.0.1). */
  host?: string;
  /** HTTPS port for the identity platform, Graph and `/sandbox/*` (0: any free port). */
  httpsPort?: number;
  /** SMTP submission port (0: any free port; Microsoft's is 587). */
  smtpPort?: number;
  /** High Volume Email SMTP port, smtp-hve.office365.com's stand-in (0: any free port; Microsoft's is 587). */
  hveSmtpPort?: number;
  /** Where `ca.pem` is written (default `./data/sandbox`). */
  dataDir?: string;
  /** Also write each accepted message there as `.eml`. */
  emlDir?: string;
  logger?: Logger;
}

/** A running sandbox: where to reach it and how to stop it. */
export interface Sandbox {
  /** `https://localhost:PORT`; the authority of a tenant is `${baseUrl}/${tenantId}`. */
  baseUrl: string;
  httpsPort: number;
  smtpHost: string;
  smtpPort: number;
  /** The High Volume Email endpoint (smtp-hve.office365.com's stand-in), on `smtpHost`. */
  hveSmtpPort: number;
  /** Path of the sandbox CA certificate, which clients must be told to trust. */
  caPath: string;
  caPem: string;
  state: SandboxState;
  issuer: TokenIssuer;
  /** The authority URL for a tenant (id or domain). */
  authority(tenant: string): string;
  close(): Promise<void>;
}

/**
 * Starts the Microsoft 365 simulator: identity platform and Graph over HTTPS, Exchange Online SMTP
 * submission with STARTTLS, both with certificates from a CA made for this run.
 * @throws Relay365Error `R365_SANDBOX_START_FAILED`
 */
export async function startSandbox(options: SandboxOptions = {}): Promise<Sandbox> {
  const host = options.host ?? '127.0.0.1';
  const logger = options.logger ?? silentLogger();
  const dataDir = resolve(options.dataDir ?? './data/sandbox');
  const state = new SandboxState(options.scenario ?? defaultScenario(), options.emlDir);
  const [tls, issuer] = await Promise.all([createSandboxTls(host === '127.0.0.1' || host === '::1' ? [] : [host]), TokenIssuer.create()]);
  const caPath = join(dataDir, 'ca.pem');
  try {
    await mkdir(dataDir, { recursive: true });
    await writeFile(caPath, tls.ca.certPem, { mode: 0o644 });
  } catch (cause) {
    throw new Relay365Error('R365_SANDBOX_START_FAILED', `Cannot write the sandbox CA to ${caPath}: choose a writable --data-dir.`, { cause });
  }

  let baseUrl = '';
  const http = buildHttpsApp(tls, state, issuer, () => baseUrl);
  const smtp = createExchangeSmtp({ state, issuer, tls: tls.server, logger });
  const hveSmtp = createExchangeSmtp({ state, issuer, tls: tls.server, logger, endpoint: 'hve' });
  let httpsPort: number;
  let smtpPort: number;
  let hveSmtpPort: number;
  try {
    await http.listen({ host, port: options.httpsPort ?? 0 });
    httpsPort = (http.server.address() as AddressInfo).port;
    baseUrl = `https://localhost:${httpsPort}`;
    smtpPort = await listenSmtp(smtp, host, options.smtpPort ?? 0);
    hveSmtpPort = await listenSmtp(hveSmtp, host, options.hveSmtpPort ?? 0);
  } catch (cause) {
    await http.close();
    await new Promise<void>((res) => smtp.close(() => res()));
    throw new Relay365Error('R365_SANDBOX_START_FAILED', `The sandbox cannot listen on ${host}: ${(cause as Error).message}. Choose free ports.`, {
      cause,
    });
  }
  logger.info({ baseUrl, smtpPort, hveSmtpPort, caPath }, 'sandbox listening');
  return {
    baseUrl,
    httpsPort,
    smtpHost: host,
    smtpPort,
    hveSmtpPort,
    caPath,
    caPem: tls.ca.certPem,
    state,
    issuer,
    authority: (tenant) => `${baseUrl}/${tenant}`,
    close: async () => {
      await Promise.all([http.close(), new Promise<void>((res) => smtp.close(() => res())), new Promise<void>((res) => hveSmtp.close(() => res()))]);
    },
  };
}

function buildHttpsApp(tls: SandboxTls, state: SandboxState, issuer: TokenIssuer, baseUrl: () => string) {
  const app = Fastify({
    https: { key: tls.server.keyPem, cert: tls.server.certPem, minVersion: 'TLSv1.2' },
    // Graph accepts MIME bodies of several MB and upload-session chunks; keep well above its 4 MB request limit.
    bodyLimit: 200 * 1024 * 1024,
  });
  void app.register(identityRoutes, { state, issuer, baseUrl });
  void app.register(graphRoutes, { state, issuer, baseUrl });
  void app.register(graphMailRoutes, { state, issuer, baseUrl });
  void app.register(graphApplicationRoutes, { state, issuer });
  void app.register(adminRoutes, { state });
  void app.register(managedIdentityRoutes, { state, issuer });
  return app;
}

function listenSmtp(server: SMTPServer, host: string, port: number): Promise<number> {
  return new Promise((res, rej) => {
    server.once('error', rej);
    server.listen(port, host, () => {
      server.off('error', rej);
      res((server.server.address() as AddressInfo).port);
    });
  });
}
