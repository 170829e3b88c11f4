import { describe, expect, it } from "vitest";
import { createMasker, type Masker, type MaskFinding, type MaskingRule } from "./masker.ts";
import type { Strategy } from "./strategies.ts";
import { createStreamMasker, type StreamMaskerOptions } from "./stream.ts";

const KEY = Buffer.alloc(32, 5);
const all = (strategy: Strategy = "redact", extra: MaskingRule[] = []) =>
  createMasker({ rules: [{ name: "pii", detectors: ["all"], strategy }, ...extra], hashKey: KEY });

const JWT =
  "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
const SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const KEY_BODY = ["MIIEowIBAAKCAQEA7xq3VbZQUJDQUJDQUJD", "q3VbZ9kAQUJDQUJDQUJDQUJDQUJDQUJD="];
const PEM = ["-----BEGIN RSA PRIVATE KEY-----", ...KEY_BODY, "-----END RSA PRIVATE KEY-----"].join("\n");

// Each value that must never reach the output, in whole or in part (checked by its distinctive core).
const SECRETS = [
  "jane@example.com",
  "4111 1111 1111 1111",
  "123-45-6789",
  JWT.slice(40, 80),
  "QUJDQUJD",
  "s3cr3tPass",
  "10.1.2.3",
  "373-4253",
  SECRET,
  "3704 0044",
  "A1b2C3d4E5",
];

const TEXT = [
  "GET /users 200 ok",
  "user jane@example.com card 4111 1111 1111 1111 ssn 123-45-6789",
  `token ${JWT} end`,
  PEM,
  "db postgres://admin:s3cr3tPass@db:5432/app ip 10.1.2.3 phone +1 (213) 373-4253",
  `aws_secret_access_key = ${SECRET} iban DE89 3704 0044 0532 0130 00`,
  `no newline at the end ghp_${"A1b2C3d4E5".repeat(3)}f6G7h8`,
].join("\n");

function run(
  masker: Masker,
  chunks: string[],
  options?: StreamMaskerOptions,
): { out: string; parts: string[] } {
  const s = createStreamMasker(masker, options);
  const parts = chunks.map((c) => s.push(c));
  parts.push(s.end());
  return { out: parts.join(""), parts };
}

function rng(seed: number) {
  let x = seed;
  return () => {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    return x / 0x80000000;
  };
}

function randomChunks(text: string, rand: () => number, max: number): string[] {
  const chunks: string[] = [];
  for (let i = 0; i < text.length; ) {
    const n = 1 + Math.floor(rand() * max);
    chunks.push(text.slice(i, i + n));
    i += n;
  }
  return chunks;
}

function expectNoSecrets(out: string) {
  for (const s of SECRETS) expect(out).not.toContain(s);
}

describe("text stream", () => {
  for (const strategy of ["redact", "partial", "hash"] as const) {
    it(`split at every boundary equals one-shot masking (${strategy})`, () => {
      const m = all(strategy);
      const expected = m.maskText(TEXT).text;
      expectNoSecrets(expected);
      for (let i = 0; i <= TEXT.length; i++) {
        const { out } = run(m, [TEXT.slice(0, i), TEXT.slice(i)]);
        if (out !== expected) expect({ split: i, out }).toEqual({ split: i, out: expected });
      }
    });
  }

  it("random chunkings equal one-shot masking", () => {
    const m = all();
    const expected = m.maskText(TEXT).text;
    const rand = rng(7);
    for (let k = 0; k < 300; k++) {
      const chunks = randomChunks(TEXT, rand, k % 2 ? 5 : 40);
      expect(run(m, chunks).out).toBe(expected);
    }
  });

  it("releases decided text as it arrives, holding back the word in the making", () => {
    const s = createStreamMasker(all());
    expect(s.push("first line jane@exam")).toBe("first line ");
    expect(s.push("ple.com\nsecond")).toBe("[REDACTED:email]\n");
    expect(s.push(" line\n")).toBe("second line\n");
    expect(s.end()).toBe("");
  });

  it("holds a private key from BEGIN to END, then masks it whole", () => {
    const s = createStreamMasker(all());
    expect(s.push("before\n-----BEGIN RSA PRIVATE KEY-----\n")).toBe("before\n");
    expect(s.push(`${KEY_BODY[0]}\n`)).toBe("");
    expect(s.push(`${KEY_BODY[1]}\n-----END RSA PRIV`)).toBe("");
    expect(s.push("ATE KEY-----\nafter\n")).toBe("[REDACTED:privateKey]\nafter\n");
    expect(s.end()).toBe("");
  });

  it("fails closed on a key longer than maxHoldBytes: one replacement, the rest dropped to END", () => {
    const body = Array.from({ length: 200 }, () => "QUJDQUJDQUJDQUJDQUJDQUJDQUJDQUJD").join("\n");
    const text = `before\n-----BEGIN PRIVATE KEY-----\n${body}\n-----END PRIVATE KEY-----\nafter\n`;
    const m = all();
    const expected = m.maskText(text).text;
    expect(expected).toBe("before\n[REDACTED:privateKey]\nafter\n");
    const rand = rng(3);
    const endAt = text.indexOf("-----END");
    for (let k = 0; k < 20; k++) {
      const chunks = randomChunks(text, rand, 64);
      const { out, parts } = run(m, chunks, { maxHoldBytes: 2048 });
      expect(out).toBe(expected);
      // The replacement went out long before the END arrived: the hold was bounded.
      const at = parts.findIndex((p) => p.includes("[REDACTED:privateKey]"));
      expect(chunks.slice(0, at + 1).join("").length).toBeLessThan(2048 + 200);
      expect(chunks.slice(0, at + 1).join("").length).toBeLessThan(endAt);
    }
  });

  it("masks an unterminated key to the end of the stream", () => {
    const text = "x\n-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIQUJDQUJDQUJD";
    const m = all();
    for (let i = 0; i <= text.length; i++)
      expect(run(m, [text.slice(0, i), text.slice(i)]).out).toBe("x\n[REDACTED:privateKey]");
  });

  it("releases long lines in windows without splitting values", () => {
    const m = createMasker({
      rules: [{ name: "r", detectors: ["email", "creditCard"], strategy: "redact" }],
      hashKey: KEY,
    });
    const words = ["lorem", "ipsum", "jane@example.com", "4111 1111 1111 1111", "dolor", "sit"];
    const rand = rng(11);
    let line = "";
    while (line.length < 20_000) line += `${words[Math.floor(rand() * words.length)]} `;
    const expected = m.maskText(line).text;
    for (let k = 0; k < 10; k++) {
      const { out, parts } = run(m, randomChunks(line, rand, 97));
      expect(out).toBe(expected);
      expect(parts.slice(0, -1).join("").length).toBeGreaterThan(10_000); // released before end()
    }
  });

  it("long lines with every detector and a small hold stay equal to one-shot", () => {
    const m = all();
    const line = TEXT.replace(/\n/g, " | ").repeat(20);
    const expected = m.maskText(line).text;
    const rand = rng(5);
    for (let k = 0; k < 5; k++)
      expect(run(m, randomChunks(line, rand, 300), { maxHoldBytes: 4096 }).out).toBe(expected);
  });

  // One line, no newline to lean on: each detector's own hold-back (pendingFrom) must keep every
  // split equal to one-shot masking, near misses included (a glued IBAN, a card with a decimal
  // tail, a time stamp after a phone-shaped run, a BEGIN line that is not a private key).
  const LINE = [
    "Reach jane@example.com or jane@example.com. today; not a@b, x@y.z1",
    "card 4111 1111 1111 1111 then 4111 1111 1111 1111.5 and 4111-1111-1111-1111x",
    "ssn 123-45-6789, SSN: 078051120 and social security number 078-05-1120",
    "iban DE89 3704 0044 0532 0130 00 vs DE89 3704 0044 0532 0130 001 vs DE89370400440532013000",
    "phone +1 (213) 373-4253 at 2024-01-15 10:30 and 213 373 4253 ext",
    `ips 10.1.2.3 and fe80::1:2:3 and std::vector, aws_secret_access_key = ${SECRET} ok`,
    `AKIAIOSFODNN7EXAMPLE ghp_${"A1b2C3d4E5".repeat(4)} xoxb-1234567890-abcdefghij ${JWT}`,
    "postgres://admin:s3cr3tPass@db:5432/app and -----BEGIN CERTIFICATE----- then",
    `${PEM.replace(/\n/g, " ")} end`,
    `password: "correct horse 9Z!q battery" and "client_secret": 'aB3$kLm9 xQ2#pR7w' then token`,
    `<add key="ClearTextPassword" value="s3cret pass phrase, 42!" /> and asks for sk- keys`,
  ].join(" ");

  it("holds back per detector: every split of one long line equals one-shot", () => {
    // The line holds a finding of every detector, so no detector passes by finding nothing.
    const found = new Set(
      all()
        .maskText(LINE)
        .findings.map((f) => f.detector),
    );
    expect([...all().textDetectors].filter((id) => !found.has(id))).toEqual([]);
    // Labelled secrets with spaces inside quotes are masked whole.
    expect(all().maskText(LINE).text).not.toMatch(/horse|xQ2#|pass phrase/);
    for (const id of [...all().textDetectors, "all" as const]) {
      const m = createMasker({ rules: [{ name: id, detectors: [id], strategy: "redact" }], hashKey: KEY });
      const expected = m.maskText(LINE).text;
      for (let i = 0; i <= LINE.length; i++) {
        const { out } = run(m, [LINE.slice(0, i), LINE.slice(i)]);
        if (out !== expected) expect({ id, split: i, out }).toEqual({ id, split: i, out: expected });
      }
      const rand = rng(3);
      for (let k = 0; k < 20; k++) {
        const { out } = run(m, randomChunks(LINE, rand, 4));
        if (out !== expected) expect({ id, k, out }).toEqual({ id, k, out: expected });
      }
    }
  }, 90_000); // every split of a ~1 KB line for each detector: seconds alone, far more on a loaded machine

  it("holds back per detector: runs longer than a detector's reach are cut and still masked alike", () => {
    const line = [
      `${"x".repeat(600)}jane@example.com ${"y".repeat(300)}.a@example.org`,
      `${"z".repeat(1200)}postgres://admin:s3cr3tPass@db:5432/app`,
      `aws_secret_access_key=${SECRET} ${"k".repeat(700)}${JWT}`,
    ].join(" ");
    for (const id of ["email", "urlCredentials", "jwt", "awsSecretKey", "all"] as const) {
      const m = createMasker({ rules: [{ name: id, detectors: [id], strategy: "redact" }], hashKey: KEY });
      const expected = m.maskText(line).text;
      const rand = rng(9);
      for (let k = 0; k < 30; k++) {
        const { out } = run(m, randomChunks(line, rand, k % 2 ? 3 : 40), { maxHoldBytes: 1024 });
        if (out !== expected) expect({ id, k, out }).toEqual({ id, k, out: expected });
      }
    }
  });

  it("holds back no more than the word in the making: prose streamed in deltas keeps its pace", () => {
    const m = all();
    const prose =
      "Airlock sits between the agent and production. It checks each request against the policy, " +
      "asks a human when a rule says so (rule 12, step 3 of 4), and masks what the agent must " +
      "not see before the text reaches it. I think that is OK for DE and US teams. ";
    const text = prose.repeat(4);
    const s = createStreamMasker(m);
    let sent = 0;
    let got = "";
    let maxHeld = 0;
    for (const chunk of text.match(/.{1,5}/gs) ?? []) {
      sent += chunk.length;
      got += s.push(chunk);
      maxHeld = Math.max(maxHeld, sent - got.length);
    }
    got += s.end();
    expect(got).toBe(text);
    expect(maxHeld).toBeLessThanOrEqual("production.".length + 1);
  });

  it("reports findings as they are masked", () => {
    const seen: MaskFinding[] = [];
    run(all(), randomChunks(TEXT, rng(1), 10), { onFindings: (f) => seen.push(...f) });
    expect(seen).toEqual(all().maskText(TEXT).findings);
  });

  it("passes text straight through when no detector applies", () => {
    const m = createMasker({ rules: [{ name: "f", fields: ["$.a"], strategy: "redact" }], hashKey: KEY });
    const s = createStreamMasker(m);
    expect(s.push("jane@exa")).toBe("jane@exa");
    expect(s.end()).toBe("");
  });
});

describe("sse stream", () => {
  const masker = all("redact", [{ name: "secrets", fields: ["$..password"], strategy: "redact" }]);
  const events = [
    ": keep-alive comment\n\n",
    'event: message\nid: 1\ndata: {"user":{"email":"jane@example.com","password":"hunter2"},"n":1}\n\n',
    "data: plain text with card 4111 1111 1111 1111\n\n",
    "data: line one jane@example.com\ndata: line two 123-45-6789\n\n",
    'data: {"a":\ndata:  "jane@example.com"}\n\n',
    "data: unchanged\r\n\r\n",
    `data: ${PEM.split("\n").join("\ndata: ")}\n\n`,
    "data:no-space 10.1.2.3\r\r",
    "data: [DONE]\n\n",
  ];
  const body = events.join("");
  const expectedEvents = [
    ": keep-alive comment\n\n",
    'event: message\nid: 1\ndata: {"user":{"email":"[REDACTED:email]","password":"[REDACTED]"},"n":1}\n\n',
    "data: plain text with card [REDACTED:creditCard]\n\n",
    "data: line one [REDACTED:email]\ndata: line two [REDACTED:usSsn]\n\n",
    'data: {"a":"[REDACTED:email]"}\n\n',
    "data: unchanged\r\n\r\n",
    "data: [REDACTED:privateKey]\n\n",
    "data:no-space [REDACTED:ipv4]\r\r",
    "data: [DONE]\n\n",
  ];

  it("masks each event, JSON data as JSON and the rest as text", () => {
    expect(run(masker, [body], { mode: "sse" }).out).toBe(expectedEvents.join(""));
  });

  it("releases each event as soon as its blank line arrives", () => {
    const s = createStreamMasker(masker, { mode: "sse" });
    for (const [i, e] of events.entries()) {
      const cut = e.length - 1; // all but the final line end
      // Event 7 ends "\r\r": the last "\r" might start "\r\n", so it is released with the next byte.
      expect(s.push(e.slice(0, cut))).toBe(i === 8 ? expectedEvents[7] : "");
      expect(s.push(e.slice(cut))).toBe(i === 7 ? "" : expectedEvents[i]);
    }
    expect(s.end()).toBe("");
  });

  it("split at every boundary and random chunkings equal one push", () => {
    const expected = expectedEvents.join("");
    for (let i = 0; i <= body.length; i++) {
      const { out } = run(masker, [body.slice(0, i), body.slice(i)], { mode: "sse" });
      if (out !== expected) expect({ split: i, out }).toEqual({ split: i, out: expected });
    }
    const rand = rng(9);
    for (let k = 0; k < 200; k++)
      expect(run(masker, randomChunks(body, rand, 12), { mode: "sse" }).out).toBe(expected);
  });

  it("masks an unterminated last event at the end", () => {
    expect(run(masker, ["data: jane@example.com"], { mode: "sse" }).out).toBe("data: [REDACTED:email]");
    expect(run(masker, ["data: x\r"], { mode: "sse" }).out).toBe("data: x\r");
  });

  it("masks an event larger than maxHoldBytes as text, line by line", () => {
    const big = `data: ${"filler jane@example.com 4111 1111 1111 1111 ".repeat(200)}\ndata: end\n\n`;
    const next = 'data: {"password":"hunter2"}\n\n';
    const rand = rng(4);
    for (let k = 0; k < 5; k++) {
      const { out, parts } = run(masker, randomChunks(big + next, rand, 200), {
        mode: "sse",
        maxHoldBytes: 2048,
      });
      expectNoSecrets(out);
      expect(out).toContain("[REDACTED:email]");
      expect(out.endsWith('data: {"password":"[REDACTED]"}\n\n')).toBe(true);
      expect(parts.slice(0, -3).join("").length).toBeGreaterThan(0); // released before the event ended
    }
  });
});
