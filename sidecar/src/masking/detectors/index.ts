// Detector registry: ids → detectors, and a helper that runs a set of them over a text.
import { awsAccessKey } from "./aws-access-key.ts";
import { awsSecretKey } from "./aws-secret-key.ts";
import { creditCard } from "./credit-card.ts";
import { email } from "./email.ts";
import { githubToken } from "./github-token.ts";
import { iban } from "./iban.ts";
import { ipv4 } from "./ipv4.ts";
import { ipv6 } from "./ipv6.ts";
import { jwt } from "./jwt.ts";
import { createKeywordScanner, type KeywordScanner } from "./keyword-scanner.ts";
import { keywordSecret } from "./keyword-secret.ts";
import { resolveOverlaps } from "./overlaps.ts";
import { createPhoneDetector, type PhoneOptions } from "./phone.ts";
import { privateKey } from "./private-key.ts";
import { createSecretCatalogue } from "./secret-catalogue.ts";
import { slackToken } from "./slack-token.ts";
import { compileTriggers } from "./triggers.ts";
import type { Detector, DetectorId, FindHint, Finding } from "./types.ts";
import { DETECTOR_IDS } from "./types.ts";
import { urlCredentials } from "./url-credentials.ts";
import { usSsn } from "./us-ssn.ts";

export { resolveOverlaps } from "./overlaps.ts";
export type { PhoneOptions } from "./phone.ts";
export type { Detector, DetectorGroup, DetectorId, FindHint, Finding } from "./types.ts";
export {
  DETECTOR_IDS,
  expandDetectorName,
  isDetectorId,
  isDetectorName,
  SECRET_DETECTOR_IDS,
} from "./types.ts";

export interface DetectorOptions {
  phone?: PhoneOptions;
}

// The compiled catalogue is shared: its regexes compile on first use and are then reused.
let sharedCatalogue: Detector | undefined;
const catalogue = () => {
  sharedCatalogue ??= createSecretCatalogue();
  return sharedCatalogue;
};

/** Every detector, keyed by id, in DETECTOR_IDS order. */
export function createDetectors(options: DetectorOptions = {}): ReadonlyMap<DetectorId, Detector> {
  const all: Record<DetectorId, Detector> = {
    email,
    creditCard,
    usSsn,
    iban,
    phone: createPhoneDetector(options.phone),
    ipv4,
    ipv6,
    awsAccessKey,
    awsSecretKey,
    githubToken,
    slackToken,
    jwt,
    privateKey,
    urlCredentials,
    secretCatalogue: catalogue(),
    keywordSecret,
  };
  return new Map(DETECTOR_IDS.map((id) => [id, all[id]]));
}

/** Run detectors over `text`; findings are sorted, non-overlapping (see resolveOverlaps). */
export function findAll(text: string, detectors: Iterable<Detector>, hint?: FindHint): Finding[] {
  const found: Finding[] = [];
  for (const d of detectors) for (const f of d.find(text, hint)) found.push(f);
  return resolveOverlaps(found);
}

/** Detectors compiled together: one keyword pass decides which of them run on a text. */
export interface DetectorSet {
  readonly detectors: readonly Detector[];
  /** findAll over the set, skipping detectors none of whose keywords occur. */
  find(text: string, hint?: FindHint): Finding[];
  /** False when no detector of the set can match UTF-8 text `bytes[start, end)`. */
  mayOccurIn(bytes: Uint8Array, start: number, end: number): boolean;
}

export function compileDetectors(detectors: readonly Detector[]): DetectorSet {
  const keywords: string[] = [];
  const masks: number[] = [];
  const bits: number[] = [];
  let inKey = 0;
  let keyed = 0;
  for (const d of detectors) {
    if (!d.keywords?.length) {
      bits.push(0);
      continue;
    }
    if (keyed === 31) throw new Error("more than 31 keyword-filtered detectors in one set");
    const bit = 1 << keyed++;
    bits.push(bit);
    if (d.keywordsInKey) inKey |= bit;
    for (const k of d.keywords) {
      keywords.push(k);
      masks.push(bit);
    }
  }
  const scanner = keywords.length > 0 ? createKeywordScanner(keywords, masks) : undefined;
  return {
    detectors,
    find(text, hint) {
      let mask = scanner ? scanner.maskOf(text) : 0;
      if (scanner && inKey !== 0 && hint?.key) mask |= scanner.maskOf(hint.key) & inKey;
      const found: Finding[] = [];
      for (let i = 0; i < detectors.length; i++) {
        const bit = bits[i] as number;
        if (bit !== 0 && (mask & bit) === 0) continue;
        for (const f of (detectors[i] as Detector).find(text, hint)) found.push(f);
      }
      return found.length > 1 ? resolveOverlaps(found) : found;
    },
    mayOccurIn: compileByteCheck(detectors, bits, inKey, scanner),
  };
}

/**
 * The set's byte pre-check: the byte triggers of its detectors in one pass, then the detectors
 * without one (their keyword filter, then their own check). A detector with neither makes every
 * value need the scan.
 */
function compileByteCheck(
  detectors: readonly Detector[],
  bits: readonly number[],
  inKey: number,
  scanner: KeywordScanner | undefined,
): DetectorSet["mayOccurIn"] {
  const triggered = compileTriggers(detectors.flatMap((d) => (d.trigger ? [d.trigger] : [])));
  const rest: { d: Detector; bit: number }[] = [];
  detectors.forEach((d, i) => {
    if (d.trigger) return;
    const bit = bits[i] as number;
    rest.push({ d, bit: (inKey & bit) === 0 ? bit : 0 });
  });
  if (rest.some((r) => r.bit === 0 && !r.d.mayOccurIn)) return () => true;
  if (rest.length === 0) return triggered;
  return (bytes, start, end) => {
    if (triggered(bytes, start, end)) return true;
    let mask: number | undefined;
    for (const { d, bit } of rest) {
      if (bit !== 0) {
        mask ??= scanner?.maskOfBytes(bytes, start, end) ?? 0;
        if ((mask & bit) === 0) continue;
      }
      if (!d.mayOccurIn || d.mayOccurIn(bytes, start, end)) return true;
    }
    return false;
  };
}
