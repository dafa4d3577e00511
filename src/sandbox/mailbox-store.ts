import { randomBytes } from 'node:crypto';
import addressparser from 'nodemailer/lib/addressparser';

/**
 * The sandbox's mailbox contents: the folders of each mailbox and the messages in them (the NDRs
 * Exchange delivers to the sender's Inbox), with the change log that Graph's delta query reads.
 * Only what relay365 reads and changes through Graph is kept: folders by display name, messages
 * with the properties of Graph's `message` resource that a bounce reader uses.
 */

/** A folder of a mailbox, as Graph's `mailFolder` resource names it. */
export interface MailFolder {
  id: string;
  displayName: string;
  parentFolderId: string;
  /** The well-known name a client may use instead of the id (`inbox`, `deleteditems`, ...). */
  wellKnownName: string | undefined;
}

/** A message in a mailbox. */
export interface MailItem {
  id: string;
  mailbox: string;
  folderId: string;
  raw: Buffer;
  receivedAt: Date;
  internetMessageId: string;
  subject: string;
  from: { name: string; address: string };
  isRead: boolean;
  categories: string[];
  /** The change number of the item's last change (its creation, a PATCH, the move that brought it here). */
  version: number;
  /** The change number that brought the item into its folder (delivery or move). */
  createdVersion: number;
  changeKey: string;
}

/** A message that left a folder (moved or deleted), for delta's `@removed` entries. */
interface Removal {
  id: string;
  folderId: string;
  version: number;
}

/**
 * The well-known folders every Exchange mailbox has, by Graph's well-known names (MS Learn
 * "mailFolder resource type": inbox, sentitems, deleteditems, drafts, junkemail, archive, outbox).
 */
const WELL_KNOWN: Array<[string, string]> = [
  ['inbox', 'Inbox'],
  ['sentitems', 'Sent Items'],
  ['deleteditems', 'Deleted Items'],
  ['drafts', 'Drafts'],
  ['junkemail', 'Junk Email'],
  ['archive', 'Archive'],
  ['outbox', 'Outbox'],
];

/** Graph's ids are long base64url strings (`AAMkAD...`); the sandbox's have the same alphabet. */
function graphId(): string {
  return `AAMkAD${randomBytes(30).toString('base64url')}`;
}

function headerOf(raw: Buffer, name: string): string | undefined {
  const text = raw.subarray(0, Math.min(raw.length, 256 * 1024)).toString('latin1');
  const end = text.search(/\r?\n\r?\n/);
  const block = (end < 0 ? text : text.slice(0, end)).replace(/\r?\n[ \t]+/g, ' ');
  return new RegExp(`^${name}:[ \\t]*(.*)$`, 'im').exec(block)?.[1]?.trim();
}

interface MailboxContents {
  folders: MailFolder[];
  items: Map<string, MailItem>;
  removals: Removal[];
}

/** Every mailbox's folders and messages; one change counter orders all changes for delta. */
export class MailboxStore {
  private readonly boxes = new Map<string, MailboxContents>();
  private changes = 0;

  /** The current change number: a delta round started now sees every change up to it. */
  get changeNumber(): number {
    return this.changes;
  }

  private box(mailbox: string): MailboxContents {
    const key = mailbox.toLowerCase();
    let box = this.boxes.get(key);
    if (!box) {
      const root = graphId();
      box = {
        folders: WELL_KNOWN.map(([wellKnownName, displayName]) => ({ id: graphId(), displayName, parentFolderId: root, wellKnownName })),
        items: new Map(),
        removals: [],
      };
      this.boxes.set(key, box);
    }
    return box;
  }

  /** The mailbox's folders (the well-known ones first, then those created). */
  folders(mailbox: string): MailFolder[] {
    return [...this.box(mailbox).folders];
  }

  /** A folder by id or well-known name (case-insensitive, as Graph takes them). */
  folder(mailbox: string, ref: string): MailFolder | undefined {
    const key = ref.toLowerCase();
    return this.box(mailbox).folders.find((f) => f.id.toLowerCase() === key || f.wellKnownName === key);
  }

  /** Creates a folder under `parentId` (default the root of the mailbox); undefined when the name is taken there. */
  createFolder(mailbox: string, displayName: string, parentId?: string): MailFolder | undefined {
    const box = this.box(mailbox);
    const parent = parentId ?? box.folders[0]!.parentFolderId;
    if (box.folders.some((f) => f.parentFolderId === parent && f.displayName.toLowerCase() === displayName.toLowerCase())) return undefined;
    const folder: MailFolder = { id: graphId(), displayName, parentFolderId: parent, wellKnownName: undefined };
    box.folders.push(folder);
    return folder;
  }

  /** Puts a message in the Inbox (how Exchange delivers an NDR to the sender). */
  deliver(mailbox: string, raw: Buffer, receivedAt = new Date()): MailItem {
    const box = this.box(mailbox);
    const from = addressparser(headerOf(raw, 'From') ?? '', { flatten: true })[0];
    const item: MailItem = {
      id: graphId(),
      mailbox: mailbox.toLowerCase(),
      folderId: box.folders[0]!.id,
      raw,
      receivedAt,
      internetMessageId: headerOf(raw, 'Message-ID')?.match(/<[^<>\s]+>/)?.[0] ?? '',
      subject: headerOf(raw, 'Subject') ?? '',
      from: { name: from?.name ?? '', address: from?.address ?? '' },
      isRead: false,
      categories: [],
      version: ++this.changes,
      createdVersion: this.changes,
      changeKey: randomBytes(12).toString('base64'),
    };
    box.items.set(item.id, item);
    return item;
  }

  /** A message by id. */
  item(mailbox: string, id: string): MailItem | undefined {
    return this.box(mailbox).items.get(id);
  }

  /** The messages of a folder, newest first (Graph's default order for a folder's messages). */
  items(mailbox: string, folderId: string): MailItem[] {
    return [...this.box(mailbox).items.values()]
      .filter((i) => i.folderId === folderId)
      .sort((a, b) => b.receivedAt.getTime() - a.receivedAt.getTime() || b.version - a.version);
  }

  /** Bytes of every message the mailbox holds, in all folders (they count toward its quota). */
  usedBytes(mailbox: string): number {
    let total = 0;
    for (const item of this.box(mailbox).items.values()) total += item.raw.length;
    return total;
  }

  /** Changes `isRead` and `categories`; the item's change number moves on, so delta returns it again. */
  update(mailbox: string, id: string, change: { isRead?: boolean; categories?: string[] }): MailItem | undefined {
    const item = this.item(mailbox, id);
    if (!item) return undefined;
    if (change.isRead !== undefined) item.isRead = change.isRead;
    if (change.categories !== undefined) item.categories = [...change.categories];
    item.version = ++this.changes;
    item.changeKey = randomBytes(12).toString('base64');
    return item;
  }

  /**
   * Moves a message to another folder. Its id changes, as an Outlook item's id does when it moves to
   * another folder (MS Learn "Obtain immutable identifiers for Outlook resources"); the source folder
   * records the old id as removed.
   */
  move(mailbox: string, id: string, folderId: string): MailItem | undefined {
    const box = this.box(mailbox);
    const item = box.items.get(id);
    if (!item) return undefined;
    box.items.delete(id);
    box.removals.push({ id, folderId: item.folderId, version: ++this.changes });
    const version = ++this.changes;
    const moved: MailItem = { ...item, id: graphId(), folderId, version, createdVersion: version, changeKey: randomBytes(12).toString('base64') };
    box.items.set(moved.id, moved);
    return moved;
  }

  /**
   * What changed in a folder after change `since` up to change `upTo`: current items and removed ids;
   * `changeType` keeps only items that came in, items that existed and changed, or removals (MS Learn
   * "message: delta", the `changeType` query parameter: created, updated, deleted).
   */
  changesIn(
    mailbox: string,
    folderId: string,
    since: number,
    upTo: number,
    changeType?: 'created' | 'updated' | 'deleted',
  ): { items: MailItem[]; removed: string[] } {
    const box = this.box(mailbox);
    const items = [...box.items.values()]
      .filter((i) => i.folderId === folderId && i.version > since && i.version <= upTo)
      .filter((i) => (changeType === 'created' ? i.createdVersion > since : changeType === 'updated' ? i.createdVersion <= since : changeType !== 'deleted'))
      .sort((a, b) => a.version - b.version);
    if (changeType === 'created' || changeType === 'updated') return { items, removed: [] };
    const present = new Set(items.map((i) => i.id));
    const removed = box.removals.filter((r) => r.folderId === folderId && r.version > since && r.version <= upTo && !present.has(r.id)).map((r) => r.id);
    return { items, removed: [...new Set(removed)] };
  }

  /** Forgets every mailbox's contents. */
  clear(): void {
    this.boxes.clear();
  }
}
