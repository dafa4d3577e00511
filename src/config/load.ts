import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { Relay365Error } from '../errors.js';
import { configSchema, type Config } from './schema.js';
import { environmentIssues } from './environment.js';
import { formatConfigIssues, toConfigIssues, type ConfigIssue } from './issues.js';
import { defaultDataDir, resolveConfigPaths } from './paths.js';

/** Prefix of environment variables that override config fields; `__` separates nesting levels. */
export const ENV_PREFIX = 'RELAY365_';

/**
 * Only variables naming a top-level config field are overrides: others with the prefix are settings of
 * their own (RELAY365_SECRET_KEY, RELAY365_CONFIG) or secrets that the config refers to
 * (`clientSecret: env:RELAY365_CLIENT_SECRET`).
 */
const TOP_LEVEL_KEYS = new Set(Object.keys(configSchema.shape));

export interface LoadConfigOptions {
  /** Path of a YAML file; when absent only defaults and environment overrides apply. */
  path?: string;
  /** Environment to read `RELAY365_*` overrides from (default `process.env`). */
  env?: NodeJS.ProcessEnv;
}

/**
 * Reads, overrides, validates and freezes the config: the one check of a config, whoever loads it
 * (`serve` at start and on SIGHUP, `config check`, `doctor` and every other command). A config it
 * returns is one `serve` runs with; a config it refuses is refused with every problem at once.
 *
 * `RELAY365_LOG__LEVEL=debug` sets `log.level`; values are parsed as YAML scalars, so `true`, `42`
 * and `[a, b]` keep their types. Every problem is reported at once, each with its dotted path.
 * Relative paths in the file (`dataDir`, certificate and key files, `file:` secrets) are taken from the
 * file's folder; without `dataDir` anywhere, it is `$STATE_DIRECTORY` under systemd, else `data` beside
 * the file, else `./data`. CRLF line endings (a file saved on Windows) read like LF.
 * @throws Relay365Error `R365_CONFIG_NOT_FOUND` or `R365_CONFIG_INVALID`
 */
export async function loadConfig(options: LoadConfigOptions = {}): Promise<Readonly<Config>> {
  const issues: ConfigIssue[] = [];
  let raw: unknown = {};
  if (options.path !== undefined) {
    let text: string;
    try {
      text = await readFile(options.path, 'utf8');
    } catch (cause) {
      throw new Relay365Error(
        'R365_CONFIG_NOT_FOUND',
        `Cannot read config file ${options.path}: ${(cause as NodeJS.ErrnoException).code ?? String(cause)}. ` +
          'Check the path, or run `relay365 init` to write one.',
        { cause },
      );
    }
    try {
      raw = parseYaml(text) ?? {};
    } catch (cause) {
      // The parser's message quotes the offending line (after a blank line), which may hold a secret
      // (`clientSecret: ...`): keep only its first line and the position, and not the parser's error.
      const position = cause instanceof YAMLParseError ? cause.linePos?.[0] : undefined;
      const where = position ? ` (line ${position.line}, column ${position.col})` : '';
      const what = ((cause as Error).message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '');
      throw new Relay365Error('R365_CONFIG_INVALID', `${options.path} is not valid YAML${where}: ${what}`, {
        details: { path: options.path, ...(position ? { line: position.line, column: position.col } : {}) },
      });
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
      throw new Relay365Error('R365_CONFIG_INVALID', `${options.path} must hold a YAML mapping at its top level.`);
    }
    raw = resolveConfigPaths(raw as Record<string, unknown>, dirname(resolve(options.path)));
  }
  const env = options.env ?? process.env;
  const merged = applyEnvOverrides(raw as Record<string, unknown>, env, issues);
  // Paths in the file are relative to its folder, and so is the default data folder (src/config/paths.ts).
  const dataDir = merged.dataDir === undefined ? defaultDataDir(options.path === undefined ? undefined : dirname(resolve(options.path)), env) : undefined;
  if (dataDir !== undefined) merged.dataDir = dataDir;
  return deepFreeze(parseConfig(merged, { source: options.path ?? 'the configuration', env, issues }));
}

/**
 * Validates a config already read (an object given to the library, or the file's merged content): the
 * schema with every rule, then what the environment must hold for it. Throws `R365_CONFIG_INVALID`
 * listing every problem with its path, after `issues` found earlier (the overrides').
 */
export function parseConfig(input: unknown, options: { source: string; env?: NodeJS.ProcessEnv; issues?: ConfigIssue[] }): Config {
  const issues = [...(options.issues ?? [])];
  const result = configSchema.safeParse(input);
  if (result.success) issues.push(...environmentIssues(result.data, options.env ?? process.env));
  else issues.push(...toConfigIssues(result.error));
  if (issues.length > 0 || !result.success) {
    throw new Relay365Error('R365_CONFIG_INVALID', `${options.source} has ${issues.length} problem(s):\n${formatConfigIssues(issues)}`, {
      details: { issues },
    });
  }
  return result.data;
}

/** Copies `raw` and sets each `RELAY365_A__B=value` as `a.b` (camelCase from snake_case). */
export function applyEnvOverrides(raw: Record<string, unknown>, env: NodeJS.ProcessEnv, issues: ConfigIssue[]): Record<string, unknown> {
  const out = structuredClone(raw);
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || value === undefined) continue;
    const path = name
      .slice(ENV_PREFIX.length)
      .split('__')
      .map((part) => part.toLowerCase().replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase()));
    if (!TOP_LEVEL_KEYS.has(path[0]!)) continue;
    let parsed: unknown;
    try {
      parsed = parseYaml(value);
    } catch {
      issues.push({ path: path.join('.'), message: `${name} is not a valid YAML value` });
      continue;
    }
    let node: Record<string, unknown> = out;
    for (const key of path.slice(0, -1)) {
      const next = node[key];
      if (typeof next !== 'object' || next === null) node[key] = {};
      node = node[key] as Record<string, unknown>;
    }
    node[path[path.length - 1]!] = parsed;
  }
  return out;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
