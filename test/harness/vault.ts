// A real Vault server (vault-dev, built by test/vault/build-vault.sh: Vault's core, HTTP API,
// database secrets engine with the PostgreSQL plugin, Kubernetes auth, KV; the SSH secrets engine
// as an external plugin) on loopback, in development mode (in-memory storage, unsealed, a known
// root token), for a test file.
//
//   const vault = await startVault();
//   await vault.api("POST", "sys/mounts/database", { type: "database" });
//   await vault.stop();
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { freePort } from "./postgres.ts";

const execFileP = promisify(execFile);
const BUILD_SCRIPT = new URL("../vault/build-vault.sh", import.meta.url).pathname;
const SSH_PLUGIN = "vault-plugin-ssh";

export interface VaultServer {
  readonly address: string;
  readonly port: number;
  readonly rootToken: string;
  /** Calls the HTTP API as root; throws with Vault's errors on a non-2xx answer. */
  api(method: string, path: string, body?: unknown): Promise<Record<string, unknown> | undefined>;
  /** The same call, answering the status and body instead of throwing. */
  raw(
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; body: Record<string, unknown> | undefined }>;
  /** Server output so far (Vault's own log). */
  output(): string;
  /** Registers the SSH secrets engine plugin and mounts it at `mount`. */
  enableSsh(mount?: string): Promise<void>;
  stop(): Promise<void>;
}

/** The vault-dev binary, built (cached under ~/.cache/airlock) when missing. */
export async function vaultBinary(): Promise<string> {
  const dir = (await execFileP("bash", [BUILD_SCRIPT, "--print-dir"])).stdout.trim();
  const bin = join(dir, "vault-dev");
  if (!existsSync(bin) || !existsSync(join(dir, "plugins", SSH_PLUGIN))) {
    await new Promise<void>((resolve, reject) => {
      const child = spawn("bash", [BUILD_SCRIPT], { stdio: ["ignore", "inherit", "inherit"] });
      child.on("exit", (code) =>
        code === 0 ? resolve() : reject(new Error(`build-vault.sh exited ${code}`)),
      );
    });
  }
  return bin;
}

export async function startVault(opts: { port?: number } = {}): Promise<VaultServer> {
  const bin = await vaultBinary();
  const port = opts.port ?? (await freePort());
  const rootToken = "airlock-test-root";
  let out = "";
  const child: ChildProcess = spawn(
    bin,
    [
      "-listen",
      `127.0.0.1:${port}`,
      "-root-token",
      rootToken,
      "-log-level",
      "warn",
      "-plugin-dir",
      join(dirname(bin), "plugins"),
    ],
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  const ready = new Promise<void>((resolve, reject) => {
    const onData = (c: Buffer) => {
      out += c.toString();
      if (out.includes("ready on")) resolve();
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.once("exit", (code) => reject(new Error(`vault-dev exited ${code} before it was ready:\n${out}`)));
  });
  const timeout = setTimeout(() => child.kill("SIGKILL"), 30_000);
  await ready.finally(() => clearTimeout(timeout));
  const address = `http://127.0.0.1:${port}`;
  const raw = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${address}/v1/${path}`, {
      method,
      headers: { "x-vault-token": rootToken, ...(body ? { "content-type": "application/json" } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : undefined };
  };
  const api = async (method: string, path: string, body?: unknown) => {
    const r = await raw(method, path, body);
    if (r.status >= 300) throw new Error(`Vault ${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  };
  return {
    address,
    port,
    rootToken,
    raw,
    api,
    output: () => out,
    async enableSsh(mount = "ssh") {
      const plugin = join(dirname(bin), "plugins", SSH_PLUGIN);
      const sha256 = createHash("sha256")
        .update(await readFile(plugin))
        .digest("hex");
      await api("PUT", `sys/plugins/catalog/secret/${SSH_PLUGIN}`, { sha256, command: SSH_PLUGIN });
      await api("POST", `sys/mounts/${mount}`, { type: SSH_PLUGIN });
    },
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(t);
    },
  };
}
