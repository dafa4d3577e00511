import type { HttpsNetworkClient } from '../identity/index.js';
import { scrubSecrets } from '../observe/index.js';

/**
 * The few Microsoft Graph mail calls the NDR reader makes, as one mailbox's app (Mail.Read to read,
 * Mail.ReadWrite to move or categorize). Each is Microsoft Learn's:
 * - `GET /users/{id}/mailFolders/inbox/messages/delta` ("message: delta"; "Get incremental changes to
 *   messages in a folder"): pages linked by `@odata.nextLink`, the round ends with `@odata.deltaLink`,
 *   which the next round starts from; `changeType=created` asks for new messages only; an expired
 *   state token answers `410 Gone` and the sync starts over;
 * - `GET /users/{id}/messages/{id}/$value` ("Get MIME content of a message");
 * - `POST /users/{id}/messages/{id}/move` with `destinationId` ("message: move");
 * - `PATCH /users/{id}/messages/{id}` with `categories` ("Update message");
 * - `GET|POST /users/{id}/mailFolders/inbox/childFolders` ("List childFolders", "Create child folder").
 */

/** The properties the reader asks the delta query for. */
export interface DeltaMessage {
  id: string;
  subject?: string;
  from?: { emailAddress?: { address?: string; name?: string } };
  receivedDateTime?: string;
  categories?: string[];
  /** Set on a message that left the folder since the last round. */
  '@removed'?: unknown;
}

export interface DeltaPage {
  messages: DeltaMessage[];
  /** Where the next page is (this round goes on). */
  nextLink?: string;
  /** Where the next round starts (this round is over). */
  deltaLink?: string;
}

/** A Graph answer other than the one wanted: status, Graph's error code and message (scrubbed). */
export class GraphMailError extends Error {
  constructor(
    readonly status: number,
    readonly graphCode: string | undefined,
    message: string,
  ) {
    super(message);
    this.name = 'GraphMailError';
  }
}

export interface GraphMailClientOptions {
  graphHost: string;
  http: Pick<HttpsNetworkClient, 'send'>;
  /** A Graph token for the mailbox (the reader's own token provider). */
  token: (mailbox: string) => Promise<string>;
  /** Drops the mailbox's token after a 401 (the next call fetches a new one). */
  invalidate?: (mailbox: string) => void;
  timeoutMs?: number;
  /** Messages per delta page asked for (`Prefer: odata.maxpagesize`); Graph's default is 10. */
  pageSize?: number;
}

/** Graph mail for the NDR reader and `doctor`. */
export class GraphMailClient {
  constructor(private readonly options: GraphMailClientOptions) {}

  private user(mailbox: string, path: string): string {
    return `${this.options.graphHost.replace(/\/+$/, '')}/v1.0/users/${encodeURIComponent(mailbox)}${path}`;
  }

  private async call(mailbox: string, method: string, url: string, want: number[], body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: unknown }> {
    const attempt = async (): Promise<{ status: number; body: unknown }> => {
      const token = await this.options.token(mailbox);
      const res = await this.options.http.send<unknown>(
        method,
        url,
        {
          headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
          ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        },
        this.options.timeoutMs,
      );
      return { status: res.status, body: res.body };
    };
    let res = await attempt();
    if (res.status === 401 && this.options.invalidate) {
      // An expired or revoked token: once more with a fresh one, as the Graph transport does.
      this.options.invalidate(mailbox);
      res = await attempt();
    }
    if (!want.includes(res.status)) {
      const error = (res.body as { error?: { code?: string; message?: string } } | undefined)?.error;
      throw new GraphMailError(
        res.status,
        error?.code,
        scrubSecrets(`Graph answered ${res.status}${error?.code ? ` ${error.code}` : ''}${error?.message ? `: ${error.message}` : ''} to ${method} ${new URL(url).pathname}`),
      );
    }
    return res;
  }

  /** One page of the Inbox's delta round: from `cursor` (a next or delta link) or a new round. */
  async delta(mailbox: string, cursor: string | undefined): Promise<DeltaPage> {
    const url = cursor ?? this.user(mailbox, '/mailFolders/inbox/messages/delta?changeType=created&$select=subject,from,receivedDateTime,categories');
    const res = await this.call(mailbox, 'GET', url, [200], undefined, { prefer: `odata.maxpagesize=${this.options.pageSize ?? 50}` });
    const body = res.body as { value?: unknown; '@odata.nextLink'?: unknown; '@odata.deltaLink'?: unknown };
    const messages = Array.isArray(body.value)
      ? (body.value as unknown[]).filter((m): m is DeltaMessage => typeof m === 'object' && m !== null && typeof (m as { id?: unknown }).id === 'string')
      : [];
    return {
      messages,
      ...(typeof body['@odata.nextLink'] === 'string' ? { nextLink: body['@odata.nextLink'] } : {}),
      ...(typeof body['@odata.deltaLink'] === 'string' ? { deltaLink: body['@odata.deltaLink'] } : {}),
    };
  }

  /** The message's MIME. */
  async mime(mailbox: string, id: string): Promise<string> {
    const res = await this.call(mailbox, 'GET', this.user(mailbox, `/messages/${encodeURIComponent(id)}/$value`), [200]);
    return typeof res.body === 'string' ? res.body : JSON.stringify(res.body);
  }

  /** The id of the Inbox's child folder named `name`, created when missing. */
  async childFolder(mailbox: string, name: string): Promise<string> {
    const filter = encodeURIComponent(`displayName eq '${name.replace(/'/g, "''")}'`);
    const found = await this.call(mailbox, 'GET', this.user(mailbox, `/mailFolders/inbox/childFolders?$filter=${filter}&$select=id,displayName`), [200]);
    const existing = ((found.body as { value?: Array<{ id?: unknown; displayName?: unknown }> }).value ?? []).find(
      (f) => typeof f.id === 'string' && typeof f.displayName === 'string' && f.displayName.toLowerCase() === name.toLowerCase(),
    );
    if (existing) return existing.id as string;
    const created = await this.call(mailbox, 'POST', this.user(mailbox, '/mailFolders/inbox/childFolders'), [201], { displayName: name });
    const id = (created.body as { id?: unknown }).id;
    if (typeof id !== 'string') throw new GraphMailError(created.status, undefined, 'Graph created the folder but returned no id');
    return id;
  }

  async move(mailbox: string, id: string, folderId: string): Promise<void> {
    await this.call(mailbox, 'POST', this.user(mailbox, `/messages/${encodeURIComponent(id)}/move`), [200, 201], { destinationId: folderId });
  }

  async categorize(mailbox: string, id: string, categories: readonly string[]): Promise<void> {
    await this.call(mailbox, 'PATCH', this.user(mailbox, `/messages/${encodeURIComponent(id)}`), [200], { categories });
  }

  /** For `doctor`: reads the Inbox folder (200 when the app may read the mailbox). */
  async probeInbox(mailbox: string): Promise<void> {
    await this.call(mailbox, 'GET', this.user(mailbox, '/mailFolders/inbox?$select=id,totalItemCount'), [200]);
  }
}
