import type { AuthSettings, Config, MailboxConfig, MailboxTransport } from '../config/index.js';
import type { Mailer } from '../delivery/index.js';
import type { CloudEndpoints, Identity, TokenCacheStore, TokenSummary } from '../identity/index.js';
import type { Logger } from '../observe/index.js';
import type { SmtpProbe } from './smtp-probe.js';

/** `pass`: fine; `warn`: works, but should change; `fail`: sending cannot work; `skip`: not run. */
export type CheckStatus = 'pass' | 'warn' | 'fail' | 'skip';

/** What one check found. Never holds a token or a secret (the doctor scrubs every text besides). */
export interface CheckResult {
  status: CheckStatus;
  /** What was checked and seen, in one line. */
  detail: string;
  /** For `warn` and `fail`: why, from the catalogue where Microsoft's answer is involved. */
  cause?: string;
  /** For `warn` and `fail`: what to do, with the exact admin command where there is one. */
  fix?: string;
  /** Where Microsoft documents it. */
  doc?: string;
  /** Facts for programs (addresses, TLS version, claims summary); not part of the CLI's JSON. */
  data?: Record<string, unknown>;
}

/**
 * One setup step the doctor checks. `dependsOn` names checks that must not have failed: when one
 * did (or was skipped because of a failure), this check is skipped, since its answer would only
 * repeat the earlier failure.
 */
export interface Check {
  id: string;
  title: string;
  dependsOn?: readonly string[];
  run(ctx: DoctorContext): Promise<CheckResult>;
}

/** A check's result with the check's id and title: one line of the report. */
export interface CheckOutcome extends CheckResult {
  id: string;
  title: string;
}

/** The doctor's verdict: `ok` when no check failed (warnings and skips do not fail it). */
export interface DoctorReport {
  ok: boolean;
  /** The mailbox checked, or undefined when none could be chosen. */
  mailbox: string | undefined;
  results: CheckOutcome[];
}

/** A mailbox relay365 has paused, as the outbox records it (the store's `MailboxPause`). */
export interface PausedMailbox {
  mailbox: string;
  class: 'auth' | 'blocked';
  reply: string | undefined;
  explanation: { id: string; cause: string; fix: string } | undefined;
  since: Date;
  resumeRequestedAt: Date | undefined;
}

export interface DoctorOptions {
  /** The mailbox to check (default: the only configured one). */
  mailbox?: string | undefined;
  /** Also send a real test message to this address (and one from each of the mailbox's aliases). */
  sendTest?: string | undefined;
  /** Called before each check runs (for a live checklist). */
  onStart?(check: Check): void;
  /** Called after each check with its result. */
  onProgress?(check: Check, result: CheckResult): void;
  /**
   * Where delegated sign-ins are cached (the cluster's shared store with `queue.url`); default the
   * encrypted files under `dataDir`. App-only checks never read a cache: they ask for a fresh token.
   */
  cacheStore?: TokenCacheStore;
  /**
   * Reads the paused mailboxes from the outbox (the CLI and the HTTP API pass one); without it the
   * `paused` check is skipped.
   */
  pausedMailboxes?: () => Promise<PausedMailbox[]>;
  logger?: Logger;
  env?: NodeJS.ProcessEnv;
}

/**
 * What the checks share while they run: the inputs, and what earlier checks produced (the SMTP
 * connection, the token). `secrets` collects every secret seen, so the report can be scrubbed of them.
 */
export interface DoctorContext {
  config: Readonly<Config>;
  /** The mailbox as configured, once the config check found it. */
  mailbox: string | undefined;
  /** The mailbox asked for (or undefined for "the only one"). */
  requestedMailbox: string | undefined;
  mailboxConfig: MailboxConfig | undefined;
  /** The mailbox's merged auth settings. */
  auth: AuthSettings | undefined;
  cloud: CloudEndpoints;
  sendTest: string | undefined;
  logger: Logger;
  env: NodeJS.ProcessEnv;
  /** The mailbox's way out: most checks are about SMTP submission and skip for a Graph mailbox. */
  transport: MailboxTransport;
  cacheStore: TokenCacheStore | undefined;
  pausedMailboxes: (() => Promise<PausedMailbox[]>) | undefined;
  /** PEMs of the extra CAs to trust (sandbox, network.caFile) beside the system's. */
  extraCas: string[];
  probe?: SmtpProbe;
  identity?: Identity;
  accessToken?: string;
  claims?: Record<string, unknown>;
  summary?: TokenSummary;
  mailer?: Mailer;
  secrets: Set<string>;
}
