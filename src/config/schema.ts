import { z } from 'zod';

/**
 * A secret is never written inline unless the user insists: `env:NAME` reads an environment
 * variable, `file:PATH` reads a file (keep it mode 0600). A plain string is taken as the secret itself.
 */
export const secretRefSchema = z.string().min(1, 'must not be empty');

export const logSchema = z
  .object({
    level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  })
  .strict();

/** The relay365 config file (`relay365.yaml`). Later parts add their sections here. */
export const configSchema = z
  .object({
    /** Where relay365 keeps its database, keys and generated certificates. */
    dataDir: z.string().min(1).default('./data'),
    log: logSchema.default({ level: 'info' }),
  })
  .strict();

export type Config = z.infer<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
