import { execFile } from 'node:child_process';
import { startTestSandbox } from './helpers/sandbox.js';
const sb = await startTestSandbox();
const s = sb.state.scenario; const tenant = s.tenants[0]!; const app = tenant.apps[0]!;
const { token } = await sb.issuer.accessToken({ tenant, app, audience: 'https://outlook.office365.com', roles: ['SMTP.SendAsApp'], lifetimeSeconds: 3600, clientAuth: '1' });
await new Promise<void>((res) => execFile('curl', ['-v', '--url', `smtp://127.0.0.1:${sb.smtpPort}`, '--ssl-reqd', '--cacert', sb.caPath, '--mail-from', 'relay@contoso.example', '--mail-rcpt', 'x@example.net', '--upload-file', '/tmp/smoke/msg.eml', '--user', 'relay@contoso.example', '--oauth2-bearer', token], { timeout: 10000 }, (err, out, errout) => { console.log(err, out, errout.replace(/[A-Za-z0-9+/=]{200,}/g, '<b64>')); res(); }));
console.log(sb.state.messages.map(m => JSON.stringify(m.raw.toString())));
await sb.close();
