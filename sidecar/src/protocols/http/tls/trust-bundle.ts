// The trust bundle agents use: the system roots plus the pod CA, PEM, written atomically
// (temp file + rename) so a reader never sees half a bundle.
import { rename, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { rootCertificates } from "node:tls";

/** Env variable naming the bundle path (the injector mounts its directory read-only into agents). */
export const TRUST_BUNDLE_ENV = "AIRLOCK_TRUST_BUNDLE";

/** The bundle; without a pod CA (no HTTPS hosts) the system roots alone, so agents' TLS still works. */
export function trustBundlePem(
  caPem: string | undefined,
  roots: readonly string[] = rootCertificates,
): string {
  const parts = [...(caPem ? [caPem] : []), ...roots].map((p) => p.trim());
  return `${parts.join("\n")}\n`;
}

export async function writeTrustBundle(path: string, caPem: string | undefined): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  await writeFile(tmp, trustBundlePem(caPem), { mode: 0o644 });
  await rename(tmp, path);
}
