import type { z } from 'zod';

/** One problem found in a config or scenario, with the dotted path of the offending field. */
export interface ConfigIssue {
  path: string;
  message: string;
}

/** A field's path as the docs write it: `smtp.allowlist[0].cidr`, `(root)` for the whole file. */
export function issuePath(path: readonly PropertyKey[]): string {
  if (path.length === 0) return '(root)';
  return path.map((key, i) => (typeof key === 'number' ? `[${key}]` : i === 0 ? String(key) : `.${String(key)}`)).join('');
}

/** Turns zod's issues into `{path, message}` pairs (`smtp.allowlist[0].cidr`). */
export function toConfigIssues(error: z.ZodError): ConfigIssue[] {
  return error.issues.map((issue) => ({ path: issuePath(issue.path), message: issue.message }));
}

/** Formats issues one per line, for error messages and the CLI. */
export function formatConfigIssues(issues: readonly ConfigIssue[]): string {
  return issues.map((i) => `  - ${i.path}: ${i.message}`).join('\n');
}
