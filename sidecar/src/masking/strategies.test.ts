import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  applyStrategy,
  HASH_KEY_BYTES,
  hashValue,
  loadOrCreateHashKey,
  partial,
  redact,
} from "./strategies.ts";

const KEY = Buffer.alloc(32, 7);

describe("redact", () => {
  it("labels detector findings and leaves field masks plain", () => {
    expect(redact("creditCard")).toBe("[REDACTED:creditCard]");
    expect(redact()).toBe("[REDACTED]");
    expect(applyStrategy("redact", "4111111111111111", KEY, "creditCard")).toBe("[REDACTED:creditCard]");
  });
});

describe("partial", () => {
  it.each([
    ["4111-1111-1111-1111", "****-****-****-1111"],
    ["4111 1111 1111 1111", "**** **** **** 1111"],
    ["4111111111111111", "************1111"],
    ["123-45-6789", "***-**-6789"],
    ["+1 (213) 373-4253", "+* (***) ***-4253"],
    ["DE89 3704 0044 0532 0130 00", "**** **** **** **** **30 00"],
    ["john.doe@example.com", "****.***@******e.com"],
    ["2001:db8::1", "****:db8::1"],
    // Fewer than 8 letters/digits: showing 4 would show most of it.
    ["1234567", "*******"],
    ["10.0.0.1", "**.*.*.*"],
    // Tokens and long values: fixed-width prefix, no length or punctuation leak.
    [`ghp_${"a".repeat(32)}wxyz`, "********wxyz"],
    ["wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "********EKEY"],
    ["short/x", "********"],
    ["日本語のテキスト値です", "********ト値です"],
  ])("%s → %s", (value, expected) => {
    expect(partial(value)).toBe(expected);
    expect(applyStrategy("partial", value, KEY, "x")).toBe(expected);
  });
});

describe("hash", () => {
  it("is hmac: and 16 hex digits, stable for a key, different across keys", () => {
    const a = hashValue("123-45-6789", KEY);
    expect(a).toMatch(/^hmac:[0-9a-f]{16}$/);
    expect(hashValue("123-45-6789", KEY)).toBe(a);
    expect(hashValue("123-45-6789", Buffer.alloc(32, 8))).not.toBe(a);
    expect(hashValue("123-45-6780", KEY)).not.toBe(a);
    expect(applyStrategy("hash", "123-45-6789", KEY, "usSsn")).toBe(a);
  });
});

describe("loadOrCreateHashKey", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "airlock-hashkey-"));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it("creates a 32-byte key with mode 0600, then returns the same key", () => {
    const path = join(dir, "nested", "hash.key");
    const key = loadOrCreateHashKey(path);
    expect(key.length).toBe(HASH_KEY_BYTES);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readFileSync(path).equals(key)).toBe(true);
    expect(loadOrCreateHashKey(path).equals(key)).toBe(true);
  });

  it("keeps an existing key and rejects one too short to be a key", () => {
    const path = join(dir, "hash.key");
    writeFileSync(path, Buffer.alloc(32, 1));
    expect(loadOrCreateHashKey(path).equals(Buffer.alloc(32, 1))).toBe(true);
    writeFileSync(path, "short");
    expect(() => loadOrCreateHashKey(path)).toThrow(/need at least 16/);
  });

  it("leaves no temporary files behind", () => {
    loadOrCreateHashKey(join(dir, "k"));
    expect(readdirSync(dir)).toEqual(["k"]);
  });
});
