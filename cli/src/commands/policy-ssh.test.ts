// `airlock policy test --ssh`: the SSH guard's own command analysis, offline.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import { command } from "./policy.ts";

const dir = mkdtempSync(join(tmpdir(), "airlock-policy-ssh-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = join(dir, "policy.yaml");
writeFileSync(
  file,
  `apiVersion: airlock.dev/v1alpha1
kind: AgentAccessPolicy
metadata: { name: hosts, namespace: agents }
spec:
  connections:
    - name: box
      protocol: ssh
      target: { host: box.internal, port: 22 }
  rules:
    - name: no-rm
      action: deny
      match: { ssh: { commands: ["rm *"] } }
    - name: admin
      action: allow
      match: { ssh: { commands: ["sudo *", "ls *", "echo *"] } }
`,
);

async function decide(ssh: string) {
  const out: string[] = [];
  const spy = vi.spyOn(process.stdout, "write").mockImplementation((chunk) => {
    out.push(String(chunk));
    return true;
  });
  try {
    expect(await command.run(["test", "--policy", file, "--connection", "box", "--ssh", ssh])).toBe(0);
  } finally {
    spy.mockRestore();
  }
  return JSON.parse(out.join(""));
}

describe("airlock policy test --ssh", () => {
  it("decides like the SSH guard", async () => {
    expect(await decide("ls -la /tmp")).toMatchObject({ decision: "allow", rule: "admin" });
    expect(await decide("echo a && ls /")).toMatchObject({ decision: "allow" });
    expect(await decide("ls /tmp; rm -rf /")).toMatchObject({ decision: "deny", rule: "no-rm" });
    expect(await decide("sudo -u root rm -rf /")).toMatchObject({ decision: "deny", rule: "no-rm" });
    expect(await decide("echo $(id)")).toMatchObject({
      decision: "deny",
      rule: null,
      reason: expect.stringMatching(/refused before policy evaluation: .*\$ expansion/),
    });
  });
});
