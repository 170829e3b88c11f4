import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
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
    // Plain HTTP inside the tunnel is served by the HTTP guard, request by request.
    expect(JSON.parse(r.stdout)).toMatchObject({
      decision: "deny",
      policy: "default/demo",
      // The demo's connection speaks plaintext upstream: TLS inside is neither read nor relayed.
      tlsInside: "refused",
      plainHttpInside: "inspected",
    });
  });

  it("answers CONNECT to a passthrough connection: relayed for the rule's subject only, never a plain request", async () => {
    const args = ["policy", "test", "--policy", "examples/pinned-client.yaml", "--connection", "payments"];
    const tunnel = ["--http", "CONNECT api.payments.example:443"];
    const mine = await airlock(...args, ...tunnel, "--service-account", "billing-agent");
    expect(JSON.parse(mine.stdout)).toMatchObject({
      decision: "allow",
      rule: "open-payments",
      tlsInside: "relayed",
      plainHttpInside: "refused",
    });
    const other = await airlock(...args, ...tunnel, "--service-account", "someone-else");
    expect(JSON.parse(other.stdout)).toMatchObject({ decision: "deny", tlsInside: "refused" });
    const plain = await airlock(...args, "--http", "GET /v1/charges", "--service-account", "billing-agent");
    expect(JSON.parse(plain.stdout)).toMatchObject({
      decision: "deny",
      reason: expect.stringMatching(/tls\.mode passthrough: it relays only the agent's own TLS/),
    });
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
    [[...demo.slice(2), "--http", "GET /", "--database", "postgresql://u@h/d"], /--database goes with --sql/],
  ])("exits 2 with a clear message for %j", async (args, message) => {
    const r = await airlock("policy", "test", ...args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stdout).toBe("");
  });

  // A typo must never loosen what the author wrote: each of these used to be accepted silently.
  it.each([
    [
      "methods:",
      "method:",
      /spec\.rules\[0\]\.match\.http\.method: unknown field "method"; did you mean "methods"\?/,
    ],
    ['paths: ["/admin/**"]', 'path: ["/admin/**"]', /unknown field "path"; did you mean "paths"\?/],
    ["  masking:", "  maskng:", /spec\.maskng: unknown field "maskng"; did you mean "masking"\?/],
    [
      "action: deny",
      "action: denny",
      /"denny" is not one of: allow, deny, requireApproval; did you mean "deny"\?/,
    ],
    [
      "strategy: partial",
      "strategy: partail",
      /"partail" is not one of: redact, partial, hash; did you mean "partial"\?/,
    ],
    [
      '"$..internalNotes"',
      '"$..internal[Notes"',
      /spec\.masking\[1\]\.fields\[0\]: masking rule secret-notes: invalid JSON path/,
    ],
  ])("refuses a policy file with %j written as %j", async (from, to, message) => {
    const dir = mkdtempSync(join(tmpdir(), "airlock-typo-"));
    const file = join(dir, "policy.yaml");
    const text = readFileSync(join(root, "examples/demo-policy.yaml"), "utf8");
    expect(text).toContain(from);
    writeFileSync(file, text.replace(from, to));
    for (const args of [
      ["policy", "test", "--policy", file, "--connection", "customers-api", "--http", "PUT /customers/1"],
      ["mask", "--policy", file, "--connection", "customers-api"],
    ]) {
      const r = await airlock(...args);
      expect(r.code, args[0]).toBe(2);
      expect(r.stderr, args[0]).toMatch(message);
      expect(r.stderr).not.toMatch(/Expected kind|AirlockStringEnum|\n\s+at /);
      expect(r.stdout).toBe("");
    }
  });

  it("prints help", async () => {
    const r = await airlock("policy", "test", "--help");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Usage: airlock policy test --policy FILE/);
  });
});
