// The HTTP guard's view of the shared masking resolution (operations/masking.ts): a masker per
// connection and direction.
import { connectionMasking, type MaskDirection, type MaskerSlot } from "../../operations/masking.ts";
import type { CompiledConnection } from "../../policy/compile.ts";

export { countByDetector, type MaskerSlot, rulesFor } from "../../operations/masking.ts";

export interface MaskerCache {
  get(connection: CompiledConnection, direction: MaskDirection): MaskerSlot;
}

export function createMaskerCache(hashKey: Buffer): MaskerCache {
  return { get: (connection, direction) => connectionMasking(connection, hashKey)[direction] };
}
