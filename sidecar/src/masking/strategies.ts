// How a detected or field-selected value is replaced.
//   redact  → "[REDACTED:<detector>]" for detector findings, "[REDACTED]" for field/column masks.
//   partial → the last 4 characters stay, the rest become "*". Short formatted values (cards,
//             phones, SSNs, IBANs, IPs, emails: ≤ 64 characters of letters, digits and the
//             separators " -.()+@:") keep their separators in place: "****-****-****-1111",
//             "***-**-6789". Anything else (tokens, keys, long values) becomes "********" + last 4,
//             a fixed-width prefix, so neither its length nor its punctuation leaks. Values with
//             fewer than 8 letters/digits are fully starred: showing 4 of them would show too much.
//   hash    → "hmac:" + first 16 hex digits of HMAC-SHA256(key, value): the same value gives the
//             same token across requests and restarts (joins and dedup still work), but without
//             the per-install key it cannot be brute-forced back from a small space like SSNs.
import { createHmac, randomBytes } from "node:crypto";
import { linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";

export const STRATEGIES = ["redact", "partial", "hash"] as const;
export type Strategy = (typeof STRATEGIES)[number];

export const HASH_KEY_BYTES = 32;
const MIN_HASH_KEY_BYTES = 16;
const KEEP = 4;
const FORMATTED = /^[A-Za-z0-9 \-.()+@:]{1,64}$/;

export function redact(label?: string): string {
  return label ? `[REDACTED:${label}]` : "[REDACTED]";
}

const isAlnumCode = (c: number) => (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122);

export function partial(value: string): string {
  if (FORMATTED.test(value)) {
    let alnum = 0;
    for (let i = 0; i < value.length; i++) if (isAlnumCode(value.charCodeAt(i))) alnum++;
    const hide = alnum >= 2 * KEEP ? alnum - KEEP : alnum;
    let seen = 0;
    let out = "";
    for (let i = 0; i < value.length; i++) {
      const c = value.charCodeAt(i);
      if (!isAlnumCode(c)) out += value[i];
      else out += seen++ < hide ? "*" : value[i];
    }
    return out;
  }
  const chars = Array.from(value); // code points, so the kept tail never splits a surrogate pair
  return chars.length >= 2 * KEEP ? `********${chars.slice(-KEEP).join("")}` : "********";
}

export function hashValue(value: string, key: Buffer): string {
  return `hmac:${createHmac("sha256", key).update(value, "utf8").digest("hex").slice(0, 16)}`;
}

/** Replacement text for `value` under `strategy`; `label` is the detector id, absent for field masks. */
export function applyStrategy(strategy: Strategy, value: string, key: Buffer, label?: string): string {
  switch (strategy) {
    case "redact":
      return redact(label);
    case "partial":
      return partial(value);
    case "hash":
      return hashValue(value, key);
  }
}

export function assertHashKey(key: Buffer): void {
  if (!Buffer.isBuffer(key) || key.length < MIN_HASH_KEY_BYTES)
    throw new Error(`masking hash key must be at least ${MIN_HASH_KEY_BYTES} bytes`);
}

/**
 * The install's HMAC key: read from `path`, or created there (32 random bytes, mode 0600) on
 * first use. The key is written to a private temporary file and hard-linked into place, which
 * fails if the file appeared meanwhile: processes racing to create it end up sharing one key,
 * and nobody ever reads a half-written file.
 */
export function loadOrCreateHashKey(path: string): Buffer {
  try {
    return checked(readFileSync(path), path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const key = randomBytes(HASH_KEY_BYTES);
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
  writeFileSync(tmp, key, { mode: 0o600, flag: "wx" });
  try {
    linkSync(tmp, path);
    return key;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return checked(readFileSync(path), path);
    throw err;
  } finally {
    unlinkSync(tmp);
  }
}

function checked(key: Buffer, path: string): Buffer {
  if (key.length < MIN_HASH_KEY_BYTES)
    throw new Error(
      `masking hash key file ${path} holds ${key.length} bytes; need at least ${MIN_HASH_KEY_BYTES}`,
    );
  return key;
}
