// Recall and precision of every detector together on the held-out set (test/fixtures/masking),
// which the detectors were not tuned on. Recall: positives whose whole value is masked. Precision:
// findings that cover a real value, over all findings (negatives must produce none).
import { describe, expect, it } from "vitest";
import { type Case, NEGATIVES, PII, SECRETS } from "../../../../test/fixtures/masking/held-out.ts";
import { compileDetectors, createDetectors } from "./index.ts";

const set = compileDetectors([...createDetectors().values()]);

interface Score {
  recall: number;
  precision: number;
  missed: string[];
  falsePositives: string[];
  mislabelled: string[];
}

function score(positives: Case[], negatives: Case[]): Score {
  let found = 0;
  let truePositives = 0;
  let falsePositives = 0;
  const missed: string[] = [];
  const fps: string[] = [];
  const mislabelled: string[] = [];
  for (const c of [...positives, ...negatives]) {
    const findings = set.find(c.text, c.key ? { key: c.key } : undefined);
    const at = c.value ? c.text.indexOf(c.value) : -1;
    const end = at + (c.value?.length ?? 0);
    for (const f of findings) {
      if (at >= 0 && f.start < end && f.end > at) truePositives++;
      else {
        falsePositives++;
        fps.push(
          `${f.detector}/${f.family ?? ""}: ${c.text.slice(f.start, f.end).slice(0, 24)}… in ${c.text.slice(0, 40)}`,
        );
      }
    }
    if (c.value === undefined) continue;
    const covering = findings.find((f) => f.start <= at && f.end >= end);
    if (covering) {
      found++;
      if (covering.detector !== c.detector)
        mislabelled.push(`${c.detector} as ${covering.detector}: ${c.text.slice(0, 40)}`);
    } else missed.push(`${c.detector}: ${c.text.slice(0, 60)}`);
  }
  return {
    recall: found / positives.length,
    precision: truePositives / Math.max(1, truePositives + falsePositives),
    missed,
    falsePositives: fps,
    mislabelled,
  };
}

describe("held-out set", () => {
  it.each([
    ["secrets", SECRETS],
    ["PII", PII],
  ] as const)("%s: recall and precision", (name, positives) => {
    const s = score(positives, name === "secrets" ? NEGATIVES : []);
    process.stdout.write(
      `held-out ${name}: ${positives.length} positives, recall ${s.recall.toFixed(3)}, precision ${s.precision.toFixed(3)}\n` +
        [
          ...s.missed.map((m) => `  missed ${m}`),
          ...s.falsePositives.map((f) => `  false positive ${f}`),
          ...s.mislabelled.map((m) => `  labelled ${m}`),
        ].join("\n") +
        "\n",
    );
    expect(s.recall).toBeGreaterThanOrEqual(0.9);
    expect(s.precision).toBeGreaterThanOrEqual(0.95);
  });

  it("negatives: nothing is masked", () => {
    const s = score([], NEGATIVES);
    expect(s.falsePositives).toEqual([]);
  });
});
