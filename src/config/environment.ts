import type { Config } from './schema.js';
import type { ConfigIssue } from './issues.js';

/** Name of the environment variable holding the key of the token cache and of stored bodies. */
export const SECRET_KEY_ENV = 'RELAY365_SECRET_KEY';

/**
 * The rules that read the environment as well as the config, checked by `loadConfig` (so `serve`,
 * `config check`, `doctor` and a reload refuse the same configs) and by `startRelay` for a config built
 * in code. Each returns a problem with the path of the field that needs the environment.
 */
export function environmentIssues(config: Pick<Config, 'queue'>, env: NodeJS.ProcessEnv): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  // Nodes sharing PostgreSQL read each other's bodies: they must share the key itself, and a key file
  // (dataDir/secret.key) is one node's alone.
  if (config.queue.encryptBodies && config.queue.url !== undefined && !env[SECRET_KEY_ENV])
    issues.push({
      path: 'queue.encryptBodies',
      message: `with queue.url needs ${SECRET_KEY_ENV}: every node must decrypt the bodies any node stored, and a key file (dataDir/secret.key) is this node's alone; set the same ${SECRET_KEY_ENV} on every node`,
    });
  return issues;
}
