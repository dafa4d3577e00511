import { chmod, mkdir, stat, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { createInterface, type Interface } from 'node:readline/promises';
import { Writable } from 'node:stream';
import { Document } from 'yaml';
import { z } from 'zod';
import { clientIdProblem, tenantProblem } from '../../config/entra-ids.js';
import { toConfigIssues } from '../../config/issues.js';
import { CLOUD_NAMES, configSchema, type CloudName } from '../../config/schema.js';
import { MI_CLIENT_ID, SETUPS, SETUP_FLOWS, adminSteps, renderAdminStepsText, setupName, type AdminStepsInput, type Setup } from '../../doctor/admin-steps.js';
import { Relay365Error } from '../../errors.js';
import { hashPassword } from '../../ingress/smtp/password.js';
import { SECRET_ENV } from './init.js';

/** A user name YAML reads back unquoted, as `relay365 user add` accepts it. */
const USER_NAME = /^[A-Za-z0-9][A-Za-z0-9._@+-]*$/;

/**
 * What init passes on to the admin steps as the user gave it: the certificate files and the federated
 * token source, issuer and subject (their meaning: {@link AdminStepsInput}).
 */
type SetupFiles = Pick<AdminStepsInput, 'keyFile' | 'certFile' | 'assertionFile' | 'assertionCommand' | 'issuer' | 'subject'>;

/** managed-identity: a user-assigned identity's client id (none: the host's system-assigned identity). */
interface ManagedIdentityChoice {
  managedIdentityClientId?: string;
}

/** What init asks for; flags fill in what they can, prompts the rest. */
interface Answers extends SetupFiles, ManagedIdentityChoice {
  cloud: CloudName;
  sandbox?: { url: string; smtpHost: string; smtpPort: number; caFile: string };
  tenant: string;
  clientId: string;
  setup: Setup;
  mailboxes: string[];
  /** app-secret with --store-secret: the secret typed (or piped), written to a 0600 file, never to the config. */
  secret?: string;
  users: Array<{ name: string; password: string }>;
}

/** The flags of `relay365 init` (commander's names): the private key file comes as `certKey` (`--cert-key`). */
export interface InitFlags extends Omit<SetupFiles, 'keyFile'>, ManagedIdentityChoice {
  nonInteractive?: boolean;
  output: string;
  force?: boolean;
  tenant?: string;
  clientId?: string;
  setup?: Setup;
  mailbox?: string[];
  cloud?: CloudName;
  dataDir: string;
  storeSecret?: boolean;
  certKey?: string;
  relayUser?: string[];
  sandboxUrl?: string;
  sandboxSmtpHost?: string;
  sandboxSmtpPort?: string;
  sandboxCa?: string;
}

function invalid(message: string): Relay365Error {
  return new Relay365Error('R365_INIT_INPUT_INVALID', message);
}

/** Each validator returns undefined when the answer is fine, else what is wrong with it. */
const check = {
  // The config schema's own rules, so init never writes a tenant or client id that serve would refuse.
  tenant: tenantProblem,
  clientId: clientIdProblem,
  setup: (v: string): string | undefined => ((SETUPS as readonly string[]).includes(v) ? undefined : `${v} is not one of ${SETUPS.join(', ')}`),
  cloud: (v: string): string | undefined => ((CLOUD_NAMES as readonly string[]).includes(v) ? undefined : `${v} is not one of ${CLOUD_NAMES.join(', ')}`),
  mailboxes: (v: string): string | undefined => {
    const list = splitList(v);
    if (list.length === 0) return 'give at least one mailbox address';
    const bad = list.filter((m) => !z.string().email().safeParse(m).success);
    return bad.length > 0 ? `not an e-mail address: ${bad.join(', ')}` : undefined;
  },
  userName: (v: string): string | undefined => (USER_NAME.test(v) ? undefined : `${v} is not a user name (letters, digits and . _ @ + -)`),
  url: (v: string): string | undefined => (z.string().url().safeParse(v).success ? undefined : `${v} is not a URL`),
  port: (v: string): string | undefined => (/^\d+$/.test(v) && Number(v) >= 1 && Number(v) <= 65535 ? undefined : `${v} is not a port number`),
  nonEmpty: (v: string): string | undefined => (v === '' ? 'must not be empty' : undefined),
};

/** An issuer URL, or empty (the admin steps then keep a placeholder). */
function optionalUrl(v: string): string | undefined {
  return v === '' ? undefined : check.url(v);
}

function splitList(v: string): string[] {
  return v
    .split(/[\s,;]+/)
    .map((s) => s.trim())
    .filter(Boolean);
}

/**
 * Questions on a terminal with node:readline. Hidden answers (the secret, passwords) are read with
 * the echo muted: readline writes what is typed to its output stream, which drops it meanwhile.
 */
class Prompter {
  private readonly rl: Interface;
  private muted = false;
  private readonly aborted = new AbortController();

  constructor() {
    const output = new Writable({
      write: (chunk: Buffer, _encoding, callback) => {
        if (!this.muted) process.stdout.write(chunk);
        callback();
      },
    });
    this.rl = createInterface({ input: process.stdin, output, terminal: true });
    // Ctrl-C and Ctrl-D end the questions; the promise of the open one rejects.
    this.rl.on('SIGINT', () => this.aborted.abort());
    this.rl.on('close', () => this.aborted.abort());
  }

  private async question(text: string): Promise<string> {
    try {
      return (await this.rl.question(text, { signal: this.aborted.signal })).trim();
    } catch {
      process.stdout.write('\n');
      throw invalid('Aborted: nothing was written.');
    }
  }

  /** Asks until `validate` accepts the answer; an empty answer takes the default. */
  async ask(label: string, options: { default?: string; validate?: (v: string) => string | undefined } = {}): Promise<string> {
    for (;;) {
      const answer = (await this.question(`${label}${options.default ? ` [${options.default}]` : ''}: `)) || (options.default ?? '');
      const problem = options.validate ? options.validate(answer) : check.nonEmpty(answer);
      if (problem === undefined) return answer;
      process.stdout.write(`  ${problem}\n`);
    }
  }

  /** Asks without showing what is typed. */
  async askHidden(label: string): Promise<string> {
    process.stdout.write(`${label}: `);
    this.muted = true;
    try {
      return await this.question('');
    } finally {
      this.muted = false;
      process.stdout.write('\n');
    }
  }

  close(): void {
    this.rl.close();
  }
}

/** Asks what the flags leave open. */
async function askAnswers(flags: InitFlags): Promise<Answers> {
  if (!process.stdin.isTTY) throw invalid('No terminal to ask on: pass every answer as a flag with --non-interactive (see relay365 init --help).');
  const p = new Prompter();
  try {
    console.log('relay365 init writes a config for sending through Microsoft 365, then prints the admin steps for your tenant.\n');
    const cloud = (flags.cloud ??
      (await p.ask('Microsoft cloud (global, usgov, usgov-dod, china, sandbox)', { default: 'global', validate: check.cloud }))) as CloudName;
    let sandbox: Answers['sandbox'];
    if (cloud === 'sandbox') {
      sandbox = {
        url: flags.sandboxUrl ?? (await p.ask('Sandbox URL', { default: 'https://localhost:10443', validate: check.url })),
        smtpHost: flags.sandboxSmtpHost ?? '127.0.0.1',
        smtpPort: Number(flags.sandboxSmtpPort ?? (await p.ask('Sandbox SMTP port', { default: '10587', validate: check.port }))),
        caFile: flags.sandboxCa ?? (await p.ask('Sandbox CA file', { default: './data/sandbox/ca.pem' })),
      };
    }
    const setup = (flags.setup ??
      (await p.ask(
        'Setup: app-secret (app-only, client secret), app-certificate (app-only, certificate), federated (app-only, workload identity federation), managed-identity (app-only, Azure host) or device-code (delegated)',
        { default: 'app-secret', validate: check.setup },
      ))) as Setup;
    // A managed identity has no app registration of ours: Azure knows its tenant and its client id.
    const managed = setup === 'managed-identity';
    const tenant = managed
      ? (flags.tenant ?? '')
      : (flags.tenant ?? (await p.ask('Tenant: the Directory (tenant) ID or a domain such as contoso.onmicrosoft.com', { validate: check.tenant })));
    const clientId = managed ? '' : (flags.clientId ?? (await p.ask('Application (client) ID of the app registration', { validate: check.clientId })));
    const federated: Partial<Answers> = {};
    if (setup === 'federated') {
      const source =
        flags.assertionFile !== undefined
          ? 'file'
          : flags.assertionCommand !== undefined
            ? 'command'
            : await p.ask('Where relay365 reads the federated token: env ($AZURE_FEDERATED_TOKEN_FILE, as AKS workload identity sets it), file, or command', {
                default: 'env',
                validate: (v) => (['env', 'file', 'command'].includes(v) ? undefined : `${v} is not one of env, file, command`),
              });
      if (source === 'file') federated.assertionFile = flags.assertionFile ?? (await p.ask('Token file (e.g. /var/run/secrets/tokens/azure-identity-token)'));
      if (source === 'command') federated.assertionCommand = flags.assertionCommand ?? (await p.ask('Command that prints the token'));
      const issuer =
        flags.issuer ??
        (await p.ask("Issuer URL of the workload's tokens (for the admin steps; empty: fill it in later)", { default: '', validate: optionalUrl }));
      const subject =
        flags.subject ??
        (await p.ask('Subject of its tokens, e.g. system:serviceaccount:<namespace>:<service account> (empty: fill it in later)', {
          default: '',
          validate: () => undefined,
        }));
      if (issuer) federated.issuer = issuer;
      if (subject) federated.subject = subject;
    }
    let managedIdentityClientId = flags.managedIdentityClientId;
    if (managed && managedIdentityClientId === undefined) {
      const kind = await p.ask("Managed identity: system (the host's own) or user (user-assigned)", {
        default: 'system',
        validate: (v) => (v === 'system' || v === 'user' ? undefined : `${v} is not system or user`),
      });
      if (kind === 'user') managedIdentityClientId = await p.ask('Client ID of the user-assigned managed identity', { validate: check.clientId });
    }
    let secret: string | undefined;
    let keyFile: string | undefined;
    let certFile: string | undefined;
    if (setup === 'app-secret' && flags.storeSecret) {
      for (;;) {
        secret = await p.askHidden(`Client secret value (not shown; stored in ${secretFile(flags.dataDir)}, mode 0600)`);
        if (secret !== '') break;
        console.log('  must not be empty');
      }
    }
    if (setup === 'app-certificate') {
      keyFile = flags.certKey ?? (await p.ask('Private key file of the app certificate (PEM)', { default: `${dataPath(flags.dataDir)}/app.key` }));
      certFile = flags.certFile ?? (await p.ask('Certificate file (PEM)', { default: `${dataPath(flags.dataDir)}/app.crt` }));
    }
    const mailboxes =
      flags.mailbox ??
      splitList(
        await p.ask(setup === 'device-code' ? 'Mailbox to send as (the user who signs in)' : 'Mailbox(es) to send as, comma-separated', {
          validate: check.mailboxes,
        }),
      );
    const users: Answers['users'] = [];
    const named = flags.relayUser ?? [];
    for (const name of named) users.push({ name, password: await askNewPassword(p, name) });
    if (flags.relayUser === undefined) {
      for (;;) {
        const name = await p.ask(users.length === 0 ? 'Local SMTP user for devices (a name; empty for none)' : 'Another local SMTP user (empty to finish)', {
          default: '',
          validate: (v) => (v === '' ? undefined : check.userName(v)),
        });
        if (name === '') break;
        users.push({ name, password: await askNewPassword(p, name) });
      }
    }
    return {
      cloud,
      ...(sandbox ? { sandbox } : {}),
      tenant,
      clientId,
      setup,
      mailboxes,
      ...(secret !== undefined ? { secret } : {}),
      ...(keyFile !== undefined ? { keyFile } : {}),
      ...(certFile !== undefined ? { certFile } : {}),
      ...federated,
      ...(managedIdentityClientId !== undefined ? { managedIdentityClientId } : {}),
      users,
    };
  } finally {
    p.close();
  }
}

async function askNewPassword(p: Prompter, name: string): Promise<string> {
  for (;;) {
    const first = await p.askHidden(`Password for ${name} (not shown)`);
    if (first === '') {
      console.log('  must not be empty');
      continue;
    }
    if ((await p.askHidden('Again')) === first) return first;
    console.log('  the two passwords differ; again');
  }
}

/** Reads stdin to its end, as lines (the secret and passwords of --non-interactive). */
async function stdinLines(): Promise<string[]> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8').split(/\r?\n/);
}

/** Takes every answer from the flags (and stdin), reporting every missing or invalid one at once. */
async function flagAnswers(flags: InitFlags): Promise<Answers> {
  const problems: string[] = [];
  const need = <T extends string>(value: T | undefined, flag: string, validate: (v: string) => string | undefined): T => {
    if (value === undefined) problems.push(`${flag} is required`);
    else {
      const problem = validate(value);
      if (problem) problems.push(`${flag}: ${problem}`);
    }
    return value as T;
  };
  const cloud = flags.cloud ?? 'global';
  const setup = need(flags.setup, '--setup', check.setup);
  // A managed identity has no app registration of ours: neither a tenant nor the app's client id is asked.
  const managed = setup === 'managed-identity';
  const tenant = managed ? (flags.tenant ?? '') : need(flags.tenant, '--tenant', check.tenant);
  const clientId = managed ? '' : need(flags.clientId, '--client-id', check.clientId);
  if (managed && flags.clientId !== undefined)
    problems.push(
      '--client-id names an app registration, which a managed identity has none of: give a user-assigned identity with --managed-identity-client-id',
    );
  if (flags.managedIdentityClientId !== undefined) {
    if (setup !== 'managed-identity') problems.push('--managed-identity-client-id only goes with --setup managed-identity');
    const problem = check.clientId(flags.managedIdentityClientId);
    if (problem) problems.push(`--managed-identity-client-id: ${problem}`);
  }
  for (const [flag, given] of [
    ['--assertion-file', flags.assertionFile],
    ['--assertion-command', flags.assertionCommand],
    ['--issuer', flags.issuer],
    ['--subject', flags.subject],
  ] as const)
    if (given !== undefined && setup !== 'federated') problems.push(`${flag} only goes with --setup federated`);
  if (flags.assertionFile !== undefined && flags.assertionCommand !== undefined) problems.push('give --assertion-file or --assertion-command, not both');
  if (flags.issuer !== undefined && optionalUrl(flags.issuer)) problems.push(`--issuer: ${optionalUrl(flags.issuer)!}`);
  const mailboxes = flags.mailbox ?? [];
  if (mailboxes.length === 0) problems.push('--mailbox is required (repeat it for several mailboxes)');
  for (const m of mailboxes) {
    const problem = check.mailboxes(m);
    if (problem) problems.push(`--mailbox: ${problem}`);
  }
  for (const name of flags.relayUser ?? []) {
    const problem = check.userName(name);
    if (problem) problems.push(`--relay-user: ${problem}`);
  }
  if (flags.sandboxUrl !== undefined && check.url(flags.sandboxUrl)) problems.push(`--sandbox-url: ${check.url(flags.sandboxUrl)!}`);
  if (flags.sandboxSmtpPort !== undefined && check.port(flags.sandboxSmtpPort)) problems.push(`--sandbox-smtp-port: ${check.port(flags.sandboxSmtpPort)!}`);
  if (flags.storeSecret && flags.setup !== undefined && flags.setup !== 'app-secret') problems.push('--store-secret only goes with --setup app-secret');

  // The secret and the passwords never go on the command line (other users see it in the process list): stdin, one per line.
  const wantsStdin = (flags.storeSecret === true && setup === 'app-secret') || (flags.relayUser ?? []).length > 0;
  const lines = wantsStdin && problems.length === 0 ? await stdinLines() : [];
  let secret: string | undefined;
  if (flags.storeSecret && setup === 'app-secret') {
    secret = lines.shift() ?? '';
    if (secret === '') problems.push('--store-secret: the first line of stdin must be the client secret value');
  }
  const users = (flags.relayUser ?? []).map((name) => {
    const password = lines.shift() ?? '';
    if (password === '' && problems.length === 0) problems.push(`--relay-user ${name}: its password must be the next line of stdin`);
    return { name, password };
  });
  if (problems.length > 0) throw invalid(`relay365 init --non-interactive cannot write a config:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  return {
    cloud,
    ...(cloud === 'sandbox'
      ? {
          sandbox: {
            url: flags.sandboxUrl ?? 'https://localhost:10443',
            smtpHost: flags.sandboxSmtpHost ?? '127.0.0.1',
            smtpPort: Number(flags.sandboxSmtpPort ?? 10587),
            caFile: flags.sandboxCa ?? './data/sandbox/ca.pem',
          },
        }
      : {}),
    tenant,
    clientId,
    setup,
    mailboxes,
    ...(secret !== undefined ? { secret } : {}),
    ...(setup === 'app-certificate'
      ? { keyFile: flags.certKey ?? `${dataPath(flags.dataDir)}/app.key`, certFile: flags.certFile ?? `${dataPath(flags.dataDir)}/app.crt` }
      : {}),
    ...(flags.assertionFile !== undefined ? { assertionFile: flags.assertionFile } : {}),
    ...(flags.assertionCommand !== undefined ? { assertionCommand: flags.assertionCommand } : {}),
    ...(flags.issuer !== undefined ? { issuer: flags.issuer } : {}),
    ...(flags.subject !== undefined ? { subject: flags.subject } : {}),
    ...(flags.managedIdentityClientId !== undefined ? { managedIdentityClientId: flags.managedIdentityClientId } : {}),
    users,
  };
}

/** The data folder without a trailing slash, as written in paths. */
function dataPath(dataDir: string): string {
  return dataDir.replace(/\/+$/, '') || '.';
}

function secretFile(dataDir: string): string {
  return `${dataPath(dataDir)}/client-secret`;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Writes a file that must not be overwritten unless asked: `wx` fails on an existing file. */
async function writeNew(path: string, content: string, mode: number, force: boolean): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  try {
    await writeFile(path, content, { mode, flag: force ? 'w' : 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST')
      throw new Relay365Error('R365_INIT_OUTPUT_EXISTS', `${path} exists already: choose another --output, or pass --force to replace it.`, { cause: err });
    throw err;
  }
  // `mode` applies only when the file is created; a replaced file keeps its old mode otherwise.
  await chmod(path, mode);
}

/** The config as YAML, with the comments a person needs to read it. */
async function configYaml(answers: Answers, flags: InitFlags, secretRef: string | undefined): Promise<string> {
  const auth: Record<string, unknown> = { flow: SETUP_FLOWS[answers.setup] };
  if (answers.setup !== 'managed-identity') Object.assign(auth, { tenant: answers.tenant, clientId: answers.clientId });
  if (secretRef) auth.clientSecret = secretRef;
  if (answers.setup === 'app-certificate') auth.certificate = { keyFile: answers.keyFile, certFile: answers.certFile };
  if (answers.assertionFile !== undefined) auth.assertionFile = answers.assertionFile;
  if (answers.assertionCommand !== undefined) auth.assertionCommand = answers.assertionCommand;
  if (answers.managedIdentityClientId !== undefined) auth.managedIdentityClientId = answers.managedIdentityClientId;
  const config: Record<string, unknown> = {
    dataDir: flags.dataDir,
    cloud: answers.cloud,
    ...(answers.sandbox ? { sandbox: answers.sandbox } : {}),
    auth,
    mailboxes: answers.mailboxes.map((address) => ({ address })),
  };
  if (answers.users.length > 0) {
    config.smtp = { users: await Promise.all(answers.users.map(async (u) => ({ name: u.name, passwordHash: await hashPassword(u.password) }))) };
  }
  // Never write a config relay365 would refuse.
  const parsed = configSchema.safeParse(config);
  if (!parsed.success)
    throw invalid(
      `The answers do not make a valid config: ${toConfigIssues(parsed.error)
        .map((i) => `${i.path}: ${i.message}`)
        .join('; ')}`,
    );

  const doc = new Document(config);
  doc.commentBefore =
    ` relay365 configuration, written by \`relay365 init\` (${setupName(answers.setup)}).\n` +
    ' Every field: docs/configuration.md. Check the Microsoft 365 side with: relay365 doctor --config ' +
    flags.output;
  const secretNode = doc.getIn(['auth', 'clientSecret'], true) as { comment?: string } | undefined;
  if (secretNode)
    secretNode.comment = secretRef?.startsWith('env:')
      ? ` the secret itself is set in the environment (${SECRET_ENV}), never here`
      : ' a file of mode 0600 holding only the secret';
  const flow = doc.getIn(['auth', 'flow'], true) as { comment?: string } | undefined;
  if (flow && answers.setup === 'federated' && answers.assertionFile === undefined && answers.assertionCommand === undefined)
    flow.comment =
      ' the token is read from the file $AZURE_FEDERATED_TOKEN_FILE names (AKS workload identity sets it); or set assertionFile / assertionCommand';
  if (flow && answers.setup === 'managed-identity' && answers.managedIdentityClientId === undefined)
    flow.comment = " the host's system-assigned identity; managedIdentityClientId: <client id> for a user-assigned one";
  const users = doc.getIn(['smtp', 'users'], true) as { commentBefore?: string } | undefined;
  if (users) users.commentBefore = ' devices log in to the relay with these names; scrypt hashes of their passwords (relay365 user add NAME makes more)';
  return doc.toString({ lineWidth: 0 });
}

/** What `relay365 init` does once its flags are parsed: asks, writes the config, prints the admin steps. */
export async function runInit(flags: InitFlags): Promise<void> {
  // Refuse before asking anything: answering ten questions to learn the file exists helps nobody.
  if (!flags.force && (await exists(flags.output))) {
    throw new Relay365Error('R365_INIT_OUTPUT_EXISTS', `${flags.output} exists already: choose another --output, or pass --force to replace it.`);
  }
  const answers = flags.nonInteractive ? await flagAnswers(flags) : await askAnswers(flags);
  let secretRef: string | undefined;
  if (answers.setup === 'app-secret') {
    if (answers.secret !== undefined) {
      const file = secretFile(flags.dataDir);
      // The config reads a relative path from its own folder (config/paths.ts): the file goes where it will look.
      const onDisk = resolve(dirname(flags.output), file);
      await mkdir(dirname(onDisk), { recursive: true, mode: 0o700 });
      await writeNew(onDisk, `${answers.secret}\n`, 0o600, flags.force === true);
      secretRef = `file:${file}`;
    } else {
      secretRef = `env:${SECRET_ENV}`;
    }
  }
  // 0600: the file holds password hashes of the relay's users.
  await writeNew(flags.output, await configYaml(answers, flags, secretRef), 0o600, flags.force === true);

  const managed = answers.setup === 'managed-identity';
  const input: AdminStepsInput = {
    setup: answers.setup,
    tenant: answers.tenant,
    clientId: managed ? (answers.managedIdentityClientId ?? MI_CLIENT_ID) : answers.clientId,
    ...(managed ? { userAssigned: answers.managedIdentityClientId !== undefined } : {}),
    ...(answers.assertionFile !== undefined ? { assertionFile: answers.assertionFile } : {}),
    ...(answers.assertionCommand !== undefined ? { assertionCommand: answers.assertionCommand } : {}),
    ...(answers.issuer !== undefined ? { issuer: answers.issuer } : {}),
    ...(answers.subject !== undefined ? { subject: answers.subject } : {}),
    mailboxes: answers.mailboxes,
    cloud: answers.cloud,
    configPath: flags.output,
    ...(secretRef ? { secretRef } : {}),
    ...(answers.keyFile ? { keyFile: answers.keyFile } : {}),
    ...(answers.certFile ? { certFile: answers.certFile } : {}),
  };
  console.log(`\nWrote ${flags.output} (${setupName(answers.setup)}).`);
  if (secretRef?.startsWith('file:')) console.log(`The client secret is in ${secretRef.slice(5)} (mode 0600); the config refers to it as ${secretRef}.`);
  if (secretRef?.startsWith('env:')) console.log(`The config reads the client secret from $${SECRET_ENV}: set it where relay365 runs.`);
  if (answers.cloud === 'sandbox') console.log('Cloud: the local sandbox, which plays the tenant; a real tenant needs these steps:');
  console.log(
    managed
      ? `\nAdmin steps for the ${answers.managedIdentityClientId ? `user-assigned managed identity ${answers.managedIdentityClientId}` : "host's system-assigned managed identity"}:\n`
      : `\nAdmin steps for tenant ${answers.tenant}, app ${answers.clientId}:\n`,
  );
  console.log(renderAdminStepsText(adminSteps(input)));
}
