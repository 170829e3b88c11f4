import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCredentialSources } from "../../credentials/index.ts";
import type { Connection } from "../../policy/types.ts";
import { createSecretStore, type SecretStore } from "../../runtime/secrets.ts";
import { createMetrics } from "../../telemetry/metrics.ts";
import { CredentialError, credentialHeadersToDrop, resolveCredential } from "./credentials.ts";

let dir: string;
const sourcesFor = (store: SecretStore) =>
  createCredentialSources({ secrets: store, logger: pino({ level: "silent" }), metrics: createMetrics() });
let secrets: SecretStore;

const conn = (credentials?: Connection["credentials"]): Connection => ({
  name: "c",
  protocol: "http",
  target: { host: "h", port: 443 },
  ...(credentials ? { credentials } : {}),
});

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "airlock-cred-"));
  const put = async (name: string, key: string, value: string) => {
    await mkdir(join(dir, name), { recursive: true });
    await writeFile(join(dir, name, key), value);
  };
  await put("plain", "token", "abc123\n");
  await put("dollar", "token", "x$&y$1");
  await put("crlf", "token", "abc\r\nX-Injected: 1");
  secrets = createSecretStore(dir);
});

afterAll(() => rm(dir, { recursive: true, force: true }));

describe("credentials", () => {
  it("defaults to Authorization: Bearer {value} from key token", async () => {
    expect(await resolveCredential(sourcesFor(secrets), conn({ secretRef: { name: "plain" } }), "s")).toEqual(
      {
        name: "Authorization",
        value: "Bearer abc123",
      },
    );
  });

  it("uses the configured header and format, taking the value literally", async () => {
    const c = conn({ secretRef: { name: "dollar" }, http: { header: "x-api-key", format: "{value}" } });
    expect(await resolveCredential(sourcesFor(secrets), c, "s")).toEqual({
      name: "x-api-key",
      value: "x$&y$1",
    });
  });

  it("uses a rotated Secret value on the next request", async () => {
    const values: Record<string, string> = { "rot/token": "one" };
    const store: SecretStore = { get: async (name, key) => values[`${name}/${key}`] ?? "" };
    const c = conn({ secretRef: { name: "rot" } });
    expect((await resolveCredential(sourcesFor(store), c, "s"))?.value).toBe("Bearer one");
    expect((await resolveCredential(sourcesFor(store), c, "s"))?.value).toBe("Bearer one");
    values["rot/token"] = "two";
    expect((await resolveCredential(sourcesFor(store), c, "s"))?.value).toBe("Bearer two");
    values["rot/token"] = "bad\r\nX-Injected: 1";
    await expect(resolveCredential(sourcesFor(store), c, "s")).rejects.toThrow(CredentialError);
  });

  it("refuses values that would break the header", async () => {
    await expect(
      resolveCredential(sourcesFor(secrets), conn({ secretRef: { name: "crlf" } }), "s"),
    ).rejects.toThrow(CredentialError);
  });

  it("has nothing to inject without credentials", async () => {
    expect(await resolveCredential(sourcesFor(secrets), conn(), "s")).toBeUndefined();
    expect(credentialHeadersToDrop(conn())).toEqual(["proxy-authorization"]);
  });

  it("drops the configured header plus the usual credential headers", () => {
    expect(
      credentialHeadersToDrop(conn({ secretRef: { name: "x" }, http: { header: "X-Token" } })).sort(),
    ).toEqual(["authorization", "proxy-authorization", "x-api-key", "x-token"].sort());
  });
});
