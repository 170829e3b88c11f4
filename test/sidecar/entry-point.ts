// The image's entry point (`bin/airlock-sidecar.js`) in its own process, for the suites that
// measure it: `<dir>/policy.yaml` and `<dir>/secrets`, warnings only, stderr kept; ready once
// its /readyz answers 200 (killed, and the start fails with its stderr, if it does not).
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";

const ROOT = new URL("../..", import.meta.url).pathname;

export interface EntryPoint {
  child: ChildProcess;
  /** What it wrote on stderr so far. */
  stderr(): string;
}

export async function startEntryPoint(
  dir: string,
  opts: { adminPort: number; nodeArgs?: string[]; env?: NodeJS.ProcessEnv },
): Promise<EntryPoint> {
  const child = spawn(
    process.execPath,
    [
      ...(opts.nodeArgs ?? []),
      join(ROOT, "bin/airlock-sidecar.js"),
      "--policy",
      join(dir, "policy.yaml"),
      "--secrets",
      join(dir, "secrets"),
      "--admin-port",
      String(opts.adminPort),
      "--proxy-port",
      "0",
      "--hash-key-file",
      join(dir, "hash.key"),
    ],
    {
      env: { ...process.env, AIRLOCK_LOG_LEVEL: "warn", ...opts.env },
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  let stderr = "";
  child.stderr?.setEncoding("utf8").on("data", (d: string) => {
    stderr += d;
  });
  for (let i = 0; ; i++) {
    const ready = await fetch(`http://127.0.0.1:${opts.adminPort}/readyz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ready) break;
    if (i > 150 || child.exitCode !== null) {
      child.kill("SIGKILL");
      throw new Error(`the sidecar did not become ready:\n${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { child, stderr: () => stderr };
}
