import { join } from 'node:path';
import { openSqliteIntegrationStore } from '../../src/ingress/http/index.js';
import { integrationStoreContract } from '../contract/integration-store.js';
import { tempDir } from '../helpers/sandbox.js';

// A fresh file per test; `connect` opens a second connection to it, as `relay365 apikey` does beside a running relay.
integrationStoreContract('SQLite', async () => {
  const dir = await tempDir('relay365-integration-store-');
  const path = join(dir.path, 'relay365.db');
  return { store: await openSqliteIntegrationStore(path), cleanup: dir.cleanup, connect: () => openSqliteIntegrationStore(path) };
});
