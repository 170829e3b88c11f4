import { spawn } from "node:child_process";
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
});
