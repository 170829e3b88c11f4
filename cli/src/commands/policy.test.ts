import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("../../../", import.meta.url));
const airlock = (...args: string[]) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, ["bin/airlock.js", ...args], { cwd: root }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
const demo = ["policy", "test", "--policy", "examples/demo-policy.yaml", "--connection", "customers-api"];

describe("airlock policy test", () => {
  it.each([
    ["GET /customers/1", "allow", "read-customers"],
    ["get /customers", "allow", "read-customers"],
    ["DELETE /customers/1", "deny", "no-deletes"],
    ["GET /customers/../admin/keys", "deny", "no-admin"],
    ["GET //admin", "deny", "no-admin"],
    ["POST /customers", "deny", null],
  ])("--http %j → %s", async (http, decision, rule) => {
    const r = await airlock(...demo, "--http", http);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ decision, rule, policy: "default/demo" });
  });

  it("answers CONNECT as the sidecar does: a host-level tunnel, not a request for a path", async () => {
    const r = await airlock(...demo, "--http", "CONNECT customers.internal:443");
    expect(r.code, r.stderr).toBe(0);
    // The demo's rules scope methods and paths: none can allow an opaque tunnel, and its deny
    // rules apply to it (inside a tunnel any method and path may travel).
    expect(JSON.parse(r.stdout)).toMatchObject({ decision: "deny", policy: "default/demo" });
  });

  it("uses subjects and the policy's end-user requirement", async () => {
    const args = ["policy", "test", "--policy", "examples/claude-agent.yaml", "--connection", "tickets"];
    const r = await airlock(...args, "--http", "POST /api/tickets/7/close");
    expect(JSON.parse(r.stdout)).toMatchObject({
      decision: "requireApproval",
      rule: "close-ticket-needs-approval",
    });
  });

  it.each([
    ["select * from orders", "allow", "read"],
    ["DELETE FROM orders WHERE id = 1", "requireApproval", "delete-needs-dba"],
    ["select 1; /* sneaky */ DrOp TABLE orders", "deny", "no-ddl"],
    ["select pg_read_file('/etc/passwd')", "deny", "airlock-builtin"],
    ["selec garbage", "deny", "airlock-builtin"],
  ])("--sql %j → %s by %s, with the guard's own classifier", async (sql, decision, rule) => {
    const args = [
      "--policy",
      "examples/postgres-analyst.yaml",
      "--connection",
      "orders-db",
      "--user",
      "sam",
      "--group",
      "support",
    ];
    const r = await airlock("policy", "test", ...args, "--sql", sql);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ decision, rule, policy: "agents/orders-analyst" });
  });

  it.each([
    [["--connection", "customers-api", "--http", "GET /"], /--policy FILE is required/],
    [["--policy", "examples/demo-policy.yaml", "--http", "GET /"], /--connection NAME is required/],
    [[...demo.slice(2), "--http", "GET"], /--http takes "METHOD PATH"/],
    [[...demo.slice(2), "--http", "GET /a", "--sql", "select 1"], /exactly one of/],
    [[...demo.slice(2), "--http", "GET /%252e%252e/admin"], /double-encoded/],
    [
      ["--policy", "examples/demo-policy.yaml", "--connection", "nope", "--http", "GET /"],
      /unknown connection nope; the policies define: customers-api/,
    ],
    [["--policy", "no-such-file.yaml", "--connection", "x", "--http", "GET /"], /cannot read policy file/],
    [[...demo.slice(2), "--bogus"], /Unknown option '--bogus'/],
  ])("exits 2 with a clear message for %j", async (args, message) => {
    const r = await airlock("policy", "test", ...args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stdout).toBe("");
  });

  it("prints help", async () => {
    const r = await airlock("policy", "test", "--help");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Usage: airlock policy test --policy FILE/);
  });
});
