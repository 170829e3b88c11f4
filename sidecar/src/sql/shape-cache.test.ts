// Differential fuzz of the numeric-shape cache: for statements of PostgreSQL's regression SQL,
// every variant with its numeric literals rewritten must classify through the caches exactly as
// without them. A shape entry primed by one text must never answer for a text that classifies
// differently (the `ALTER INDEX ... ALTER COLUMN 0` case, where the number is not an A_Const).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { splitScript } from "../../../test/postgres/regress/split.ts";
import { classifyFresh, classifySync, loadSqlParser } from "./classify.ts";
import { numericShape } from "./literals.ts";

const DIR = join(import.meta.dirname, "../../../test/postgres/regress/sql");
const FILES = ["alter_table.sql", "numeric.sql", "int4.sql", "select.sql", "window.sql", "sequence.sql"];
const VALUES = [
  "0",
  "1",
  "7",
  "42",
  "2147483647",
  "2147483648",
  "99999999999999999999",
  "1.5",
  "1e3",
  ".5",
  "00",
];

/** Deterministic pseudo-random numbers (the fuzz must be reproducible). */
function prng(seed: number): () => number {
  let x = seed;
  return () => {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    return x / 0x7fffffff;
  };
}

/** `sql` with each numeric literal the shape lexer found replaced by a value from VALUES. */
function variant(sql: string, random: () => number): string | undefined {
  const shape = numericShape(sql);
  if (!shape) return undefined;
  let out = "";
  let last = 0;
  for (const at of shape.at) {
    const m = /^(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?/.exec(sql.slice(at));
    if (!m) return undefined;
    out += sql.slice(last, at) + (VALUES[Math.floor(random() * VALUES.length)] ?? "0");
    last = at + m[0].length;
  }
  return out + sql.slice(last);
}

beforeAll(() => loadSqlParser());

describe("numeric-shape cache, cached vs uncached", () => {
  it("never answers for a text that classifies differently", () => {
    const random = prng(13);
    const parses = (s: string) => classifyFresh(s).errors.length === 0;
    let compared = 0;
    let shared = 0;
    const mismatches: string[] = [];
    for (const file of FILES) {
      const script = readFileSync(join(DIR, file), "utf8");
      for (const { sql } of splitScript(script, parses)) {
        if (!numericShape(sql)) continue;
        classifySync(sql); // primes both caches with the original text
        for (let k = 0; k < 4; k++) {
          const v = variant(sql, random);
          if (v === undefined || v === sql) continue;
          const cached = classifySync(v);
          const fresh = classifyFresh(v);
          compared++;
          if (cached === classifySync(sql)) shared++;
          if (JSON.stringify(cached) !== JSON.stringify(fresh)) mismatches.push(`${sql}  ⇒  ${v}`);
        }
      }
    }
    expect(mismatches).toEqual([]);
    // The fuzz exercised the cache: many variants were answered from a shape entry.
    expect(compared).toBeGreaterThan(2000);
    expect(shared).toBeGreaterThan(500);
  });

  it("does not share when a number is not a constant of the tree", () => {
    const one = classifySync("ALTER INDEX attmp_idx ALTER COLUMN 1 SET STATISTICS 1000");
    const zero = classifySync("ALTER INDEX attmp_idx ALTER COLUMN 0 SET STATISTICS 1000");
    expect(zero).not.toBe(one);
    expect(zero.statements[0]?.fingerprint).not.toBe(one.statements[0]?.fingerprint);
    // Integer and decimal tokens are different shapes (the grammar tells ICONST from FCONST).
    expect(numericShape("SELECT 1")?.key).not.toBe(numericShape("SELECT 1.0")?.key);
    expect(numericShape("SELECT 2147483647")?.key).not.toBe(numericShape("SELECT 2147483648")?.key);
  });

  // Fuzz finding: a text holding a class marker itself shared the key of one whose literal the
  // marker stands for, and was answered with that text's classification.
  it.each(["\0", "\u0001", "\u0002"])("gives no key to a text containing the marker %j", (marker) => {
    const primed = "SELECT s.f(1, 2), onr.prototeh(VAR[1]), k()";
    const hostile = primed.replace("1,", `${marker},`);
    classifySync(primed);
    expect(numericShape(hostile)).toBeUndefined();
    expect(JSON.stringify(classifySync(hostile))).toBe(JSON.stringify(classifyFresh(hostile)));
  });
});
