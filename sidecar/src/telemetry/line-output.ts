// The sidecar's stdout: log and audit lines collected during one event-loop turn and written
// together, synchronously, when the turn's I/O callbacks are done (setImmediate).
//
// Why not pino's destinations: an asynchronous one hands every write to the thread pool (a
// thread wake-up per audit line, the largest single cost on the proxied path at thousands of
// statements a second), and a synchronous one makes a system call per line. Here a busy turn that
// proxies many statements costs one write(2). Lines are still handed over before the response
// they describe is released: the caller writes the audit line, then the response; the write to
// stdout follows within the same turn.
//
// Back-pressure: when stdout is a non-blocking pipe that is full (the log collector is behind),
// the write waits for it rather than dropping or buffering without bound, so the sidecar serves
// no faster than it can audit. A write error other than "try again" (stdout closed) is thrown:
// the sidecar does not go on proxying without an audit trail.
import { writeSync } from "node:fs";

/** Flush at once (not at the end of the turn) past this many pending characters. */
const MAX_PENDING = 64 * 1024;
const EAGAIN_WAIT_MS = 2;

export interface LineOutput {
  /** Queues `line` (already newline-terminated); always returns true (no stream back-pressure). */
  write(line: string): boolean;
  /** Writes everything queued now. */
  flushSync(): void;
  /** pino's flush contract: flush, then call back. */
  flush(cb?: (err?: Error) => void): void;
}

const pause = new Int32Array(new SharedArrayBuffer(4));

function lost(fd: number, err: unknown): Error {
  const code = (err as NodeJS.ErrnoException).code ?? String(err);
  return new Error(
    `cannot write log and audit lines to fd ${fd} (${code}); stopping rather than proxying without an audit trail`,
    { cause: err },
  );
}

function writeAll(fd: number, data: Buffer): void {
  let off = 0;
  while (off < data.length) {
    try {
      off += writeSync(fd, data, off, data.length - off);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EAGAIN") throw lost(fd, err);
      Atomics.wait(pause, 0, 0, EAGAIN_WAIT_MS);
    }
  }
}

export function createLineOutput(fd = 1): LineOutput {
  let pending: string[] = [];
  let size = 0;
  let scheduled = false;

  const flushSync = () => {
    if (size === 0) return;
    const data = pending.length === 1 ? (pending[0] as string) : pending.join("");
    pending = [];
    size = 0;
    // The common case, one complete write, straight from the string (no Buffer made here).
    let written = 0;
    try {
      written = writeSync(fd, data);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EAGAIN") throw lost(fd, err);
    }
    if (written < data.length || written < Buffer.byteLength(data))
      writeAll(fd, Buffer.from(data).subarray(written));
  };
  const endOfTurn = () => {
    scheduled = false;
    flushSync();
  };
  process.once("exit", flushSync);

  return {
    write(line) {
      pending.push(line);
      size += line.length;
      if (size >= MAX_PENDING) flushSync();
      else if (!scheduled) {
        scheduled = true;
        setImmediate(endOfTurn);
      }
      return true;
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
  };
}

let stdout: LineOutput | undefined;

/** The process's stdout as a LineOutput, one per process so every logger shares its order. */
export function stdoutLineOutput(): LineOutput {
  stdout ??= createLineOutput(1);
  return stdout;
}
