import type { z } from 'zod';

/** One problem found in a config or scenario, with the dotted path of the offending field. */
export interface ConfigIssue {
  path: string;
  message: string;
}

/** Turns zod's issues into `{path, message}` pairs, paths dotted (`mailboxes.0.address`). */
export function toConfigIssues(error: z.ZodError): ConfigIssue[] {
  return error.issues.map((issue) => ({
    path: issue.path.length > 0 ? issue.path.map(String).join('.') : '(root)',
    message: issue.message,
  }));
}

/** Formats issues one per line, for error messages and the CLI. */
export function formatConfigIssues(issues: readonly ConfigIssue[]): string {
  return issues.map((i) => `  - ${i.path}: ${i.message}`).join('\n');
}
