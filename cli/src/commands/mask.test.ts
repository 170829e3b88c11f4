import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("../../../", import.meta.url));
const airlock = (stdin: string, ...args: string[]) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, ["bin/airlock.js", "mask", ...args], { cwd: root });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    child.on("close", (code) => resolve({ code: code ?? 1, stdout, stderr }));
    child.stdin.end(stdin);
  });
const demo = ["--policy", "examples/demo-policy.yaml", "--connection", "customers-api"];
const record = JSON.stringify({
  customers: [
    { email: "ada@example.com", card: "4111 1111 1111 1111", ssn: "078-05-1120", internalNotes: "vip" },
  ],
});

describe("airlock mask", () => {
  it("masks JSON with a policy's rules for a connection", async () => {
    const r = await airlock(record, ...demo);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.customers[0]).toEqual({
      email: expect.stringMatching(/^\*+@.*\.com$/),
      card: "**** **** **** 1111",
      ssn: "***-**-1120",
      internalNotes: "[REDACTED]",
    });
    for (const secret of ["ada@example.com", "4111 1111 1111 1111", "078-05-1120", "vip"])
      expect(r.stdout).not.toContain(secret);
  });

  it("reports findings by path and detector, never the values", async () => {
    const r = await airlock(record, ...demo, "--report");
    expect(JSON.parse(r.stdout)).toEqual([
      { path: "$.customers[0].email", detector: "email", rule: "pii" },
      { path: "$.customers[0].card", detector: "creditCard", family: "visa", rule: "pii" },
      { path: "$.customers[0].ssn", detector: "usSsn", rule: "pii" },
      { path: "$.customers[0].internalNotes", detector: "field", rule: "secret-notes" },
    ]);
    expect(r.stdout).not.toContain("ada@example.com");
  });

  it("masks text with every detector", async () => {
    const r = await airlock("aws AKIAIOSFODNN7EXAMPLE mail bob@corp.io\n", "--detectors", "all");
    expect(r.stdout).toBe("aws [REDACTED:awsAccessKey] mail [REDACTED:email]\n");
  });

  it("names the family of each secret it finds", async () => {
    const stripe = "sk_live_51Hx8kQ2eZvKYlo2C9wX3mN7pR1sT8uW3yB6cE0fH5jK9aD2gJ";
    const text = `STRIPE_KEY=${stripe}\nDB_PASSWORD=Tr0ub4dor-3x\ncard 3782 822463 10005\n`;
    const r = await airlock(text, "--detectors", "secrets,creditCard", "--report");
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([
      { path: "$", detector: "secretCatalogue", family: "stripe-access-token", rule: "cli" },
      { path: "$", detector: "keywordSecret", family: "password", rule: "cli" },
      { path: "$", detector: "creditCard", family: "amex", rule: "cli" },
    ]);
    expect(r.stdout).not.toContain(stripe);
    const masked = await airlock(text, "--detectors", "secrets");
    expect(masked.stdout).toBe(
      "STRIPE_KEY=[REDACTED:secretCatalogue]\nDB_PASSWORD=[REDACTED:keywordSecret]\ncard 3782 822463 10005\n",
    );
  });

  it.each([
    [["--detectors", "nope"], /unknown detector\(s\): nope/],
    [[], /give --policy FILE --connection NAME, or --detectors LIST/],
    [["--detectors", "email", "--strategy", "shred"], /unknown strategy shred/],
    [["--policy", "examples/demo-policy.yaml", "--connection", "x"], /unknown connection x/],
  ])("exits 2 on bad input %j", async (args, message) => {
    const r = await airlock("x", ...args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
  });
});
