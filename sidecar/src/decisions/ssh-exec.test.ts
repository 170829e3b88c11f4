import { describe, expect, it } from "vitest";
import type { AgentAccessPolicy } from "../../../api/src/index.ts";
import { compilePolicies } from "../policy/compile.ts";
import type { Operation } from "../policy/types.ts";
import { decideExec } from "./ssh-exec.ts";

type Rules = AgentAccessPolicy["spec"]["rules"];

function evaluator(rules: Rules) {
  const policy: AgentAccessPolicy = {
    apiVersion: "airlock.dev/v1alpha1",
    kind: "AgentAccessPolicy",
    metadata: { name: "p", namespace: "agents" },
    spec: { connections: [{ name: "box", protocol: "ssh", target: { host: "h", port: 22 } }], rules },
  };
  const { set, problems } = compilePolicies([policy]);
  expect(problems).toEqual([]);
  return (op: Operation) =>
    set.evaluate("box", { serviceAccount: "system:serviceaccount:agents:agent", groups: [] }, op);
}

const RULES: Rules = [
  { name: "no-rm", action: "deny", match: { ssh: { commands: ["rm *"] } } },
  {
    name: "restarts",
    action: "requireApproval",
    match: { ssh: { commands: ["systemctl restart *"] } },
    approval: { approvers: { groups: ["oncall"] } },
  },
  { name: "admin", action: "allow", match: { ssh: { commands: ["sudo *"] } } },
  {
    name: "read",
    action: "allow",
    match: { ssh: { commands: ["ls *", "cat /var/log/*", "grep *", "ps *", "systemctl *"] } },
  },
];

const decide = (line: string) => decideExec(evaluator(RULES), line, "agents/p");

describe("decideExec", () => {
  it("allows a plain allowed command and names the rule", () => {
    expect(decide("ls -la /tmp").decision).toMatchObject({ action: "allow", rule: "read" });
    expect(decide("ls -la /tmp").command).toBe("ls -la /tmp");
  });

  it("judges every part of a chain; the strictest wins", () => {
    expect(decide("ps aux | grep nginx").decision).toMatchObject({
      action: "allow",
      rule: "read",
      reason: "allowed by rule read (each of the 2 commands)",
    });
    expect(decide("ls /tmp && rm -rf /").decision).toMatchObject({ action: "deny", rule: "no-rm" });
    expect(decide("ls /tmp; whoami").decision).toMatchObject({ action: "deny" });
    expect(decide("ls /tmp; whoami").decision.rule).toBeUndefined();
    expect(decide("ls /tmp; whoami").decision.reason).toMatch(/\(for "whoami"\)/);
    // `ls *` needs an argument: a bare `ls` is not allowed by it.
    expect(decide("ls").decision.action).toBe("deny");
    expect(decide("ls /tmp && systemctl restart web").decision).toMatchObject({
      action: "requireApproval",
      rule: "restarts",
      approval: { approvers: { groups: ["oncall"] } },
    });
    expect(decide("systemctl restart web; rm x").decision.action).toBe("deny");
  });

  it("applies deny and approval rules to wrapped commands, never allow rules", () => {
    // `sudo *` allows the command as written, but the wrapped rm is denied.
    expect(decide("sudo -u root rm -rf /").decision).toMatchObject({ action: "deny", rule: "no-rm" });
    expect(decide("sudo -u root rm -rf /").decision.reason).toMatch(/wrapped command "rm -rf \/"/);
    expect(decide("sudo systemctl restart db").decision).toMatchObject({ action: "requireApproval" });
    expect(decide("sudo ls").decision).toMatchObject({ action: "allow", rule: "admin" });
    // An allowed inner command does not allow its wrapper.
    expect(decide("nohup ls /tmp").decision).toMatchObject({ action: "deny" });
    expect(decide("nohup ls /tmp").decision.rule).toBeUndefined();
    expect(decide("bash -c 'ls -la'").decision.action).toBe("deny");
    expect(decide("/bin/rm -rf /tmp/x").decision).toMatchObject({ action: "deny", rule: "no-rm" });
    expect(decide("find / -exec rm -rf {} +").decision).toMatchObject({ action: "deny", rule: "no-rm" });
  });

  it("refuses what it cannot analyse before any rule", () => {
    const d = decide("ls $(rm -rf /)");
    expect(d.decision).toMatchObject({ action: "deny", policy: "agents/p" });
    expect(d.decision.rule).toBeUndefined();
    expect(d.decision.reason).toMatch(/^refused before policy evaluation: the command contains \$ expansion/);
    expect(d.analysis.ok).toBe(false);
  });

  it("a glob over the raw line would be fooled; the normalized parts are not", () => {
    // `cat /var/log/*` as a raw-string glob would allow this whole line.
    expect(decide("cat /var/log/syslog; cat /etc/shadow").decision.action).toBe("deny");
    expect(decide("cat /var/log/syslog").decision.action).toBe("allow");
  });
});
