import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { resolveMasking } from "../../operations/masking.ts";
import { binaryKindOf, binaryRefusal, maskBinaryValue, numericText } from "./binary-values.ts";
import { ProtocolError } from "./protocol.ts";

const slot = resolveMasking(
  [
    { name: "cols", columns: ["email"], strategy: "redact" },
    { name: "pii", detectors: ["email", "creditCard"], strategy: "redact" },
  ],
  "db",
  randomBytes(32),
).response;
if ("error" in slot || !slot.masker) throw new Error("masking rules did not compile");
const masker = slot.masker;

/** PostgreSQL's numeric send format for a few values (as numeric_send writes them). */
const numeric = (ndigits: number[], weight: number, sign: number, dscale: number) => {
  const b = Buffer.alloc(8 + 2 * ndigits.length);
  b.writeInt16BE(ndigits.length, 0);
  b.writeInt16BE(weight, 2);
  b.writeUInt16BE(sign, 4);
  b.writeInt16BE(dscale, 6);
  for (const [i, d] of ndigits.entries()) b.writeInt16BE(d, 8 + 2 * i);
  return b;
};

const textArray = (elementOid: number, items: (string | null)[]) => {
  const head = Buffer.alloc(20);
  head.writeInt32BE(1, 0);
  head.writeInt32BE(items.includes(null) ? 1 : 0, 4);
  head.writeUInt32BE(elementOid, 8);
  head.writeInt32BE(items.length, 12);
  head.writeInt32BE(1, 16);
  const parts = items.flatMap((v) => {
    const len = Buffer.alloc(4);
    if (v === null) {
      len.writeInt32BE(-1);
      return [len];
    }
    const b = Buffer.from(v);
    len.writeInt32BE(b.length);
    return [len, b];
  });
  return Buffer.concat([head, ...parts]);
};

const readTextArray = (b: Buffer) => {
  const n = b.readInt32BE(12);
  const out: (string | null)[] = [];
  let off = 20;
  for (let i = 0; i < n; i++) {
    const len = b.readInt32BE(off);
    off += 4;
    if (len < 0) out.push(null);
    else {
      out.push(b.toString("utf8", off, off + len));
      off += len;
    }
  }
  return out;
};

describe("binary result values", () => {
  it("renders numerics as PostgreSQL's text form", () => {
    expect(numericText(numeric([1234, 5678], 1, 0, 0))).toBe("12345678");
    expect(numericText(numeric([12, 5000], 0, 0x4000, 2))).toBe("-12.50");
    expect(numericText(numeric([411, 1111, 1111, 1111], 3, 0, 0))).toBe("411111111111111");
    expect(numericText(numeric([5], -1, 0, 4))).toBe("0.0005");
    expect(numericText(numeric([], 0, 0, 0))).toBe("0");
    expect(numericText(numeric([], 0, 0xc000, 0))).toBe("NaN");
    expect(() => numericText(Buffer.alloc(3))).toThrow(ProtocolError);
  });

  it("masks text, varchar, jsonb (after its version byte) in place", () => {
    const counts: Record<string, number> = {};
    const text = binaryKindOf(25);
    if (!text) throw new Error("text unknown");
    expect(
      maskBinaryValue(masker, text, "note", "note", Buffer.from("nothing here"), counts),
    ).toBeUndefined();
    const masked = maskBinaryValue(masker, text, "note", "note", Buffer.from("mail a@b.example now"), counts);
    expect(masked?.toString()).toMatch(/^mail .* now$/);
    expect(masked?.toString()).not.toContain("a@b.example");
    const jsonb = binaryKindOf(3802);
    if (!jsonb) throw new Error("jsonb unknown");
    const j = maskBinaryValue(masker, jsonb, "doc", "doc", Buffer.from('\x01{"to": "a@b.example"}'), counts);
    expect(j?.[0]).toBe(1);
    expect(j?.toString("utf8", 1)).not.toContain("a@b.example");
    // A column rule masks the whole value.
    expect(maskBinaryValue(masker, text, "email", "contact", Buffer.from("x"), counts)?.toString()).not.toBe(
      "x",
    );
    expect(counts.email).toBe(2);
  });

  it("scans numbers and UUIDs as text; a finding cannot be carried and ends the result", () => {
    const int8 = binaryKindOf(20);
    if (!int8) throw new Error("int8 unknown");
    const v = Buffer.alloc(8);
    v.writeBigInt64BE(42n);
    expect(maskBinaryValue(masker, int8, "n", "n", v, {})).toBeUndefined();
    v.writeBigInt64BE(4111111111111111n);
    expect(() => maskBinaryValue(masker, int8, "pan", "pan", v, {})).toThrow(/"pan" \(int8.*pan::text/);
    expect(() => maskBinaryValue(masker, int8, "n", "n", Buffer.alloc(4), {})).toThrow(ProtocolError);
  });

  it("masks arrays element by element and keeps them valid", () => {
    const arr = binaryKindOf(1009);
    if (!arr) throw new Error("text[] unknown");
    const out = maskBinaryValue(masker, arr, "a", "a", textArray(25, ["ok", null, "x a@b.example"]), {});
    if (!out) throw new Error("not masked");
    const items = readTextArray(out);
    expect(items[0]).toBe("ok");
    expect(items[1]).toBeNull();
    expect(items[2]).toMatch(/^x /);
    expect(items[2]).not.toContain("a@b.example");
    // Element type that does not match the column type, and truncation: malformed.
    expect(() => maskBinaryValue(masker, arr, "a", "a", textArray(23, ["1"]), {})).toThrow(ProtocolError);
    const whole = textArray(25, ["a@b.example"]);
    for (let cut = 0; cut < whole.length; cut++)
      expect(() => maskBinaryValue(masker, arr, "a", "a", whole.subarray(0, cut), {})).toThrow(ProtocolError);
  });

  it("refuses unknown types and column rules on types that cannot carry a mask, naming the cast", () => {
    expect(binaryRefusal("email", 25, true)).toBeUndefined();
    expect(binaryRefusal("n", 23, false)).toBeUndefined();
    expect(binaryRefusal("n", 23, true)).toMatch(/n::text/);
    expect(binaryRefusal("Odd Name", 869, false)).toMatch(/"Odd Name"::text/);
    expect(binaryRefusal("ids", 1007, true)).toMatch(/cannot carry/);
    expect(binaryRefusal("emails", 1009, true)).toBeUndefined();
  });
});
