// Session recording through the SSH guard against a real sshd, and replay with the CLI: an
// interactive shell (pty, keystrokes, exit) recorded as asciicast to a directory and to the stdout
// audit stream, replayed byte for byte by `airlock sessions replay`; secrets printed in the shell
// masked both in what the agent saw and in the recording; exec sessions recorded with markers.
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { catalogFromDirectory, catalogFromLog } from "../../sidecar/src/recording/index.ts";
import { type SshdServer, startSshd } from "../harness/sshd.ts";
import {
  agentClient,
  exec,
  openShell,
  type SshPolicyOptions,
  type SshSidecar,
  sshPolicy,
  startSshSidecar,
  waitFor,
} from "./support.ts";

const AIRLOCK = join(import.meta.dirname, "../../bin/airlock.js");
const SECRET = "AKIAIOSFODNN7EXAMPLE";

let sshd: SshdServer;
let dir: string;
const sidecars: SshSidecar[] = [];

beforeAll(async () => {
  sshd = await startSshd();
  dir = await mkdtemp(join(tmpdir(), "airlock-recordings-"));
});

afterAll(async () => {
  for (const s of sidecars) await s.close();
  await sshd?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function sidecar(opts: SshPolicyOptions) {
  const s = await startSshSidecar({ sshd, policies: [sshPolicy(sshd, opts)] });
  sidecars.push(s);
  return s;
}

const SHELL_RULES: SshPolicyOptions["rules"] = [
  { name: "shell", action: "allow", match: { ssh: { shell: true } } },
  { name: "basic", action: "allow", match: { ssh: { commands: ["echo *", "tty"] } } },
];
const MASKING: SshPolicyOptions["masking"] = [
  { name: "keys", detectors: ["awsAccessKey"], strategy: "redact" },
];

function airlock(args: string[]): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [AIRLOCK, ...args],
      { encoding: "buffer", timeout: 30_000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) =>
        resolve({
          code: err ? (typeof err.code === "number" ? err.code : -1) : 0,
          stdout,
          stderr: stderr.toString("utf8"),
        }),
    );
  });
}

/** Drives an interactive shell like a person would: waits for output before typing. */
async function shellSession(port: number): Promise<{ received: Buffer }> {
  const client = await agentClient(port);
  const shell = await openShell(client, { term: "xterm-256color", cols: 100, rows: 30 });
  const prompts = (n: number) =>
    waitFor(() => shell.text().split("$ ").length - 1 >= n, 10_000, `prompt ${n}`);
  await prompts(1);
  shell.ch.write("echo hello-recording\n");
  await waitFor(() => shell.text().includes("hello-recording\r\n"), 10_000, "echo output");
  await prompts(2);
  shell.ch.write(`echo key=${SECRET}\n`);
  await waitFor(() => /key=\S+\r\n.*key=\S+\r\n/s.test(shell.text()), 10_000, "masked output");
  await prompts(3);
  shell.ch.setWindow(40, 120, 0, 0);
  shell.ch.write("exit\n");
  await shell.closed;
  client.end();
  return { received: Buffer.concat(shell.chunks) };
}

describe("interactive shell", () => {
  it("is recorded to a directory and replayed byte for byte, with secrets masked", async () => {
    const s = await sidecar({
      rules: SHELL_RULES,
      masking: MASKING,
      audit: { destination: "file", directory: dir },
    });
    const { received } = await shellSession(s.port);
    const text = received.toString("utf8");
    expect(text).toContain("hello-recording");
    expect(text).not.toContain(SECRET);
    expect(text).toMatch(/key=\S+/);

    const event = await waitFor(() => s.audit.find((e) => e.operation.kind === "ssh-shell"), 5_000, "audit");
    expect(event).toMatchObject({
      decision: { action: "allow", rule: "shell" },
      masked: { awsAccessKey: 2 },
    });
    const id = event.session;

    // The file is a standard asciicast v2 recording of exactly what the agent received.
    const found = await waitFor(
      async () => {
        const f = (await catalogFromDirectory(dir)).find(id);
        return "error" in f || !f.events.some((e) => e[2] === "exit 0") ? undefined : f;
      },
      5_000,
      "the recording",
    );
    expect(found.header).toMatchObject({ version: 2, width: 100, height: 30 });
    expect(found.header?.airlock).toMatchObject({ session: id, protocol: "ssh", connection: "box" });
    const output = found.events
      .filter((e) => e[1] === "o")
      .map((e) => e[2])
      .join("");
    expect(output).toBe(text);
    expect(JSON.stringify(found.events)).not.toContain(SECRET);
    expect(found.events.filter((e) => e[1] === "m").map((e) => e[2])).toEqual(["shell", "exit 0"]);
    expect(found.events.some((e) => e[1] === "r" && e[2] === "120x40")).toBe(true);
    // Times only go forward.
    const times = found.events.map((e) => e[0]);
    expect([...times].sort((a, b) => a - b)).toEqual(times);

    // Replay with the CLI: stdout is byte for byte what the agent's terminal got.
    const replay = await airlock(["sessions", "replay", id.slice(0, 8), "--dir", dir, "--speed", "0"]);
    expect(replay.code).toBe(0);
    expect(replay.stdout.equals(received)).toBe(true);
    expect(replay.stderr).toContain("shell");
    const list = await airlock(["sessions", "list", "--dir", dir]);
    expect(list.stdout.toString()).toMatch(new RegExp(`${id}\\s+ssh\\s+box`));
  });

  it("is recorded on the stdout audit stream by default and replayed from a saved log", async () => {
    const s = await sidecar({ rules: SHELL_RULES, masking: MASKING });
    const { received } = await shellSession(s.port);
    const event = await waitFor(() => s.audit.find((e) => e.operation.kind === "ssh-shell"), 5_000, "audit");
    await waitFor(() => s.logs().includes('"end":true'), 5_000, "the end of the recording");
    const logs = s.logs();
    expect(logs).not.toContain(SECRET);
    const lines = logs
      .split("\n")
      .filter((l) => l.includes('"recording":true'))
      .map((l) => JSON.parse(l));
    expect(lines[0]).toMatchObject({ recording: true, session: event.session, format: "asciicast", seq: 0 });
    expect(lines.at(-1)).toMatchObject({ end: true });

    // What `kubectl logs` would return, with a timestamp prefix and unrelated lines in between.
    const file = join(dir, "sidecar.log");
    await writeFile(
      file,
      logs
        .split("\n")
        .map((l) => (l ? `2026-01-01T00:00:00.000000000Z ${l}` : l))
        .join("\n"),
    );
    const found = catalogFromLog(logs).find(event.session);
    if ("error" in found) throw new Error(found.error);
    expect(found.summary).toMatchObject({ format: "asciicast", complete: true, protocol: "ssh" });
    const replay = await airlock([
      "sessions",
      "replay",
      event.session,
      "--logs",
      file,
      "--speed",
      "0",
      "--quiet",
    ]);
    expect(replay.code).toBe(0);
    expect(replay.stdout.equals(received)).toBe(true);
    expect(replay.stderr).toBe("");

    const cast = await airlock(["sessions", "replay", event.session, "--logs", file, "--cast"]);
    const [header, ...events] = cast.stdout
      .toString()
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(header).toMatchObject({ version: 2, width: 100, height: 30 });
    expect(events.length).toBe(found.events.length);

    const timeline = await airlock(["sessions", "replay", event.session, "--logs", file, "--timeline"]);
    expect(timeline.stdout.toString()).toMatch(/ALLOW\s+shell\s+\(rule shell; status 0/);
  });

  it("refuses a shell no rule allows, and the agent sees why", async () => {
    const s = await sidecar({
      rules: [{ name: "basic", action: "allow", match: { ssh: { commands: ["echo *"] } } }],
    });
    const client = await agentClient(s.port);
    const shell = await openShell(client, { term: "xterm", cols: 80, rows: 24 });
    await shell.closed;
    client.end();
    const code = shell.exitCode();
    const text = shell.text() + Buffer.concat(shell.stderr).toString();
    expect(code).toBe(126);
    expect(text).toBe("airlock: denied: no rule allows this operation (default deny)\r\n");
  });
});

describe("exec sessions", () => {
  it("records each exec with markers, and runs without a terminal when shells are not allowed", async () => {
    const s = await sidecar({
      rules: [{ name: "basic", action: "allow", match: { ssh: { commands: ["echo *", "tty"] } } }],
      audit: { destination: "file", directory: dir },
    });
    const client = await agentClient(s.port);
    const a = await exec(client, "echo first");
    const denied = await exec(client, "echo x; id");
    // The agent asked for a terminal; the certificate has no permit-pty, so none upstream.
    const tty = await exec(client, "tty", { pty: { term: "xterm", cols: 80, rows: 24 } });
    client.end();
    expect(a.stdout).toBe("first\n");
    expect(denied.code).toBe(126);
    expect(tty.stdout).toBe("not a tty\n");
    const session = s.audit[0]?.session as string;
    await waitFor(() => s.audit.length >= 3, 5_000, "audit");
    const found = await waitFor(
      async () => {
        const f = (await catalogFromDirectory(dir)).find(session);
        return "error" in f || !f.events.some((e) => e[2] === "exit 1") ? undefined : f;
      },
      5_000,
      "the recording",
    );
    expect(found.events.filter((e) => e[1] === "m").map((e) => e[2])).toEqual([
      "exec: echo first",
      "exit 0",
      "exec: echo x ; id",
      "exit 126",
      "exec: tty",
      "exit 1",
    ]);
    const out = found.events.filter((e) => e[1] === "o").map((e) => e[2]);
    expect(out).toContain("first\n");
    expect(out.join("")).toContain(
      'airlock: denied: no rule allows this operation (default deny) (for "id")\n',
    );
  });
});
