import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, it } from "vitest";
import { createSecretStore, SecretError } from "./secrets.ts";

const dir = mkdtempSync(join(tmpdir(), "airlock-secrets-"));
mkdirSync(join(dir, "db"));
writeFileSync(join(dir, "db", "password"), "s3cret\n");

it("reads <dir>/<secret>/<key> without the trailing newline", async () => {
  expect(await createSecretStore(dir).get("db", "password")).toBe("s3cret");
});

it("picks up a rotated value after the cache TTL", async () => {
  const store = createSecretStore(dir, { ttlMs: 50 });
  writeFileSync(join(dir, "db", "token"), "one");
  expect(await store.get("db", "token")).toBe("one");
  writeFileSync(join(dir, "db", "token"), "two");
  expect(await store.get("db", "token")).toBe("one");
  await new Promise((r) => setTimeout(r, 80));
  expect(await store.get("db", "token")).toBe("two");
});

it.each([
  ["../etc", "passwd"],
  ["db", "../../etc/passwd"],
  [".hidden", "x"],
  ["db", "a/b"],
])("refuses the reference %s/%s", async (name, key) => {
  await expect(createSecretStore(dir).get(name, key)).rejects.toThrow(/invalid secret reference/);
});

it("says which secret is missing and what to check, without retrying forever from cache", async () => {
  const store = createSecretStore(dir);
  await expect(store.get("db", "nope")).rejects.toThrow(SecretError);
  await expect(store.get("db", "nope")).rejects.toThrow(
    /secret db key nope is not mounted .* check the policy's secretRef/,
  );
  writeFileSync(join(dir, "db", "nope"), "now here");
  expect(await store.get("db", "nope")).toBe("now here");
});
