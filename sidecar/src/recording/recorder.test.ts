// The recorder and its reading side together: what is written to the stdout stream or to files
// reads back as the same sessions, events and entries.
import { chmodSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, describe, expect, it } from "vitest";
import type { CompiledConnection } from "../policy/compile.ts";
import { createLogger } from "../telemetry/logger.ts";
import { catalogFromDirectory, catalogFromLog, toAsciicast } from "./read.ts";
import { createRecorder, type RecordingSettings } from "./recorder.ts";
import { settingsFromAudit } from "./settings.ts";

const dir = mkdtempSync(join(tmpdir(), "airlock-rec-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const conn = (name: string) => ({ policy: "agents/p", spec: { name } }) as unknown as CompiledConnection;

function setup(settings: RecordingSettings, opts: { chunkBytes?: number } = {}) {
  let text = "";
  const logger = createLogger({
    level: "warn", // recordings are written whatever the level
    destination: new Writable({
      write(chunk: Buffer, _e, done) {
        text += chunk.toString();
        done();
      },
    }),
  });
  const recorder = createRecorder({ logger, settingsFor: () => settings, flushMs: 5, ...opts });
  return { recorder, logs: () => text };
}

const tick = (ms = 15) => new Promise((r) => setTimeout(r, ms));

describe("terminal recordings on stdout", () => {
  it("chunks asciicast events into recording lines that read back in order", async () => {
    const { recorder, logs } = setup({ enabled: true, destination: "stdout" }, { chunkBytes: 8 });
    const rec = recorder.terminal({
      session: "s-1",
      connection: conn("box"),
      protocol: "ssh",
      identity: { serviceAccount: "sa", user: "alice" },
    });
    rec.setInitialSize(120, 40);
    rec.marker("shell");
    rec.output("$ ");
    await tick();
    rec.output("echo héllo\r\nhéllo\r\n");
    rec.resize(100, 30);
    rec.output("$ ");
    await rec.end();
    rec.output("after end is ignored");

    const lines = logs()
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(lines.every((l) => l.recording === true && l.v === 1 && l.session === "s-1")).toBe(true);
    expect(lines.map((l) => l.seq)).toEqual(lines.map((_, i) => i));
    expect(lines[0].header).toMatchObject({
      version: 2,
      width: 120,
      height: 40,
      airlock: { session: "s-1", identity: { user: "alice" } },
    });
    expect(lines.at(-1)).toMatchObject({ end: true });

    // Shuffled, duplicated and interleaved with other lines, as a log pipeline may deliver them.
    const noise = '{"level":30,"msg":"other"}\nnot json\n';
    const shuffled = [...lines.slice(1), lines[0], lines[1]].map((l) => JSON.stringify(l)).join(`\n${noise}`);
    const found = catalogFromLog(shuffled).find("s-1");
    if ("error" in found) throw new Error(found.error);
    expect(found.summary).toMatchObject({
      format: "asciicast",
      complete: true,
      protocol: "ssh",
      user: "alice",
      connection: "box",
    });
    expect(found.events.map((e) => [e[1], e[2]])).toEqual([
      ["m", "shell"],
      ["o", "$ "],
      ["o", "echo héllo\r\nhéllo\r\n"],
      ["r", "100x30"],
      ["o", "$ "],
    ]);
    const cast = toAsciicast(found).trim().split("\n");
    expect(JSON.parse(cast[0] as string)).toMatchObject({ version: 2, width: 120 });
    expect(cast).toHaveLength(6);
  });

  it("records nothing when the policy turns recording off", async () => {
    const { recorder, logs } = setup({ enabled: false, destination: "stdout" });
    const rec = recorder.terminal({ session: "s-2", connection: conn("box"), protocol: "ssh" });
    rec.output("x");
    await rec.end();
    recorder.operation("s-3", {
      connection: conn("db"),
      protocol: "postgres",
      operation: { kind: "sql" },
      decision: { action: "allow" },
    });
    await recorder.end("s-3");
    expect(logs()).toBe("");
  });
});

describe("operation recordings", () => {
  it("writes ordered JSON lines per session, to stdout and to files", async () => {
    for (const destination of ["stdout", "file"] as const) {
      const { recorder, logs } = setup({ enabled: true, destination, directory: dir });
      const base = {
        connection: conn("db"),
        protocol: "postgres" as const,
        identity: { serviceAccount: "sa" },
      };
      recorder.operation(`q-${destination}`, {
        ...base,
        operation: { kind: "sql", statements: [{ kind: "select", tables: ["customers"] }] },
        decision: { action: "allow", rule: "read" },
        outcome: { rows: 3 },
        masked: { email: 2 },
        durationMs: 1.5,
        detail: "SELECT * FROM customers WHERE id = $1",
      });
      recorder.operation(`q-${destination}`, {
        ...base,
        operation: { kind: "sql", statements: [{ kind: "delete", tables: ["customers"] }] },
        decision: { action: "deny", reason: "default deny" },
      });
      await recorder.end(`q-${destination}`);
      const catalog = destination === "file" ? await catalogFromDirectory(dir) : catalogFromLog(logs());
      const found = catalog.find(`q-${destination}`);
      if ("error" in found) throw new Error(found.error);
      expect(found.summary).toMatchObject({
        format: "jsonl",
        count: 2,
        protocol: "postgres",
        connection: "db",
      });
      expect(found.entries.map((e) => e.decision.action)).toEqual(["allow", "deny"]);
      expect(found.entries[0]).toMatchObject({
        outcome: { rows: 3 },
        masked: { email: 2 },
        detail: expect.any(String),
      });
      expect(found.entries[1]?.t).toBeGreaterThanOrEqual(found.entries[0]?.t ?? 0);
    }
    expect(readFileSync(join(dir, "q-file.jsonl"), "utf8").split("\n")[0]).toContain('"format":"jsonl"');
  });
});

describe("file recordings", () => {
  it("writes <session>.cast, a plain asciicast v2 file", async () => {
    const { recorder } = setup({ enabled: true, destination: "file", directory: dir });
    const rec = recorder.terminal({
      session: "f-1",
      connection: conn("box"),
      protocol: "ssh",
      width: 90,
      height: 20,
    });
    rec.output("hello\r\n");
    await rec.end();
    const [header, event] = readFileSync(join(dir, "f-1.cast"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(header).toMatchObject({ version: 2, width: 90, height: 20, timestamp: expect.any(Number) });
    expect(event).toEqual([expect.any(Number), "o", "hello\r\n"]);
  });

  it("falls back to the stdout stream when the directory cannot be written", async () => {
    // A path under a regular file cannot be created, even by root.
    const blocked = join(dir, "not-a-dir");
    const { writeFileSync } = await import("node:fs");
    writeFileSync(blocked, "");
    chmodSync(blocked, 0o400);
    const { recorder, logs } = setup({ enabled: true, destination: "file", directory: join(blocked, "sub") });
    const rec = recorder.terminal({ session: "f-2", connection: conn("box"), protocol: "ssh" });
    rec.output("kept\r\n");
    await rec.end();
    expect(logs()).toMatch(/cannot write session recording file/);
    const found = catalogFromLog(logs()).find("f-2");
    if ("error" in found) throw new Error(found.error);
    expect(found.events.map((e) => e[2])).toEqual(["kept\r\n"]);
    expect(found.summary.complete).toBe(true);
  });
});

describe("catalog lookups and settings", () => {
  it("finds sessions by unique prefix and reports ambiguity", () => {
    const line = (session: string) =>
      JSON.stringify({
        recording: true,
        v: 1,
        session,
        format: "asciicast",
        seq: 0,
        header: { version: 2, width: 80, height: 24, timestamp: 0 },
      });
    const catalog = catalogFromLog([line("abc-1"), line("abd-2")].join("\n"));
    expect("error" in catalog.find("abc")).toBe(false);
    expect(catalog.find("ab")).toEqual({ error: expect.stringMatching(/ambiguous/) });
    expect(catalog.find("zz")).toEqual({ error: expect.stringMatching(/no session/) });
  });

  it("keeps sessions known only from audit events", () => {
    const audit = (session: string, t: string) =>
      JSON.stringify({
        audit: true,
        event: "operation",
        session,
        time: t,
        connection: "api",
        protocol: "http",
        operation: { kind: "http", method: "GET", path: "/x" },
        decision: { action: "allow" },
      });
    const catalog = catalogFromLog(
      `${audit("h-1", "2026-01-01T00:00:00Z")}\n${audit("h-1", "2026-01-01T00:00:01Z")}`,
    );
    expect(catalog.list()).toEqual([
      expect.objectContaining({
        session: "h-1",
        format: "audit",
        count: 2,
        operations: 2,
        protocol: "http",
        connection: "api",
      }),
    ]);
  });

  it("reads the policy's audit block with the CRD defaults", () => {
    expect(settingsFromAudit(undefined)).toEqual({ enabled: true, destination: "stdout" });
    expect(settingsFromAudit({ recordSessions: false })).toMatchObject({ enabled: false });
    expect(settingsFromAudit({ destination: "file", directory: "/var/airlock" })).toEqual({
      enabled: true,
      destination: "file",
      directory: "/var/airlock",
    });
  });
});

describe("operation entry lines on stdout", () => {
  it("are the lines pino writes for the same fields (hand-built for speed)", async () => {
    const { recorder, logs } = setup({ enabled: true, destination: "stdout" });
    const operation = Object.freeze({ kind: "sql", statements: [{ kind: "select", tables: ['we"ird'] }] });
    recorder.operation("s-1", {
      connection: conn("db"),
      protocol: "postgres",
      operation,
      decision: { action: "allow", rule: "read" },
      outcome: { status: "SELECT 1", rows: 1 },
      masked: { email: 1 },
      durationMs: 0.25,
      detail: "line\nbreak é",
    });
    recorder.operation("s-1", {
      connection: conn("db"),
      protocol: "postgres",
      operation,
      decision: { action: "deny" },
    });
    const lines = logs()
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    const entries = lines.filter((l) => l.entry);
    expect(entries).toHaveLength(2);
    // Same keys, same order as the pino-written header line's envelope (without the logger's
    // name, which audit and entry lines, the per-operation ones, leave out).
    const keys = (o: object) => Object.keys(o).filter((k) => k !== "name");
    const envelope = (body: string) => [
      "level",
      "time",
      "recording",
      "v",
      "session",
      "format",
      "seq",
      body,
      "msg",
    ];
    expect(keys(entries[0])).toEqual(envelope("entry"));
    expect(keys(lines[0])).toEqual(envelope("header"));
    expect(entries.map((e) => e.seq)).toEqual([1, 2]);
    expect(entries[0].entry).toEqual({
      t: expect.any(Number),
      time: expect.any(String),
      operation,
      decision: { action: "allow", rule: "read" },
      outcome: { status: "SELECT 1", rows: 1 },
      masked: { email: 1 },
      durationMs: 0.25,
      detail: "line\nbreak é",
    });
    expect(entries[1].entry).toEqual({
      t: expect.any(Number),
      time: expect.any(String),
      operation,
      decision: { action: "deny" },
    });
    expect(entries[0].msg).toBe("recording s-1");
  });
});

describe("recordsOperations", () => {
  it("is true only for recordings to a directory (on stdout the audit lines are the recording)", () => {
    expect(
      setup({ enabled: true, destination: "file", directory: dir }).recorder.recordsOperations(conn("a")),
    ).toBe(true);
    expect(setup({ enabled: true, destination: "stdout" }).recorder.recordsOperations(conn("a"))).toBe(false);
    expect(
      setup({ enabled: false, destination: "file", directory: dir }).recorder.recordsOperations(conn("a")),
    ).toBe(false);
  });
});
