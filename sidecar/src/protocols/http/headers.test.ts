import { describe, expect, it } from "vitest";
import { declaredLength, downstreamResponseHeaders, upstreamRequestHeaders } from "./headers.ts";

describe("upstream request headers", () => {
  const incoming = {
    host: "127.0.0.1:15001",
    connection: "keep-alive, X-Custom-Hop",
    "keep-alive": "timeout=5",
    "x-custom-hop": "1",
    te: "trailers",
    "transfer-encoding": "chunked",
    "proxy-authorization": "Basic abc",
    authorization: "Bearer agent",
    "x-api-key": "agent",
    "x-airlock-identity": "Bearer a.b.c",
    expect: "100-continue",
    "x-request-id": "r1",
    cookie: "a=b",
  };

  it("drops hop-by-hop, identity and listed credential headers and injects the credential", () => {
    const out = upstreamRequestHeaders(incoming, {
      host: "api.example.com",
      drop: ["authorization", "x-api-key", "proxy-authorization"],
      inject: { name: "Authorization", value: "Bearer sidecar" },
      websocket: false,
    });
    expect(out).toEqual({
      host: "api.example.com",
      authorization: "Bearer sidecar",
      "x-request-id": "r1",
      cookie: "a=b",
    });
  });

  it("keeps the upgrade handshake for WebSockets and can override Accept-Encoding", () => {
    const out = upstreamRequestHeaders(
      { upgrade: "websocket", connection: "Upgrade", "sec-websocket-key": "k", "accept-encoding": "zstd" },
      { host: "h", drop: [], websocket: true, acceptEncoding: "gzip, deflate, br" },
    );
    expect(out).toMatchObject({
      upgrade: "websocket",
      connection: "Upgrade",
      "sec-websocket-key": "k",
      "accept-encoding": "gzip, deflate, br",
    });
  });

  it("strips hop-by-hop headers from responses", () => {
    expect(
      downstreamResponseHeaders({
        connection: "close",
        "transfer-encoding": "chunked",
        "content-type": "a/b",
      }),
    ).toEqual({ "content-type": "a/b" });
  });

  it("reads Content-Length strictly", () => {
    expect(declaredLength({})).toBeUndefined();
    expect(declaredLength({ "content-length": "12" })).toBe(12);
    expect(declaredLength({ "content-length": "1e3" })).toBeNaN();
  });
});
