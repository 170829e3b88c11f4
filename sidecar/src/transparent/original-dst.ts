// Where did the agent mean to go? For a connection captured by the nat OUTPUT REDIRECT rule the
// kernel keeps the original destination in conntrack; the N-API addon in sidecar/native reads it
// with getsockopt(SO_ORIGINAL_DST) (IPv4) / getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST) (IPv6).
// Node-API keeps one build loadable by every Node version; it is built by sidecar/native/build.sh.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import type { Socket } from "node:net";
import { fileURLToPath } from "node:url";

export interface OriginalDestination {
  address: string;
  port: number;
  family: 4 | 6;
}

interface NativeAddon {
  original_dst(fd: number): OriginalDestination;
  abiVersion: number;
}

/** Where sidecar/native/build.sh puts the addon; AIRLOCK_NATIVE_ADDON overrides (images, tests). */
export const NATIVE_ADDON_PATH = fileURLToPath(
  new URL("../../native/build/Release/airlock_native.node", import.meta.url),
);

export class NativeAddonError extends Error {
  override name = "NativeAddonError";
}

/** Errors of the getsockopt call itself (carry the errno name, e.g. ENOENT: not a redirected socket). */
export class OriginalDestinationError extends Error {
  override name = "OriginalDestinationError";
  readonly code: string;
  constructor(message: string, code: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

const loadedAddons = new Map<string, NativeAddon>();

function isAddon(value: unknown): value is NativeAddon {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as { original_dst?: unknown }).original_dst === "function"
  );
}

/** Loads the addon once; throws NativeAddonError with what to do when it is missing or broken. */
export function loadNativeAddon(path = process.env.AIRLOCK_NATIVE_ADDON || NATIVE_ADDON_PATH): NativeAddon {
  const cached = loadedAddons.get(path);
  if (cached) return cached;
  if (!existsSync(path))
    throw new NativeAddonError(
      `the airlock native addon is not built (${path} is missing): run npm run build:native ` +
        "(sidecar/native/build.sh; needs python3, make and a C compiler)",
    );
  let loaded: unknown;
  try {
    loaded = createRequire(import.meta.url)(path);
  } catch (err) {
    throw new NativeAddonError(
      `the airlock native addon at ${path} does not load (${err instanceof Error ? err.message : String(err)}): ` +
        "rebuild it with npm run build:native",
      { cause: err },
    );
  }
  if (!isAddon(loaded))
    throw new NativeAddonError(`${path} is not the airlock native addon (no original_dst export)`);
  loadedAddons.set(path, loaded);
  return loaded;
}

/** Whether the addon can be loaded here, with the reason when it cannot (for skips and /readyz). */
export function nativeAddonStatus(): { ok: true } | { ok: false; reason: string } {
  try {
    loadNativeAddon();
    return { ok: true };
  } catch (err) {
    return { ok: false, reason: err instanceof Error ? err.message : String(err) };
  }
}

/** The file descriptor behind a connected net.Socket (libuv's TCP handle exposes it on Unix). */
export function socketFd(socket: Socket): number {
  const handle = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle;
  const fd = handle?.fd;
  if (typeof fd !== "number" || fd < 0)
    throw new OriginalDestinationError(
      "the socket has no file descriptor (closed, or not a TCP socket)",
      "EBADF",
    );
  return fd;
}

/** The destination the agent dialled before the REDIRECT rule sent it to the sidecar. */
export function originalDst(socket: Socket): OriginalDestination {
  const native = loadNativeAddon();
  const fd = socketFd(socket);
  try {
    return native.original_dst(fd);
  } catch (err) {
    const code =
      typeof err === "object" && err !== null && typeof (err as { code?: unknown }).code === "string"
        ? (err as { code: string }).code
        : "EUNKNOWN";
    throw new OriginalDestinationError(err instanceof Error ? err.message : String(err), code, {
      cause: err,
    });
  }
}
