// Start-up and CLI errors a new user meets, as one line that says what to do (no stack traces),
// and the bin/ entry points on a Node older than 24 re-running under the cached Node 24.
import { execFile, execFileSync } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("../../", import.meta.url));
const run = (node: string, bin: string, args: string[], env: Record<string, string> = {}) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(node, [bin, ...args], { cwd: root, env: { ...process.env, ...env } }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
const noStack = (text: string) => expect(text).not.toMatch(/\n\s+at |Error:/);

describe("one-line start-up errors", () => {
  it("airlock sidecar --policy with a missing file", async () => {
    const r = await run(process.execPath, "bin/airlock.js", [
      "sidecar",
      "--policy",
      "missing.yaml",
      "--admin-port",
      "0",
      "--proxy-port",
      "0",
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^airlock sidecar: cannot read policy file missing\.yaml: ENOENT/);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    noStack(r.stderr);
  });

  it("kubectl-airlock without any kubeconfig names what is missing and the standalone alternative", async () => {
    const home = mkdtempSync(join(tmpdir(), "airlock-nohome-"));
    const r = await run(process.execPath, "bin/kubectl-airlock.js", ["requests"], {
      HOME: home,
      KUBECONFIG: "",
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `error: no kubeconfig found (${join(home, ".kube", "config")}): pass --kubeconfig FILE or set KUBECONFIG to reach a cluster, or use --sidecar http://127.0.0.1:15990 for a standalone sidecar\n`,
    );
  });
});

// The machine's own Node (Debian's is 20) running the bin directly, as `npx airlock` would.
const oldNode = ["/usr/bin/node", "/usr/local/bin/node"].find((n) => {
  if (!existsSync(n)) return false;
  const v = execFileSync(n, ["-v"], { encoding: "utf8" }).trim();
  return Number(v.slice(1).split(".")[0]) < 24;
});

describe.skipIf(!oldNode)(`bin/ on an older Node (${oldNode ?? "none on this machine: skipped"})`, () => {
  it("airlock re-runs under the cached Node 24", async () => {
    const r = await run(oldNode as string, "bin/airlock.js", ["version"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^airlock \d+\.\d+\.\d+ \(node v24\./);
  });

  it("kubectl-airlock too, keeping its arguments and exit status", async () => {
    const r = await run(oldNode as string, "bin/kubectl-airlock.js", ["approve"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/approve needs exactly one request NAME/);
  });
});
