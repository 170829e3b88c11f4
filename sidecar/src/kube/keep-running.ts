// An informer kept running across failures: started now, and after each "error" started again
// with exponential backoff (initialBackoffMs doubling up to maxBackoffMs), reset by a successful
// list. What the owner does meanwhile (fail closed, keep the last good set) is its own handler's.
import type { Informer, KubeObject } from "./informer.ts";

export interface Backoff {
  initialBackoffMs?: number;
  maxBackoffMs?: number;
}

/**
 * Starts `informer` and restarts it after failures until the returned stop() is called;
 * `onRetry` hears of each failure (unless stopped) and when the next start is, to log them.
 */
export function keepRunning<T extends KubeObject>(
  informer: Informer<T>,
  opts: Backoff,
  onRetry: (err: unknown, retryInMs: number) => void,
): { stop(): void } {
  const initial = opts.initialBackoffMs ?? 500;
  let backoff = initial;
  let retry: NodeJS.Timeout | undefined;
  let stopped = false;
  informer.onListed(() => {
    backoff = initial;
  });
  informer.on("error", (err: unknown) => {
    if (stopped) return;
    onRetry(err, backoff);
    clearTimeout(retry);
    retry = setTimeout(() => {
      if (!stopped) void informer.start().catch(() => {});
    }, backoff);
    backoff = Math.min(backoff * 2, opts.maxBackoffMs ?? 30_000);
  });
  void informer.start().catch(() => {});
  return {
    stop() {
      stopped = true;
      clearTimeout(retry);
    },
  };
}
