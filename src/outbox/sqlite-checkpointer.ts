import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/**
 * The thread's code, as a CommonJS script (`eval: true`), so that it runs the same from `dist/` and
 * from the TypeScript sources under test. It opens its own connection to the database and runs a
 * PASSIVE checkpoint every `intervalMs`, or 10 ms after one that writers outran: PASSIVE never waits
 * for readers or writers, and copies what it can. With `synchronous = NORMAL` SQLite syncs the log
 * before copying and the database after.
 */
const THREAD_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.path, { timeout: workerData.busyTimeoutMs });
db.pragma('synchronous = NORMAL');
db.pragma('wal_autocheckpoint = 0');
let timer;
function round() {
  let behind = false;
  try {
    // One row: frames in the log, and how many of them are now in the database file.
    const [{ log, checkpointed }] = db.pragma('wal_checkpoint(PASSIVE)');
    // Writers appended while it copied: go again soon, or the log only ever grows under steady load.
    behind = checkpointed < log;
  } catch {
    // Busy, or the disk failing: the next round tries again, and the event loop's connection still
    // checkpoints by itself past its far threshold.
  }
  timer = setTimeout(round, behind ? workerData.catchUpMs : workerData.intervalMs);
}
timer = setTimeout(round, workerData.intervalMs);
parentPort.on('message', () => {
  clearTimeout(timer);
  db.close();
  parentPort.close();
});
`;

/** Options of {@link startCheckpointer}. */
export interface CheckpointerOptions {
  /** How often the log is copied into the database file (default 250 ms). */
  intervalMs?: number;
  busyTimeoutMs?: number;
}

/** A running checkpoint thread. */
export interface Checkpointer {
  /** Stops the thread after its current checkpoint; resolves once its connection is closed. */
  stop(): Promise<void>;
}

/**
 * Copies the write-ahead log into the database file on a thread of its own. SQLite's automatic
 * checkpoint runs inside the commit that crosses its threshold, on the caller's thread: with
 * better-sqlite3 that is the event loop, stalled for the page copies and two fsyncs (hundreds of
 * milliseconds on a slow disk). With this thread the event loop's connection keeps only a far
 * threshold as a safety net (see `SQL.pragmas.walAutocheckpoint`).
 *
 * @example
 * ```ts
 * const checkpointer = startCheckpointer('./data/relay365.db');
 * // ...
 * await checkpointer.stop();
 * ```
 */
export function startCheckpointer(path: string, options: CheckpointerOptions = {}): Checkpointer {
  const worker = new Worker(THREAD_SOURCE, {
    eval: true,
    workerData: {
      path,
      driver: createRequire(import.meta.url).resolve('better-sqlite3'),
      intervalMs: options.intervalMs ?? 250,
      catchUpMs: 10,
      busyTimeoutMs: options.busyTimeoutMs ?? 5000,
    },
    // The thread needs none of the loaders the process was started with (tsx under test).
    execArgv: [],
  });
  // A checkpoint thread alone must not keep the process alive.
  worker.unref();
  // A thread that failed (its connection could not open) leaves checkpoints to the safety net.
  worker.on('error', () => undefined);
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  return {
    stop() {
      // Waiting for the thread must keep the process alive until it has closed its connection.
      worker.ref();
      worker.postMessage('stop');
      return exited;
    },
  };
}
