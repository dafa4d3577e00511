import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino';
import { REDACTED, REDACT_PATHS, scrubSecrets } from './redact.js';

export type { Logger } from 'pino';

export interface CreateLoggerOptions {
  level?: LoggerOptions['level'];
  /** Where lines go (default stdout); tests pass a stream to read them back. */
  destination?: DestinationStream;
  /** Fixed fields on every line, e.g. `{ component: 'sandbox' }`. */
  base?: Record<string, unknown>;
}

/**
 * JSON logger with the project's one redaction list. Error messages and stacks are scrubbed too,
 * since upstream errors (MSAL, nodemailer) sometimes quote the request that failed.
 */
export function createLogger(options: CreateLoggerOptions = {}): Logger {
  // Every child, so setLogLevel can reach them: pino's children keep the level they were made with.
  const family = new Set<WeakRef<Logger>>();
  const opts: LoggerOptions = {
    onChild: (child) => void family.add(new WeakRef(child)),
    level: options.level ?? 'info',
    base: options.base ?? null,
    redact: { paths: REDACT_PATHS, censor: REDACTED },
    serializers: {
      err: (err: unknown) => {
        // Anything can be thrown; only Error-like values have a message and stack to keep.
        if (!(err instanceof Error)) return { message: scrubSecrets(String(err)) };
        const serialized = pino.stdSerializers.err(err);
        serialized.message = scrubSecrets(String(serialized.message ?? ''));
        if (typeof serialized.stack === 'string') serialized.stack = scrubSecrets(serialized.stack);
        return serialized;
      },
    },
    hooks: {
      // The message string itself is free text: scrub it as well.
      logMethod(args, method) {
        const scrubbed = args.map((a) => (typeof a === 'string' ? scrubSecrets(a) : a)) as Parameters<typeof method>;
        method.apply(this, scrubbed);
      },
    },
  };
  const root = options.destination ? pino(opts, options.destination) : pino(opts);
  families.set(root, family);
  return root;
}

const families = new WeakMap<Logger, Set<WeakRef<Logger>>>();

/**
 * Sets the level of a logger made by {@link createLogger} and of every child made from it since (a
 * reloaded `log.level`); children made later inherit it.
 */
export function setLogLevel(root: Logger, level: string): void {
  root.level = level;
  const family = families.get(root);
  if (!family) return;
  for (const ref of family) {
    const child = ref.deref();
    if (child) child.level = level;
    else family.delete(ref);
  }
}

/** A logger that writes nothing, for library users who bring none. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
