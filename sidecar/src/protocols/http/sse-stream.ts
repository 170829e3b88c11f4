// Masking a text/event-stream while it streams. Events are split by the masking library's event
// splitter (linear in the stream) and masked one by one, with one addition that LLM APIs need:
// their answers arrive as many small
// text deltas, one per event, so a value such as an email address is routinely split across
// events and no single event contains it. Deltas of the two common streaming formats are
// therefore reassembled into one text stream per content block and masked with the library's
// text-mode stream masker, which holds back only the text a value might still be completing
// (the last word, a run of digit groups, …: masking/stream.ts), so deltas keep their pace:
//   Anthropic Messages — `content_block_delta` with `text_delta.text`, `thinking_delta.thinking`
//     or `input_json_delta.partial_json`, per `index`; flushed at `content_block_stop`.
//   OpenAI Chat Completions — `choices[i].delta.content`, per choice; flushed with the choice's
//     `finish_reason`, at `[DONE]`, or at the end of the stream.
// Held-back text is released in a later delta of the same block (or a synthetic delta right
// before the block ends), so the agent's concatenated text is the masked text.
import {
  createEventSplitter,
  createStreamMasker,
  type Masker,
  type MaskFinding,
  maskSseEvent,
  type StreamMasker,
} from "../../masking/index.ts";

export interface SseMasker {
  push(text: string): string;
  end(): string;
}

const MAX_EVENT = 256 * 1024;

interface ParsedEvent {
  /** Non-data lines (event:, id:, retry:, comments) in order. */
  others: string[];
  data: string;
  eol: string;
}

function parseEvent(raw: string): ParsedEvent {
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
  return { others, data: data.join("\n"), eol };
}

function formatEvent(others: readonly string[], data: string, eol: string): string {
  return `${[...others, `data: ${data}`].join(eol)}${eol}${eol}`;
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

/** The text field of an Anthropic delta, by delta type. */
const ANTHROPIC_TEXT: Record<string, string> = {
  text_delta: "text",
  thinking_delta: "thinking",
  input_json_delta: "partial_json",
};

export function createSseMasker(masker: Masker, onFindings: (f: MaskFinding[]) => void): SseMasker {
  const events = createStreamMasker(masker, { mode: "sse", onFindings });
  const blocks = new Map<string, StreamMasker>();
  const splitter = createEventSplitter();
  let pending = "";
  let pendingStart = 0; // stream offset of pending[0]
  let passthrough = false; // an event outgrew MAX_EVENT: the library's sse mode handles the rest
  let lastOpenAi: Json | undefined;

  const block = (key: string) => {
    let s = blocks.get(key);
    if (!s) {
      s = createStreamMasker(masker, { mode: "text", onFindings });
      blocks.set(key, s);
    }
    return s;
  };
  const finish = (key: string) => {
    const s = blocks.get(key);
    blocks.delete(key);
    return s ? s.end() : "";
  };

  /**
   * Masks the rest of a delta event (ids and metadata may hold values too): the stream-masked
   * text is blanked while the JSON masker runs, then put in.
   */
  const maskRest = (obj: Json, setText: (o: Json, blank: boolean) => void): Json => {
    setText(obj, true);
    const r = masker.maskJson(obj);
    if (r.findings.length > 0) onFindings(r.findings);
    const out = isObject(r.value) ? r.value : obj;
    setText(out, false);
    return out;
  };

  const anthropicDelta = (index: number, field: string, type: string, text: string, eol: string) =>
    formatEvent(
      ["event: content_block_delta"],
      JSON.stringify({ type: "content_block_delta", index, delta: { type, [field]: text } }),
      eol,
    );

  function flushOpenAi(eol: string): string {
    let out = "";
    for (const key of [...blocks.keys()]) {
      if (!key.startsWith("o:")) continue;
      const tail = finish(key);
      if (tail === "") continue;
      const skeleton: Json = { ...(lastOpenAi ?? { object: "chat.completion.chunk" }) };
      skeleton.choices = [{ index: Number(key.slice(2)), delta: { content: tail }, finish_reason: null }];
      out += formatEvent([], JSON.stringify(skeleton), eol);
    }
    return out;
  }

  function flushAnthropic(index: number | undefined, eol: string): string {
    let out = "";
    for (const key of [...blocks.keys()]) {
      if (!key.startsWith("a:")) continue;
      const [, i, type] = key.split(":");
      if (index !== undefined && Number(i) !== index) continue;
      const tail = finish(key);
      const field = ANTHROPIC_TEXT[type ?? ""];
      if (tail !== "" && field) out += anthropicDelta(Number(i), field, type ?? "", tail, eol);
    }
    return out;
  }

  /** A complete event that is not a text delta, masked as an event. */
  function whole(raw: string): string {
    const r = maskSseEvent(masker, raw);
    if (r.findings.length > 0) onFindings(r.findings);
    return r.text;
  }

  function handle(raw: string): string {
    const ev = parseEvent(raw);
    const first = ev.data.trimStart()[0];
    if (ev.data.trim() === "[DONE]") return flushOpenAi(ev.eol) + whole(raw);
    if (first !== "{") return whole(raw);
    let obj: unknown;
    try {
      obj = JSON.parse(ev.data);
    } catch {
      return whole(raw);
    }
    if (!isObject(obj)) return whole(raw);

    // Anthropic Messages
    if (obj.type === "content_block_delta" && typeof obj.index === "number" && isObject(obj.delta)) {
      const type = String(obj.delta.type ?? "");
      const field = ANTHROPIC_TEXT[type];
      const text = field ? obj.delta[field] : undefined;
      if (field && typeof text === "string") {
        const masked = block(`a:${obj.index}:${type}`).push(text);
        const setText = (o: Json, blank: boolean) => {
          if (isObject(o.delta)) o.delta = { ...o.delta, [field]: blank ? "" : masked };
        };
        return formatEvent(ev.others, JSON.stringify(maskRest(obj, setText)), ev.eol);
      }
    }
    if (obj.type === "content_block_stop" && typeof obj.index === "number")
      return flushAnthropic(obj.index, ev.eol) + whole(raw);
    if (obj.type === "message_stop") return flushAnthropic(undefined, ev.eol) + whole(raw);

    // OpenAI Chat Completions
    if (Array.isArray(obj.choices) && obj.choices.some((c) => isObject(c) && isObject(c.delta))) {
      const { choices: _c, ...rest } = obj;
      lastOpenAi = rest;
      const texts = new Map<number, string>();
      for (const c of obj.choices) {
        if (!isObject(c) || !isObject(c.delta) || typeof c.index !== "number") continue;
        const key = `o:${c.index}`;
        let masked = typeof c.delta.content === "string" ? block(key).push(c.delta.content) : undefined;
        // The choice is complete: whatever was held back goes out with this chunk.
        if (c.finish_reason !== null && c.finish_reason !== undefined) masked = (masked ?? "") + finish(key);
        if (masked !== undefined) texts.set(c.index, masked);
      }
      const setText = (o: Json, blank: boolean) => {
        if (!Array.isArray(o.choices)) return;
        o.choices = o.choices.map((c: unknown) => {
          if (!isObject(c) || !isObject(c.delta) || typeof c.index !== "number") return c;
          const t = texts.get(c.index);
          return t === undefined ? c : { ...c, delta: { ...c.delta, content: blank ? "" : t } };
        });
      };
      return formatEvent(ev.others, JSON.stringify(maskRest(obj, setText)), ev.eol);
    }
    return whole(raw);
  }

  function takeEvents(ends: readonly number[]): string {
    let out = "";
    for (const end of ends) {
      const n = end - pendingStart;
      out += handle(pending.slice(0, n));
      pending = pending.slice(n);
      pendingStart = end;
    }
    return out;
  }

  return {
    push(text) {
      if (passthrough) return events.push(text);
      pending += text;
      let out = takeEvents(splitter.feed(text));
      if (pending.length > MAX_EVENT) {
        passthrough = true;
        out += flushAnthropic(undefined, "\n") + flushOpenAi("\n") + events.push(pending);
        pending = "";
      }
      return out;
    },
    end() {
      if (passthrough) return events.end();
      let out = takeEvents(splitter.flush());
      out += flushAnthropic(undefined, "\n") + flushOpenAi("\n");
      if (pending !== "") out += events.push(pending);
      pending = "";
      return out + events.end();
    },
  };
}
