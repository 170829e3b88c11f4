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
import { resolveOverlaps } from "./overlaps.ts";
import { createPhoneDetector, type PhoneOptions } from "./phone.ts";
import { privateKey } from "./private-key.ts";
import { slackToken } from "./slack-token.ts";
import type { Detector, DetectorId, FindHint, Finding } from "./types.ts";
import { DETECTOR_IDS } from "./types.ts";
import { urlCredentials } from "./url-credentials.ts";
import { usSsn } from "./us-ssn.ts";

export { resolveOverlaps } from "./overlaps.ts";
export type { PhoneOptions } from "./phone.ts";
export type { Detector, DetectorId, FindHint, Finding } from "./types.ts";
export { DETECTOR_IDS, isDetectorId } from "./types.ts";

export interface DetectorOptions {
  phone?: PhoneOptions;
}

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
  };
  return new Map(DETECTOR_IDS.map((id) => [id, all[id]]));
}

/** Run detectors over `text`; findings are sorted, non-overlapping (see resolveOverlaps). */
export function findAll(text: string, detectors: Iterable<Detector>, hint?: FindHint): Finding[] {
  const found: Finding[] = [];
  for (const d of detectors) for (const f of d.find(text, hint)) found.push(f);
  return resolveOverlaps(found);
}
