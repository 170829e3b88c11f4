// The server's side of an MCP exchange, message by message: a JSON answer (one message or a batch)
// is read whole, an SSE stream (a POST's answer or the GET stream) is taken event by event as it
// arrives, and every JSON-RPC message in it goes through one inspector that returns what to relay
// or undefined to drop it (a server request the policy refuses, a changed tool definition). The
// stream is not read whole: a server that asks the agent something (sampling, elicitation) waits for
// the answer before it ends its stream. What cannot be read as JSON-RPC is not relayed (fail
// closed): clients parse JSON with other parsers, and a message only they could read would reach
// the agent unjudged.
import { createEventSplitter } from "../../masking/index.ts";

export type Message = Record<string, unknown>;

/** Returns the message to relay (possibly rewritten), or undefined to drop it. */
export type MessageInspector = (message: Message) => Message | undefined;

export class UnreadableAnswer extends Error {}

const isObject = (v: unknown): v is Message => typeof v === "object" && v !== null && !Array.isArray(v);

/** One message or a batch; non-objects are dropped. Undefined when nothing is left. */
function inspectValue(value: unknown, inspect: MessageInspector): unknown {
  if (Array.isArray(value)) {
    const kept = value
      .filter(isObject)
      .map(inspect)
      .filter((m) => m !== undefined);
    return kept.length > 0 ? kept : undefined;
  }
  return isObject(value) ? inspect(value) : undefined;
}

/**
 * A JSON answer: each message inspected. Throws UnreadableAnswer when it is not JSON, or when
 * nothing is left to relay (the agent waits for an answer, which a bare 202 would never give).
 */
export function inspectJsonAnswer(body: Buffer, inspect: MessageInspector): Buffer {
  let value: unknown;
  try {
    value = JSON.parse(body.toString("utf8"));
  } catch {
    throw new UnreadableAnswer("the MCP server's answer is not JSON");
  }
  const out = inspectValue(value, inspect);
  if (out === undefined)
    throw new UnreadableAnswer("the MCP server's answer held nothing Airlock could relay");
  return Buffer.from(JSON.stringify(out));
}

export interface SseAnswerFilter {
  /** Decoded text in; the events to relay out. Throws UnreadableAnswer past the event bound. */
  push(text: string): string;
  end(): string;
}

/** Rewrites one complete event (its text with the blank line that ends it); "" drops it. */
function inspectEvent(raw: string, inspect: MessageInspector, dropped: () => void): string {
  const eol = raw.includes("\r\n") ? "\r\n" : raw.includes("\r") && !raw.includes("\n") ? "\r" : "\n";
  const others: string[] = [];
  const data: string[] = [];
  for (const line of raw.split(/\r\n|\r|\n/)) {
    if (line === "") continue;
    if (line === "data" || line.startsWith("data:")) {
      const v = line.slice(5);
      data.push(v.startsWith(" ") ? v.slice(1) : v);
    } else others.push(line);
  }
  if (data.length === 0) return raw; // comments, retry:, id: only — nothing the client dispatches
  let value: unknown;
  try {
    value = JSON.parse(data.join("\n"));
  } catch {
    dropped();
    return "";
  }
  const out = inspectValue(value, inspect);
  if (out === undefined) {
    dropped();
    return "";
  }
  return `${[...others, `data: ${JSON.stringify(out)}`].join(eol)}${eol}${eol}`;
}

/**
 * An SSE answer, event by event. `maxEventChars` bounds an event still arriving: an event larger
 * than that cannot be judged before it is relayed, so the stream is refused.
 */
export function createSseAnswerFilter(
  inspect: MessageInspector,
  maxEventChars: number,
  onUnreadable: () => void = () => undefined,
): SseAnswerFilter {
  const splitter = createEventSplitter();
  let pending = "";
  let pendingStart = 0;
  const take = (ends: readonly number[]) => {
    let out = "";
    for (const end of ends) {
      const n = end - pendingStart;
      out += inspectEvent(pending.slice(0, n), inspect, onUnreadable);
      pending = pending.slice(n);
      pendingStart = end;
    }
    return out;
  };
  return {
    push(text) {
      pending += text;
      const out = take(splitter.feed(text));
      if (pending.length > maxEventChars)
        throw new UnreadableAnswer(
          `an event of the MCP server's stream is larger than ${maxEventChars} bytes`,
        );
      return out;
    },
    end() {
      const out = take(splitter.flush());
      // An unterminated last event is never dispatched by an SSE client: it is not relayed either.
      pending = "";
      return out;
    },
  };
}
