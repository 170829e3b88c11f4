// The trust bundle agents use: the system roots plus the pod CA, PEM, written atomically
// (temp file + rename) so a reader never sees half a bundle; next to it the same certificates as a
// Java truststore (truststore.p12, what JAVA_TOOL_OPTIONS points the JVM at).
import { rename, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { rootCertificates } from "node:tls";
import { javaTrustStore } from "./java-truststore.ts";

/** Env variable naming the bundle path (the injector mounts its directory read-only into agents). */
export const TRUST_BUNDLE_ENV = "AIRLOCK_TRUST_BUNDLE";
/** The Java truststore's file name, in the bundle's directory. */
export const JAVA_TRUSTSTORE_FILE = "truststore.p12";

/** The certificates of the bundle, pod CAs first: PEM blocks. */
export function trustBundleCerts(
  caPem: string | undefined,
  roots: readonly string[] = rootCertificates,
): string[] {
  const cas = caPem?.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return [...cas, ...roots].map((p) => p.trim());
}

/** The bundle; without a pod CA (no HTTPS hosts) the system roots alone, so agents' TLS still works. */
export function trustBundlePem(
  caPem: string | undefined,
  roots: readonly string[] = rootCertificates,
): string {
  return `${trustBundleCerts(caPem, roots).join("\n")}\n`;
}

async function writeAtomically(path: string, data: string | Buffer): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  await writeFile(tmp, data, { mode: 0o644 });
  await rename(tmp, path);
}

export async function writeTrustBundle(path: string, caPem: string | undefined): Promise<void> {
  const certs = trustBundleCerts(caPem);
  await writeAtomically(join(dirname(path), JAVA_TRUSTSTORE_FILE), javaTrustStore(certs));
  await writeAtomically(path, `${certs.join("\n")}\n`);
}
