import { parseDuration, type Config } from '../config/index.js';
import { silentLogger, type Logger } from '../observe/index.js';
import type { OutboxStore } from './types.js';

/** Options of {@link RetentionSweeper}. */
export interface RetentionOptions {
  store: Pick<OutboxStore, 'purge'>;
  /** `queue.retention`: how long finished messages keep their content, and how long they are kept at all. */
  retention: Config['queue']['retention'];
  logger?: Logger;
  /** Time between sweeps (default 10 minutes); the first runs soon after start. */
  intervalMs?: number;
  /** Messages deleted per transaction (default 500): a sweep never holds the store's write lock for long. */
  batch?: number;
  now?: () => number;
}

/** What one sweep deleted. */
export interface SweepResult {
  /** Finished messages whose content was deleted (their metadata stays). */
  bodies: number;
  /** Finished messages deleted with their attempts and recipients. */
  records: number;
}

/** The first sweep waits this long after start (or the interval, if shorter). */
const FIRST_SWEEP_DELAY_MS = 5_000;

/**
 * Enforces `queue.retention`: every `intervalMs`, deletes the content of messages finished (sent, failed,
 * cancelled) longer ago than `retention.bodies`, then whole messages finished longer ago than
 * `retention.records`, in batches of `batch` until none is left. On PostgreSQL every node sweeps, and
 * each batch takes its rows `FOR UPDATE SKIP LOCKED`: two nodes never delete the same row and never
 * wait for each other. A store that fails is logged and tried at the next sweep.
 */
export class RetentionSweeper {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private running: Promise<SweepResult> | undefined;
  private retention: Config['queue']['retention'];
  private readonly logger: Logger;

  constructor(private readonly options: RetentionOptions) {
    this.retention = options.retention;
    this.logger = options.logger ?? silentLogger();
  }

  /** Schedules the sweeps (the first after a few seconds, so a start is not slowed by it). */
  start(): void {
    if (this.timer) return;
    this.stopped = false;
    const every = this.options.intervalMs ?? 600_000;
    const tick = (): void => {
      void this.sweep();
      this.timer = setTimeout(tick, every);
      this.timer.unref();
    };
    this.timer = setTimeout(tick, Math.min(every, FIRST_SWEEP_DELAY_MS));
    this.timer.unref();
  }

  /** New periods from a reloaded config; the next sweep uses them. */
  update(retention: Config['queue']['retention']): void {
    this.retention = retention;
  }

  /** One sweep now (or the one under way); resolves with what it deleted. */
  sweep(): Promise<SweepResult> {
    this.running ??= this.sweepOnce().finally(() => (this.running = undefined));
    return this.running;
  }

  private async sweepOnce(): Promise<SweepResult> {
    const now = (this.options.now ?? Date.now)();
    const result: SweepResult = { bodies: 0, records: 0 };
    const bodiesMs = parseDuration(this.retention.bodies);
    const recordsMs = parseDuration(this.retention.records);
    try {
      if (bodiesMs !== undefined) result.bodies = await this.drain(new Date(now - bodiesMs), true);
      if (recordsMs !== undefined) result.records = await this.drain(new Date(now - recordsMs), false);
    } catch (err) {
      this.logger.warn({ err, ...result }, 'retention sweep failed; trying again at the next one');
      return result;
    }
    if (result.bodies > 0 || result.records > 0)
      this.logger.info({ event: 'retention.swept', ...result, retention: this.retention }, 'deleted finished messages past queue.retention');
    return result;
  }

  private async drain(before: Date, bodiesOnly: boolean): Promise<number> {
    const limit = this.options.batch ?? 500;
    let total = 0;
    for (;;) {
      const { count } = await this.options.store.purge({ before, bodiesOnly, limit });
      total += count;
      if (count < limit || this.stopped) return total;
      // Between batches, let the relay's own writes (enqueues, claims) take the store.
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /** Stops the sweeps; resolves when a sweep under way has finished its batch. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }
}
