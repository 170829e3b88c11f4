// The README's first command, as a user runs it: `airlock demo` starts the sidecar in front of
// the bundled API; the curl lines it prints behave as it says.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";

const root = fileURLToPath(new URL("../../", import.meta.url));
// The demo creates demo-approver's credential here (not in the user's ~/.config); the approvals
// CLI run below reads it from the same variable.
process.env.AIRLOCK_APPROVER_TOKEN_FILE = join(
  mkdtempSync(join(tmpdir(), "airlock-demo-test-")),
  "approver-tokens",
);
let demo: ChildProcess;
let output = "";

beforeAll(async () => {
  demo = spawn(process.execPath, ["bin/airlock.js", "demo"], {
    cwd: root,
    stdio: ["ignore", "pipe", "pipe"],
  });
  demo.stdout?.on("data", (d) => {
    output += d;
  });
  demo.stderr?.on("data", (d) => {
    output += d;
  });
  const deadline = Date.now() + 30_000;
  while (!/Airlock demo is running/.test(output)) {
    if (demo.exitCode !== null || Date.now() > deadline)
      throw new Error(`airlock demo did not start:\n${output}`);
    await new Promise((r) => setTimeout(r, 100));
  }
});

afterAll(async () => {
  demo.kill("SIGINT");
  await new Promise((r) => demo.once("exit", r));
});

it("prints ready-to-paste curl lines", () => {
  expect(output).toMatch(/curl -s http:\/\/127\.0\.0\.1:15001\/customers\/1/);
  expect(output).toMatch(/curl -s -X DELETE/);
});

it("allows a read, injects the token the agent never had, and masks PII", async () => {
  const res = await fetch("http://127.0.0.1:15001/customers/1");
  expect(res.status).toBe(200);
  const body = await res.json();
  expect(body).toMatchObject({
    id: 1,
    name: "Ada Lovelace",
    internalNotes: "[REDACTED]",
    card: "**** **** **** 1111",
  });
  expect(JSON.stringify(body)).not.toMatch(/ada@example\.com|4111 1111 1111 1111|078-05-1120/);
});

it("blocks a delete with a 403 naming the rule", async () => {
  const res = await fetch("http://127.0.0.1:15001/customers/1", { method: "DELETE" });
  expect(res.status).toBe(403);
  expect(await res.json()).toMatchObject({ error: "denied", rule: "no-deletes" });
});

it("pauses a refund for approval; once approved through the sidecar's admin API the retry passes", async () => {
  const first = await fetch("http://127.0.0.1:15001/customers/1/refund", {
    method: "POST",
    headers: { "x-airlock-reason": "ticket 42" },
  });
  expect(first.status).toBe(403);
  const body = (await first.json()) as { error: string; request: string };
  expect(body).toMatchObject({ error: "approval_required", rule: "refunds-need-approval" });
  const approve = await new Promise<{ code: number; out: string }>((resolve) => {
    execFile(
      process.execPath,
      [
        "bin/airlock.js",
        "approvals",
        "approve",
        body.request,
        "--sidecar",
        "http://127.0.0.1:15990",
        "--as",
        "demo-approver",
      ],
      { cwd: root },
      (err, stdout, stderr) => resolve({ code: err ? 1 : 0, out: stdout + stderr }),
    );
  });
  expect(approve.code, approve.out).toBe(0);
  const retry = await fetch("http://127.0.0.1:15001/customers/1/refund", { method: "POST" });
  expect(retry.status).toBe(200);
  expect(await retry.json()).toEqual({ refunded: 1 });
});

it("the upstream refuses callers without the sidecar's token", async () => {
  expect((await fetch("http://127.0.0.1:18080/customers/1")).status).toBe(401);
});

it("prints one audit line per operation", async () => {
  await expect
    .poll(() => output)
    .toMatch(/audit: GET \/customers\/1 → allow \(rule read-customers\) upstream=200 masked=/);
  await expect.poll(() => output).toMatch(/audit: DELETE \/customers\/1 → deny \(rule no-deletes\)/);
});

const airlock = (...args: string[]) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, ["bin/airlock.js", ...args], { cwd: root }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });

it("records the sessions it served, for `airlock sessions list --dir` (the line it printed)", async () => {
  const dir = /npx airlock sessions list --dir (\S+)/.exec(output)?.[1];
  expect(dir, output).toBeDefined();
  await expect
    .poll(
      async () => {
        const r = await airlock("sessions", "list", "--dir", dir as string, "--json");
        if (r.code !== 0) return 0;
        const sessions = JSON.parse(r.stdout) as { protocol?: string; operations: number }[];
        return sessions.filter((s) => s.protocol === "http").reduce((n, s) => n + s.operations, 0);
      },
      { timeout: 10_000 },
    )
    .toBeGreaterThanOrEqual(3);
});

it("a second demo while this one runs says the port is taken, in one line, without a stack", async () => {
  const r = await airlock("demo", "--no-wait");
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(
    /^airlock demo: port 127\.0\.0\.1:\d+ is already in use, probably by another `npm start`\/`airlock demo` or `airlock sidecar`: stop that one first/,
  );
  expect(r.stderr).not.toMatch(/\n\s+at /);
  expect(r.stderr.trim().split("\n")).toHaveLength(1);
});
