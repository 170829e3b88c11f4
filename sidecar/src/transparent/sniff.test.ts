import { createServer, type Server } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { beforeAll, describe, expect, it } from "vitest";
import { normalizeHost, sniff } from "./sniff.ts";

/** A real ClientHello, as Node's TLS client sends it, captured by a plain TCP server. */
async function captureClientHello(servername?: string): Promise<Buffer> {
  let server: Server | undefined;
  const hello = await new Promise<Buffer>((resolve, reject) => {
    server = createServer((s) => {
      const chunks: Buffer[] = [];
      s.on("data", (d: Buffer) => {
        chunks.push(d);
        const all = Buffer.concat(chunks);
        if (all.length >= 5 && all.length >= 5 + all.readUInt16BE(3)) {
          resolve(all);
          s.destroy();
        }
      });
    }).listen(0, "127.0.0.1", () => {
      const address = server?.address();
      if (!address || typeof address === "string") return reject(new Error("no address"));
      const c = tlsConnect({ host: "127.0.0.1", port: address.port, ...(servername ? { servername } : {}) });
      c.on("error", () => {});
    });
  });
  server?.close();
  return hello;
}

describe("sniff: TLS", () => {
  let hello: Buffer;
  beforeAll(async () => {
    hello = await captureClientHello("API.Example.COM");
  });

  it("reads the server name of a real ClientHello (lower-cased)", () => {
    expect(sniff(hello)).toEqual({ kind: "tls", serverName: "api.example.com" });
  });

  it("asks for more bytes until the record is complete", () => {
    for (const n of [1, 2, 5, 40, hello.length - 1])
      expect(sniff(hello.subarray(0, n))).toEqual({ kind: "need-more" });
  });

  it("reassembles a ClientHello split over two records", () => {
    const body = hello.subarray(5);
    const cut = 30;
    const record = (b: Buffer) =>
      Buffer.concat([Buffer.from([0x16, 0x03, 0x01, b.length >> 8, b.length & 255]), b]);
    const split = Buffer.concat([record(body.subarray(0, cut)), record(body.subarray(cut))]);
    expect(sniff(split.subarray(0, 5 + cut + 3))).toEqual({ kind: "need-more" });
    expect(sniff(split)).toEqual({ kind: "tls", serverName: "api.example.com" });
  });

  it("a ClientHello without SNI (IP literal) is TLS without a name", async () => {
    expect(sniff(await captureClientHello())).toEqual({ kind: "tls" });
  });

  it("a handshake record that is not a ClientHello is not usable", () => {
    expect(sniff(Buffer.from([0x16, 0x03, 0x03, 0x00, 0x04, 0x02, 0, 0, 0]))).toEqual({ kind: "unknown" });
    expect(sniff(Buffer.from([0x16, 0x09, 0x03]))).toEqual({ kind: "unknown" });
  });
});

describe("sniff: HTTP/1", () => {
  const req = (text: string) => Buffer.from(text, "latin1");
  it.each([
    ["GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n", "api.example.com"],
    ["POST /v1 HTTP/1.1\r\nuser-agent: x\r\nhost: API.example.com:8080\r\n\r\n", "api.example.com"],
    ["GET http://other.example:81/x HTTP/1.1\r\nHost: ignored.example\r\n\r\n", "other.example"],
    ["GET / HTTP/1.1\r\nHost: [FD00::2]:8080\r\n\r\n", "fd00::2"],
    ["GET / HTTP/1.0\r\nHost: 10.250.1.2\r\n", "10.250.1.2"],
    ["GET / HTTP/1.1\r\nHost: example.com.\r\n\r\n", "example.com"],
  ])("%j → %s", (text, host) => {
    expect(sniff(req(text))).toEqual({ kind: "http", host });
  });

  it("waits for the Host line to end, then answers before the whole head arrived", () => {
    expect(sniff(req("GE"))).toEqual({ kind: "need-more" });
    expect(sniff(req("GET /x HTTP/1.1\r\nHost: api.exa"))).toEqual({ kind: "need-more" });
    expect(sniff(req("GET /x HTTP/1.1\r\nHost: api.example.com\r\nAcc"))).toEqual({
      kind: "http",
      host: "api.example.com",
    });
  });

  it("an HTTP head without Host names nothing; a hostile Host is refused", () => {
    expect(sniff(req("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"))).toEqual({ kind: "http" });
    expect(sniff(req("GET / HTTP/1.1\r\nHost: a b/c\r\n\r\n"))).toEqual({ kind: "http" });
  });

  it.each([
    ["PostgreSQL SSLRequest", Buffer.from([0, 0, 0, 8, 4, 210, 22, 47])],
    ["SSH banner", req("SSH-2.0-OpenSSH_9.2\r\n")],
    ["lower-case method", req("get / HTTP/1.1\r\n")],
    ["HTTP/2 preface", req("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")],
  ])("%s is not HTTP/1 or TLS", (_, bytes) => {
    expect(sniff(bytes)).toEqual({ kind: "unknown" });
  });
});

describe("normalizeHost", () => {
  it("normalizes and refuses junk", () => {
    expect(normalizeHost(" Example.COM:443 ")).toBe("example.com");
    expect(normalizeHost("[::1]:80")).toBe("::1");
    expect(normalizeHost("fd00::1")).toBe("fd00::1");
    expect(normalizeHost("")).toBeUndefined();
    expect(normalizeHost("[::1")).toBeUndefined();
    expect(normalizeHost("user@host")).toBeUndefined();
  });
});
