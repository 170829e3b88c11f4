import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import type { MaskingRule } from "../../../../api/src/index.ts";
import { resolveMasking } from "../../operations/masking.ts";
import { BackendFramer, FrontendFramer } from "./framing.ts";
import {
  cstr,
  int16,
  int32,
  message,
  ProtocolError,
  parseBind,
  parseErrorFields,
  parseExecute,
  parseParse,
  parseQuery,
  parseRowDescription,
  parseTarget,
  rowsOfTag,
  SSL_REQUEST,
  startupMessage,
  startupPacket,
  T,
} from "./protocol.ts";
import {
  callsUserFunction,
  createMaskState,
  maskDataRow,
  planResult,
  redactNotice,
  rowNeedsMasking,
} from "./row-masking.ts";
import { md5Password, ScramClient } from "./scram.ts";

/** The response masking of plain rules, as the guard resolves it for connection "db". */
const maskState = (rules: MaskingRule[], key: Buffer) => createMaskState(resolveMasking(rules, "db", key));

const query = (sql: string) => message(T.Query, cstr(sql));
const bind = (portal: string, stmt: string, params: (string | null)[], formats: number[] = []) =>
  message(
    T.Bind,
    cstr(portal),
    cstr(stmt),
    int16(0),
    int16(params.length),
    ...params.flatMap((p) => (p === null ? [int32(-1)] : [int32(Buffer.byteLength(p)), Buffer.from(p)])),
    int16(formats.length),
    ...formats.map(int16),
  );

describe("FrontendFramer", () => {
  const stream = Buffer.concat([
    startupPacket(SSL_REQUEST),
    startupMessage({ user: "u", database: "d" }),
    query("SELECT 1"),
    message(T.Parse, cstr("s"), cstr("SELECT $1"), int16(1), int32(23)),
    bind("", "s", ["1", null]),
    message(T.Sync),
  ]);

  function frames(chunks: Buffer[]) {
    const f = new FrontendFramer();
    const out: { type: number; raw: string }[] = [];
    for (const c of chunks) {
      f.push(c);
      for (;;) {
        const fr = f.next();
        if (!fr) break;
        out.push({ type: fr.type, raw: fr.raw.toString("hex") });
        if (fr.type === 0 && fr.payload.readInt32BE(0) === 196608) f.endStartup();
      }
    }
    return out;
  }

  it("yields the same frames whatever the chunking", () => {
    const whole = frames([stream]);
    expect(whole.map((x) => x.type)).toEqual([0, 0, T.Query, T.Parse, T.Bind, T.Sync]);
    expect(frames([...stream].map((b) => Buffer.from([b])))).toEqual(whole);
    for (let at = 1; at < stream.length; at++) {
      expect(frames([stream.subarray(0, at), stream.subarray(at)])).toEqual(whole);
    }
  });

  it("returns views of the received bytes when a message lies in one chunk", () => {
    const f = new FrontendFramer();
    f.endStartup();
    const q = query("SELECT 1");
    f.push(q);
    const fr = f.next();
    expect(fr?.raw.buffer).toBe(q.buffer);
  });

  it("refuses oversized messages from the header alone", () => {
    const f = new FrontendFramer({ maxQueryBytes: 100, maxMessageBytes: 1000 });
    f.endStartup();
    const header = Buffer.from([T.Query, 0, 0, 0, 0]);
    header.writeInt32BE(200, 1);
    f.push(header);
    expect(() => f.next()).toThrow(expect.objectContaining({ code: "54000" }));
    const g = new FrontendFramer({ maxQueryBytes: 100, maxMessageBytes: 1000 });
    g.endStartup();
    const bindHeader = Buffer.from([T.Bind, 0, 0, 0, 0]);
    bindHeader.writeInt32BE(500, 1);
    g.push(bindHeader);
    expect(g.next()).toBeUndefined(); // within the general limit: wait for the body
  });

  it("refuses invalid lengths", () => {
    const f = new FrontendFramer();
    f.push(Buffer.from([0, 0, 0, 7]));
    expect(() => f.next()).toThrow(ProtocolError);
    const g = new FrontendFramer();
    g.endStartup();
    g.push(Buffer.from([T.Sync, 0, 0, 0, 3]));
    expect(() => g.next()).toThrow(ProtocolError);
  });

  it("survives random input without throwing anything but ProtocolError (seeded fuzz)", () => {
    let seed = 12345;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    const parsers = [
      parseQuery,
      parseParse,
      parseBind,
      (p: Buffer) => parseTarget(p, "Describe"),
      parseExecute,
    ];
    const deadline = Date.now() + 1500;
    let n = 0;
    while (Date.now() < deadline) {
      n++;
      const base = Buffer.from(stream);
      for (let i = 0; i < 1 + rnd() * 5; i++) base[Math.floor(rnd() * base.length)] = Math.floor(rnd() * 256);
      const f = new FrontendFramer({ maxQueryBytes: 4096, maxMessageBytes: 4096 });
      f.push(base.subarray(0, Math.floor(rnd() * base.length) + 1));
      try {
        for (;;) {
          const fr = f.next();
          if (!fr) break;
          if (fr.type === 0) {
            if (fr.payload.readInt32BE(0) === 196608) f.endStartup();
            continue;
          }
          for (const p of parsers) {
            try {
              p(fr.payload);
            } catch (err) {
              if (!(err instanceof ProtocolError)) throw err;
            }
          }
        }
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err;
      }
    }
    expect(n).toBeGreaterThan(1000);
  });
});

describe("payload readers", () => {
  it("parse Bind, Parse, Query, Describe, Execute", () => {
    expect(parseBind(bind("p", "s", ["a", null, ""], [1]).subarray(5))).toEqual({
      portal: "p",
      statement: "s",
      resultFormats: [1],
    });
    expect(parseParse(message(T.Parse, cstr("n"), cstr("SELECT 1"), int16(0)).subarray(5))).toEqual({
      name: "n",
      query: "SELECT 1",
      types: [],
    });
    expect(
      parseParse(message(T.Parse, cstr(""), cstr("SELECT $1"), int16(1), int32(4294967295)).subarray(5))
        .types,
    ).toEqual([4294967295]);
    expect(parseQuery(query("SELECT 'é'").subarray(5))).toBe("SELECT 'é'");
    expect(parseTarget(Buffer.from("Pportal\0"), "Describe")).toEqual({ kind: "P", name: "portal" });
    expect(parseExecute(Buffer.concat([cstr("x"), int32(10)]))).toEqual({ portal: "x", maxRows: 10 });
  });
  it("refuses trailing bytes after the query string", () => {
    expect(() => parseQuery(Buffer.from("SELECT 1\0DELETE\0"))).toThrow(/trailing/);
  });
  it("refuses invalid UTF-8", () => {
    expect(() => parseQuery(Buffer.from([0xc3, 0x28, 0]))).toThrow(
      expect.objectContaining({ code: "22021" }),
    );
  });
  it("keeps a leading byte-order mark: the text judged is the bytes the server gets (found by fuzzing)", () => {
    const bom = Buffer.from([0xef, 0xbb, 0xbf]);
    const q = parseQuery(Buffer.concat([bom, Buffer.from("SELECT 1\0")]));
    expect(q).toBe("\uFEFFSELECT 1");
    expect(Buffer.from(q, "utf8")).toEqual(Buffer.concat([bom, Buffer.from("SELECT 1")]));
    const p = parseParse(message(T.Parse, cstr("s"), bom, cstr("DELETE FROM t"), int16(0)).subarray(5));
    expect(p.query).toBe("\uFEFFDELETE FROM t");
  });
  it("reads CommandComplete row counts", () => {
    expect([
      rowsOfTag("SELECT 5"),
      rowsOfTag("INSERT 0 3"),
      rowsOfTag("UPDATE 2"),
      rowsOfTag("BEGIN"),
      rowsOfTag("COPY 1234567"),
      rowsOfTag("SET"),
      rowsOfTag("5"),
      rowsOfTag("FETCH x5"),
      rowsOfTag(""),
    ]).toEqual([5, 3, 2, 0, 1234567, 0, 0, 0, 0]);
  });
});

describe("BackendFramer", () => {
  it("frames typed messages across chunks", () => {
    const f = new BackendFramer();
    const bytes = Buffer.concat([
      message(T.ReadyForQuery, "I"),
      message(T.CommandComplete, cstr("SELECT 1")),
    ]);
    for (const b of bytes) f.push(Buffer.from([b]));
    expect(f.next()?.type).toBe(T.ReadyForQuery);
    expect(f.next()?.type).toBe(T.CommandComplete);
    expect(f.next()).toBeUndefined();
  });

  const row = (v: string) => message(T.DataRow, int16(1), int32(Buffer.byteLength(v)), Buffer.from(v));
  const response = Buffer.concat([
    message(T.RowDescription, int16(0)),
    row("a"),
    row("bb"),
    row("ccc"),
    message(T.CommandComplete, cstr("SELECT 3")),
    row("d"),
    message(T.ReadyForQuery, "I"),
  ]);

  /** Alternates takeRun(DataRow) and next(), as the guard does: [type, count, bytes] per step. */
  function drain(f: BackendFramer, out: [number, number, Buffer][]) {
    for (;;) {
      const run = f.takeRun(T.DataRow);
      if (run) {
        out.push([T.DataRow, run.count, run.raw]);
        continue;
      }
      const fr = f.next();
      if (!fr) return;
      out.push([fr.type, 1, fr.raw]);
    }
  }

  it("takes runs of DataRows in one chunk as one slice, at every split", () => {
    const whole: [number, number, Buffer][] = [];
    const f = new BackendFramer();
    f.push(response);
    drain(f, whole);
    expect(whole.map(([t, n]) => [String.fromCharCode(t), n])).toEqual([
      ["T", 1],
      ["D", 3],
      ["C", 1],
      ["D", 1],
      ["Z", 1],
    ]);
    expect(whole[1]?.[2].buffer).toBe(response.buffer); // a view, not a copy
    for (let a = 0; a <= response.length; a++) {
      for (let b = a; b <= response.length; b++) {
        const g = new BackendFramer();
        const out: [number, number, Buffer][] = [];
        for (const part of [response.subarray(0, a), response.subarray(a, b), response.subarray(b)]) {
          g.push(Buffer.from(part));
          drain(g, out);
        }
        expect(Buffer.concat(out.map(([, , raw]) => raw)).equals(response)).toBe(true);
        const rows = out.filter(([t]) => t === T.DataRow).reduce((n, [, c]) => n + c, 0);
        expect(rows).toBe(4);
        expect(out.filter(([t]) => t !== T.DataRow).map(([t]) => String.fromCharCode(t))).toEqual([
          "T",
          "C",
          "Z",
        ]);
      }
    }
  });

  it("a run stops at the first row the predicate does not pass unchanged", () => {
    const f = new BackendFramer();
    f.push(
      Buffer.concat([
        row("a"),
        row("b"),
        row("MASK"),
        row("c"),
        message(T.CommandComplete, cstr("SELECT 4")),
      ]),
    );
    const plain = (b: Buffer, s: number, e: number) => !b.subarray(s, e).includes("MASK");
    expect(f.takeRun(T.DataRow, plain)?.count).toBe(2);
    expect(f.takeRun(T.DataRow, plain)).toBeUndefined();
    expect(f.next()?.type).toBe(T.DataRow);
    expect(f.takeRun(T.DataRow, plain)?.count).toBe(1);
    expect(f.next()?.type).toBe(T.CommandComplete);
  });

  it("a run stops at an invalid length, which next() refuses", () => {
    const bad = Buffer.from(row("x"));
    bad.writeInt32BE(2, 1);
    const f = new BackendFramer();
    f.push(Buffer.concat([row("a"), bad]));
    expect(f.takeRun(T.DataRow)?.count).toBe(1);
    expect(f.takeRun(T.DataRow)).toBeUndefined();
    expect(() => f.next()).toThrow(ProtocolError);
    const big = new BackendFramer(16);
    big.push(Buffer.concat([row("a"), row("x".repeat(64))]));
    expect(big.takeRun(T.DataRow)?.count).toBe(1);
    expect(() => big.next()).toThrow(ProtocolError);
  });
});

describe("password authentication", () => {
  it("SCRAM-SHA-256 matches the RFC 7677 example", async () => {
    const c = new ScramClient("pencil", "rOprNGfwEbeRWgbNEkqO", "user");
    expect(c.first().toString()).toBe("n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
    const final = await c.final(
      "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
    );
    expect(final.toString()).toBe(
      "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    );
    expect(() => c.verify("v=AAAA")).toThrow(/signature/);
    c.verify("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    expect(c.verified).toBe(true);
  });
  it("SCRAM refuses a server nonce that does not extend ours", async () => {
    const c = new ScramClient("pencil", "abc");
    c.first();
    await expect(c.final("r=xyz,s=AAAA,i=4096")).rejects.toThrow(/nonce/);
  });
  it("MD5 is md5(md5(password + user) + salt)", () => {
    // Computed with PostgreSQL's algorithm (libpq pg_md5_encrypt twice).
    expect(md5Password("postgres", "secret", Buffer.from([1, 2, 3, 4]))).toMatch(/^md5[0-9a-f]{32}$/);
    expect(md5Password("u", "p", Buffer.from("salt"))).toBe(md5Password("u", "p", Buffer.from("salt")));
    expect(md5Password("u", "p", Buffer.from("salt"))).not.toBe(md5Password("u", "p", Buffer.from("tlas")));
  });
});

describe("row masking", () => {
  const state = maskState(
    [{ name: "pii", columns: ["card_number"], detectors: ["email"], strategy: "redact" }],
    randomBytes(32),
  );
  if (!state) throw new Error("no mask state");
  const cols = [
    { name: "id", tableOid: 0, attnum: 0, typeOid: 23, format: 0 },
    { name: "Card_Number", tableOid: 0, attnum: 0, typeOid: 25, format: 0 },
    { name: "note", tableOid: 0, attnum: 0, typeOid: 25, format: 0 },
  ];
  const row = (vals: (string | null)[]) =>
    message(
      T.DataRow,
      int16(vals.length),
      ...vals.flatMap((v) => (v === null ? [int32(-1)] : [int32(Buffer.byteLength(v)), Buffer.from(v)])),
    ).subarray(5);
  const values = (msg: Buffer) => {
    const out: (string | null)[] = [];
    let o = 7;
    const n = msg.readInt16BE(5);
    for (let i = 0; i < n; i++) {
      const len = msg.readInt32BE(o);
      o += 4;
      if (len < 0) out.push(null);
      else {
        out.push(msg.subarray(o, o + len).toString());
        o += len;
      }
    }
    return out;
  };

  it("recognises calls to functions defined in the database, with or without a schema", () => {
    const fns = new Set(["card_of", "all_cards"]);
    expect(callsUserFunction([{ functions: ["upper", "count"] }], fns)).toBe(false);
    expect(callsUserFunction([{ functions: ["upper"] }, { functions: ["Card_Of"] }], fns)).toBe(true);
    expect(callsUserFunction([{ functions: ["public.all_cards"] }], fns)).toBe(true);
    expect(callsUserFunction([{ functions: ["card_of"] }], new Set())).toBe(false);
  });

  it("tells rows masking would touch from rows it would pass unchanged", () => {
    const plan = planResult(state, cols);
    const needs = (vals: (string | null)[]) => {
      const payload = row(vals);
      return rowNeedsMasking(state, plan, payload, 0, payload.length);
    };
    expect(needs(["1", null, "plain note"])).toBe(false);
    expect(needs(["1", null, null])).toBe(false);
    // A column-rule column with a value: masked whatever it holds.
    expect(needs(["1", "no digits", "plain"])).toBe(true);
    // A value the email detector may match.
    expect(needs(["1", null, "bob@example.com"])).toBe(true);
    // Consistent with maskDataRow: whenever it changes a row, the row was flagged.
    for (const vals of [
      ["2", null, "x@y.z"],
      ["3", "4111", null],
      ["4", null, "nothing"],
    ] as (string | null)[][]) {
      const changed = maskDataRow(state, plan, row(vals), {}) !== undefined;
      if (changed) expect(needs(vals)).toBe(true);
    }
    // Malformed (a value longer than the row): flagged, for maskDataRow to refuse.
    const bad = Buffer.from(row(["1", null, "abc"]));
    bad.writeInt32BE(99, bad.length - 7);
    expect(rowNeedsMasking(state, plan, bad, 0, bad.length)).toBe(true);
  });

  it("masks named columns whole and detector hits anywhere, keeping NULLs", () => {
    const plan = planResult(state, cols);
    const counts: Record<string, number> = {};
    const out = maskDataRow(
      state,
      plan,
      row(["1", "4111 1111 1111 1111", "mail bob@example.com now"]),
      counts,
    );
    expect(out && values(out)).toEqual([
      "1",
      expect.not.stringContaining("4111"),
      expect.not.stringContaining("bob@"),
    ]);
    expect(counts).toEqual({ column: 1, email: 1 });
    const nulls = maskDataRow(state, plan, row(["2", null, null]), {});
    expect(nulls).toBeUndefined();
  });

  it("masks renamed table columns by origin, and computed columns derived from masked ones", () => {
    const cards = maskState([{ name: "c", columns: ["card_number"], strategy: "redact" }], randomBytes(32));
    if (!cards) throw new Error("no state");
    const origins = new Map([["16400:2", "card_number"]]);
    const result = [
      { name: "x", tableOid: 16400, attnum: 2, typeOid: 25, format: 0 }, // card_number AS x
      { name: "id", tableOid: 16400, attnum: 1, typeOid: 23, format: 0 },
      { name: "upper", tableOid: 0, attnum: 0, typeOid: 25, format: 0 }, // upper(card_number)
    ];
    expect(
      planResult(cards, result, undefined, { origins, referenced: ["card_number", "id"] }).names,
    ).toEqual(["card_number", undefined, "card_number"]);
    expect(planResult(cards, result, undefined, { origins, referenced: ["id"] }).names).toEqual([
      "card_number",
      undefined,
      undefined,
    ]);
    expect(planResult(cards, result, undefined, { origins: new Map(), referenced: ["*"] }).names[2]).toBe(
      "card_number",
    );
    // Every column of a view that depends on a covered column (`oid:*`) is masked as it.
    const view = [
      { name: "payment", tableOid: 16500, attnum: 3, typeOid: 25, format: 0 },
      { name: "id", tableOid: 16500, attnum: 1, typeOid: 23, format: 0 },
      { name: "id", tableOid: 16600, attnum: 1, typeOid: 23, format: 0 },
    ];
    const viewOrigins = new Map([["16500:*", "card_number"]]);
    expect(planResult(cards, view, undefined, { origins: viewOrigins, referenced: [] }).names).toEqual([
      "card_number",
      "card_number",
      undefined,
    ]);
  });

  it("reads values in place: multi-byte text is masked, a truncated row is refused", () => {
    const plan = planResult(state, cols);
    const out = maskDataRow(state, plan, row(["é", "ß 4111 1111 1111 1111", "ü bob@example.com"]), {});
    const [id, card, note] = (out && values(out)) ?? [];
    expect(id).toBe("é");
    expect(card).not.toContain("4111");
    expect(note).toMatch(/^ü /);
    expect(note).not.toContain("bob@");
    const whole = row(["1", "4111 1111 1111 1111", "x"]);
    for (let cut = 0; cut < whole.length; cut++)
      expect(() => maskDataRow(state, plan, whole.subarray(0, cut), {})).toThrow(ProtocolError);
  });

  it("passes rows without findings through untouched", () => {
    const plan = planResult(state, [cols[0], cols[2]] as typeof cols);
    expect(maskDataRow(state, plan, row(["1", "nothing here"]), {})).toBeUndefined();
  });

  it("binary results: text types masked in place, ruled non-text and unknown types refused", () => {
    expect(planResult(state, cols, [0, 1, 0]).refused).toBeUndefined();
    const bin = (name: string, typeOid: number) => [{ name, tableOid: 0, attnum: 0, typeOid, format: 1 }];
    // A column rule on an int cannot be masked in binary; the hint names the cast.
    expect(planResult(state, bin("card_number", 23)).refused).toMatch(/"card_number".*card_number::text/);
    // Detectors on an unknown type (inet): refused; on ints, dates: read per type.
    expect(planResult(state, bin("addr", 869)).refused).toMatch(/type oid 869/);
    expect(planResult(state, bin("n", 20)).refused).toBeUndefined();
    expect(planResult(state, bin("d", 1082)).refused).toBeUndefined();
    const plan = planResult(state, cols, [1]);
    // id is an int4 in binary (42); a value of the wrong size is malformed.
    const out = maskDataRow(state, plan, row(["\0\0\0*", "4111 1111 1111 1111", "mail bob@example.com"]), {});
    const [id, card, note] = (out && values(out)) ?? [];
    expect(id).toBe("\0\0\0*");
    expect(() => maskDataRow(state, plan, row(["x", "", ""]), {})).toThrow(ProtocolError);
    expect(card).not.toContain("4111");
    expect(note).toMatch(/^mail /);
    expect(note).not.toContain("bob@");
  });

  it("redacts values echoed by data errors", () => {
    const err = message(
      T.ErrorResponse,
      Buffer.from("S"),
      cstr("ERROR"),
      Buffer.from("C"),
      cstr("22P02"),
      Buffer.from("M"),
      cstr('invalid input syntax for type integer: "4111 1111 1111 1111"'),
      Buffer.from("D"),
      cstr("Key (email)=(bob@example.com)"),
      Buffer.from([0]),
    );
    const out = redactNotice(state, T.ErrorResponse, err.subarray(5), {});
    expect(out).toBeDefined();
    const fields = parseErrorFields((out as Buffer).subarray(5));
    expect(fields.get("M")).toBe('invalid input syntax for type integer: "[REDACTED]"');
    expect(fields.get("D")).not.toContain("bob@");
  });

  it("is off when no rule masks responses", () => {
    expect(maskState([], randomBytes(32))).toBeUndefined();
    // Rules the loader accepted but the masker cannot compile (defence in depth: the loader checks
    // JSONPaths): the session must not run with less masking than the policy says.
    expect(() =>
      createMaskState({ request: { masker: undefined }, response: { error: "bad path" }, responseRules: [] }),
    ).toThrow(/masking rules are unusable, so nothing is forwarded: bad path/);
    expect(
      maskState(
        [{ name: "req", detectors: ["email"], strategy: "redact", direction: "request" }],
        randomBytes(32),
      ),
    ).toBeUndefined();
  });

  it("reads RowDescription", () => {
    const rd = message(
      T.RowDescription,
      int16(1),
      cstr("a"),
      int32(1),
      int16(1),
      int32(25),
      int16(-1),
      int32(-1),
      int16(0),
    );
    expect(parseRowDescription(rd.subarray(5))).toEqual([
      { name: "a", tableOid: 1, attnum: 1, typeOid: 25, format: 0 },
    ]);
  });
});
