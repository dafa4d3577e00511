// Its own module so that the CLI can print these in its help without loading the sandbox.
/** Fixed ids of the built-in scenario, so docs and examples can name them. */
export const DEFAULT_IDS = {
  tenantId: '5f0c6f2e-6b1e-4c55-9a43-2d1e7c3b9a10',
  tenantDomain: 'contoso.example',
  appClientId: '3c1b9a52-2f44-4d6e-8f0a-7b5e9d2c4a11',
  appSecret: 'sandbox-app-secret-not-for-production',
  appServicePrincipalId: '8a2d4f6b-1c3e-4a5b-9d7f-0e2c4b6a8d12',
  publicClientId: '6e4a2c80-9b1d-4f3e-a5c7-2d9e0b4f6a13',
  mailbox: 'relay@contoso.example',
  mailboxId: '1b3d5f7a-9c2e-4b6d-8f0a-3c5e7a9b1d14',
  user: 'alice@contoso.example',
  userId: '2c4e6a8b-0d1f-4a3c-9e5b-7d9f1b3c5e15',
  userPassword: 'sandbox-user-password',
} as const;
