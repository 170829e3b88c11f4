import { describe, expect, it } from "vitest";
import { parseMcpBody } from "./jsonrpc.ts";

const b = (v: unknown) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v));

describe("parseMcpBody", () => {
  it("turns requests into operations and counts notifications and responses", () => {
    const r = parseMcpBody(
      b([
        { jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "t", arguments: { a: 1 } } },
        { jsonrpc: "2.0", id: "x", method: "resources/read", params: { uri: "file:///a" } },
        { jsonrpc: "2.0", id: 3, method: "prompts/get", params: { name: "p" } },
        { jsonrpc: "2.0", method: "notifications/initialized" },
        { jsonrpc: "2.0", method: "notifications/cancelled", params: { requestId: 4 } },
        { jsonrpc: "2.0", id: 9, result: {} },
      ]),
    );
    expect(r).toEqual({
      ok: true,
      batch: true,
      others: 3,
      cancelled: [4],
      requests: [
        { id: 1, operation: { kind: "mcp", method: "tools/call", tool: "t" }, arguments: { a: 1 } },
        { id: "x", operation: { kind: "mcp", method: "resources/read", resource: "file:///a" } },
        { id: 3, operation: { kind: "mcp", method: "prompts/get", prompt: "p" } },
      ],
    });
  });
  it.each([
    ["{", -32700],
    ["[]", -32600],
    [JSON.stringify({ jsonrpc: "1.0", id: 1, method: "x" }), -32600],
    [JSON.stringify({ jsonrpc: "2.0", id: {}, method: "x" }), -32600],
    [JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/call", params: "delete" }), -32600],
    [JSON.stringify({ jsonrpc: "2.0", id: 1 }), -32600],
  ])("%s is refused with %i", (text, code) => {
    const r = parseMcpBody(b(text));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.code).toBe(code);
  });
});
