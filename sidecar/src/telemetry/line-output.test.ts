import { spawn } from "node:child_process";
import { once } from "node:events";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createLineOutput } from "./line-output.ts";

const dir = mkdtempSync(join(tmpdir(), "airlock-line-output-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("createLineOutput", () => {
  it("writes a turn's lines together at the end of the turn, in order", async () => {
    const file = join(dir, "turn.log");
    const fd = openSync(file, "w");
    const out = createLineOutput(fd);
    out.write("one\n");
    out.write("two\n");
    expect(readFileSync(file, "utf8")).toBe("");
    await new Promise((r) => setImmediate(r));
    expect(readFileSync(file, "utf8")).toBe("one\ntwo\n");
    out.write("three\n");
    out.flushSync();
    expect(readFileSync(file, "utf8")).toBe("one\ntwo\nthree\n");
    closeSync(fd);
  });

  it("writeNow hands the line, and what the turn queued before it, to the output at once", () => {
    const file = join(dir, "now.log");
    const fd = openSync(file, "w");
    const out = createLineOutput(fd);
    out.write("diagnostic\n");
    out.writeNow("audit\n");
    expect(readFileSync(file, "utf8")).toBe("diagnostic\naudit\n");
    closeSync(fd);
  });

  it("flushes at once past 64 KiB pending", () => {
    const file = join(dir, "big.log");
    const fd = openSync(file, "w");
    const out = createLineOutput(fd);
    const line = `${"x".repeat(1023)}\n`;
    for (let i = 0; i < 70; i++) out.write(line);
    expect(readFileSync(file, "utf8").length).toBe(64 * 1024);
    out.flushSync();
    expect(readFileSync(file, "utf8").length).toBe(70 * 1024);
    closeSync(fd);
  });

  it("throws when the output is gone, rather than dropping lines silently", () => {
    const out = createLineOutput(987654);
    out.write("lost\n");
    expect(() => out.flushSync()).toThrow(
      /fd 987654 \(EBADF\); stopping rather than proxying without an audit trail/,
    );
  });

  it("a lost output stays lost: onLost once, later audit lines throw, diagnostics are dropped", () => {
    const fd = openSync("/dev/full", "w");
    const lostWith: Error[] = [];
    const out = createLineOutput(fd, { onLost: (e) => lostWith.push(e) });
    expect(() => out.writeNow("audit 1\n")).toThrow(/\(ENOSPC\); stopping rather than proxying/);
    expect(out.write("diagnostic\n")).toBe(true);
    expect(() => out.writeNow("audit 2\n")).toThrow(/\(ENOSPC\)/);
    expect(() => out.flushSync()).toThrow(/\(ENOSPC\)/);
    expect(lostWith).toHaveLength(1);
    closeSync(fd);
  });

  it("waits for a full non-blocking pipe instead of losing lines", async () => {
    // A child writes 4 MiB of numbered lines (multi-byte UTF-8 in each, so partial writes split characters) to its stdout pipe (made non-blocking by touching
    // process.stdout) while this side does not read for a while: every line must arrive, in order.
    const child = spawn(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `process.stdout.write("");
         const { createLineOutput } = await import(${JSON.stringify(new URL("./line-output.ts", import.meta.url).href)});
         const out = createLineOutput(1);
         for (let i = 0; i < 32768; i++) out.write(String(i).padStart(126, "0") + "é\\n");
         out.flushSync();`,
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    child.stdout.pause();
    await new Promise((r) => setTimeout(r, 300));
    const chunks: Buffer[] = [];
    child.stdout.on("data", (d: Buffer) => chunks.push(d));
    child.stdout.resume();
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const code = await new Promise((r) => child.on("close", r));
    expect(stderr).toBe("");
    expect(code).toBe(0);
    const lines = Buffer.concat(chunks).toString().split("\n");
    expect(lines.pop()).toBe("");
    expect(lines).toHaveLength(32768);
    expect(lines.every((l, i) => l.endsWith("é") && Number(l.slice(0, -1)) === i)).toBe(true);
  });

  // A child hands 4 MiB of numbered lines to its stdout pipe over many event-loop turns while
  // serving /healthz; this side does not read. `done` on stderr means every line was handed over.
  const LINES = 32768;
  function stallingChild(maxBacklogBytes: number) {
    const child = spawn(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `process.stdout.write("");
         const { createServer } = await import("node:http");
         const { createLineOutput } = await import(${JSON.stringify(new URL("./line-output.ts", import.meta.url).href)});
         const out = createLineOutput(1, { maxBacklogBytes: ${maxBacklogBytes} });
         const server = createServer((req, res) => res.end("ok " + out.backlogBytes())).listen(0, "127.0.0.1", () => {
           process.stderr.write("port " + server.address().port + "\\n");
           let i = 0;
           const turn = () => {
             for (let k = 0; k < 256 && i < ${LINES}; k++, i++) out.write(String(i).padStart(126, "0") + "é\\n");
             if (i < ${LINES}) setImmediate(turn);
             else process.stderr.write("done\\n");
           };
           turn();
         });
         process.on("SIGTERM", () => { out.flushSync(); process.exit(0); });`,
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    child.stdout.pause();
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const chunks: Buffer[] = [];
    const seen = (word: string, ms: number) =>
      new Promise<boolean>((resolve) => {
        const t0 = Date.now();
        const poll = setInterval(() => {
          if (stderr.includes(word) || Date.now() - t0 > ms) {
            clearInterval(poll);
            resolve(stderr.includes(word));
          }
        }, 10);
      });
    return {
      child,
      seen,
      port: () => Number(/port (\d+)/.exec(stderr)?.[1]),
      read() {
        child.stdout.on("data", (d: Buffer) => chunks.push(d));
        child.stdout.resume();
      },
      async lines() {
        const [code] = await once(child, "close");
        expect(code).toBe(0);
        const lines = Buffer.concat(chunks).toString().split("\n");
        expect(lines.pop()).toBe("");
        expect(lines).toHaveLength(LINES);
        expect(lines.every((l, i) => l.endsWith("é") && Number(l.slice(0, -1)) === i)).toBe(true);
      },
    };
  }

  it("keeps the event loop and its probes answering behind a stalled reader, and loses nothing", async () => {
    const c = stallingChild(64 * 1024 * 1024);
    expect(await c.seen("done", 10_000)).toBe(true);
    // Every line handed over while nobody reads: most of it is queued, and /healthz answers.
    const res = await fetch(`http://127.0.0.1:${c.port()}/healthz`, { signal: AbortSignal.timeout(2000) });
    const backlog = Number((await res.text()).split(" ")[1]);
    expect(backlog).toBeGreaterThan(1024 * 1024);
    c.read();
    c.child.kill("SIGTERM");
    await c.lines();
  });

  it("past maxBacklogBytes waits for the pipe: the data path stops, still nothing lost", async () => {
    const c = stallingChild(256 * 1024);
    expect(await c.seen("port", 10_000)).toBe(true);
    // Nobody reads: the child cannot get further than the bound (plus one turn) ahead.
    expect(await c.seen("done", 700)).toBe(false);
    c.read();
    expect(await c.seen("done", 10_000)).toBe(true);
    c.child.kill("SIGTERM");
    await c.lines();
  });
});
