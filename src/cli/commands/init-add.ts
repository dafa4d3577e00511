import { randomBytes } from 'node:crypto';
import { chmod, chown, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { isMap, isScalar, isSeq, parseDocument, YAMLMap, YAMLSeq, type Document } from 'yaml';
import { z } from 'zod';
import { formatConfigIssues, loadConfig, type ConfigIssue } from '../../config/index.js';
import { Relay365Error, isRelay365Error } from '../../errors.js';
import { hashPassword } from '../../ingress/smtp/password.js';
import { readPassword } from './user.js';

/** A user name YAML reads back unquoted, as `relay365 user add` and init accept it. */
const USER_NAME = /^[A-Za-z0-9][A-Za-z0-9._@+-]*$/;

/** The flags of `relay365 init --add-mailbox / --add-user` (registered in init.ts). */
export interface InitAddFlags {
  output: string;
  addMailbox?: string[];
  addUser?: string[];
  passwordStdin?: boolean;
  nonInteractive?: boolean;
}

function invalid(message: string): Relay365Error {
  return new Relay365Error('R365_INIT_INPUT_INVALID', message);
}

/** The items of a sequence at `path`, created (with its parent maps) when missing. */
function sequenceAt(doc: Document, path: string[]): YAMLSeq {
  const found: unknown = doc.getIn(path, true);
  if (found === undefined || found === null || (isScalar(found) && found.value === null)) {
    const seq = new YAMLSeq();
    // A parent map that does not exist yet is made a block mapping, as init writes it.
    for (let i = 1; i < path.length; i++) {
      const parent: unknown = doc.getIn(path.slice(0, i), true);
      if (parent === undefined || parent === null || (isScalar(parent) && parent.value === null)) doc.setIn(path.slice(0, i), new YAMLMap());
      else if (!isMap(parent)) throw invalid(`${path.slice(0, i).join('.')} in the config is not a mapping: fix it by hand, then run init again.`);
    }
    doc.setIn(path, seq);
    return seq;
  }
  if (!isSeq(found)) throw invalid(`${path.join('.')} in the config is not a list: fix it by hand, then run init again.`);
  return found;
}

/** The string `key` of each map item of a sequence (a mailbox's address, a user's name). */
function valuesOf(seq: YAMLSeq, key: string): string[] {
  return seq.items.flatMap((item) => {
    if (!isMap(item)) return [];
    const value: unknown = item.get(key);
    return typeof value === 'string' ? [value] : [];
  });
}

/** Mailbox addresses and their aliases already in the config, lower-case. */
function sendersOf(seq: YAMLSeq): Set<string> {
  const out = new Set(valuesOf(seq, 'address').map((a) => a.toLowerCase()));
  for (const item of seq.items) {
    const aliases: unknown = isMap(item) ? item.get('aliases') : undefined;
    if (isSeq(aliases)) for (const a of aliases.items) if (isScalar(a) && typeof a.value === 'string') out.add(a.value.toLowerCase());
  }
  return out;
}

/**
 * The config file's text read as a YAML document, with its comments. A parse error names its line and
 * column only: the line itself may hold a secret (as loadConfig reports it).
 */
async function readDocument(path: string): Promise<{ doc: Document; file: FileOwnership }> {
  let text: string;
  let file: FileOwnership;
  try {
    [text, file] = await Promise.all([readFile(path, 'utf8'), stat(path).then((s) => ({ mode: s.mode & 0o777, uid: s.uid, gid: s.gid }))]);
  } catch (cause) {
    throw new Relay365Error(
      'R365_CONFIG_NOT_FOUND',
      `Cannot read config file ${path}: ${(cause as NodeJS.ErrnoException).code ?? String(cause)}. ` +
        'Give the config to edit with --output, or run `relay365 init` without --add-mailbox / --add-user to write one.',
      { cause },
    );
  }
  const doc = parseDocument(text);
  const error = doc.errors[0];
  if (error) {
    const where = error.linePos?.[0] ? ` (line ${error.linePos[0].line}, column ${error.linePos[0].col})` : '';
    throw new Relay365Error('R365_CONFIG_INVALID', `${path} is not valid YAML${where}: fix it by hand, then run init again (relay365 config check shows it).`);
  }
  if (!isMap(doc.contents)) throw new Relay365Error('R365_CONFIG_INVALID', `${path} must hold a YAML mapping at its top level.`);
  return { doc, file };
}

/** What the replaced file keeps of the old one: its mode, owner and group. */
interface FileOwnership {
  mode: number;
  uid: number;
  gid: number;
}

/**
 * Writes `text` over `path` atomically: a temporary file beside it (so a crash leaves the old config or
 * the new one, never half of one), checked with the loader serve uses, flushed to disk, then renamed.
 * Nothing is replaced when the new config would not pass `relay365 config check`.
 */
async function replaceChecked(path: string, text: string, owner: FileOwnership): Promise<void> {
  const { mode } = owner;
  const temp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    // 'wx': never follows a file someone placed at that name. The mode is set again below: the umask
    // narrows the one given to open.
    const file = await open(temp, 'wx', mode);
    try {
      await file.writeFile(text, 'utf8');
      await file.sync();
    } finally {
      await file.close();
    }
    await chmod(temp, mode);
    // The group too: a service reads its config through it (root:relay365 0640, docs/operations.md).
    if (process.platform !== 'win32') {
      await chown(temp, owner.uid, owner.gid).catch((cause: unknown) => {
        throw new Relay365Error(
          'R365_INIT_INPUT_INVALID',
          `Cannot give the new ${path} the owner and group of the old one (uid ${owner.uid}, gid ${owner.gid}): ${(cause as NodeJS.ErrnoException).code ?? String(cause)}. Run init as the file's owner or as root (sudo).`,
          { cause },
        );
      });
    }
    try {
      // In the same folder, so paths relative to the config resolve as they will for serve.
      await loadConfig({ path: temp });
    } catch (err) {
      const issues = isRelay365Error(err) ? (err.details?.issues as ConfigIssue[] | undefined) : undefined;
      if (!issues) throw err;
      throw new Relay365Error(
        'R365_CONFIG_INVALID',
        `${path} is left as it was: with this change it would have ${issues.length} problem(s):\n${formatConfigIssues(issues)}`,
        { details: { issues }, cause: err },
      );
    }
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
  // The rename itself is durable once the folder is flushed (not every platform can open a folder).
  const folder = await open(dirname(path), 'r').catch(() => undefined);
  await folder?.sync().catch(() => undefined);
  await folder?.close();
}

/**
 * `relay365 init --add-mailbox ADDRESS` / `--add-user NAME`: adds mailboxes and SMTP users to an
 * existing config, keeping its comments, order and layout; refuses one already there; replaces the
 * file atomically with its owner, group and mode kept (without access for others once it holds a
 * password hash); then says how to make the running relay read it.
 */
export async function runInitAdd(flags: InitAddFlags): Promise<void> {
  const path = flags.output;
  const mailboxes = flags.addMailbox ?? [];
  const users = flags.addUser ?? [];
  const problems: string[] = [];
  for (const m of mailboxes) if (!z.string().email().safeParse(m).success) problems.push(`--add-mailbox ${m}: not an e-mail address`);
  for (const u of users) if (!USER_NAME.test(u)) problems.push(`--add-user ${u}: use letters, digits and . _ @ + - (starting with a letter or digit)`);
  if (users.length > 1) problems.push('--add-user: one user at a time (each asks for its password); run init again for the next');
  const { doc, file } = await readDocument(path);

  const mailboxSeq = mailboxes.length > 0 ? sequenceAt(doc, ['mailboxes']) : undefined;
  if (mailboxSeq) {
    const senders = sendersOf(mailboxSeq);
    for (const m of mailboxes) {
      if (senders.has(m.toLowerCase())) problems.push(`--add-mailbox ${m}: ${path} has this mailbox (or alias) already`);
      senders.add(m.toLowerCase());
    }
  }
  const userSeq = users.length > 0 ? sequenceAt(doc, ['smtp', 'users']) : undefined;
  if (userSeq) {
    const names = new Set(valuesOf(userSeq, 'name'));
    for (const u of users) if (names.has(u)) problems.push(`--add-user ${u}: ${path} has this user already (to change its password, replace its passwordHash with relay365 user add ${u})`);
  }
  if (problems.length > 0) throw invalid(`Nothing was changed:\n  - ${problems.join('\n  - ')}`);

  for (const m of mailboxes) mailboxSeq!.add(doc.createNode({ address: m }));
  const [user] = users;
  if (user !== undefined) {
    const password = await readPassword(flags.passwordStdin === true || flags.nonInteractive === true);
    userSeq!.add(doc.createNode({ name: user, passwordHash: await hashPassword(password) }));
  }
  // A password hash is a secret to guess passwords from: none for others. The group keeps its access,
  // through which the service reads the config.
  const mode = user !== undefined ? file.mode & 0o770 : file.mode;
  // As the file was written: flow lists without inner spaces, no long line folded.
  await replaceChecked(path, doc.toString({ flowCollectionPadding: false, lineWidth: 0 }), { ...file, mode });

  for (const m of mailboxes) console.log(`Added mailbox ${m} to ${path}.`);
  if (user !== undefined) console.log(`Added SMTP user ${user} to ${path}.`);
  if (mailboxes.length > 0)
    console.log('A new mailbox needs the same Microsoft 365 permissions as the others (relay365 init --help, docs/microsoft-365-setup.md); relay365 doctor --mailbox ADDRESS checks it.');
  console.log('Make the running relay read it: systemctl reload relay365 (or kill -HUP <pid of relay365 serve>); no restart is needed.');
}
