import { execFileSync } from 'node:child_process';
import { startTestSandbox } from './helpers/sandbox.js';
import { DEFAULT_IDS as D } from '../src/sandbox/index.js';
const sb = await startTestSandbox();
try {
  const out = execFileSync('curl', ['-sS', '--cacert', sb.caPath, '--data-urlencode', 'grant_type=client_credentials', '--data-urlencode', `client_id=${D.appClientId}`, '--data-urlencode', `client_secret=${D.appSecret}`, '--data-urlencode', 'scope=https://outlook.office365.com/.default', `${sb.baseUrl}/${D.tenantId}/oauth2/v2.0/token`]).toString();
  console.log(out.slice(0, 300));
} catch (e) { console.log('ERR', String(e)); }
await sb.close();
