import { spawn } from 'node:child_process';
import { Relay365Error } from '../errors.js';
import { decodeClaims } from './claims.js';
import type { AcquiredToken, TokenSource } from './token-source.js';

/** Lifetime assumed for a token whose expiry cannot be read (an opaque token): re-run the command after it. */
const OPAQUE_TOKEN_SECONDS = 300;

/** How the token command is started: a program and its arguments, or the whole line handed to the platform's shell. */
export interface CommandSpawn {
  file: string;
  args: string[];
  /** Node's `shell: true`: `/bin/sh -c` on POSIX, `cmd.exe /d /s /c` on Windows (`ComSpec`). */
  shell: boolean;
}

/**
 * Characters that mean something to a POSIX shell outside quotes (POSIX "Shell Command Language", 2.2
 * Quoting: `| & ; < > ( ) $ \` \ " '` and, in some contexts, `* ? [ # ~ =`), plus `{ } !` (reserved words):
 * pipes, lists, redirections, subshells, globs, comments, expansions. A command using one needs the shell.
 */
const SHELL_SYNTAX = /[|&;<>()$`*?[\]{}~#!\n]/;

/**
 * Words that only a shell can run as a command: POSIX's special built-ins (2.14), the intrinsic utilities
 * with no program on the PATH (1.7: cd, read, umask...) and the reserved words (2.4).
 */
const SHELL_ONLY = new Set(
  (
    'break : continue . eval exec exit export readonly return set shift times trap unset ' +
    'alias bg cd command fc fg getopts hash jobs read type ulimit umask unalias wait source ' +
    'if then else elif fi do done case esac while until for in function select'
  ).split(' '),
);

/**
 * Splits a command line into argv the way `sh` would for a simple command (words separated by blanks,
 * '...' literal, "..." with \" \\ escapes, \x outside quotes), or returns undefined when the line needs a shell:
 * pipes, redirections, expansions (`$`, backquotes, globs), `NAME=value` prefixes, unbalanced quotes, or a
 * first word that is a shell built-in (`exit 3`, `cd /opt && ...`).
 */
export function parseCommandLine(command: string): string[] | undefined {
  const words: string[] = [];
  let word: string | undefined;
  let quote: "'" | '"' | undefined;
  for (let i = 0; i < command.length; i++) {
    const c = command[i]!;
    if (quote === "'") {
      if (c === "'") quote = undefined;
      else word += c;
    } else if (quote === '"') {
      if (c === '"') quote = undefined;
      else if (c === '$' || c === '`') return undefined;
      else if (c === '\\' && /["\\$`]/.test(command[i + 1] ?? '')) word += command[++i]!;
      else word += c;
    } else if (c === ' ' || c === '\t') {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else if (c === "'" || c === '"') {
      quote = c;
      word ??= '';
    } else if (c === '\\' && i + 1 < command.length && command[i + 1] !== '\n') {
      word = (word ?? '') + command[++i]!;
    } else if (SHELL_SYNTAX.test(c)) {
      return undefined;
    } else if (c === '=' && words.length === 0 && word !== undefined && /^[A-Za-z_][A-Za-z0-9_]*$/.test(word)) {
      return undefined; // NAME=value cmd: an assignment for the command's environment
    } else {
      word = (word ?? '') + c;
    }
  }
  if (quote !== undefined) return undefined;
  if (word !== undefined) words.push(word);
  return words.length > 0 && !SHELL_ONLY.has(words[0]!) ? words : undefined;
}

/**
 * How to start `command` on `platform`. On Windows the line goes to `cmd.exe` (Node's `shell: true`), since
 * helpers there are often batch files (`az.cmd`), which Windows starts only through cmd.exe, and users
 * write the command as they would at its prompt. Elsewhere a simple command runs as argv without any
 * shell (a distroless container has no `/bin/sh`); one using shell syntax goes to `/bin/sh`.
 */
export function tokenCommandSpawn(command: string, platform: NodeJS.Platform = process.platform): CommandSpawn {
  if (platform === 'win32') return { file: command, args: [], shell: true };
  const argv = parseCommandLine(command);
  if (argv === undefined) return { file: command, args: [], shell: true };
  return { file: argv[0]!, args: argv.slice(1), shell: false };
}

/**
 * Runs an external command that prints an access token on stdout (msmtp's `passwordeval`, mutt's
 * oauth2.py), started as {@link tokenCommandSpawn} says. `RELAY365_MAILBOX` tells it which mailbox the token is for. stderr is not kept: such
 * helpers sometimes echo what they send.
 */
export class CommandSource implements TokenSource {
  readonly appOnly = false;

  constructor(
    private readonly command: string,
    private readonly timeoutMs: number,
    /** The platform whose conventions start the command (tests of the Windows branch set `win32`). */
    private readonly platform: NodeJS.Platform = process.platform,
  ) {}

  acquire(mailbox: string): Promise<AcquiredToken> {
    return new Promise((resolve, reject) => {
      const how = tokenCommandSpawn(this.command, this.platform);
      const child = spawn(how.file, how.args, {
        env: { ...process.env, RELAY365_MAILBOX: mailbox },
        stdio: ['ignore', 'pipe', 'ignore'],
        shell: how.shell,
        // cmd.exe would otherwise flash a console window when the relay runs as a Windows service.
        windowsHide: true,
      });
      let out = '';
      const timer = setTimeout(() => child.kill('SIGKILL'), this.timeoutMs);
      child.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
      child.on('error', (cause) => {
        clearTimeout(timer);
        reject(
          new Relay365Error('R365_TOKEN_COMMAND_FAILED', `The token command for ${mailbox} could not start: ${cause.message}.`, { cause, retryable: true }),
        );
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        const token = out.trim().split(/\s+/)[0] ?? '';
        if (code !== 0 || token === '') {
          const why = signal ? `was stopped after ${this.timeoutMs} ms` : code !== 0 ? `exited with status ${code}` : 'printed nothing';
          reject(
            new Relay365Error('R365_TOKEN_COMMAND_FAILED', `The token command for ${mailbox} ${why}. Run it by hand: it must print only the access token.`, {
              retryable: true,
            }),
          );
          return;
        }
        const exp = decodeClaims(token)?.exp;
        const expiresOn = new Date(typeof exp === 'number' ? exp * 1000 : Date.now() + OPAQUE_TOKEN_SECONDS * 1000);
        resolve({ accessToken: token, expiresOn });
      });
    });
  }
}
