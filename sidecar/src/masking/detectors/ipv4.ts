// IPv4 addresses in dotted-quad form, confirmed by node:net isIP (no octet > 255, no leading zeros).
// Not part of a longer dotted run, so version strings such as 1.2.3.4.5 and v1.2.3.4 stay.
import { isIP } from "node:net";
import { pendingToken } from "./chars.ts";
import type { Detector, Finding } from "./types.ts";

// Bounded quantifiers only: each start offset costs at most a few dozen steps.
const CANDIDATE = /(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)/g;

export const ipv4: Detector = {
  id: "ipv4",
  maxLength: 20,
  lookBehind: 1,
  pendingFrom: pendingToken,
  find(text) {
    const out: Finding[] = [];
    for (const m of text.matchAll(CANDIDATE))
      if (isIP(m[0]) === 4) out.push({ start: m.index, end: m.index + m[0].length, detector: "ipv4" });
    return out;
  },
};
