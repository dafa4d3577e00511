import type { Command } from 'commander';
import { configOption } from './context.js';

/** The flags every subcommand made by {@link configSubcommand} takes. */
export interface ConfigJsonFlags {
  config?: string;
  json?: boolean;
}

/**
 * A subcommand of `parent` that reads the config (`--config`) and prints JSON with `--json`, as every
 * queue, suppression and apikey subcommand does. `options` adds the subcommand's own flags between the
 * two, where `--help` has always listed them.
 */
export function configSubcommand(parent: Command, usage: string, description: string, options: (command: Command) => Command = (c) => c): Command {
  return options(parent.command(usage).description(description).addOption(configOption())).option('--json', 'print JSON');
}

/** Prints a listing: with `--json` its JSON (indented); else `empty` when there is nothing, or one line per item. */
export function printList<T>(json: boolean | undefined, items: readonly T[], print: { json: () => unknown; empty: string; line: (item: T) => string }): void {
  if (json) {
    console.log(JSON.stringify(print.json(), null, 2));
    return;
  }
  if (items.length === 0) console.log(print.empty);
  for (const item of items) console.log(print.line(item));
}
