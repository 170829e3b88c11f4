// GitHub tokens: classic ghp_ (personal), gho_ (OAuth), ghu_ (user-to-server), ghs_
// (server-to-server), ghr_ (refresh), and fine-grained github_pat_ tokens.
import { pendingToken } from "./chars.ts";
import type { Detector, Finding } from "./types.ts";

// Bounded lengths keep backtracking after a failed look-ahead constant per start offset.
const PATTERN =
  /(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{22,244})(?![A-Za-z0-9_])/g;

export const githubToken: Detector = {
  id: "githubToken",
  maxLength: 256,
  keywords: ["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"],
  lookBehind: 1,
  pendingFrom: pendingToken,
  find(text) {
    const out: Finding[] = [];
    for (const m of text.matchAll(PATTERN))
      out.push({ start: m.index, end: m.index + m[0].length, detector: "githubToken" });
    return out;
  },
};
