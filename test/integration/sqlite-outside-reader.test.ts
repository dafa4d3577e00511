import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { openSqliteIntegrationStore } from '../../src/ingress/http/index.js';
import { openSqliteStore, type NewMessage } from '../../src/outbox/index.js';
import { tempDir } from '../helpers/sandbox.js';

const exec = promisify(execFile);

/** What an admin's monitoring script or backup runs beside the relay: the sqlite3 shell, another process. */
async function outsideQuery(path: string, sql: string): Promise<string> {
  const { stdout } = await exec('sqlite3', [path, sql]);
  return stdout.trim();
}

/** This process's open files that have been deleted (Linux: /proc/self/fd links end in " (deleted)"). */
async function deletedOpenFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(join('/proc/self/fd', fd)).catch(() => '');
    if (target.startsWith(dir) && target.endsWith(' (deleted)')) out.push(target);
  }
  return out;
}

function message(n: number): NewMessage {
  return {
    mailbox: 'relay@contoso.example',
    envelope: { from: 'relay@contoso.example', to: [`to${n}@example.net`] },
    raw: Buffer.from(`From: relay@contoso.example\r\nTo: to${n}@example.net\r\nSubject: ${n}\r\n\r\nbody ${n}\r\n`),
    source: { kind: 'smtp' },
  };
}

describe('SQLite outbox beside outside readers (sqlite3 shell, backups, monitoring)', () => {
  it('keeps its locks when the integration store opens the same file: an outside reader neither deletes the live log nor misses a committed message', async () => {
    const dir = await tempDir('relay365-outside-reader-');
    const path = join(dir.path, 'relay365.db');
    // As `serve` opens them: the outbox first, then the HTTP tables in the same file.
    const outbox = await openSqliteStore(path);
    const http = await openSqliteIntegrationStore(path);
    try {
      const first = await Promise.all([1, 2, 3].map((n) => outbox.enqueue(message(n))));
      await http.createApiKey({ name: 'app', hash: 'h'.repeat(64), prefix: 'r365_abcd' });
      // The reader closes its connection when done: had the relay's fcntl locks been dropped, it would
      // take itself for the last connection, checkpoint and delete the -wal and -shm the relay still writes.
      assert.equal(await outsideQuery(path, 'select count(*) from messages'), '3');
      assert.deepEqual(await deletedOpenFiles(dir.path), [], 'the relay holds no deleted database file');
      const later = await Promise.all([4, 5, 6, 7].map((n) => outbox.enqueue(message(n))));
      // Every acknowledged message is visible to a new outside reader: what the relay wrote after the
      // first reader reached the file other processes open, not a deleted log.
      const ids = (await outsideQuery(path, 'select id from messages order by id')).split('\n').sort();
      assert.deepEqual(ids, [...first, ...later].map((m) => m.id).sort());
      assert.equal(await outsideQuery(path, 'pragma integrity_check'), 'ok');
      assert.deepEqual(await deletedOpenFiles(dir.path), []);
    } finally {
      await http.close();
      await outbox.close();
      await dir.cleanup();
    }
  });

  it('refuses a commit whose log was deleted under it, rather than acknowledging what nothing keeps', async () => {
    const dir = await tempDir('relay365-outside-reader-');
    const path = join(dir.path, 'relay365.db');
    const outbox = await openSqliteStore(path);
    try {
      await outbox.enqueue(message(1));
      // What a careless clean-up (or a reader that took itself for the last connection) does.
      const { rm } = await import('node:fs/promises');
      await rm(`${path}-wal`);
      await assert.rejects(outbox.enqueue(message(2)), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'R365_OUTBOX_UNAVAILABLE');
        assert.match(err.message, /write-ahead log .*-wal was deleted or replaced by another process/);
        return true;
      });
    } finally {
      await outbox.close();
      await dir.cleanup();
    }
  });
});
