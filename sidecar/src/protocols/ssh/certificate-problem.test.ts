import { describe, expect, it } from "vitest";
import { parseCertificate, signUserCertificate } from "./certificate.ts";
import { generateEd25519 } from "./keys.ts";
import { certificateProblem } from "./upstream.ts";

// What Vault signs is held to what the sidecar asked for (upstream.ts vaultCertificate).
const ca = generateEd25519();
const key = generateEd25519();
const sign = (over: Partial<Parameters<typeof signUserCertificate>[0]> = {}) =>
  signUserCertificate({ ca, key, principals: ["ops"], validitySeconds: 120, keyId: "k", ...over });
const check = (c: ReturnType<typeof sign>, extensions: string[] = []) =>
  certificateProblem(parseCertificate(c.blob), key.publicBlob, ["ops"], extensions, 120);

describe("a certificate Vault signed", () => {
  it("is used when it is what was asked", () => {
    expect(check(sign())).toBeUndefined();
    expect(check(sign({ permissions: { pty: true } }), ["permit-pty"])).toBeUndefined();
  });
  it.each([
    ["for another key", () => sign({ key: generateEd25519() }), [], /another key/],
    [
      "for a principal the policy does not name",
      () => sign({ principals: ["ops", "root"] }),
      [],
      /principals .*root/,
    ],
    [
      "with an extension the policy does not allow",
      () => sign({ permissions: { pty: true } }),
      [],
      /permit-pty/,
    ],
    ["for longer than asked", () => sign({ validitySeconds: 3600 }), [], /longer than the 120 s/],
  ] as const)("is refused %s", (_what, make, extensions, why) => {
    expect(check(make(), [...extensions])).toMatch(why);
  });
});
