import { describe, expect, it } from "vitest";
import { createMasker } from "../../masking/index.ts";
import { createOutputPipe } from "./output.ts";

const KEY = "AKIAIOSFODNN7EXAMPLE";
const masker = createMasker({
  rules: [{ name: "k", detectors: ["awsAccessKey"], strategy: "redact" }],
  hashKey: Buffer.alloc(32),
});

function pipe(m: typeof masker | null, idleMs = 30) {
  const sent: Buffer[] = [];
  let recorded = "";
  const findings: string[] = [];
  const p = createOutputPipe({
    masker: m ?? undefined,
    idleMs,
    emit: (b) => sent.push(b),
    record: (t) => {
      recorded += t;
    },
    onFindings: (f) => findings.push(...f.map((x) => x.detector)),
  });
  return { p, sent: () => Buffer.concat(sent), recorded: () => recorded, findings };
}

describe("createOutputPipe", () => {
  it("passes bytes through untouched without masking rules, recording them as text", () => {
    const { p, sent, recorded } = pipe(null);
    const euro = Buffer.from("€ ok\n");
    p.write(euro.subarray(0, 1));
    p.write(euro.subarray(1));
    p.write(Buffer.from([0xff]));
    p.end();
    expect(sent().equals(Buffer.concat([euro, Buffer.from([0xff])]))).toBe(true);
    expect(recorded()).toBe("€ ok\n\ufffd");
  });

  it("masks a value split across chunks; the agent and the recording get the same text", () => {
    const { p, sent, recorded, findings } = pipe(masker);
    p.write(Buffer.from(`key=${KEY.slice(0, 7)}`));
    p.write(Buffer.from(`${KEY.slice(7)} end\nnext`));
    p.end();
    expect(sent().toString()).not.toContain("AKIA");
    expect(sent().toString()).toMatch(/^key=.+ end\nnext$/);
    expect(recorded()).toBe(sent().toString());
    expect(findings).toEqual(["awsAccessKey"]);
  });

  it("releases decided text at once and a word in the making after the idle time", async () => {
    const { p, sent } = pipe(masker, 20);
    p.write(Buffer.from("$ cat notes-for"));
    expect(sent().toString()).toBe("$ cat ");
    await new Promise((r) => setTimeout(r, 60));
    expect(sent().toString()).toBe("$ cat notes-for");
    p.write(Buffer.from(`echo ${KEY}\r\n`));
    expect(sent().toString()).not.toContain(KEY);
    p.end();
  });

  it("keeps binary output byte-exact with masking on (no replacement characters)", () => {
    const { p, sent } = pipe(masker);
    const bin = Buffer.alloc(200_000);
    for (let i = 0; i < bin.length; i++) bin[i] = (i * 7919 + (i >> 8)) & 0xff;
    for (let i = 0; i < bin.length; i += 4096) p.write(bin.subarray(i, i + 4096));
    p.end();
    expect(sent().length).toBe(bin.length);
    expect(sent().equals(bin)).toBe(true);
  });

  it("masks ASCII values inside binary output, every other byte as received", () => {
    const { p, sent, findings } = pipe(masker);
    const head = Buffer.from("text first\n");
    const bin = Buffer.from([0xff, 0x00, 0xc3, 0x28, 0x80]);
    p.write(head);
    p.write(Buffer.concat([bin, Buffer.from(` ${KEY} `), bin]));
    p.end();
    const out = sent();
    expect(out.subarray(0, head.length).equals(head)).toBe(true);
    expect(out.subarray(head.length, head.length + bin.length).equals(bin)).toBe(true);
    expect(out.subarray(out.length - bin.length).equals(bin)).toBe(true);
    expect(out.toString("latin1")).not.toContain(KEY);
    expect(findings).toEqual(["awsAccessKey"]);
  });

  it("keeps a multi-byte character split across chunks as text", () => {
    const { p, sent } = pipe(masker);
    const euro = Buffer.from("price € 5\n");
    p.write(euro.subarray(0, 7));
    p.write(euro.subarray(7));
    p.end();
    expect(sent().equals(euro)).toBe(true);
  });
});
