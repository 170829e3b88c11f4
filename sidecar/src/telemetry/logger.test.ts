import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger, isoTime } from "./logger.ts";

describe("logger", () => {
  it("stamps lines with an ISO time, formatted once per millisecond", () => {
    const a = isoTime();
    expect(a).toMatch(/^,"time":"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z"$/);
    const ms = Date.parse(JSON.parse(`{${a.slice(1)}}`).time);
    expect(Math.abs(ms - Date.now())).toBeLessThan(1000);
  });

  it("still redacts credentials that slip into diagnostics", async () => {
    let text = "";
    const destination = new Writable({
      write(chunk, _enc, cb) {
        text += chunk.toString();
        cb();
      },
    });
    const logger = createLogger({ level: "info", destination });
    logger.info({ req: { headers: { authorization: "Bearer s3cret", cookie: "sid=1" } } }, "diagnostic");
    await new Promise((r) => setImmediate(r));
    expect(text).toContain("diagnostic");
    expect(text).not.toContain("s3cret");
    expect(text).not.toContain("sid=1");
  });
});
