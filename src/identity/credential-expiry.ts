import { X509Certificate, createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { AuthSettings } from '../config/index.js';
import type { EventBus } from '../observe/index.js';

/** Warn this many days before a credential's end date (issue 19; doctor, webhook and dashboard share it). */
export const CREDENTIAL_WARN_DAYS = 30;

/** Which credential of the app registration ends: its client secret or its certificate. */
export type CredentialKind = 'client-secret' | 'certificate';

/** When a mailbox's app credential stops working, and where relay365 learnt it. */
export interface CredentialExpiry {
  kind: CredentialKind;
  /** Undefined when nothing tells: a secret without `auth.secretExpires`, a certificate given by thumbprint only. */
  expiresAt: Date | undefined;
  /** `certificate`: the certificate file's notAfter; `config`: `auth.secretExpires`; `graph`: the app registration's passwordCredentials. */
  source: 'certificate' | 'config' | 'graph' | undefined;
  /** The certificate's subject and SHA-1 thumbprint (what the Entra portal lists), for the fix text. */
  subject?: string;
  thumbprint?: string;
}

/** `ok`, `expiring` (under {@link CREDENTIAL_WARN_DAYS} days left), `expired`, or `unknown`. */
export type ExpiryStatus = 'ok' | 'expiring' | 'expired' | 'unknown';

/**
 * Reads the end date of an app-only mailbox's credential, locally: the certificate file's notAfter
 * (client-certificate), or `auth.secretExpires` (client-secret: Entra never hands a secret's end date
 * to the app holding it). Undefined for flows without an app credential (delegated, token-command).
 * Never throws: an unreadable certificate file gives `expiresAt: undefined`, the token check reports the file.
 */
export async function credentialExpiry(auth: AuthSettings): Promise<CredentialExpiry | undefined> {
  if (auth.flow === 'client-secret') {
    const expiresAt = auth.secretExpires !== undefined ? parseEndDate(auth.secretExpires) : undefined;
    return { kind: 'client-secret', expiresAt, source: expiresAt ? 'config' : undefined };
  }
  if (auth.flow === 'client-certificate') {
    const file = auth.certificate?.certFile;
    if (file === undefined) return { kind: 'certificate', expiresAt: undefined, source: undefined };
    try {
      const cert = new X509Certificate(await readFile(file));
      return {
        kind: 'certificate',
        expiresAt: new Date(cert.validTo),
        source: 'certificate',
        subject: cert.subject.replaceAll('\n', ', '),
        thumbprint: createHash('sha1').update(cert.raw).digest('hex').toUpperCase(),
      };
    } catch {
      return { kind: 'certificate', expiresAt: undefined, source: undefined };
    }
  }
  return undefined;
}

/**
 * A mailbox's credential end date as {@link credentialExpiry} reads it, and, for a client secret with
 * `auth.secretExpiresFromGraph`, the date its app registration lists (source `graph`). When Graph
 * cannot tell (a 403 without Application.Read.All, no secret with that hint), `auth.secretExpires`
 * stands and `graphError` says why. One reading for serve's monitor, doctor and `relay365 token`.
 */
export async function readCredentialExpiry(
  mailbox: string,
  auth: AuthSettings,
  fromGraph: ((mailbox: string, auth: AuthSettings) => Promise<Date | undefined>) | undefined,
): Promise<(CredentialExpiry & { graphError?: Error }) | undefined> {
  const expiry = await credentialExpiry(auth);
  if (!expiry || expiry.kind !== 'client-secret' || auth.secretExpiresFromGraph !== true || !fromGraph) return expiry;
  try {
    const listed = await fromGraph(mailbox, auth);
    if (listed) return { ...expiry, expiresAt: listed, source: 'graph' };
    return { ...expiry, graphError: new Error(`the app registration lists no client secret starting with the configured one's first three characters`) };
  } catch (err) {
    return { ...expiry, graphError: err instanceof Error ? err : new Error(String(err)) };
  }
}

/**
 * A date-only `secretExpires` (the portal shows the day) is taken as the end of that day in UTC, so
 * that the secret is not called expired while Entra still takes it.
 */
function parseEndDate(value: string): Date {
  return /^\d{4}-\d{2}-\d{2}$/.test(value) ? new Date(`${value}T23:59:59Z`) : new Date(value);
}

/** Days left (fractional, negative once past) and the status at `now`. */
export function expiryStatus(
  expiresAt: Date | undefined,
  now = new Date(),
  warnDays = CREDENTIAL_WARN_DAYS,
): { status: ExpiryStatus; daysLeft: number | undefined } {
  if (expiresAt === undefined) return { status: 'unknown', daysLeft: undefined };
  const daysLeft = (expiresAt.getTime() - now.getTime()) / 86_400_000;
  return { status: daysLeft <= 0 ? 'expired' : daysLeft < warnDays ? 'expiring' : 'ok', daysLeft };
}

/**
 * The exact steps to make a new credential and switch relay365 to it without a restart. Portal steps:
 * Microsoft Learn "Add and manage application credentials in Microsoft Entra ID"
 * (https://learn.microsoft.com/entra/identity-platform/how-to-add-credentials); the CLI:
 * `az ad app credential reset` (https://learn.microsoft.com/cli/azure/ad/app/credential), whose
 * `--append` keeps the old credential working until it is deleted.
 */
export function renewalSteps(expiry: Pick<CredentialExpiry, 'kind'>, auth: AuthSettings): string {
  const app = auth.clientId ?? '<application (client) id>';
  if (expiry.kind === 'client-secret') {
    const where = auth.clientSecret?.startsWith('file:')
      ? `write the new value to ${auth.clientSecret.slice(5)} (relay365 re-reads it on SIGHUP and when Entra refuses the old one)`
      : auth.clientSecret?.startsWith('env:')
        ? `set ${auth.clientSecret.slice(4)} to the new value and restart, or better point auth.clientSecret at a file: (re-read without a restart)`
        : 'put the new value in a file and set auth.clientSecret: file:/path/to/secret (mode 0600)';
    return (
      `Make a new client secret: Entra admin center > App registrations > ${app} > Certificates & secrets > Client secrets > New client secret ` +
      `(or: az ad app credential reset --id ${app} --append --display-name relay365 --years 1), copy its Value (not its Secret ID), ` +
      `${where}, set auth.secretExpires to its new Expires date, then delete the old secret.`
    );
  }
  const key = auth.certificate?.keyFile ?? '<key file>';
  const cert = auth.certificate?.certFile ?? '<cert file>';
  return (
    `Make a new certificate: openssl req -x509 -newkey rsa:2048 -sha256 -days 365 -nodes -subj "/CN=relay365" -keyout ${key}.new -out ${cert}.new; ` +
    `upload ${cert}.new at Entra admin center > App registrations > ${app} > Certificates & secrets > Certificates > Upload certificate ` +
    `(or: az ad app credential reset --id ${app} --append --cert @${cert}.new), move the two .new files over ${key} and ${cert} ` +
    '(relay365 reads them again on SIGHUP and when Entra refuses the old assertion), then delete the old certificate from the app.'
  );
}

/** One mailbox's credential as the monitor last read it. */
export interface MailboxCredential extends CredentialExpiry {
  mailbox: string;
  /** The settings it was read from (for {@link renewalSteps}). */
  auth: AuthSettings;
  status: ExpiryStatus;
  daysLeft: number | undefined;
}

export interface CredentialMonitorOptions {
  /** The merged auth settings of each mailbox (the identity's live map: a reload shows through). */
  auth: ReadonlyMap<string, AuthSettings>;
  /** Sets the gauge of one mailbox's credential (seconds since the epoch). */
  setExpiry(mailbox: string, kind: CredentialKind, expiresAtSeconds: number): void;
  /** Told once a day per mailbox while its credential is under the threshold or expired. */
  onExpiring(credential: MailboxCredential): void;
  /**
   * With `auth.secretExpiresFromGraph`: the secret's end date as the app registration lists it
   * (identity's `secretEndDates`); undefined or a throw keeps `auth.secretExpires`.
   */
  graphEndDate?: (mailbox: string, auth: AuthSettings) => Promise<Date | undefined>;
  /** Told why Graph could not give the end date (a 403 without Application.Read.All, say). */
  onGraphError?: (mailbox: string, err: unknown) => void;
  /** How often to read the files again (default hourly: a rotated certificate shows within the hour). */
  intervalMs?: number;
  warnDays?: number;
  now?: () => Date;
}

/**
 * Reads every mailbox's credential end date now and then, sets the metric, and tells `onExpiring`
 * once a day per mailbox while the credential is expiring or expired. The day is remembered per
 * mailbox and kind in memory, so the hourly checks of one process tell once; across restarts and
 * nodes the once a day is the webhook outbox's: {@link publishCredentialExpiring} gives the event an
 * id of its mailbox, kind, end date and day, and the store keeps one delivery per id and receiver.
 */
export class CredentialExpiryMonitor {
  private timer: NodeJS.Timeout | undefined;
  private readonly told = new Map<string, string>();
  private last: MailboxCredential[] = [];

  constructor(private readonly options: CredentialMonitorOptions) {}

  /** The credentials as last read (for the dashboard and the API). */
  get credentials(): readonly MailboxCredential[] {
    return this.last;
  }

  /** Reads every mailbox's credential once; resolves with what it read. */
  async check(): Promise<MailboxCredential[]> {
    const now = this.options.now?.() ?? new Date();
    const out: MailboxCredential[] = [];
    for (const [mailbox, auth] of this.options.auth) {
      const read = await readCredentialExpiry(mailbox, auth, this.options.graphEndDate);
      if (!read) continue;
      const { graphError, ...expiry } = read;
      if (graphError !== undefined) this.options.onGraphError?.(mailbox, graphError);
      const { status, daysLeft } = expiryStatus(expiry.expiresAt, now, this.options.warnDays);
      const credential: MailboxCredential = { ...expiry, mailbox, auth, status, daysLeft };
      out.push(credential);
      if (expiry.expiresAt) this.options.setExpiry(mailbox, expiry.kind, Math.floor(expiry.expiresAt.getTime() / 1000));
      if (status === 'expiring' || status === 'expired') {
        const day = now.toISOString().slice(0, 10);
        const key = `${mailbox}|${expiry.kind}`;
        if (this.told.get(key) !== day) {
          this.told.set(key, day);
          this.options.onExpiring(credential);
        }
      }
    }
    this.last = out;
    return out;
  }

  /** Checks now, then every `intervalMs` (the timer does not hold the process open). */
  start(onError: (err: unknown) => void): void {
    const run = (): void => void this.check().catch(onError);
    run();
    this.timer = setInterval(run, this.options.intervalMs ?? 3_600_000);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}

/** One client secret of an app registration as Graph lists it (its value is never listed). */
export interface PasswordCredentialView {
  endDateTime?: string | null;
  hint?: string | null;
  keyId?: string;
}

/**
 * The end date of `secret` as the app registration lists it: Graph's
 * `GET /v1.0/applications(appId='{clientId}')?$select=passwordCredentials` (needs Application.Read.All),
 * the `endDateTime` of the passwordCredential whose `hint`, the secret's first three characters, is the
 * secret's (Microsoft Learn, "passwordCredential resource type",
 * https://learn.microsoft.com/en-us/graph/api/resources/passwordcredential). Two secrets with the same
 * hint cannot be told apart: the earlier end date is taken, so a warning comes early rather than late.
 * Undefined when no secret of the app has that hint.
 * @throws Graph's refusal (403 without the permission), with its status and code.
 */
export async function readSecretEndDate(options: {
  graphHost: string;
  clientId: string;
  secret: string;
  token: () => Promise<string>;
  get: (url: string, headers: Record<string, string>) => Promise<{ status: number; body: unknown }>;
}): Promise<Date | undefined> {
  const url = `${options.graphHost.replace(/\/+$/, '')}/v1.0/applications(appId='${encodeURIComponent(options.clientId)}')?$select=passwordCredentials`;
  const res = await options.get(url, { authorization: `Bearer ${await options.token()}` });
  if (res.status !== 200) {
    const error = (res.body as { error?: { code?: string; message?: string } } | undefined)?.error;
    throw new Error(
      `Graph answered ${res.status}${error?.code ? ` ${error.code}` : ''}${error?.message ? `: ${error.message}` : ''} to GET /v1.0/applications(appId=...)`,
    );
  }
  const credentials = (res.body as { passwordCredentials?: PasswordCredentialView[] } | undefined)?.passwordCredentials ?? [];
  const hint = options.secret.slice(0, 3);
  const ends = credentials
    .filter((c) => c.hint === hint && typeof c.endDateTime === 'string')
    .map((c) => new Date(c.endDateTime!))
    .filter((d) => !Number.isNaN(d.getTime()))
    .sort((a, b) => a.getTime() - b.getTime());
  return ends[0];
}

/**
 * The id of a `credential.expiring` event: the same for a mailbox's credential all of a UTC day, on
 * every node and after a restart (the webhook deliveries are unique per event id and receiver, in
 * SQLite and PostgreSQL alike), and a new one the next day or once the end date changes.
 */
export function credentialEventId(c: Pick<MailboxCredential, 'mailbox' | 'kind' | 'expiresAt'>, at: Date): string {
  const key = [c.mailbox.toLowerCase(), c.kind, c.expiresAt?.toISOString() ?? '', at.toISOString().slice(0, 10)].join('|');
  return `evt_credential_${createHash('sha256').update(key).digest('hex').slice(0, 32)}`;
}

/** Publishes a `credential.expiring` event for an expiring or expired credential (with its end date). */
export function publishCredentialExpiring(events: EventBus, c: MailboxCredential, auth?: AuthSettings, at = new Date()): void {
  if (!c.expiresAt) return;
  const daysLeft = Math.floor(c.daysLeft ?? 0);
  events.publish({
    type: 'credential.expiring',
    mailbox: c.mailbox,
    kind: c.kind,
    expiresAt: c.expiresAt,
    daysLeft,
    expired: c.status === 'expired',
    fix: renewalSteps(c, auth ?? c.auth),
    eventId: credentialEventId(c, at),
    at,
  });
}
