// Server-sent events (text/event-stream): finding where an event ends, and masking one event.
// The data of an event is the "data:" lines joined by "\n" (the SSE spec); it is masked as JSON
// when it parses (so field rules apply to LLM/MCP event payloads), else as text.
import { parseJsonLossless } from "./json.ts";
import type { Masker, MaskFinding } from "./masker.ts";

/**
 * Finds where events end in a stream fed chunk by chunk. Every character is looked at once, and
 * only in the chunk it arrived in: rescanning a growing buffer would be quadratic when a large
 * event trickles in in small chunks.
 */
export interface EventSplitter {
  /** Stream offsets just past each blank line completed by `chunk`. */
  feed(chunk: string): number[];
  /** Offsets completed by the end of the stream (a trailing "\r" that turned out to be a line end). */
  flush(): number[];
}

export function createEventSplitter(): EventSplitter {
  let offset = 0; // stream offset of the next character fed
  let lineStart = true; // the next character starts a line
  let cr: { lineStart: boolean } | null = null; // a "\r" whose line end length (1 or 2) is unknown yet

  const lineEnd = (wasLineStart: boolean, endsAt: number, out: number[]) => {
    if (wasLineStart) out.push(endsAt); // an empty line: the event is complete
    lineStart = true;
  };

  return {
    feed(chunk) {
      const out: number[] = [];
      for (let i = 0; i < chunk.length; i++) {
        const c = chunk.charCodeAt(i);
        if (cr) {
          const was = cr.lineStart;
          cr = null;
          if (c === 10) {
            lineEnd(was, offset + i + 1, out);
            continue;
          }
          lineEnd(was, offset + i, out);
        }
        if (c === 13) cr = { lineStart };
        else if (c === 10) lineEnd(lineStart, offset + i + 1, out);
        else lineStart = false;
      }
      offset += chunk.length;
      return out;
    },
    flush() {
      const out: number[] = [];
      if (cr) lineEnd(cr.lineStart, offset, out);
      cr = null;
      return out;
    },
  };
}

interface Line {
  content: string;
  eol: string;
  drop?: boolean;
}

function splitLines(raw: string): Line[] {
  const lines: Line[] = [];
  const re = /([^\r\n]*)(\r\n|\r|\n|$)/g;
  for (let m = re.exec(raw); m; m = re.exec(raw)) {
    lines.push({ content: m[1] ?? "", eol: m[2] ?? "" });
    if (m[2] === "") break;
  }
  return lines;
}

/** Mask one event (its text including the terminating blank line, or the unterminated tail). */
export function maskSseEvent(masker: Masker, raw: string): { text: string; findings: MaskFinding[] } {
  const lines = splitLines(raw);
  const findings: MaskFinding[] = [];
  const data: { line: Line; prefix: string; value: string }[] = [];
  for (const line of lines) {
    if (line.content === "") continue;
    const colon = line.content.indexOf(":");
    const field = colon < 0 ? line.content : line.content.slice(0, colon);
    if (field === "data") {
      if (colon < 0) data.push({ line, prefix: "data:", value: "" });
      else {
        const valueAt = line.content[colon + 1] === " " ? colon + 2 : colon + 1;
        data.push({ line, prefix: line.content.slice(0, valueAt), value: line.content.slice(valueAt) });
      }
      continue;
    }
    // event:, id:, retry: and ": comments" are short, but nothing stops a server putting data there.
    const r = masker.maskText(line.content);
    if (r.findings.length > 0) {
      line.content = r.text;
      findings.push(...r.findings);
    }
  }
  if (data.length > 0) {
    const joined = data.map((d) => d.value).join("\n");
    const masked = maskData(masker, joined);
    if (masked) {
      findings.push(...masked.findings);
      const parts = masked.lines;
      // Masking only shortens the data by lines (a multi-line PEM block becomes one token), so the
      // parts fill the first data lines and the rest are dropped; JSON comes back as one line.
      for (const [k, d] of data.entries()) {
        if (k < parts.length)
          d.line.content = d.prefix + (k === data.length - 1 ? parts.slice(k).join(" ") : parts[k]);
        else d.line.drop = true;
      }
    }
  }
  let text = "";
  for (const l of lines) if (!l.drop) text += l.content + l.eol;
  return { text, findings };
}

/** Masked data as lines, or null when nothing was masked (the event is then passed on verbatim). */
function maskData(masker: Masker, data: string): { lines: string[]; findings: MaskFinding[] } | null {
  const first = data.trimStart()[0];
  if (first === "{" || first === "[") {
    let parsed: unknown;
    let ok = false;
    try {
      parsed = parseJsonLossless(data);
      ok = true;
    } catch {
      // not JSON after all: mask as text below
    }
    if (ok) {
      try {
        const r = masker.maskJson(parsed);
        return r.findings.length > 0 ? { lines: [JSON.stringify(r.value)], findings: r.findings } : null;
      } catch {
        // too deep to walk: the text detectors below still see every value
      }
    }
  }
  const r = masker.maskText(data);
  return r.findings.length > 0 ? { lines: r.text.split("\n"), findings: r.findings } : null;
}
