// Shared detector contract. Detector ids are stable: policy YAML and metric labels use them.
import { DETECTORS } from "../../../../api/src/agent-access-policy.ts";
import type { ByteTrigger } from "./triggers.ts";

/** Names a policy may use for a set of detectors rather than one. */
export type DetectorGroup = "all" | "secrets";

/** The detector ids policies may name (the CRD's enum is the one list, with the groups). */
export type DetectorId = Exclude<(typeof DETECTORS)[number], DetectorGroup>;
export const DETECTOR_IDS: readonly DetectorId[] = DETECTORS.filter(
  (d): d is DetectorId => d !== "all" && d !== "secrets",
);

/** Every detector whose values are credentials (the "secrets" group). */
export const SECRET_DETECTOR_IDS: readonly DetectorId[] = [
  "awsAccessKey",
  "awsSecretKey",
  "githubToken",
  "slackToken",
  "jwt",
  "privateKey",
  "urlCredentials",
  "secretCatalogue",
  "keywordSecret",
];

/** The detector ids a policy entry stands for: itself, or a group's members. */
export function expandDetectorName(name: DetectorId | DetectorGroup): readonly DetectorId[] {
  if (name === "all") return DETECTOR_IDS;
  if (name === "secrets") return SECRET_DETECTOR_IDS;
  return [name];
}

/** A detected value: `[start, end)` offsets into the scanned text. Never carries the value itself. */
export interface Finding {
  start: number;
  end: number;
  detector: DetectorId;
  /** Which kind within the detector matched (a catalogue rule id, a card network); for reports. */
  family?: string;
}

/**
 * Context a caller knows about the scanned value. Some values are only recognisable in context
 * (an SSN without dashes, a bare 40-character AWS secret), and the field or column name is the
 * context when the value stands alone.
 */
export interface FindHint {
  /** Name of the JSON field or SQL column the value came from. */
  key?: string;
  /** The value is a JSON number rendered as its decimal string. */
  numeric?: boolean;
}

export interface Detector {
  readonly id: DetectorId;
  /**
   * Longest text a finding of this detector can span, including the context it looks at around
   * the value. Stream masking holds back at least this much of an unterminated line. `Infinity`
   * for detectors whose values are delimited blocks (PEM keys), which the stream handles itself.
   */
  readonly maxLength: number;
  /**
   * Most characters before a value, outside its own run of non-space characters, that decide
   * whether it is one (a label such as "SSN:"); default maxLength. Stream masking keeps this much
   * of the text it has already released (and the released part of a run it had to cut).
   */
  readonly lookBehind?: number;
  /**
   * Where a value may still be in the making at the end of `text`: the earliest offset, at or
   * after `from`, from which text arriving later could still start, extend or cancel a finding
   * (`text.length` when everything is decided). Stream masking releases the text before the
   * earliest such offset of its detectors; a detector without it holds back maxLength.
   */
  pendingFrom?(text: string, from: number): number;
  find(text: string, hint?: FindHint): Finding[];
  /**
   * Optional byte-level pre-check on UTF-8 text `bytes[start, end)`: false only when `find` on
   * its decoding certainly finds nothing (e.g. no "@" byte: no email). It lets callers holding
   * raw bytes (PostgreSQL DataRow values) skip decoding values no detector could match. UTF-8
   * keeps ASCII bytes for ASCII characters only, so an ASCII byte test is exact for any text.
   */
  mayOccurIn?(bytes: Uint8Array, start: number, end: number): boolean;
  /**
   * Optional declarative form of `mayOccurIn` (which it then must agree with): `find` matches
   * only text holding at least `min` of these ASCII bytes. A detector set checks the triggers of
   * all its detectors in one pass over the bytes (triggers.ts).
   */
  readonly trigger?: ByteTrigger;
  /**
   * Optional prefilter: printable ASCII strings, matched case-insensitively, at least one of which
   * occurs in every text `find` can match. A detector set scans once for the keywords of all its
   * detectors and calls `find` only on the detectors whose keywords occur.
   */
  readonly keywords?: readonly string[];
  /** The keywords may occur in the hint's key instead of the text (labels read from field names). */
  readonly keywordsInKey?: boolean;
}

export function isDetectorId(value: string): value is DetectorId {
  return (DETECTOR_IDS as readonly string[]).includes(value);
}

export function isDetectorName(value: string): value is DetectorId | DetectorGroup {
  return value === "all" || value === "secrets" || isDetectorId(value);
}
