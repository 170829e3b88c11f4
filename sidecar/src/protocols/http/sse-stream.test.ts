import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { createMasker, type MaskFinding } from "../../masking/index.ts";
import { createSseMasker } from "./sse-stream.ts";

const masker = createMasker({
  rules: [{ name: "pii", detectors: ["email", "creditCard"], strategy: "redact" }],
  hashKey: randomBytes(32),
});
const EMAIL = "jane.doe@example.com";
const CARD = "4242 4242 4242 4242";

function run(input: string, chunk = 1): { out: string; findings: MaskFinding[] } {
  const findings: MaskFinding[] = [];
  const s = createSseMasker(masker, (f) => findings.push(...f));
  let out = "";
  for (let i = 0; i < input.length; i += chunk) out += s.push(input.slice(i, i + chunk));
  return { out: out + s.end(), findings };
}

const events = (out: string) =>
  out
    .split("\n\n")
    .filter(Boolean)
    .map(
      (e) =>
        e
          .split("\n")
          .find((l) => l.startsWith("data: "))
          ?.slice(6) ?? "",
    );

describe("createSseMasker", () => {
  it("masks plain events one by one", () => {
    const { out, findings } = run(`data: mail ${EMAIL}\n\ndata: ok\n\n`);
    expect(out).not.toContain(EMAIL);
    expect(out).toContain("data: ok\n\n");
    expect(findings.map((f) => f.detector)).toEqual(["email"]);
  });

  it("reassembles Anthropic text deltas so a value split across events is masked", () => {
    const text = `Contact ${EMAIL}, card ${CARD}.`;
    const deltas = (text.match(/.{1,3}/gs) ?? []).map(
      (t) =>
        `event: content_block_delta\ndata: ${JSON.stringify({ type: "content_block_delta", index: 0, delta: { type: "text_delta", text: t } })}\n\n`,
    );
    const input =
      `event: content_block_start\ndata: {"type":"content_block_start","index":0}\n\n${deltas.join("")}` +
      'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n' +
      'event: message_stop\ndata: {"type":"message_stop"}\n\n';
    const { out, findings } = run(input, 5);
    const joined = events(out)
      .map((d) => JSON.parse(d) as { type: string; delta?: { text: string } })
      .filter((e) => e.type === "content_block_delta")
      .map((e) => e.delta?.text ?? "")
      .join("");
    expect(joined).toMatch(/^Contact .+, card .+\.$/);
    expect(joined).not.toContain(EMAIL);
    expect(joined).not.toContain("4242 4242");
    expect(findings.map((f) => f.detector).sort()).toEqual(["creditCard", "email"]);
    // The held-back tail goes out before the block stops.
    const types = events(out).map((d) => (JSON.parse(d) as { type: string }).type);
    expect(types.slice(-2)).toEqual(["content_block_stop", "message_stop"]);
  });

  it("reassembles OpenAI chat deltas and flushes with finish_reason", () => {
    const text = `Mail ${EMAIL} now`;
    const chunks = (text.match(/.{1,4}/gs) ?? []).map(
      (t) =>
        `data: ${JSON.stringify({ id: "c1", object: "chat.completion.chunk", choices: [{ index: 0, delta: { content: t }, finish_reason: null }] })}\n\n`,
    );
    const input = `${chunks.join("")}data: ${JSON.stringify({ id: "c1", choices: [{ index: 0, delta: {}, finish_reason: "stop" }] })}\n\ndata: [DONE]\n\n`;
    const { out } = run(input, 7);
    const parsed = events(out);
    expect(parsed.at(-1)).toBe("[DONE]");
    const joined = parsed
      .slice(0, -1)
      .map(
        (d) =>
          (JSON.parse(d) as { choices: { delta: { content?: string } }[] }).choices[0]?.delta.content ?? "",
      )
      .join("");
    expect(joined).toMatch(/^Mail .+ now$/);
    expect(joined).not.toContain(EMAIL);
  });

  it("flushes open blocks when the stream ends without a stop event", () => {
    const input = `data: ${JSON.stringify({ type: "content_block_delta", index: 0, delta: { type: "text_delta", text: `x ${EMAIL}` } })}\n\n`;
    const { out } = run(input);
    expect(out).not.toContain(EMAIL);
    const text = events(out)
      .map((d) => (JSON.parse(d) as { delta?: { text?: string } }).delta?.text ?? "")
      .join("");
    expect(text).toBe("x [REDACTED:email]");
  });
});
