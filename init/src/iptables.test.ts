// Backend choice and the apply/verify loop, driven by a scripted runner standing in for the
// iptables binaries (the real ones run in test/netns).
import { describe, expect, it } from "vitest";
import { applyFamily, chooseBackend, countRules, type Runner, verify } from "./iptables.ts";
import { buildRules, type CaptureConfig } from "./rules.ts";

const config: CaptureConfig = {
  proxyUid: 1717,
  proxyGid: 1717,
  redirectPort: 15900,
  excludeCidrs: [],
  excludePorts: [],
  dnsServers: [],
  nonTcp: "reject",
};

describe("chooseBackend", () => {
  it("prefers the backend that already holds rules", () => {
    expect(
      chooseBackend([
        { backend: "nft", usable: true, rules: 0 },
        { backend: "legacy", usable: true, rules: 12 },
      ]),
    ).toMatchObject({ backend: "legacy", reason: "legacy already holds 12 rule(s)" });
  });
  it("falls back to nft on a tie, to legacy when nft is unusable, fails when none is", () => {
    expect(
      chooseBackend([
        { backend: "nft", usable: true, rules: 0 },
        { backend: "legacy", usable: true, rules: 0 },
      ]).backend,
    ).toBe("nft");
    expect(
      chooseBackend([
        { backend: "nft", usable: false, rules: 0, error: "Could not fetch rule set generation id" },
        { backend: "legacy", usable: true, rules: 0 },
      ]).backend,
    ).toBe("legacy");
    expect(() =>
      chooseBackend([
        { backend: "nft", usable: false, rules: 0, error: "a" },
        { backend: "legacy", usable: false, rules: 0, error: "b" },
      ]),
    ).toThrow(/no usable iptables backend: nft: a; legacy: b/);
  });
  it("counts -A lines", () => {
    expect(countRules("*nat\n:X - [0:0]\n-A OUTPUT -j X\n-A X -j RETURN\nCOMMIT\n")).toBe(2);
  });
});

/** A fake iptables: remembers the last restore input and "saves" the rules it described. */
function fakeIptables(opts: { failRestore?: boolean; dropRule?: boolean } = {}) {
  let state = "";
  const calls: string[] = [];
  const run: Runner = async (command, args, input) => {
    calls.push([command, ...args].join(" "));
    if (command.endsWith("-save")) return { code: 0, stdout: state, stderr: "" };
    if (opts.failRestore) return { code: 2, stdout: "", stderr: "iptables-restore: line 3 failed" };
    const lines = (input ?? "").split("\n").map((l) => l.replace(/^-I OUTPUT 1 /, "-A OUTPUT "));
    state = lines.filter((l) => !(opts.dropRule && l.includes("gid-owner"))).join("\n");
    return { code: 0, stdout: "", stderr: "" };
  };
  return { run, calls };
}

describe("applyFamily", () => {
  it("restores with --noflush and verifies by reading back", async () => {
    const fake = fakeIptables();
    const r = await applyFamily(fake.run, "legacy", buildRules(config, 6));
    expect(fake.calls).toEqual([
      "ip6tables-legacy-save",
      "ip6tables-legacy-restore --noflush --wait 10",
      "ip6tables-legacy-save",
    ]);
    expect(r.restoreInput).toContain("*nat\n");
  });
  it("fails loudly when the restore fails or the rules are not all there", async () => {
    await expect(
      applyFamily(fakeIptables({ failRestore: true }).run, "nft", buildRules(config, 4)),
    ).rejects.toThrow(/iptables-nft-restore --noflush failed \(exit 2\): iptables-restore: line 3 failed/);
    await expect(
      applyFamily(fakeIptables({ dropRule: true }).run, "nft", buildRules(config, 4)),
    ).rejects.toThrow(/chain AIRLOCK_OUTPUT has 3 rules, expected 4/);
  });
  it("verify reports a missing jump", () => {
    const desired = buildRules({ ...config, nonTcp: "allow" }, 4);
    const nat = desired.tables[0];
    const save = `*nat\n:AIRLOCK_OUTPUT - [0:0]\n:AIRLOCK_REDIRECT - [0:0]\n${nat?.rules.join("\n")}\nCOMMIT\n`;
    expect(verify(desired, save)).toEqual(["nat: expected exactly one OUTPUT jump into our chains, found 0"]);
  });
});
