import { join } from 'node:path';
import { openSqliteHttpStore } from '../../src/ingress/http/index.js';
import { httpStoreContract } from '../contract/http-store.js';
import { tempDir } from '../helpers/sandbox.js';

// A fresh file per test; `connect` opens a second connection to it, as `relay365 apikey` does beside a running relay.
httpStoreContract('SQLite', async () => {
  const dir = await tempDir('relay365-http-store-');
  const path = join(dir.path, 'relay365.db');
  return { store: await openSqliteHttpStore(path), cleanup: dir.cleanup, connect: () => openSqliteHttpStore(path) };
});
