import { describe, expect, it } from "vitest";
import { classify, decoders, looksBinary, upstreamAcceptEncoding } from "./content.ts";
import { classifyUpstreamError } from "./upstream-errors.ts";

describe("content classification", () => {
  it.each([
    ["application/json", "json"],
    ["application/json; charset=utf-8", "json"],
    ["application/problem+json", "json"],
    ["text/html", "text"],
    ["TEXT/Plain;charset=UTF-8", "text"],
    ["application/x-ndjson", "text"],
    ["text/event-stream", "sse"],
    ["application/octet-stream", "other"],
    ["image/png", "other"],
    [undefined, "other"],
  ])("%s is %s", (type, kind) => {
    expect(classify(type)).toBe(kind);
  });

  it("builds decoders in reverse order of the header and refuses unknown codings", () => {
    expect(decoders(undefined)).toEqual([]);
    expect(decoders("identity")).toEqual([]);
    expect(decoders("gzip, br")).toHaveLength(2);
    expect(decoders("compress")).toBeUndefined();
    expect(decoders("gzip, compress")).toBeUndefined();
  });
});

describe("upstream Accept-Encoding", () => {
  it.each([
    [undefined, "identity"],
    ["gzip", "gzip"],
    ["br, gzip;q=0.5, zstd", "gzip, br"],
    ["gzip;q=0, deflate", "deflate"],
    ["*", "gzip, deflate, br"],
    ["zstd", "identity"],
  ])("agent %j → %j", (agent, expected) => {
    expect(upstreamAcceptEncoding(agent)).toBe(expected);
  });
});

describe("upstream errors", () => {
  it.each([
    ["DEPTH_ZERO_SELF_SIGNED_CERT", "tls", 502],
    ["ERR_TLS_CERT_ALTNAME_INVALID", "tls", 502],
    ["UNABLE_TO_VERIFY_LEAF_SIGNATURE", "tls", 502],
    ["ECONNREFUSED", "connect", 502],
    ["ECONNECT_TIMEOUT", "timeout", 504],
    ["ECONNRESET", "reset", 502],
    ["weird code!", "error", 502],
  ])("%s → %s", (code, reason, status) => {
    const f = classifyUpstreamError(Object.assign(new Error("x"), { code }));
    expect(f.reason).toBe(reason);
    expect(f.status).toBe(status);
  });
});

describe("looksBinary judges bytes, not labels", () => {
  it.each([
    ["plain ASCII", Buffer.from("hello, world\n"), false],
    ["UTF-8 with tabs, CRLF and an escape", Buffer.from("caf\u00e9\tok\r\n\u001b[0m"), false],
    ["empty", Buffer.alloc(0), false],
    ["a NUL byte", Buffer.from("a\0b"), true],
    ["other C0 controls", Buffer.from([0x41, 0x01, 0x42]), true],
    ["invalid UTF-8", Buffer.from([0x66, 0xff, 0xfe]), true],
    ["a PNG signature", Buffer.from("89504e470d0a1a0a", "hex"), true],
  ])("%s → %s", (_label, bytes, binary) => {
    expect(looksBinary(bytes)).toBe(binary);
  });

  it("does not hold a multi-byte character cut at the end of a prefix against it", () => {
    const e = Buffer.from("caf\u00e9");
    expect(looksBinary(e.subarray(0, e.length - 1), true)).toBe(false);
    expect(looksBinary(e.subarray(0, e.length - 1))).toBe(true);
  });
});
