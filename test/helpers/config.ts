import { configSchema, type Config, type ConfigInput } from '../../src/config/index.js';
import { DEFAULT_IDS, type Sandbox } from '../../src/sandbox/index.js';

/** The settings that point relay365 at a running test sandbox. */
export function sandboxSettings(sandbox: Sandbox): Pick<ConfigInput, 'cloud' | 'sandbox'> {
  return { cloud: 'sandbox', sandbox: { url: sandbox.baseUrl, smtpHost: sandbox.smtpHost, smtpPort: sandbox.smtpPort, caFile: sandbox.caPath } };
}

/** A validated config for the sandbox's default app-only mailbox (client secret), front doors off, with overrides. */
export function sandboxConfig(sandbox: Sandbox, dataDir: string, overrides: Partial<ConfigInput> = {}): Config {
  return configSchema.parse({
    dataDir,
    log: { level: 'silent' },
    ...sandboxSettings(sandbox),
    auth: { flow: 'client-secret', tenant: DEFAULT_IDS.tenantId, clientId: DEFAULT_IDS.appClientId, clientSecret: DEFAULT_IDS.appSecret },
    mailboxes: [{ address: DEFAULT_IDS.mailbox }],
    // Front doors off unless a test turns them on: fixed default ports would collide between tests.
    smtp: { enabled: false },
    http: { enabled: false },
    ...overrides,
  });
}
