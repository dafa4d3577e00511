import { readFile } from 'node:fs/promises';
import { Relay365Error } from '../errors.js';

/**
 * Resolves a secret reference: `env:NAME` reads the environment, `file:PATH` reads a file (trailing
 * newline removed), anything else is the secret itself. The secret never appears in the error.
 * @throws Relay365Error `R365_SECRET_UNRESOLVED`
 */
export async function resolveSecret(ref: string, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  if (ref.startsWith('env:')) {
    const name = ref.slice(4);
    const value = env[name];
    if (value === undefined || value === '') {
      throw new Relay365Error('R365_SECRET_UNRESOLVED', `Environment variable ${name} is not set; the config refers to it as ${ref}.`);
    }
    return value;
  }
  if (ref.startsWith('file:')) {
    const path = ref.slice(5);
    try {
      return (await readFile(path, 'utf8')).replace(/\r?\n$/, '');
    } catch (cause) {
      throw new Relay365Error('R365_SECRET_UNRESOLVED', `Cannot read secret file ${path} (${(cause as NodeJS.ErrnoException).code ?? 'error'}).`, {
        cause,
      });
    }
  }
  return ref;
}
