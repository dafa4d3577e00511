import { isAbsolute, join, resolve } from 'node:path';

/**
 * Where relay365 keeps its data when the config does not say (`dataDir` unset in the file and in
 * `RELAY365_DATA_DIR`): systemd's `StateDirectory=` when the service manager set one (systemd.exec(5),
 * "$STATE_DIRECTORY": absolute paths, colon-separated when several are configured; the first is ours),
 * else `data` beside the config file, else `./data` in the working folder (the schema's default).
 */
export function defaultDataDir(configDir: string | undefined, env: NodeJS.ProcessEnv): string | undefined {
  const state = env.STATE_DIRECTORY?.split(':')[0];
  if (state) return state;
  return configDir === undefined ? undefined : join(configDir, 'data');
}

/** Fields holding a file's path, as dotted paths; `[]` stands for every item of an array. */
const PATH_FIELDS = [
  'dataDir',
  'network.caFile',
  'smtp.certFile',
  'smtp.keyFile',
  'auth.certificate.keyFile',
  'auth.certificate.certFile',
  'mailboxes.[].auth.certificate.keyFile',
  'mailboxes.[].auth.certificate.certFile',
];

/** Fields holding a secret reference, whose `file:PATH` form names a file. */
const SECRET_FIELDS = [
  'auth.clientSecret',
  'mailboxes.[].auth.clientSecret',
  'auth.certificate.passphrase',
  'mailboxes.[].auth.certificate.passphrase',
  'http.adminPassword',
  'http.webhooks.[].secret',
];

/**
 * Makes the relative paths a config file names absolute against the file's folder, so that
 * `relay365 serve --config /etc/relay365/relay365.yaml` finds the same files from any working folder
 * (systemd starts services in `/`, cron in the home folder). Only what the file itself says is
 * resolved: `RELAY365_*` overrides and the schema's defaults stay relative to the working folder.
 * `sandbox.caFile` (the local try-out's CA, which `serve --sandbox` sets itself) is left as it is.
 * Returns a copy; values of the wrong type are left for the schema to report.
 */
export function resolveConfigPaths(raw: Record<string, unknown>, configDir: string): Record<string, unknown> {
  const out = structuredClone(raw);
  const absolute = (path: string): string => (isAbsolute(path) ? path : resolve(configDir, path));
  for (const field of PATH_FIELDS) rewrite(out, field.split('.'), (value) => (value === '' ? value : absolute(value)));
  for (const field of SECRET_FIELDS)
    rewrite(out, field.split('.'), (value) => (value.startsWith('file:') && value.length > 5 ? `file:${absolute(value.slice(5))}` : value));
  return out;
}

function rewrite(node: unknown, path: string[], change: (value: string) => string): void {
  if (typeof node !== 'object' || node === null) return;
  const [key, ...rest] = path;
  if (key === undefined) return;
  if (key === '[]') {
    if (Array.isArray(node)) for (const item of node) rewrite(item, rest, change);
    return;
  }
  const record = node as Record<string, unknown>;
  const value = record[key];
  if (rest.length > 0) rewrite(value, rest, change);
  else if (typeof value === 'string') record[key] = change(value);
}
