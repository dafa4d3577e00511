export { configSchema, secretRefSchema, type Config, type ConfigInput } from './schema.js';
export { loadConfig, applyEnvOverrides, ENV_PREFIX, type LoadConfigOptions } from './load.js';
export { resolveSecret } from './secret.js';
export { toConfigIssues, formatConfigIssues, type ConfigIssue } from './issues.js';
