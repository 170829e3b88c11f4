// Upstream credentials, read from Secret volumes mounted only into the sidecar:
// <dir>/<secretName>/<key>, the layout both the injector's mounts and standalone mode use.
// Values are cached briefly (a file read per request would put the thread pool on the hot path)
// and re-read after `ttlMs`, so a rotated Secret takes effect within seconds of the kubelet
// updating the volume. Values are never logged.
import { readFile } from "node:fs/promises";
import { join } from "node:path";

export const DEFAULT_SECRETS_DIR = "/etc/airlock/secrets";

export class SecretError extends Error {}

export interface SecretStore {
  get(secretName: string, key: string): Promise<string>;
}

const SAFE = /^[A-Za-z0-9._-]+$/;

export function createSecretStore(
  dir: string = DEFAULT_SECRETS_DIR,
  opts: { ttlMs?: number } = {},
): SecretStore {
  const ttl = opts.ttlMs ?? 10_000;
  const cache = new Map<string, { value: Promise<string>; expires: number }>();
  return {
    get(secretName, key) {
      // Names come from policy; refuse anything that could walk out of the directory.
      if (!SAFE.test(secretName) || !SAFE.test(key) || secretName.startsWith(".") || key.startsWith(".")) {
        return Promise.reject(new SecretError(`invalid secret reference ${secretName}/${key}`));
      }
      const id = `${secretName}/${key}`;
      const now = Date.now();
      const hit = cache.get(id);
      if (hit && hit.expires > now) return hit.value;
      const value = readFile(join(dir, secretName, key), "utf8").then(
        (text) => text.replace(/\r?\n$/, ""),
        () => {
          cache.delete(id);
          throw new SecretError(
            `secret ${secretName} key ${key} is not mounted in ${dir}; check the policy's secretRef`,
          );
        },
      );
      cache.set(id, { value, expires: now + ttl });
      return value;
    },
  };
}
