/**
 * Delay before attempt `attempt + 1`: exponential from `baseMs`, capped at `maxMs`, with "equal jitter"
 * (half fixed, half random) so that a burst of deferrals does not come back at the same instant
 * (AWS Architecture Blog, "Exponential Backoff And Jitter").
 */
export function backoffDelay(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return ceiling / 2 + random() * (ceiling / 2);
}
