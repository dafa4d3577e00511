import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import type { App, GraphFault, Scenario, SmtpFault, Tenant, TokenFault, User } from './scenario.js';
import { MailboxStore } from './mailbox-store.js';
import { buildNdr, type NdrInput } from './ndr.js';

/** One message the simulated Microsoft 365 accepted, exactly as it arrived. */
export interface ReceivedMessage {
  id: string;
  receivedAt: string;
  via: 'smtp' | 'graph';
  tenantId: string;
  /** The mailbox that authenticated (XOAUTH2 `user=` or Graph `/users/{id}`). */
  mailbox: string;
  /** Client id of the app whose token was used. */
  appId: string;
  envelope: { mailFrom: string; rcptTo: string[] };
  size: number;
  raw: Buffer;
  /** The reply the sandbox gave, e.g. `250 2.0.0 OK <...> [Hostname=...]`. */
  reply: string;
}

/** Counts of what the sandbox did, read by tests and `GET /sandbox/counters`. */
export interface SandboxCounters {
  /** Replies by basic and enhanced code, e.g. `{"250 2.0.0": 12, "535 5.7.3": 1}`. */
  smtpReplies: Record<string, number>;
  /** Throttling replies given (SMTP `4.3.2` thread limit, submission quota; Graph `429`). */
  throttled: number;
  /** Token endpoint requests, all and by grant type and by client id. */
  tokenRequests: number;
  tokenRequestsByGrant: Record<string, number>;
  tokenRequestsByClient: Record<string, number>;
  /** Token endpoint errors by AADSTS code or HTTP status. */
  tokenErrors: Record<string, number>;
  smtpConnections: number;
  /** Highest number of simultaneous authenticated connections seen per mailbox. */
  maxConcurrentByMailbox: Record<string, number>;
  graphRequests: number;
  /** NDRs and delay notifications placed in senders' Inboxes. */
  reportsDelivered: number;
}

function emptyCounters(): SandboxCounters {
  return {
    smtpReplies: {},
    throttled: 0,
    tokenRequests: 0,
    tokenRequestsByGrant: {},
    tokenRequestsByClient: {},
    tokenErrors: {},
    smtpConnections: 0,
    maxConcurrentByMailbox: {},
    graphRequests: 0,
    reportsDelivered: 0,
  };
}

function bump(map: Record<string, number>, key: string, by = 1): void {
  map[key] = (map[key] ?? 0) + by;
}

/** The refusals Exchange counts for continuous-error throttling, by the enhanced code of the block. */
export type ContinuousErrorKind = 'mailboxFull' | 'sendAsDenied' | 'invalidLicense' | 'tooManyRecipients' | 'invalidRecipients';

/** The outcome of asking a mailbox's quota for one more message. */
export type QuotaVerdict = 'ok' | 'rate' | 'recipients';

/**
 * Everything the sandbox knows and remembers: the scenario (replaceable at run time, so a test can
 * switch SMTP AUTH off mid-run), the received messages, the counters and each mailbox's quota windows.
 */
export class SandboxState {
  readonly messages: ReceivedMessage[] = [];
  counters: SandboxCounters = emptyCounters();
  private scenarioValue: Scenario;
  /** Per mailbox: times of accepted messages within the last scaled minute. */
  private readonly minuteWindow = new Map<string, number[]>();
  /** Per mailbox: [time, recipients] of accepted messages within the last scaled day. */
  private readonly dayWindow = new Map<string, Array<[number, number]>>();
  private readonly connections = new Map<string, number>();
  /** Per mailbox: bytes of the Sent Items copies of what it sent. */
  private readonly sentItems = new Map<string, number>();
  /** Per mailbox: the kind of its last refusals and how many in a row. */
  private readonly errorRuns = new Map<string, { kind: ContinuousErrorKind; count: number }>();
  /** Per mailbox: a continuous-error block, and which kind caused it. */
  private readonly errorBlocks = new Map<string, { until: number; kind: ContinuousErrorKind }>();
  /** Per tenant: [time, external recipients] of accepted messages within the last scaled day (TERRL). */
  private readonly externalWindow = new Map<string, Array<[number, number]>>();
  /** NDRs waiting for their delay, cleared by reset(). */
  private readonly pendingReports = new Set<NodeJS.Timeout>();
  /** The mailboxes' folders and messages (NDRs land in the Inbox), read through the Graph Inbox routes. */
  readonly mail = new MailboxStore();
  private tokenFaults: Array<TokenFault & { left: number }> = [];
  private smtpFaults: Array<SmtpFault & { left: number }> = [];
  private graphFaults: Array<GraphFault & { left: number }> = [];

  constructor(
    scenario: Scenario,
    /** When set, each accepted message is also written there as `<id>.eml`. */
    readonly emlDir?: string,
  ) {
    this.scenarioValue = scenario;
    this.loadFaults(scenario);
  }

  get scenario(): Scenario {
    return this.scenarioValue;
  }

  /** Replaces the scenario; quota windows and counters are kept, faults restart from the new list. */
  setScenario(scenario: Scenario): void {
    this.scenarioValue = scenario;
    this.loadFaults(scenario);
  }

  private loadFaults(scenario: Scenario): void {
    this.tokenFaults = scenario.faults.token.map((f) => ({ ...f, left: f.count ?? Infinity }));
    this.smtpFaults = scenario.faults.smtp.map((f) => ({ ...f, left: f.count ?? Infinity }));
    this.graphFaults = scenario.faults.graph.map((f) => ({ ...f, left: f.count ?? Infinity }));
  }

  /** Looks a tenant up by id or verified domain, as the authority path allows either. */
  findTenant(idOrDomain: string): Tenant | undefined {
    const key = idOrDomain.toLowerCase();
    return this.scenarioValue.tenants.find((t) => t.id.toLowerCase() === key || t.domain.toLowerCase() === key);
  }

  findApp(tenant: Tenant, clientId: string): App | undefined {
    return tenant.apps.find((a) => a.clientId.toLowerCase() === clientId.toLowerCase());
  }

  /** Finds a user by UPN or alias in any tenant. */
  findUser(address: string): { tenant: Tenant; user: User } | undefined {
    const key = address.toLowerCase();
    for (const tenant of this.scenarioValue.tenants) {
      const user = tenant.users.find((u) => u.upn.toLowerCase() === key || u.aliases.some((a) => a.toLowerCase() === key));
      if (user) return { tenant, user };
    }
    return undefined;
  }

  /** SMTP AUTH for this mailbox: its own setting, else the tenant's (the mailbox setting wins). */
  smtpAuthEnabled(tenant: Tenant, user: User): boolean {
    return user.smtpAuthEnabled ?? tenant.smtpAuthEnabled;
  }

  /** The next token fault that applies to this client, consuming one of its count. */
  takeTokenFault(clientId: string | undefined): TokenFault | undefined {
    const fault = this.tokenFaults.find((f) => f.left > 0 && (f.clientId === undefined || f.clientId === clientId));
    if (fault) fault.left -= 1;
    return fault;
  }

  /** The next SMTP fault for this stage and mailbox, consuming one of its count. */
  takeSmtpFault(stage: SmtpFault['stage'], mailbox: string | undefined): SmtpFault | undefined {
    const fault = this.smtpFaults.find(
      (f) => f.left > 0 && f.stage === stage && (f.mailbox === undefined || f.mailbox.toLowerCase() === mailbox?.toLowerCase()),
    );
    if (fault) fault.left -= 1;
    return fault;
  }

  /** The next Graph fault for this mailbox, consuming one of its count. */
  takeGraphFault(mailbox: string): GraphFault | undefined {
    const fault = this.graphFaults.find((f) => f.left > 0 && (f.mailbox === undefined || f.mailbox.toLowerCase() === mailbox.toLowerCase()));
    if (fault) fault.left -= 1;
    return fault;
  }

  /** Counts an SMTP reply by its basic and enhanced code. */
  recordSmtpReply(reply: string): void {
    const m = /^(\d{3})[ -](\d\.\d{1,3}\.\d{1,3})?/.exec(reply);
    if (m) bump(this.counters.smtpReplies, m[2] ? `${m[1]} ${m[2]}` : m[1]!);
  }

  recordTokenRequest(grantType: string, clientId: string | undefined): void {
    this.counters.tokenRequests += 1;
    bump(this.counters.tokenRequestsByGrant, grantType || '(none)');
    if (clientId) bump(this.counters.tokenRequestsByClient, clientId);
  }

  recordTokenError(code: string): void {
    bump(this.counters.tokenErrors, code);
  }

  recordThrottle(): void {
    this.counters.throttled += 1;
  }

  /** Registers an authenticated connection for the mailbox; returns how many it now holds. */
  openConnection(mailbox: string): number {
    const key = mailbox.toLowerCase();
    const n = (this.connections.get(key) ?? 0) + 1;
    this.connections.set(key, n);
    if (n > (this.counters.maxConcurrentByMailbox[key] ?? 0)) this.counters.maxConcurrentByMailbox[key] = n;
    return n;
  }

  closeConnection(mailbox: string): void {
    const key = mailbox.toLowerCase();
    const n = (this.connections.get(key) ?? 1) - 1;
    if (n <= 0) this.connections.delete(key);
    else this.connections.set(key, n);
  }

  connectionCount(mailbox: string): number {
    return this.connections.get(mailbox.toLowerCase()) ?? 0;
  }

  /**
   * Takes one message with `recipients` recipients from the mailbox's quota, or says which limit it
   * would break. Windows slide (Exchange's limits are per rolling minute and rolling 24 hours),
   * shortened by `limits.timeScale`.
   */
  consumeQuota(mailbox: string, recipients: number, now = Date.now()): QuotaVerdict {
    const limits = this.scenarioValue.limits;
    if (limits.unlimited) return 'ok';
    const key = mailbox.toLowerCase();
    const minuteMs = 60_000 / limits.timeScale;
    const dayMs = 86_400_000 / limits.timeScale;
    const minute = (this.minuteWindow.get(key) ?? []).filter((t) => t > now - minuteMs);
    const day = (this.dayWindow.get(key) ?? []).filter(([t]) => t > now - dayMs);
    this.minuteWindow.set(key, minute);
    this.dayWindow.set(key, day);
    if (minute.length >= limits.messagesPerMinute) return 'rate';
    const used = day.reduce((sum, [, n]) => sum + n, 0);
    if (used + recipients > limits.recipientsPerDay) return 'recipients';
    minute.push(now);
    day.push([now, recipients]);
    return 'ok';
  }

  /**
   * How long until the mailbox's rolling minute has room for one more message (0: now). Exchange
   * does not refuse the 31st message in a minute: "any excess in message submission will be
   * throttled and successively carried over to the following minutes" (MS Learn, Exchange Online
   * limits, quoted in https://github.com/MicrosoftDocs/OfficeDocs-Support/issues/1150).
   */
  minuteSlotFreesInMs(mailbox: string, now = Date.now()): number {
    const limits = this.scenarioValue.limits;
    if (limits.unlimited) return 0;
    const minuteMs = 60_000 / limits.timeScale;
    const minute = (this.minuteWindow.get(mailbox.toLowerCase()) ?? []).filter((t) => t > now - minuteMs);
    if (minute.length < limits.messagesPerMinute) return 0;
    return Math.max(1, minute[minute.length - limits.messagesPerMinute]! + minuteMs - now);
  }

  /**
   * Whether saving this message's Sent Items copy would go over the mailbox's quota: every message
   * sent by SMTP AUTH or Graph sendMail is saved there (shared/M365.md "mailbox storage").
   */
  mailboxFull(user: User, size: number): boolean {
    if (user.mailboxQuotaBytes === null) return false;
    // What the mailbox received counts too: the NDRs in its Inbox, and wherever they were moved.
    const held = user.mailboxUsedBytes + (this.sentItems.get(user.upn.toLowerCase()) ?? 0) + this.mail.usedBytes(user.upn);
    return held + size > user.mailboxQuotaBytes;
  }

  /**
   * The tenant external recipient rate limit (TERRL): 500 x licences^0.7 + 9,500 external recipients
   * per rolling 24 hours, 5,000 for a trial tenant (Exchange Team blog "Introducing Exchange Online
   * Tenant Outbound Email Limits", 2025-02-24, and the Learn pages it links), or the scenario's override.
   */
  externalRecipientLimit(tenant: Tenant): number {
    if (tenant.externalRecipientsPerDay !== undefined) return tenant.externalRecipientsPerDay;
    if (tenant.trial) return 5000;
    return Math.floor(500 * Math.pow(tenant.licenses ?? 1, 0.7) + 9500);
  }

  /** A recipient outside the tenant's accepted domains (what TERRL counts). */
  isExternal(tenant: Tenant, address: string): boolean {
    const domain = (address.split('@')[1] ?? '').toLowerCase();
    return ![tenant.domain, ...(tenant.acceptedDomains ?? [])].some((d) => d.toLowerCase() === domain);
  }

  /**
   * Counts one external recipient against the tenant's rolling day; false when the limit is used up
   * (then Exchange accepts the message and bounces that recipient with an NDR). Scaled by `timeScale`.
   */
  takeExternalRecipient(tenant: Tenant, now = Date.now()): boolean {
    const limits = this.scenarioValue.limits;
    const dayMs = 86_400_000 / limits.timeScale;
    const key = tenant.id.toLowerCase();
    const day = (this.externalWindow.get(key) ?? []).filter(([t]) => t > now - dayMs);
    this.externalWindow.set(key, day);
    const used = day.reduce((sum, [, n]) => sum + n, 0);
    if (used >= this.externalRecipientLimit(tenant)) return false;
    day.push([now, 1]);
    return true;
  }

  /**
   * Places an NDR (or delay notification) in the sender's Inbox after `delayMs`, as Exchange does some
   * time after its `250`. Returns at once; reset() cancels reports not yet delivered.
   */
  scheduleReport(input: NdrInput, delayMs: number): void {
    const timer = setTimeout(() => {
      this.pendingReports.delete(timer);
      const ndr = buildNdr({ ...input, date: new Date() });
      this.mail.deliver(input.mailbox, ndr.raw);
      this.counters.reportsDelivered += 1;
    }, delayMs);
    timer.unref();
    this.pendingReports.add(timer);
  }

  /** Saves the Sent Items copy of a sent message (its size is what counts). */
  saveSentItem(mailbox: string, size: number): void {
    const key = mailbox.toLowerCase();
    this.sentItems.set(key, (this.sentItems.get(key) ?? 0) + size);
  }

  /** Empties the mailbox's Sent Items (what a retention policy or an admin does). */
  emptySentItems(mailbox: string): void {
    this.sentItems.delete(mailbox.toLowerCase());
  }

  /** The continuous-error block on the mailbox, if one holds now. */
  continuousErrorBlock(mailbox: string, now = Date.now()): ContinuousErrorKind | undefined {
    const block = this.errorBlocks.get(mailbox.toLowerCase());
    if (!block) return undefined;
    if (now < block.until) return block.kind;
    this.errorBlocks.delete(mailbox.toLowerCase());
    return undefined;
  }

  /**
   * Counts a refusal of one kind; `continuousErrorThreshold` of them in a row block the mailbox for
   * `continuousErrorBlockSeconds` (scaled). A success or another kind starts the run again.
   */
  recordSubmissionError(mailbox: string, kind: ContinuousErrorKind | undefined, now = Date.now()): void {
    const key = mailbox.toLowerCase();
    if (kind === undefined) {
      this.errorRuns.delete(key);
      return;
    }
    const run = this.errorRuns.get(key);
    const count = run?.kind === kind ? run.count + 1 : 1;
    const limits = this.scenarioValue.limits;
    if (count >= limits.continuousErrorThreshold) {
      this.errorBlocks.set(key, { until: now + (limits.continuousErrorBlockSeconds * 1000) / limits.timeScale, kind });
      this.errorRuns.delete(key);
    } else {
      this.errorRuns.set(key, { kind, count });
    }
  }

  /** Keeps an accepted message (and writes it as .eml when asked). */
  /** `at`: when Exchange accepted it, the moment its quota was taken (default now). */
  async addMessage(message: Omit<ReceivedMessage, 'id' | 'receivedAt'>, at = new Date()): Promise<ReceivedMessage> {
    const stored: ReceivedMessage = { id: randomUUID(), receivedAt: at.toISOString(), ...message };
    this.messages.push(stored);
    if (this.emlDir) {
      await mkdir(this.emlDir, { recursive: true });
      await writeFile(join(this.emlDir, `${stored.id}.eml`), stored.raw);
    }
    return stored;
  }

  /** Forgets messages and counters (quota windows too), for tests that reuse one sandbox. */
  reset(): void {
    this.messages.length = 0;
    this.counters = emptyCounters();
    this.minuteWindow.clear();
    this.dayWindow.clear();
    this.sentItems.clear();
    this.errorRuns.clear();
    this.errorBlocks.clear();
    this.externalWindow.clear();
    for (const timer of this.pendingReports) clearTimeout(timer);
    this.pendingReports.clear();
    this.mail.clear();
    this.loadFaults(this.scenarioValue);
  }
}
