// `airlock sessions list|replay` over recordings written by the sidecar's own recorder: from a
// directory, a saved log, and a pod's logs through the Kubernetes API.

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { CompiledConnection } from "../../../sidecar/src/policy/compile.ts";
import { createRecorder } from "../../../sidecar/src/recording/index.ts";
import { createLogger } from "../../../sidecar/src/telemetry/logger.ts";
import { play } from "../sessions/present.ts";
import { command } from "./sessions.ts";

const dir = mkdtempSync(join(tmpdir(), "airlock-sessions-cli-"));
const conn = (name: string) => ({ policy: "agents/p", spec: { name } }) as unknown as CompiledConnection;
let logText = "";
const logFile = join(dir, "sidecar.log");
const OUTPUT = ["$ ", "ls\r\n", "a  b\r\n", "$ ", "exit\r\n"];

beforeAll(async () => {
  const logger = createLogger({
    destination: new Writable({
      write(chunk: Buffer, _e, done) {
        logText += chunk.toString();
        done();
      },
    }),
  });
  const recorder = createRecorder({ logger, flushMs: 1 });
  const rec = recorder.terminal({
    session: "0f6c1d2e-ssh",
    connection: conn("box"),
    protocol: "ssh",
    identity: { serviceAccount: "sa", user: "alice" },
  });
  rec.marker("shell");
  for (const o of OUTPUT) {
    rec.output(o);
    await new Promise((r) => setTimeout(r, 5));
  }
  rec.marker("exit 0");
  await rec.end();
  recorder.operation("7a1b-sql", {
    connection: conn("db"),
    protocol: "postgres",
    operation: { kind: "sql", statements: [{ kind: "select", tables: ["customers"] }] },
    decision: { action: "allow", rule: "read" },
    outcome: { rows: 2 },
    durationMs: 3,
  });
  recorder.operation("7a1b-sql", {
    connection: conn("db"),
    protocol: "postgres",
    operation: { kind: "sql", statements: [{ kind: "delete", tables: ["customers"] }] },
    decision: { action: "deny", reason: "no rule allows this operation (default deny)" },
  });
  await recorder.end("7a1b-sql");
  // An audit-only HTTP session in the same stream.
  logText += `${JSON.stringify({ level: 30, time: "2026-01-01T00:00:00.000Z", audit: true, v: 1, event: "operation", session: "c3-http", connection: "api", protocol: "http", identity: { serviceAccount: "sa" }, operation: { kind: "http", method: "GET", path: "/customers" }, decision: { action: "allow", rule: "read" }, upstream: { status: 200 }, durationMs: 4 })}\n`;
  writeFileSync(logFile, logText);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function run(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const o = vi.spyOn(process.stdout, "write").mockImplementation((c) => {
    out.push(String(c));
    return true;
  });
  const e = vi.spyOn(process.stderr, "write").mockImplementation((c) => {
    err.push(String(c));
    return true;
  });
  try {
    const code = await command.run(argv);
    return { code, stdout: out.join(""), stderr: err.join("") };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}

describe("airlock sessions", () => {
  it("lists every session in a saved log", async () => {
    const r = await run(["list", "--logs", logFile]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^SESSION\s+PROTOCOL\s+CONNECTION/);
    expect(r.stdout).toMatch(/0f6c1d2e-ssh\s+ssh\s+box\s+\S+\s+\d+\.\ds\s+alice\s+asciicast\s+7\s+0/);
    expect(r.stdout).toMatch(/7a1b-sql\s+postgres\s+db\s+.*jsonl\s+2/);
    expect(r.stdout).toMatch(/c3-http\s+http\s+api\s+.*audit\s+1\s+1/);
    const json = JSON.parse((await run(["list", "--logs", logFile, "--json"])).stdout);
    expect(json.map((s: { session: string }) => s.session).sort()).toEqual([
      "0f6c1d2e-ssh",
      "7a1b-sql",
      "c3-http",
    ]);
  });

  it("replays a terminal session exactly, markers on stderr", async () => {
    const r = await run(["replay", "0f6c", "--logs", logFile, "--speed", "0"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(OUTPUT.join(""));
    expect(r.stderr).toMatch(/\[airlock \+0\.0s\] shell\n[\s\S]*exit 0/);
    expect((await run(["replay", "0f6c", "--logs", logFile, "--speed", "0", "--quiet"])).stderr).toBe("");
  });

  it("prints SQL, HTTP and audit-only sessions as a timeline", async () => {
    const sql = await run(["replay", "7a1b", "--logs", logFile]);
    expect(sql.stdout).toMatch(/^session 7a1b-sql {2}postgres db/);
    expect(sql.stdout).toMatch(/\+\s+0\.\d{3}s {2}ALLOW\s+SELECT customers {2}\(rule read; rows 2; 3 ms\)/);
    expect(sql.stdout).toMatch(
      /DENY\s+DELETE customers {2}\(no rule allows this operation \(default deny\)\)/,
    );
    const http = await run(["replay", "c3-http", "--logs", logFile]);
    expect(http.stdout).toMatch(/ALLOW\s+GET \/customers {2}\(rule read; status 200; 4 ms\)/);
  });

  it("reads a pod's sidecar logs through the Kubernetes API", async () => {
    // Pod logs are served by the kubelet, which does not run on this machine (envtest has none):
    // a stand-in serves the API server's pod log endpoint.
    const seen: string[] = [];
    const server: Server = createServer((req, res) => {
      seen.push(req.url ?? "");
      if (req.url?.startsWith("/api/v1/namespaces/agents/pods/agent-0/log")) {
        res.writeHead(200, { "content-type": "text/plain" });
        res.end(logText);
      } else {
        res.writeHead(404, { "content-type": "application/json" });
        res.end(JSON.stringify({ kind: "Status", message: 'pods "nope" not found', code: 404 }));
      }
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const port = (server.address() as { port: number }).port;
    const kubeconfig = join(dir, "kubeconfig");
    writeFileSync(
      kubeconfig,
      `apiVersion: v1
kind: Config
clusters: [{ name: c, cluster: { server: "http://127.0.0.1:${port}", insecure-skip-tls-verify: true } }]
users: [{ name: u, user: { token: t } }]
contexts: [{ name: x, context: { cluster: c, user: u, namespace: agents } }]
current-context: x
`,
    );
    try {
      const r = await run([
        "replay",
        "0f6c",
        "--pod",
        "agent-0",
        "--kubeconfig",
        kubeconfig,
        "--speed",
        "0",
        "--quiet",
      ]);
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(OUTPUT.join(""));
      expect(seen[0]).toBe("/api/v1/namespaces/agents/pods/agent-0/log?container=airlock-sidecar");
      await expect(
        run(["list", "--pod", "nope", "-n", "agents", "--kubeconfig", kubeconfig]),
      ).rejects.toThrow(/cannot read logs of pod agents\/nope: .*not found/);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it("replays from a recording directory, and says when a session is unknown", async () => {
    const recDir = join(dir, "recordings");
    const logger = createLogger({ destination: new Writable({ write: (_c, _e, d) => d() }) });
    const recorder = createRecorder({
      logger,
      settingsFor: () => ({ enabled: true, destination: "file", directory: recDir }),
    });
    const rec = recorder.terminal({ session: "d1", connection: conn("box"), protocol: "ssh" });
    rec.output("from a file\r\n");
    await rec.end();
    expect((await run(["replay", "d1", "--dir", recDir, "--speed", "0"])).stdout).toBe("from a file\r\n");
    const cast = (await run(["replay", "d1", "--dir", recDir, "--cast"])).stdout.trim().split("\n");
    expect(JSON.parse(cast[0] as string)).toMatchObject({ version: 2 });
    const unknown = await run(["replay", "zzz", "--dir", recDir]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/no session zzz/);
  });

  it("counts the operations of directory recordings (a directory holds no audit events)", async () => {
    const recDir = join(dir, "ops");
    const logger = createLogger({ destination: new Writable({ write: (_c, _e, d) => d() }) });
    const recorder = createRecorder({
      logger,
      settingsFor: () => ({ enabled: true, destination: "file", directory: recDir }),
    });
    const ssh = recorder.terminal({ session: "s1", connection: conn("box"), protocol: "ssh" });
    for (const m of ["exec: ls", "exit 0", "exec: uptime", "exit 0"]) ssh.marker(m);
    await ssh.end();
    for (const path of ["/a", "/b", "/c"])
      recorder.operation("h1", {
        connection: conn("api"),
        protocol: "http",
        operation: { kind: "http", method: "GET", path },
        decision: { action: "allow", rule: "r" },
      });
    await recorder.end("h1");
    const listed = JSON.parse((await run(["list", "--dir", recDir, "--json"])).stdout) as {
      session: string;
      operations: number;
    }[];
    expect(Object.fromEntries(listed.map((s) => [s.session, s.operations]))).toEqual({ h1: 3, s1: 2 });
    expect((await run(["list", "--dir", recDir])).stdout).toMatch(/^h1\b.*\s3$/m);
  });

  it("checks its flags", async () => {
    await expect(run(["list"])).rejects.toThrow(/exactly one of --dir/);
    await expect(run(["replay", "--logs", logFile])).rejects.toThrow(/session ID/);
    await expect(run(["replay", "x", "--logs", logFile, "--speed", "-1"])).rejects.toThrow(/--speed/);
    expect((await run(["list", "--help"])).stdout).toMatch(/Usage: airlock sessions list/);
    expect((await run(["replay", "--help"])).stdout).toMatch(/--speed N/);
    expect((await run(["--help"])).code).toBe(0);
    expect((await run(["bogus"])).code).toBe(2);
  });
});

describe("play", () => {
  const events: [number, "o" | "m", string][] = [
    [0.5, "o", "a"],
    [1.5, "m", "exec: x"],
    [11.5, "o", "b"],
  ];
  it("scales pauses by speed and caps them with maxIdle", async () => {
    const waits: number[] = [];
    let out = "";
    const marks: string[] = [];
    await play(events, {
      speed: 2,
      maxIdle: 3,
      write: (d) => {
        out += d;
      },
      marker: (l) => marks.push(l),
      sleep: async (ms) => {
        waits.push(ms);
      },
    });
    expect(out).toBe("ab");
    expect(marks).toEqual(["exec: x"]);
    expect(waits).toEqual([250, 500, 3000]);
  });
  it("speed 0 never waits", async () => {
    const sleep = vi.fn(async () => undefined);
    await play(events, { speed: 0, write: () => undefined, sleep });
    expect(sleep).not.toHaveBeenCalled();
  });
});
