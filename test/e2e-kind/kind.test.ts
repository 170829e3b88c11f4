// The full-cluster suite (run.sh): kind cluster, image built and loaded, chart installed, a
// labelled namespace, a policy, an agent pod against in-cluster PostgreSQL and HTTP; injection, a
// denial, masked results, metrics. It needs a container engine; without one (`docker info` fails,
// as on the machines the rest of the suite runs on) it is skipped and says why.
//
//   npx vitest run --config test/e2e-kind/vitest.config.ts      (or: bash test/e2e-kind/run.sh)
import { spawn, spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const HERE = dirname(fileURLToPath(import.meta.url));

function engineProblem(): string | undefined {
  const r = spawnSync("docker", ["info"], { encoding: "utf8", timeout: 20_000 });
  if (r.error) return `docker CLI not runnable (${r.error.message})`;
  if (r.status !== 0) return (r.stderr || r.stdout).trim().split("\n")[0] ?? `docker info exited ${r.status}`;
  return undefined;
}

const problem = engineProblem();
const title = problem
  ? `kind end to end — skipped: no container engine (\`docker info\`: ${problem})`
  : "kind end to end";

if (problem)
  process.stderr.write(
    `[e2e-kind] skipped: no container engine here (\`docker info\`: ${problem}). kind runs Kubernetes ` +
      "nodes as containers and the image must be built; run it where Docker or Podman runs.\n",
  );

describe.skipIf(problem !== undefined)(title, () => {
  it(
    "installs the chart on kind and enforces a policy on a real agent pod",
    async () => {
      const code = await new Promise<number>((resolve, reject) => {
        const child = spawn("bash", [join(HERE, "run.sh")], { stdio: ["ignore", "inherit", "inherit"] });
        child.on("error", reject);
        child.on("close", (c) => resolve(c ?? 1));
      });
      expect(code, "test/e2e-kind/run.sh failed; its output is above").toBe(0);
    },
    45 * 60_000,
  );
});
