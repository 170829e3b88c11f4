// The agent-facing host key is stable: generated once into the configured file, reused by the next
// sidecar start, so OpenSSH with StrictHostKeyChecking=yes keeps connecting; a sidecar with
// another key is refused by the same known_hosts (the check this test relies on can fail). Its
// fingerprint is logged at start.
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fingerprint, parsePrivateKey } from "../../sidecar/src/protocols/ssh/keys.ts";
import { type SshdServer, startSshd } from "../harness/sshd.ts";
import { sshPolicy, startSshSidecar } from "./support.ts";

let sshd: SshdServer;
let dir: string;
beforeAll(async () => {
  sshd = await startSshd();
  dir = await mkdtemp(join(tmpdir(), "airlock-hostkey-"));
});
afterAll(async () => {
  await sshd?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const policy = () =>
  sshPolicy(sshd, { rules: [{ name: "echo", action: "allow", match: { ssh: { commands: ["echo *"] } } }] });

function ssh(port: number, knownHosts: string, strict: "yes" | "accept-new") {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(
      "ssh",
      [
        "-F",
        "/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        `StrictHostKeyChecking=${strict}`,
        "-o",
        `UserKnownHostsFile=${knownHosts}`,
        // The ports differ between starts; the alias keys known_hosts as an agent's fixed name would.
        "-o",
        "HostKeyAlias=airlock-sidecar",
        "-p",
        String(port),
        "agent@127.0.0.1",
        "echo same host",
      ],
      { timeout: 20_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === "number" ? err.code : -1) : 0, stdout, stderr }),
    );
  });
}

describe("agent-facing host key", () => {
  it("is generated once into the file, reused across restarts, and its fingerprint logged", async () => {
    const keyFile = join(dir, "state", "ssh_host_ed25519_key");
    const knownHosts = join(dir, "known_hosts");
    const first = await startSshSidecar({ sshd, policies: [policy()], guard: { hostKeyFile: keyFile } });
    let firstLogs: string;
    try {
      expect(await ssh(first.port, knownHosts, "accept-new")).toMatchObject({
        code: 0,
        stdout: "same host\n",
      });
      firstLogs = first.logs();
    } finally {
      await first.close();
    }
    expect((await stat(keyFile)).mode & 0o777).toBe(0o600);
    const fp = fingerprint(parsePrivateKey(await readFile(keyFile, "utf8")).publicBlob);
    expect(fp).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
    const logged = firstLogs.split("\n").find((l) => l.includes('"ssh host key"')) ?? "{}";
    expect(JSON.parse(logged)).toMatchObject({ fingerprint: fp, source: "generated", path: keyFile });

    const second = await startSshSidecar({ sshd, policies: [policy()], guard: { hostKeyFile: keyFile } });
    try {
      const r = await ssh(second.port, knownHosts, "yes");
      expect(r.stderr).not.toMatch(/REMOTE HOST IDENTIFICATION HAS CHANGED/);
      expect(r).toMatchObject({ code: 0, stdout: "same host\n" });
      expect(second.logs()).toContain(`"source":"file"`);
    } finally {
      await second.close();
    }

    // Another key (what a per-start key did): the same known_hosts refuses it.
    const other = await startSshSidecar({
      sshd,
      policies: [policy()],
      guard: { hostKeyFile: join(dir, "other", "key") },
    });
    try {
      const r = await ssh(other.port, knownHosts, "yes");
      expect(r.code).toBe(255);
      expect(r.stderr).toMatch(/REMOTE HOST IDENTIFICATION HAS CHANGED/);
    } finally {
      await other.close();
    }
  });

  it("refuses to start with a key file that does not parse, naming the path", async () => {
    const bad = join(dir, "bad-key");
    await import("node:fs/promises").then((fs) => fs.writeFile(bad, "not a key\n"));
    await expect(
      startSshSidecar({ sshd, policies: [policy()], guard: { hostKeyFile: bad } }),
    ).rejects.toThrow(/ssh host key .*bad-key/);
  });
});
