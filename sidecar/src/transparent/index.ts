// Transparent egress capture in the sidecar: the listener airlock-init's REDIRECT rule feeds, the
// SO_ORIGINAL_DST addon loader, and the address/name mapping to policy connections.
export { type AddressMap, canonicalIp, createAddressMap, lookupAll, type Resolver } from "./address-map.ts";
export {
  createTransparentListener,
  DEFAULT_CAPTURE_PORT,
  DEFAULT_MAX_PEEK_BYTES,
  type Protocol,
  type TransparentListener,
  type TransparentListenerOptions,
} from "./listener.ts";
export {
  loadNativeAddon,
  NATIVE_ADDON_PATH,
  NativeAddonError,
  nativeAddonStatus,
  type OriginalDestination,
  OriginalDestinationError,
  originalDst,
  socketFd,
} from "./original-dst.ts";
export { normalizeHost, type SniffResult, sniff } from "./sniff.ts";
