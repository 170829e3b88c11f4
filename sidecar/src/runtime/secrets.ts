// Upstream credentials, read from Secret volumes mounted only into the sidecar:
// <dir>/<secretName>/<key>, the layout both the injector's mounts and standalone mode use.
// Values are read on use (so rotated Secrets take effect) and never logged.
import { readFile } from "node:fs/promises";
import { join } from "node:path";

export const DEFAULT_SECRETS_DIR = "/etc/airlock/secrets";

export class SecretError extends Error {}

export interface SecretStore {
  get(secretName: string, key: string): Promise<string>;
}

const SAFE = /^[A-Za-z0-9._-]+$/;

export function createSecretStore(dir: string = DEFAULT_SECRETS_DIR): SecretStore {
  return {
    async get(secretName, key) {
      // Names come from policy; refuse anything that could walk out of the directory.
      if (!SAFE.test(secretName) || !SAFE.test(key) || secretName.startsWith(".") || key.startsWith(".")) {
        throw new SecretError(`invalid secret reference ${secretName}/${key}`);
      }
      try {
        return (await readFile(join(dir, secretName, key), "utf8")).replace(/\r?\n$/, "");
      } catch {
        throw new SecretError(
          `secret ${secretName} key ${key} is not mounted in ${dir}; check the policy's secretRef`,
        );
      }
    },
  };
}
