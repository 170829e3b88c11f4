// Golden tests of the rule set, one case per annotation combination: init/testdata/NAME.args.json
// (the arguments the injector passes) → NAME.golden (what `airlock-init --dry-run` prints, or for a
// refused case `exit: N` and the message). Cases are discovered from the directory; regenerate
// with AIRLOCK_UPDATE_GOLDEN=1 and review the diff.
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { main } from "./main.ts";

const dir = join(import.meta.dirname, "..", "testdata");
const update = process.env.AIRLOCK_UPDATE_GOLDEN === "1";
const DEFAULT_RESOLV_CONF = "search default.svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n";

interface Case {
  description: string;
  args: string[];
  resolvConf?: string;
}

async function render(c: Case): Promise<string> {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const code = await main([...c.args, "--dry-run"], {
    stdout: (t) => void stdout.push(t),
    stderr: (t) => void stderr.push(t),
    readResolvConf: () => c.resolvConf ?? DEFAULT_RESOLV_CONF,
    hasIpv6: () => true,
    run: () => {
      throw new Error("--dry-run must not run iptables");
    },
  });
  return code === 0 ? stdout.join("") : `exit: ${code}\n${stderr.join("")}`;
}

const cases = readdirSync(dir)
  .filter((f) => f.endsWith(".args.json"))
  .map((f) => f.slice(0, -".args.json".length))
  .sort();

describe("airlock-init golden rule sets", () => {
  it("finds the cases", () => {
    expect(cases.length).toBeGreaterThanOrEqual(10);
  });

  for (const name of cases) {
    it(name, async () => {
      const c = JSON.parse(readFileSync(join(dir, `${name}.args.json`), "utf8")) as Case;
      const goldenPath = join(dir, `${name}.golden`);
      const got = await render(c);
      if (update || !existsSync(goldenPath)) {
        if (!update) throw new Error(`${goldenPath} missing; run with AIRLOCK_UPDATE_GOLDEN=1`);
        writeFileSync(goldenPath, got);
      }
      expect(got).toBe(readFileSync(goldenPath, "utf8"));
      // Deterministic: the same input renders the same bytes twice.
      expect(await render(c)).toBe(got);
      if (name.startsWith("error-")) expect(got).toMatch(/^exit: 2\n/);
      else expect(got).toMatch(/^# iptables-restore --noflush \(IPv4\)\n\*nat\n/);
    });
  }

  it("has no orphan golden files", () => {
    const orphans = readdirSync(dir)
      .filter((f) => f.endsWith(".golden"))
      .filter((f) => !cases.includes(f.slice(0, -".golden".length)));
    expect(orphans).toEqual([]);
  });
});
