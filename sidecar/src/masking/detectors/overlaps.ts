// Findings from different detectors can overlap (a phone inside a card run, an email inside a
// PEM comment). Overlapping findings merge into one span covering all of them, labelled with the
// longest member (the earliest on a tie): keeping only one of two partly overlapping findings
// would leave the other's uncovered part of a secret in the clear.
import type { Finding } from "./types.ts";

export function resolveOverlaps(findings: readonly Finding[]): Finding[] {
  const sorted = [...findings].sort((a, b) => a.start - b.start || b.end - a.end);
  const out: Finding[] = [];
  let current: Finding | undefined;
  let label: Finding | undefined;
  for (const f of sorted) {
    if (f.end <= f.start) continue;
    if (current && label && f.start < current.end) {
      if (f.end - f.start > label.end - label.start) label = f;
      current.end = Math.max(current.end, f.end);
      current.detector = label.detector;
      if (label.family === undefined) delete current.family;
      else current.family = label.family;
      continue;
    }
    current = { start: f.start, end: f.end, detector: f.detector };
    if (f.family !== undefined) current.family = f.family;
    label = f;
    out.push(current);
  }
  return out;
}
