// Real OpenSSH clients (ssh, scp, sftp, rsync) as the agent, through the guard, to a real sshd,
// with a masking rule on the connection: file transfers stay byte-exact (a 200,000-byte binary
// file by scp, scp -O, sftp get/put, rsync, and `cat` of a binary file), text output is masked,
// exit statuses come through on every channel, refusals say why.
import { execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../harness/postgres.ts";
import { type SshdServer, startSshd } from "../harness/sshd.ts";
import {
  SSH_OPTS,
  type SshPolicyOptions,
  type SshSidecar,
  sshPolicy,
  startSshSidecar,
  waitFor,
} from "./support.ts";

const KEY = "AKIAIOSFODNN7EXAMPLE";
const MASKING: SshPolicyOptions["masking"] = [
  { name: "keys", detectors: ["awsAccessKey"], strategy: "redact" },
];
const COMMANDS = [
  "cat /tmp/airlock-tools-*",
  "echo *",
  "false",
  "true",
  "scp -f *",
  "scp -t *",
  "rsync --server *",
];
const RULES = (sftp: boolean): SshPolicyOptions["rules"] => [
  { name: "tools", action: "allow", match: { ssh: { commands: COMMANDS } } },
  ...(sftp ? [{ name: "files", action: "allow" as const, match: { ssh: { sftp: true } } }] : []),
];

const hasRsync = await new Promise<boolean>((r) => execFile("rsync", ["--version"], (e) => r(!e)));
if (!hasRsync) console.warn("rsync test skipped: rsync is not installed (.ci/run installs it)");

let sshd: SshdServer;
let withSftp: SshSidecar;
let noSftp: SshSidecar;
let remote: string; // upstream directory (same machine, readable by the sshd user)
let local: string;
const BIN = Buffer.alloc(200_000);

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

beforeAll(async () => {
  // Deterministic bytes covering every value (invalid UTF-8, NULs), with no detector match.
  for (let i = 0; i < BIN.length; i++) BIN[i] = (i * 7919 + (i >> 8) * 31) & 0xff;
  sshd = await startSshd();
  const policy = (sftp: boolean) => sshPolicy(sshd, { rules: RULES(sftp), masking: MASKING });
  withSftp = await startSshSidecar({ sshd, policies: [policy(true)] });
  noSftp = await startSshSidecar({ sshd, policies: [policy(false)] });
  remote = await mkdtemp("/tmp/airlock-tools-");
  await chmod(remote, 0o777);
  local = await mkdtemp(join(tmpdir(), "airlock-tools-local-"));
  await writeFile(join(remote, "blob.bin"), BIN, { mode: 0o644 });
  await writeFile(join(remote, "notes.txt"), `aws key ${KEY} here\n`, { mode: 0o644 });
  await writeFile(join(local, "up.bin"), BIN);
});

afterAll(async () => {
  await withSftp?.close();
  await noSftp?.close();
  await sshd?.stop();
  if (remote) await rm(remote, { recursive: true, force: true });
  if (local) await rm(local, { recursive: true, force: true });
});

interface Run {
  code: number;
  stdout: Buffer;
  stderr: string;
}
function run(cmd: string, args: string[], input?: string): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(
      cmd,
      args,
      { timeout: 30_000, encoding: "buffer", maxBuffer: 10_000_000 },
      (err, stdout, stderr) =>
        resolve({
          code: err ? (typeof err.code === "number" ? err.code : -1) : 0,
          stdout,
          stderr: stderr.toString(),
        }),
    );
    if (input !== undefined) child.stdin?.end(input);
  });
}
const ssh = (s: SshSidecar, command: string) =>
  run("ssh", [...SSH_OPTS, "-p", String(s.port), "agent@127.0.0.1", command]);
const scp = (s: SshSidecar, ...args: string[]) => run("scp", [...SSH_OPTS, "-P", String(s.port), ...args]);
const sftp = (s: SshSidecar, batch: string) =>
  run("sftp", [...SSH_OPTS, "-P", String(s.port), "-b", "-", "agent@127.0.0.1"], batch);
const rsync = (s: SshSidecar, ...args: string[]) =>
  run("rsync", ["-e", `ssh ${SSH_OPTS.join(" ")} -p ${s.port}`, ...args]);

describe("OpenSSH tools with masking on", () => {
  it("ssh: text output is masked; binary output is byte-exact; exit statuses pass through", async () => {
    const text = await ssh(withSftp, `cat ${remote}/notes.txt`);
    expect(text.code).toBe(0);
    expect(text.stdout.toString()).not.toContain(KEY);
    expect(text.stdout.toString()).toMatch(/^aws key .+ here\n$/);
    const bin = await ssh(withSftp, `cat ${remote}/blob.bin`);
    expect(bin.code).toBe(0);
    expect(bin.stdout.length).toBe(BIN.length);
    expect(sha(bin.stdout)).toBe(sha(BIN));
    expect((await ssh(withSftp, "false")).code).toBe(1);
    expect((await ssh(withSftp, "true")).code).toBe(0);
  });

  it("scp (SFTP protocol): download and upload byte-exact, exit 0", async () => {
    const down = join(local, "down.bin");
    const r = await scp(withSftp, `agent@127.0.0.1:${remote}/blob.bin`, down);
    expect(r).toMatchObject({ code: 0, stderr: "" });
    expect(sha(await readFile(down))).toBe(sha(BIN));
    const up = await scp(withSftp, join(local, "up.bin"), `agent@127.0.0.1:${remote}/up-scp.bin`);
    expect(up.code).toBe(0);
    expect(sha(await readFile(join(remote, "up-scp.bin")))).toBe(sha(BIN));
    const ev = withSftp.audit.findLast((e) => e.operation.kind === "ssh-sftp");
    expect(ev?.upstream).toEqual({ status: 0 });
  });

  it("scp -O (legacy protocol over exec): byte-exact both ways, exit 0", async () => {
    const down = join(local, "down-legacy.bin");
    const r = await scp(withSftp, "-O", `agent@127.0.0.1:${remote}/blob.bin`, down);
    expect(r).toMatchObject({ code: 0, stderr: "" });
    expect(sha(await readFile(down))).toBe(sha(BIN));
    const up = await scp(withSftp, "-O", join(local, "up.bin"), `agent@127.0.0.1:${remote}/up-legacy.bin`);
    expect(up.code).toBe(0);
    expect(sha(await readFile(join(remote, "up-legacy.bin")))).toBe(sha(BIN));
  });

  it("sftp get/put: byte-exact, exit 0", async () => {
    const got = join(local, "sftp-get.bin");
    const r = await sftp(
      withSftp,
      `get ${remote}/blob.bin ${got}\nput ${join(local, "up.bin")} ${remote}/sftp-put.bin\n`,
    );
    expect(r.code).toBe(0);
    expect(sha(await readFile(got))).toBe(sha(BIN));
    expect(sha(await readFile(join(remote, "sftp-put.bin")))).toBe(sha(BIN));
  });

  it.skipIf(!hasRsync)("rsync: download and upload byte-exact, exit 0", async () => {
    const down = join(local, "rsync-down.bin");
    const r = await rsync(withSftp, `agent@127.0.0.1:${remote}/blob.bin`, down);
    expect(r).toMatchObject({ code: 0, stderr: "" });
    expect(sha(await readFile(down))).toBe(sha(BIN));
    const up = await rsync(withSftp, join(local, "up.bin"), `agent@127.0.0.1:${remote}/rsync-up.bin`);
    expect(up.code).toBe(0);
    expect(sha(await readFile(join(remote, "rsync-up.bin")))).toBe(sha(BIN));
  });

  it("without a rule allowing sftp: sftp, scp and scp -O are refused with the reason on stderr", async () => {
    const s = await sftp(noSftp, `get ${remote}/blob.bin ${join(local, "x.bin")}\n`);
    expect(s.code).not.toBe(0);
    expect(s.stderr).toMatch(/airlock: denied/);
    const c = await scp(noSftp, `agent@127.0.0.1:${remote}/blob.bin`, join(local, "y.bin"));
    expect(c.code).not.toBe(0);
    expect(c.stderr).toMatch(/airlock: denied/);
    const legacy = await scp(noSftp, "-O", `agent@127.0.0.1:${remote}/blob.bin`, join(local, "z.bin"));
    expect(legacy.code).not.toBe(0);
    expect(legacy.stderr).toMatch(/scp carries files in a binary protocol.*rule allowing sftp/);
    // Text commands on the same connection are still fine.
    expect((await ssh(noSftp, "echo still here")).stdout.toString()).toBe("still here\n");
  });

  it("refused -L and -R name the reason; the command still runs", async () => {
    // `ssh -N -L`: the refusal comes when a connection arrives; OpenSSH logs it at INFO.
    const info = SSH_OPTS.map((o) => (o === "LogLevel=ERROR" ? "LogLevel=INFO" : o));
    const lport = await freePort();
    const fwd = spawn("ssh", [
      ...info,
      "-p",
      String(noSftp.port),
      "-N",
      "-L",
      `127.0.0.1:${lport}:127.0.0.1:9`,
      "agent@127.0.0.1",
    ]);
    let fwdErr = "";
    fwd.stderr.on("data", (d: Buffer) => {
      fwdErr += d.toString();
    });
    try {
      await waitFor(
        async () => {
          const sock = connect(lport, "127.0.0.1");
          sock.on("error", () => {});
          await new Promise((r) => setTimeout(r, 100));
          sock.destroy();
          return /open failed/.test(fwdErr) || undefined;
        },
        10_000,
        "the -L refusal",
      );
    } finally {
      fwd.kill();
    }
    expect(fwdErr).toMatch(/open failed: administratively prohibited: airlock: denied: no rule allows/);
    const r = await run("ssh", [
      ...SSH_OPTS,
      "-p",
      String(noSftp.port),
      "-R",
      "127.0.0.1:0:127.0.0.1:9",
      "agent@127.0.0.1",
      "echo after",
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout.toString()).toBe("after\n");
    expect(r.stderr).toMatch(/airlock: remote forward 127\.0\.0\.1:0: denied/);
  });
});
