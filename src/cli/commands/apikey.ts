import { Command } from 'commander';
import { Relay365Error } from '../../errors.js';
import { API_KEY_SCOPES, generateApiKey, type ApiKeyScope } from '../../store/api-keys.js';
import type { ApiKeyRecord, IntegrationStore } from '../../store/integration-store.js';
import { openIntegrationStore } from '../../runtime/stores.js';
import { cliContext } from '../context.js';
import { configSubcommand, printList, type ConfigJsonFlags } from '../subcommand.js';

async function withIntegrationStore<T>(flags: { config?: string }, fn: (store: IntegrationStore) => Promise<T>): Promise<T> {
  const { config } = await cliContext(flags);
  // Where the running relays look: PostgreSQL with queue.url (every node sees the key at once), else
  // the outbox's SQLite file (WAL lets this command and a running relay both write).
  const store = await openIntegrationStore(config);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

function keyJson(k: ApiKeyRecord) {
  return {
    id: k.id,
    name: k.name,
    prefix: k.prefix,
    createdAt: k.createdAt.toISOString(),
    lastUsedAt: k.lastUsedAt?.toISOString() ?? null,
    revokedAt: k.revokedAt?.toISOString() ?? null,
    scopes: k.scopes,
    senders: k.senders ?? null,
  };
}

/** A key as `apikey list` prints it: id, prefix, name, what it may do, and when it was created and last used (or revoked). */
function keyLine(k: ApiKeyRecord): string {
  const state = k.revokedAt ? `revoked ${k.revokedAt.toISOString()}` : `last used ${k.lastUsedAt?.toISOString() ?? 'never'}`;
  const may = `${k.scopes.join(',')}${k.senders ? ` as ${k.senders.join(',')}` : ''}`;
  return `${k.id}  ${k.prefix}…  ${k.name.padEnd(20)} ${may.padEnd(16)} created ${k.createdAt.toISOString()}  ${state}`;
}

/** `--scope send,read`: the scopes named, each one known. */
function parseScopes(value: string): ApiKeyScope[] {
  const scopes = value
    .split(/[,\s]+/)
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);
  const unknown = scopes.filter((s) => !(API_KEY_SCOPES as readonly string[]).includes(s));
  if (unknown.length > 0 || scopes.length === 0)
    throw new Relay365Error('R365_CLI_OPTION_INVALID', `--scope takes ${API_KEY_SCOPES.join(', ')} (comma-separated); got ${JSON.stringify(value)}.`);
  return scopes as ApiKeyScope[];
}

/** `relay365 apikey create|list|revoke`: keys for the HTTP API, stored as SHA-256 hashes only. */
export function apikeyCommand(): Command {
  const apikey = new Command('apikey').description('Manage the API keys of the HTTP API (Authorization: Bearer r365_...).');
  configSubcommand(apikey, 'create', 'Create an API key and print it once: only its hash is stored', (c) =>
    c
      .option('-n, --name <name>', 'who or what uses the key (shown in lists and logs)', 'default')
      .option(
        '--scope <scopes>',
        'what the key may do, comma-separated: send (send messages), read (messages and mailboxes), admin (retry, cancel, doctor)',
        'send,read',
      )
      .option('--sender <rule...>', 'addresses (noreply@contoso.com) or domains (@contoso.com) the key may send as; default any the relay routes'),
  ).action(async (flags: ConfigJsonFlags & { name: string; scope: string; sender?: string[] }) => {
    const scopes = parseScopes(flags.scope);
    await withIntegrationStore(flags, async (store) => {
      const key = generateApiKey();
      const record = await store.createApiKey({
        name: flags.name,
        hash: key.hash,
        prefix: key.prefix,
        scopes,
        ...(flags.sender ? { senders: flags.sender } : {}),
      });
      if (flags.json) {
        console.log(JSON.stringify({ ...keyJson(record), key: key.key }));
        return;
      }
      console.log(key.key);
      console.error(`API key ${record.id} (${record.name}) created. Store it now: it is not shown again, and relay365 keeps only its hash.`);
      console.error('Use it as: Authorization: Bearer <key>');
    });
  });
  configSubcommand(apikey, 'list', 'List the API keys (never the keys themselves)').action(async (flags: ConfigJsonFlags) => {
    await withIntegrationStore(flags, async (store) => {
      const keys = await store.listApiKeys();
      printList(flags.json, keys, { json: () => keys.map(keyJson), empty: 'No API key yet: relay365 apikey create --name <app>', line: keyLine });
    });
  });
  configSubcommand(apikey, 'revoke <key>', 'Revoke an API key by its id, name or prefix; requests with it get 401 at once').action(
    async (ref: string, flags: ConfigJsonFlags) => {
      await withIntegrationStore(flags, async (store) => {
        const revoked = await store.revokeApiKey(ref);
        if (!revoked) throw new Relay365Error('R365_API_KEY_UNKNOWN', `No active API key has the id, name or prefix ${ref}; relay365 apikey list shows them.`);
        if (flags.json) console.log(JSON.stringify(keyJson(revoked)));
        else console.log(`API key ${revoked.id} (${revoked.name}) revoked.`);
      });
    },
  );
  return apikey;
}
