// The byte pump of one PostgreSQL session: what goes to the upstream and to the agent is queued
// during a turn and written once per batch (adjacent views of one read coalesced into one write,
// corked when several), and flow control pauses whichever side the other cannot keep up with.
import type { Socket } from "node:net";

/** Frontend bytes held while the pump is blocked (approval, upstream connect) before pausing the agent. */
export const HIGH_WATER = 1024 * 1024;

export class Duplex {
  readonly agent: Socket;
  up: Socket | undefined;
  #upOut: Buffer[] = [];
  #agentOut: Buffer[] = [];
  #upFull = false;
  #agentFull = false;
  /** Whether the agent must be paused besides a full upstream (the pump is blocked with a backlog). */
  readonly #holdAgent: () => boolean;
  readonly #closed: () => boolean;

  constructor(agent: Socket, opts: { holdAgent(): boolean; closed(): boolean }) {
    this.agent = agent;
    this.#holdAgent = opts.holdAgent;
    this.#closed = opts.closed;
    agent.on("drain", () => {
      this.#agentFull = false;
      this.flow();
    });
  }

  /** Takes the upstream socket (after startup) into the pump. */
  attachUpstream(up: Socket): void {
    this.up = up;
    up.on("drain", () => {
      this.#upFull = false;
      this.flow();
    });
  }

  flow(): void {
    if (this.#closed()) return;
    if (this.#upFull || this.#holdAgent()) this.agent.pause();
    else this.agent.resume();
    if (this.up) {
      if (this.#agentFull) this.up.pause();
      else this.up.resume();
    }
  }

  toUp(b: Buffer): void {
    this.#upOut.push(b);
  }

  toAgent(b: Buffer): void {
    this.#agentOut.push(b);
  }

  /** Drops what is queued (the session is failing: nothing more is released). */
  discard(): void {
    this.#agentOut = [];
    this.#upOut = [];
  }

  flushUp(): void {
    const up = this.up;
    if (!up || this.#upOut.length === 0) return;
    const out = coalesce(this.#upOut);
    this.#upOut = [];
    if (!writeAll(up, out)) {
      this.#upFull = true;
      this.flow();
    }
  }

  flushAgent(): void {
    if (this.#agentOut.length === 0 || this.#closed()) return;
    const out = coalesce(this.#agentOut);
    this.#agentOut = [];
    if (!writeAll(this.agent, out)) {
      this.#agentFull = true;
      this.flow();
    }
  }

  flush(): void {
    this.flushUp();
    this.flushAgent();
  }
}

function writeAll(socket: Socket, out: Buffer[]): boolean {
  if (out.length === 1) return socket.write(out[0] as Buffer);
  let ok = true;
  socket.cork();
  for (const b of out) ok = socket.write(b) && ok;
  socket.uncork();
  return ok;
}

/** Merges adjacent views of the same memory so a pass-through burst is one write. */
export function coalesce(bufs: Buffer[]): Buffer[] {
  if (bufs.length < 2) return bufs;
  const out: Buffer[] = [];
  let first = bufs[0] as Buffer; // first view of the current run
  let end = first.byteOffset + first.length; // end of the run in first.buffer
  let runs = 1; // views in the current run
  const close = () => {
    out.push(runs === 1 ? first : Buffer.from(first.buffer, first.byteOffset, end - first.byteOffset));
  };
  for (let i = 1; i < bufs.length; i++) {
    const b = bufs[i] as Buffer;
    if (b.buffer === first.buffer && b.byteOffset === end) {
      end += b.length;
      runs++;
    } else {
      close();
      first = b;
      end = b.byteOffset + b.length;
      runs = 1;
    }
  }
  close();
  return out;
}
