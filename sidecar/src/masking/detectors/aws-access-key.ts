// AWS access key ids: AKIA (long-term) and ASIA (temporary, STS) followed by 16 upper-case letters or
// digits. The id is not the secret, but it names the credential and pairs with a leaked secret.
import { pendingToken } from "./chars.ts";
import type { Detector, Finding } from "./types.ts";

const PATTERN = /(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])/g;

export const awsAccessKey: Detector = {
  id: "awsAccessKey",
  maxLength: 22,
  keywords: ["akia", "asia"],
  lookBehind: 1,
  pendingFrom: pendingToken,
  find(text) {
    const out: Finding[] = [];
    for (const m of text.matchAll(PATTERN))
      out.push({ start: m.index, end: m.index + m[0].length, detector: "awsAccessKey" });
    return out;
  },
};
