import { Relay365Error } from '../errors.js';

/**
 * A commander `argParser` for a whole-number option held to `min..max`. It throws
 * `R365_CLI_OPTION_INVALID` naming the option, the value and the range, so that a mistyped value
 * stops the command before it opens anything (`--limit abc` used to reach SQLite as NaN and come
 * back as its "datatype mismatch").
 *
 * @example
 * ```ts
 * new Option('--limit <n>', 'how many').argParser(wholeNumber('--limit', 1, 500)).default(50)
 * ```
 */
export function wholeNumber(option: string, min: number, max: number): (value: string) => number {
  return (value: string): number => {
    const n = /^\s*\d+\s*$/.test(value) ? Number(value) : Number.NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      throw new Relay365Error('R365_CLI_OPTION_INVALID', `${option} must be a whole number from ${min} to ${max}; got "${value}".`, {
        details: { option, value },
      });
    }
    return n;
  };
}

/** {@link wholeNumber} for a TCP port; 0 asks the system for any free one when `allowAny`. */
export function portNumber(option: string, allowAny = true): (value: string) => number {
  const parse = wholeNumber(option, allowAny ? 0 : 1, 65535);
  return (value: string): number => {
    try {
      return parse(value);
    } catch (err) {
      throw new Relay365Error(
        'R365_CLI_OPTION_INVALID',
        `${option} must be a port number from ${allowAny ? '0 (any free port)' : '1'} to 65535; got "${value}".`,
        {
          cause: err,
          details: { option, value },
        },
      );
    }
  };
}
