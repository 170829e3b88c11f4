// credentials.secretRef as a credential source: the fields are the keys of the Secret mounted into
// the sidecar (read through the SecretStore's short cache, so a rotated Secret takes effect within
// seconds). Nothing to give back on release.
import type { SecretStore } from "../runtime/secrets.ts";
import { CredentialError, type CredentialSource, heldFields } from "./source.ts";

export function secretCredentialSource(secrets: SecretStore, secretName: string): CredentialSource {
  return {
    kind: "secretRef",
    async acquire(req) {
      const fields = new Map<string, string>();
      for (const key of req.keys) {
        try {
          fields.set(key, await secrets.get(secretName, key));
        } catch (err) {
          throw new CredentialError("missing", (err as Error).message, { cause: err });
        }
      }
      return heldFields(fields, { source: "secretRef" }, `secret ${secretName}`);
    },
  };
}
