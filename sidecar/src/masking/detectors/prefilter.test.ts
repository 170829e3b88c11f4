// Detectors' byte pre-checks (mayOccurIn) must never rule out text their `find` matches: a false
// "no" would let a value through unmasked. Checked on the detector fixtures and on random text
// built from the characters the detectors care about.
import { describe, expect, it } from "vitest";
import { createMasker } from "../masker.ts";
import { compileDetectors, createDetectors, findAll } from "./index.ts";
import { compileTriggers } from "./triggers.ts";
import { DETECTOR_IDS } from "./types.ts";

const ALPHABET = [..."0123456789 -.@_abcxyzABC:/+()", "é", "€", "😀", "０", "＠", "\u00a0", "\n"];
const SAMPLES = [
  "4111 1111 1111 1111",
  "card 4111-1111-1111-1111 exp",
  "5500000000000004",
  "ann@example.com",
  "mail: ann.b+tag@sub.example.org.",
  "café ann@exämple.com",
  "no digits here",
  "12345",
  " ".repeat(84),
  "qty 2 4111 1111 1111 1111",
  "378282246310005",
  "STRIPE_KEY=sk_live_51Hx8kQ2eZvKYlo2C9wX3mN7pR1sT8uW3yB6cE0fH5jK9aD2gJ",
  "tok glpat-Xk4vQ9zL2mN7pR1sT8uW npm_Ab3De6Gh9Jk2Mn5Pq8St1Vw4Yz7Bc0Ef3Hi6",
  "Password=Tr0ub4dor&3x; AccountKey=Xk4vQ9zL2mN7pR1sT8uW3yB6cE0fH5jK==;",
  "ghp_A1b2C3d4E5A1b2C3d4E5A1b2C3d4E5f6G7h8 AKIAIOSFODNN7EXAMPLE xoxb-123456789012-abcdefghij",
];

function randomText(rand: () => number): string {
  const n = Math.floor(rand() * 40);
  let s = "";
  for (let i = 0; i < n; i++) s += ALPHABET[Math.floor(rand() * ALPHABET.length)];
  return s;
}

// A small deterministic generator (seeded): the same cases every run.
function seeded(seed: number): () => number {
  let x = seed;
  return () => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return x / 2 ** 31;
  };
}

describe("detector byte pre-checks", () => {
  const detectors = createDetectors();
  const rand = seeded(42);
  const texts = [...SAMPLES];
  for (let i = 0; i < 20000; i++) texts.push(randomText(rand));
  // Card-shaped texts so the random set has positives too.
  for (let i = 0; i < 2000; i++) texts.push(`${randomText(rand)}4111 1111 1111 1111${randomText(rand)}`);

  for (const id of DETECTOR_IDS) {
    const d = detectors.get(id);
    const mayOccurIn = d?.mayOccurIn;
    if (!d || !mayOccurIn) continue;
    it(`${id}: never rules out a text it matches`, () => {
      let positives = 0;
      for (const text of texts) {
        const bytes = Buffer.from(`xx${text}yy`, "utf8");
        const start = 2;
        const end = bytes.length - 2;
        const found = d.find(text).length > 0;
        if (found) positives++;
        if (found) expect(mayOccurIn(bytes, start, end), JSON.stringify(text)).toBe(true);
      }
      expect(positives).toBeGreaterThan(0);
    });
  }

  it("a compiled set's keyword prefilter never changes what is found", () => {
    const all = [...detectors.values()];
    const set = compileDetectors(all);
    let positives = 0;
    const keyed = (text: string) => [text, `${text} SK${"0a".repeat(16)}`, text.toUpperCase()];
    for (const text of [...texts.slice(0, 4000), ...SAMPLES.flatMap(keyed)]) {
      const expected = findAll(text, all);
      if (expected.length > 0) positives++;
      expect(set.find(text), JSON.stringify(text)).toEqual(expected);
      const bytes = Buffer.from(text, "utf8");
      if (expected.length > 0)
        expect(set.mayOccurIn(bytes, 0, bytes.length), JSON.stringify(text)).toBe(true);
    }
    expect(positives).toBeGreaterThan(40);
    // A label in the field name counts as the keyword (JSON values, SQL columns).
    expect(set.find("q8Xv2Lm5Np8Rt1Wz4Bc6", { key: "client_secret" }).map((f) => f.detector)).toEqual([
      "keywordSecret",
    ]);
  });

  it("a set of detectors with byte triggers checks them in one pass without a false no", () => {
    const withTriggers = [...detectors.values()].filter((d) => d.trigger);
    expect(withTriggers.map((d) => d.id).sort()).toEqual(["creditCard", "email"]);
    const set = compileDetectors(withTriggers);
    let positives = 0;
    let skipped = 0;
    for (const text of texts) {
      const bytes = Buffer.from(`@.${text}@.`, "utf8");
      const may = set.mayOccurIn(bytes, 2, bytes.length - 2);
      if (!may) skipped++;
      if (findAll(text, withTriggers).length > 0) {
        positives++;
        expect(may, JSON.stringify(text)).toBe(true);
      }
    }
    expect(positives).toBeGreaterThan(400);
    expect(skipped).toBeGreaterThan(1000);
  });

  it("fuses triggers: the lowest min of one byte set wins, and any set met is enough", () => {
    const check = compileTriggers([
      { bytes: "0123456789", min: 13 },
      { bytes: "9876543210", min: 9 },
      { bytes: "@", min: 1 },
    ]);
    const b = (s: string) => Buffer.from(s);
    expect(check(b("12345678"), 0, 8)).toBe(false);
    expect(check(b("123-456-789"), 0, 11)).toBe(true);
    expect(check(b("x@y"), 0, 3)).toBe(true);
    expect(check(b("x@y"), 2, 3)).toBe(false);
    expect(check(b(""), 0, 0)).toBe(false);
    // Counts start afresh on every call, after a no and after a yes alike.
    expect(check(b("12345678"), 0, 8)).toBe(false);
    expect(check(b("1"), 0, 1)).toBe(false);
    expect(check(b("123456789"), 0, 9)).toBe(true);
    expect(check(b("1"), 0, 1)).toBe(false);
    expect(() => compileTriggers([{ bytes: "é", min: 1 }])).toThrow(/ASCII/);
    expect(() => compileTriggers([{ bytes: "a", min: 0 }])).toThrow(/min >= 1/);
  });

  it("lets the masker skip values no active detector can match", () => {
    const m = createMasker({
      rules: [{ name: "pii", detectors: ["email", "creditCard"], strategy: "redact" }],
      hashKey: Buffer.alloc(32),
    });
    const b = (s: string) => Buffer.from(s);
    expect(m.mayDetect(b("12345"), 0, 5)).toBe(false);
    expect(m.mayDetect(b(" ".repeat(84)), 0, 84)).toBe(false);
    expect(m.mayDetect(b("a@b"), 0, 3)).toBe(true);
    expect(m.mayDetect(b("4111111111111111"), 0, 16)).toBe(true);
    // Only the range counts: the "@" outside it does not.
    expect(m.mayDetect(b("@12345"), 1, 6)).toBe(false);
    // A detector without a pre-check always needs the scan.
    const withPhone = createMasker({
      rules: [{ name: "pii", detectors: ["email", "phone"], strategy: "redact" }],
      hashKey: Buffer.alloc(32),
    });
    expect(withPhone.mayDetect(b("12345"), 0, 5)).toBe(true);
  });
});
