// A byte-level PostgreSQL client for wire tests: sends exactly the bytes a test builds (split,
// malformed, oversized) and reads server messages with deadlines, so a test never hangs.
import { connect, type Socket } from "node:net";
import { BackendFramer, type Frame } from "../../sidecar/src/protocols/postgres/framing.ts";
import {
  cstr,
  describeMessage,
  executeMessage,
  int16,
  int32,
  message,
  parseErrorFields,
  startupMessage,
  syncMessage,
  T,
} from "../../sidecar/src/protocols/postgres/protocol.ts";

export interface Msg {
  type: string;
  payload: Buffer;
  raw: Buffer;
}

export class RawClient {
  readonly socket: Socket;
  readonly #framer = new BackendFramer();
  readonly #queue: Msg[] = [];
  #bytes: Buffer[] = [];
  #waiter: (() => void) | undefined;
  closed = false;
  /** Bytes before typed framing applies (SSLRequest answers). */
  #raw = true;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on("data", (c: Buffer) => {
      if (this.#raw) this.#bytes.push(c);
      else {
        this.#framer.push(c);
        for (;;) {
          const f: Frame | undefined = this.#framer.next();
          if (!f) break;
          this.#queue.push({ type: String.fromCharCode(f.type), payload: f.payload, raw: f.raw });
        }
      }
      this.#waiter?.();
    });
    socket.on("close", () => {
      this.closed = true;
      this.#waiter?.();
    });
    socket.on("error", () => {});
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = connect({ host: "127.0.0.1", port }, () => resolve(new RawClient(s)));
      s.once("error", reject);
    });
  }

  /** From now on, bytes are parsed as typed server messages (after skipping `skip` raw bytes). */
  typed(skip = 0) {
    this.#raw = false;
    const pending = Buffer.concat(this.#bytes).subarray(skip);
    this.#bytes = [];
    if (pending.length) this.socket.emit("data", pending);
  }

  write(b: Buffer | string): Promise<void> {
    return new Promise((resolve) => {
      if (this.closed) return resolve();
      this.socket.write(b, () => resolve());
    });
  }

  /** Raw bytes received so far (before `typed()`). */
  async rawBytes(n: number, timeoutMs = 5000): Promise<Buffer> {
    await this.#until(() => Buffer.concat(this.#bytes).length >= n || this.closed, timeoutMs);
    return Buffer.concat(this.#bytes);
  }

  async #until(cond: () => boolean, timeoutMs: number) {
    const deadline = Date.now() + timeoutMs;
    while (!cond()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error("timed out waiting for the server");
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.#waiter = undefined;
    }
  }

  /** Next message; throws on timeout; undefined when the connection closed first. */
  async next(timeoutMs = 5000): Promise<Msg | undefined> {
    await this.#until(() => this.#queue.length > 0 || this.closed, timeoutMs);
    return this.#queue.shift();
  }

  /** Messages up to and including the first of type `type` (e.g. "Z"). */
  async until(type: string, timeoutMs = 5000): Promise<Msg[]> {
    const out: Msg[] = [];
    for (;;) {
      const m = await this.next(timeoutMs);
      if (!m) throw new Error(`connection closed before ${type}; got ${out.map((x) => x.type).join("")}`);
      out.push(m);
      if (m.type === type) return out;
    }
  }

  /** Waits until the server closes the connection; returns what it sent before. */
  async closedAfter(timeoutMs = 5000): Promise<Msg[]> {
    const out: Msg[] = [];
    for (;;) {
      const m = await this.next(timeoutMs);
      if (!m) return out;
      out.push(m);
    }
  }

  async startup(params: Record<string, string> = {}): Promise<Msg[]> {
    this.typed();
    await this.write(startupMessage({ user: "agent", database: "airlock", ...params }));
    return this.until("Z");
  }

  /** Simple query; resolves with the messages up to ReadyForQuery. */
  async query(sql: string): Promise<Msg[]> {
    await this.write(queryMessage(sql));
    return this.until("Z");
  }

  close() {
    this.socket.destroy();
  }
}

export const queryMessage = (sql: string) => message(T.Query, cstr(sql));
export const parseMessage = (name: string, sql: string, types: number[] = []) =>
  message(T.Parse, cstr(name), cstr(sql), int16(types.length), ...types.map(int32));
export function bindMessage(
  portal: string,
  statement: string,
  params: (string | null)[],
  resultFormats: number[] = [],
) {
  const parts: Buffer[] = [cstr(portal), cstr(statement), int16(0), int16(params.length)];
  for (const p of params) {
    if (p === null) parts.push(int32(-1));
    else {
      const b = Buffer.from(p, "utf8");
      parts.push(int32(b.length), b);
    }
  }
  parts.push(int16(resultFormats.length), ...resultFormats.map(int16));
  return message(T.Bind, ...parts);
}
export { describeMessage, executeMessage, syncMessage };
export const copyData = (data: string) => message(T.CopyData, Buffer.from(data, "utf8"));
export const copyDone = () => message(T.CopyDone);

export function errorOf(m: Msg | undefined): { code: string; message: string; severity: string } | undefined {
  if (m?.type !== "E") return undefined;
  const f = parseErrorFields(m.payload);
  return { code: f.get("C") ?? "", message: f.get("M") ?? "", severity: f.get("V") ?? f.get("S") ?? "" };
}

/** DataRow values as text (null for SQL NULL). */
export function rowValues(m: Msg): (string | null)[] {
  const n = m.payload.readInt16BE(0);
  const out: (string | null)[] = [];
  let o = 2;
  for (let i = 0; i < n; i++) {
    const len = m.payload.readInt32BE(o);
    o += 4;
    if (len < 0) out.push(null);
    else {
      out.push(m.payload.subarray(o, o + len).toString("utf8"));
      o += len;
    }
  }
  return out;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
