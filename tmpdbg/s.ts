import nodemailer from 'nodemailer';
import { startTestSandbox } from '../test/helpers/sandbox.js';
import { DEFAULT_IDS } from '../src/sandbox/index.js';
const sandbox = await startTestSandbox({});
const tenant = sandbox.state.scenario.tenants[0]!;
const app = tenant.apps.find((a) => a.clientId === DEFAULT_IDS.appClientId)!;
const { token } = await sandbox.issuer.accessToken({ tenant, app, audience: 'https://outlook.office365.com', roles: ['SMTP.SendAsApp'], lifetimeSeconds: 3600, clientAuth: '1' });
for (let i = 0; i < 3; i++) {
  const t0 = performance.now();
  const log = (...a: unknown[]) => { const m = a.find((x) => typeof x === 'string'); console.log((performance.now() - t0).toFixed(1).padStart(7), String(m).slice(0, 60)); };
  const transport = nodemailer.createTransport({ host: sandbox.smtpHost, port: sandbox.smtpPort, secure: false, requireTLS: true, tls: { ca: sandbox.caPem, servername: 'localhost' }, auth: { type: 'OAuth2', user: DEFAULT_IDS.mailbox, accessToken: token }, logger: { trace: log, debug: log, info: log, warn: log, error: log, fatal: log, level: () => {} } as never, debug: true });
  await transport.sendMail({ from: DEFAULT_IDS.mailbox, to: 'x@example.net', subject: 't', text: 'h' });
  transport.close();
  console.log('total', (performance.now() - t0).toFixed(1));
}
await sandbox.close();
