import { Command } from 'commander';
import { Relay365Error } from '../../errors.js';
import { hashPassword } from '../../ingress/smtp/password.js';

/** A name YAML reads back as the same string without quotes. */
const PLAIN_NAME = /^[A-Za-z0-9][A-Za-z0-9._@+-]*$/;

function invalid(message: string): Relay365Error {
  return new Relay365Error('R365_PASSWORD_INPUT_INVALID', message);
}

/** Reads stdin to its end and returns its first line (without the line ending). */
async function firstLineOfStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? '';
}

/**
 * Asks for a password on the terminal without echoing it: raw mode, so that no keystroke is shown;
 * Backspace edits, Enter ends, Ctrl-C and Ctrl-D abort.
 */
function askHidden(prompt: string): Promise<string> {
  const input = process.stdin;
  process.stderr.write(prompt);
  return new Promise((resolve, reject) => {
    let typed = '';
    const finish = (err?: Error): void => {
      input.off('data', onData);
      input.setRawMode(false);
      input.pause();
      process.stderr.write('\n');
      if (err) reject(err);
      else resolve(typed);
    };
    const onData = (chunk: Buffer): void => {
      for (const ch of chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return finish();
        if (ch === '\u0003' || ch === '\u0004') return finish(invalid('Aborted: no password was entered.'));
        if (ch === '\u007f' || ch === '\b') typed = [...typed].slice(0, -1).join('');
        else if (ch >= ' ') typed += ch;
      }
    };
    input.setRawMode(true);
    input.resume();
    input.on('data', onData);
  });
}

/** The password of a new user: the first line of stdin, or asked twice on the terminal without echo. */
export async function readPassword(fromStdin: boolean): Promise<string> {
  if (fromStdin) {
    const password = await firstLineOfStdin();
    if (password === '') throw invalid('--password-stdin read an empty password: pipe the password in, followed by a newline.');
    return password;
  }
  if (!process.stdin.isTTY) throw invalid('No terminal to ask for the password on: pipe it in with --password-stdin.');
  const first = await askHidden('Password: ');
  if (first === '') throw invalid('The password is empty: type one, or pipe it in with --password-stdin.');
  const second = await askHidden('Password again: ');
  if (first !== second) throw invalid('The two passwords differ: run the command again.');
  return first;
}

/**
 * `relay365 user add NAME [--password-stdin]`: hashes a password for a local SMTP user (scrypt) and
 * prints the config lines to paste under `smtp.users:`. The password itself is never printed.
 */
export function userCommand(): Command {
  const user = new Command('user').description('Local SMTP relay users (devices that log in with a name and password).');
  user
    .command('add')
    .description('Hash a password for a new SMTP user and print the lines to paste under smtp.users: in the config.')
    .argument('<name>', 'the user name the device logs in with')
    .option('--password-stdin', 'read the password from the first line of stdin instead of asking twice')
    .action(async (name: string, flags: { passwordStdin?: boolean }) => {
      // eslint-disable-next-line no-control-regex
      if (/[\x00-\x1f\x7f]/.test(name)) throw invalid('The user name must not contain control characters.');
      const password = await readPassword(flags.passwordStdin === true);
      const hash = await hashPassword(password);
      // JSON strings are YAML double-quoted scalars: any other name stays exact when quoted so.
      console.log(`- name: ${PLAIN_NAME.test(name) ? name : JSON.stringify(name)}\n  passwordHash: ${hash}`);
      if (process.stderr.isTTY) console.error('Paste these lines under smtp.users: in the config, then restart relay365.');
    });
  return user;
}
