// Public API of the masking library: protocol-agnostic masking of text, JSON, SQL column values
// and chunked streams. Protocol handlers build one masker per policy and call it with values.
export type { CountryCode } from "libphonenumber-js";
export {
  compileDetectors,
  createDetectors,
  DETECTOR_IDS,
  type Detector,
  type DetectorGroup,
  type DetectorId,
  type DetectorOptions,
  type DetectorSet,
  expandDetectorName,
  type FindHint,
  type Finding,
  findAll,
  isDetectorId,
  isDetectorName,
  type PhoneOptions,
  resolveOverlaps,
  SECRET_DETECTOR_IDS,
} from "./detectors/index.ts";
export { isRawJson, parseJsonLossless } from "./json.ts";
export { JsonPathError, parseJsonPath } from "./json-path.ts";
export {
  createMasker,
  MAX_JSON_DEPTH,
  type MaskColumnResult,
  type Masker,
  type MaskerConfig,
  type MaskFinding,
  MaskingError,
  type MaskingRule,
  type MaskJsonResult,
  type MaskTextResult,
} from "./masker.ts";
export { createEventSplitter, type EventSplitter, maskSseEvent } from "./sse.ts";
export {
  applyStrategy,
  HASH_KEY_BYTES,
  hashValue,
  loadOrCreateHashKey,
  partial,
  redact,
  STRATEGIES,
  type Strategy,
} from "./strategies.ts";
export {
  createStreamMasker,
  DEFAULT_MAX_HOLD,
  type StreamMasker,
  type StreamMaskerOptions,
} from "./stream.ts";
