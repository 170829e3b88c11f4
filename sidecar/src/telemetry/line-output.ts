// The sidecar's stdout: log and audit lines collected during one event-loop turn and written
// together, synchronously, when the turn's I/O callbacks are done (setImmediate).
//
// Why not pino's destinations: an asynchronous one hands every write to the thread pool (a
// thread wake-up per audit line, the largest single cost on the proxied path at thousands of
// statements a second), and a synchronous one makes a system call per line. Here a busy turn that
// proxies many statements costs one write(2) for its diagnostics. Audit lines go out at once
// (writeNow, taking what is queued with them): the caller writes the audit line, then the
// response, so an operation the agent saw has its line in the pipe even if the process is killed
// right after (SIGKILL), one write(2) per operation.
//
// Back-pressure: when stdout is a non-blocking pipe that is full (the log collector is behind),
// what the pipe does not take stays queued, in order, and is retried on a timer: the event loop
// keeps running, so /healthz and /readyz keep answering and a slow collector does not get the
// sidecar restarted (which would lose what is queued). The queue is bounded (maxBacklogBytes,
// default 64 MiB): past it the writer waits for the pipe, stopping the data path with it, so the
// sidecar never proxies further ahead of its audit trail than that, and never drops a line. A
// write error other than "try again" (stdout closed: EPIPE, EBADF; a full disk: ENOSPC) loses the
// output for good: it is thrown to the writer (the audit line's operation is not released), later
// writes fail the same way, and the process's stdout ends the process at once (exitOnLost): the
// sidecar does not go on proxying without an audit trail. flushSync (drain, exit) always waits
// until everything is out.
import { writeSync } from "node:fs";

/** Flush at once (not at the end of the turn) past this many pending characters. */
const MAX_PENDING = 64 * 1024;
const EAGAIN_WAIT_MS = 2;
const RETRY_MS = 5;
const DEFAULT_MAX_BACKLOG = 64 * 1024 * 1024;

export interface LineOutputOptions {
  /** Most bytes queued behind a full pipe before the writer waits for it (default 64 MiB). */
  maxBacklogBytes?: number;
  /** Called once, when the output is lost (before the error is thrown to the writer). */
  onLost?(err: Error): void;
}

export interface LineOutput {
  /** Queues `line` (already newline-terminated); always returns true (no stream back-pressure). */
  write(line: string): boolean;
  /**
   * Queues `line` and hands everything queued to the pipe now, without waiting for a full one:
   * audit lines, which must be out of the process before the response they describe is
   * released (a SIGKILL between that response and the end of the turn would lose them).
   */
  writeNow(line: string): void;
  /** Writes everything queued now. */
  flushSync(): void;
  /** pino's flush contract: flush, then call back. */
  flush(cb?: (err?: Error) => void): void;
  /** Bytes queued behind a full pipe (0 when the collector keeps up). */
  backlogBytes(): number;
}

const pause = new Int32Array(new SharedArrayBuffer(4));

export function createLineOutput(fd = 1, opts: LineOutputOptions = {}): LineOutput {
  const maxBacklog = opts.maxBacklogBytes ?? DEFAULT_MAX_BACKLOG;
  /** Set once a write failed for good: nothing is written after it (no gap in the middle). */
  let failed: Error | undefined;
  const lost = (err: unknown): Error => {
    if (failed) return failed;
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    failed = new Error(
      `cannot write log and audit lines to fd ${fd} (${code}); stopping rather than proxying without an audit trail`,
      { cause: err },
    );
    opts.onLost?.(failed);
    return failed;
  };
  const writeAll = (data: Buffer): void => {
    let off = 0;
    while (off < data.length) {
      try {
        off += writeSync(fd, data, off, data.length - off);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EAGAIN") throw lost(err);
        Atomics.wait(pause, 0, 0, EAGAIN_WAIT_MS);
      }
    }
  };
  let pending: string[] = [];
  let size = 0;
  let scheduled = false;
  // What a full pipe did not take yet, oldest first.
  const backlog: Buffer[] = [];
  let backlogBytes = 0;
  let retry: NodeJS.Timeout | undefined;

  const take = (): string => {
    const data = pending.length === 1 ? (pending[0] as string) : pending.join("");
    pending = [];
    size = 0;
    return data;
  };
  const queue = (data: Buffer) => {
    if (data.length === 0) return;
    backlog.push(data);
    backlogBytes += data.length;
  };
  /** Writes the backlog as far as the pipe takes it; true when it is empty. */
  const drainBacklog = (): boolean => {
    while (backlog.length > 0) {
      const head = backlog[0] as Buffer;
      let n = 0;
      try {
        n = writeSync(fd, head);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EAGAIN") throw lost(err);
        return false;
      }
      backlogBytes -= n;
      if (n < head.length) {
        backlog[0] = head.subarray(n);
        return false;
      }
      backlog.shift();
    }
    return true;
  };
  const scheduleRetry = () => {
    // Unref'd: a process that exits runs flushSync first (below), which waits for the pipe.
    if (retry !== undefined) return;
    retry = setTimeout(() => {
      retry = undefined;
      if (!drainBacklog()) scheduleRetry();
    }, RETRY_MS).unref();
  };
  /** Hands the turn's lines to the pipe without waiting for it, up to the backlog bound. */
  const flushTurn = () => {
    if (failed) throw failed;
    if (size > 0) {
      const data = take();
      if (backlog.length > 0) queue(Buffer.from(data));
      else {
        // The common case, one complete write, straight from the string (no Buffer made here).
        let written = 0;
        try {
          written = writeSync(fd, data);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== "EAGAIN") throw lost(err);
        }
        if (written < data.length || written < Buffer.byteLength(data))
          queue(Buffer.from(data).subarray(written));
      }
    }
    if (backlog.length === 0 || drainBacklog()) return;
    if (backlogBytes > maxBacklog) {
      // The last resort: the collector is this far behind, so the data path waits for it.
      flushSync();
      return;
    }
    scheduleRetry();
  };
  /** Everything out now, waiting for a full pipe as long as it takes. */
  const flushSync = () => {
    if (failed) throw failed;
    if (size > 0) queue(Buffer.from(take()));
    for (const chunk of backlog.splice(0)) writeAll(chunk);
    backlogBytes = 0;
  };
  const endOfTurn = () => {
    scheduled = false;
    // Lost already: reported once (onLost, or the write that threw); the turn's lines have nowhere to go.
    if (failed) {
      pending = [];
      size = 0;
      return;
    }
    flushTurn();
  };
  process.once("exit", () => {
    if (!failed) flushSync();
  });

  return {
    write(line) {
      if (failed) return true; // diagnostics after the loss have nowhere to go
      pending.push(line);
      size += line.length;
      if (size >= MAX_PENDING) flushTurn();
      else if (!scheduled) {
        scheduled = true;
        setImmediate(endOfTurn);
      }
      return true;
    },
    writeNow(line) {
      pending.push(line);
      size += line.length;
      flushTurn();
    },
    flushSync,
    flush(cb) {
      try {
        flushSync();
      } catch (err) {
        cb?.(err as Error);
        return;
      }
      cb?.();
    },
    backlogBytes: () => backlogBytes,
  };
}

let stdout: LineOutput | undefined;

/**
 * stdout is the audit trail: once it is lost the process ends at once, status 1, saying why on
 * stderr — inside the write, so the operation whose line it was is never answered, and nothing
 * in flight is answered after it (docs/audit.md; test/faults/audit-sink.test.ts).
 */
function exitOnLost(err: Error): never {
  try {
    writeSync(2, `airlock: ${err.message}\n`);
  } catch {
    // stderr gone too: the exit status still says it
  }
  process.exit(1);
}

/** The process's stdout as a LineOutput, one per process so every logger shares its order. */
export function stdoutLineOutput(): LineOutput {
  stdout ??= createLineOutput(1, { onLost: exitOnLost });
  return stdout;
}

/** Bytes of log and audit lines queued behind a full stdout (0 before stdout is used). */
export function stdoutBacklogBytes(): number {
  return stdout?.backlogBytes() ?? 0;
}
