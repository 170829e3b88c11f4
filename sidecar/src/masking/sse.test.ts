import { describe, expect, it } from "vitest";
import { createEventSplitter } from "./sse.ts";

const ends = (...chunks: string[]) => {
  const s = createEventSplitter();
  return [...chunks.flatMap((c) => s.feed(c)), ...s.flush()];
};

describe("event splitter", () => {
  it("finds the blank line in any line-ending style", () => {
    expect(ends("data: a\n\nrest")).toEqual([9]);
    expect(ends("data: a\r\n\r\nrest")).toEqual([11]);
    expect(ends("data: a\r\rrest")).toEqual([9]);
    expect(ends("data: a\r")).toEqual([]);
    expect(ends("data: a\n")).toEqual([]);
    expect(ends("\n\n")).toEqual([1, 2]);
  });

  it("gives stream offsets whatever the chunking, a CR LF split included", () => {
    const text = "event: x\r\ndata: 1\r\n\r\ndata: 2\n\ndata: 3\r\r";
    const whole = ends(text);
    expect(whole).toEqual([21, 30, 39]);
    for (let i = 0; i <= text.length; i++) expect(ends(text.slice(0, i), text.slice(i))).toEqual(whole);
    expect(ends(...text.split(""))).toEqual(whole);
  });
});
