// checkHello: which ClientHellos a passthrough connection relays. Hand-built hellos, so that the
// server_name extension can be malformed in ways real clients never are and an attacker can be.
import { describe, expect, it } from "vitest";
import type { CompiledConnection } from "../../policy/compile.ts";
import { checkHello } from "./passthrough.ts";

const u16 = (n: number) => Buffer.from([n >> 8, n & 255]);

/** A TLS record carrying a ClientHello whose extensions are `exts` (type, data) in order. */
function hello(exts: [type: number, data: Buffer][]): Buffer {
  const extBytes = Buffer.concat(exts.map(([t, d]) => Buffer.concat([u16(t), u16(d.length), d])));
  const body = Buffer.concat([
    Buffer.from([3, 3]),
    Buffer.alloc(32),
    Buffer.from([0]),
    Buffer.concat([u16(2), Buffer.from([0x13, 0x01])]),
    Buffer.from([1, 0]),
    u16(extBytes.length),
    extBytes,
  ]);
  const hs = Buffer.concat([Buffer.from([1, 0]), u16(body.length), body]);
  return Buffer.concat([Buffer.from([0x16, 3, 1]), u16(hs.length), hs]);
}

/** A server_name extension's data: a list of (name type, name) entries. */
const serverNames = (...entries: [type: number, name: string][]) => {
  const list = Buffer.concat(
    entries.map(([t, n]) =>
      Buffer.concat([Buffer.from([t]), u16(Buffer.byteLength(n, "latin1")), Buffer.from(n, "latin1")]),
    ),
  );
  return Buffer.concat([u16(list.length), list]);
};
const sni = (name: string) => hello([[0, serverNames([0, name])]]);

const connection = (host: string, aliases?: string[]): CompiledConnection => ({
  policy: "agents/p",
  spec: {
    name: "pinned",
    protocol: "http",
    target: { host, port: 443, ...(aliases ? { aliases } : {}) },
    tls: { mode: "passthrough" },
  },
  requireUserToken: false,
  oidc: undefined,
  rules: { deny: [], requireApproval: [], allow: [] },
  masking: [],
});

describe("checkHello", () => {
  const byName = connection("pinned.example.com", ["alt.example.com"]);
  const byAddress = connection("203.0.113.7");

  it("relays a hello naming the host or an alias, in any case, with a trailing dot", () => {
    expect(checkHello(byName, sni("pinned.example.com"))).toEqual({ sni: "pinned.example.com" });
    expect(checkHello(byName, sni("PINNED.Example.com."))).toEqual({ sni: "pinned.example.com" });
    expect(checkHello(byName, sni("alt.example.com"))).toEqual({ sni: "alt.example.com" });
  });

  it("refuses another name, and no name for a named host; an address target may take no name", () => {
    expect(checkHello(byName, sni("other.example")).refusal?.reason).toBe("sni_mismatch");
    expect(checkHello(byName, hello([])).refusal?.reason).toBe("no_sni");
    expect(checkHello(byAddress, hello([]))).toEqual({});
    expect(checkHello(byAddress, sni("other.example")).refusal?.reason).toBe("sni_mismatch");
  });

  // A server_name that is there but unusable is never "no name", whatever the target.
  const malformed: [string, Buffer][] = [
    ["a NUL", sni("other.example\0")],
    ["a space", sni("other tenant.example")],
    ["a port", sni("pinned.example.com:evil")],
    ["an empty name", sni("")],
    ["two names, the first bad", hello([[0, serverNames([0, "bad name"], [0, "other.example"])]])],
    ["two names, the first good", hello([[0, serverNames([0, "pinned.example.com"], [0, "other.example"])]])],
    ["another name type", hello([[0, serverNames([1, "pinned.example.com"])]])],
    [
      "two server_name extensions",
      hello([
        [0, serverNames([0, "pinned.example.com"])],
        [0, serverNames([0, "other.example"])],
      ]),
    ],
    [
      "a list length past its data",
      hello([[0, Buffer.concat([u16(40), Buffer.from([0]), u16(5), Buffer.from("a.b.c")])]]),
    ],
  ];
  for (const [what, bytes] of malformed)
    it(`refuses a server_name with ${what} (bad_sni), on a named and on an address target`, () => {
      expect(checkHello(byName, bytes).refusal?.reason).toBe("bad_sni");
      expect(checkHello(byAddress, bytes).refusal?.reason).toBe("bad_sni");
    });

  it("refuses what is not TLS", () => {
    expect(
      checkHello(byName, Buffer.from("GET / HTTP/1.1\r\nHost: pinned.example.com\r\n\r\n")).refusal?.reason,
    ).toBe("not_tls");
  });
});
