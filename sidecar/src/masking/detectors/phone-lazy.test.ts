// The phone library (libphonenumber-js with full metadata) loads only when a phone detector meets
// phone-shaped text: policies without phones never pay for it. Its own test file, so no other
// test in this module graph has loaded the library first.
import { expect, it } from "vitest";
import { createMasker } from "../masker.ts";
import { phoneLibraryLoaded } from "./phone.ts";

it("loads libphonenumber only when a policy's phone detector needs it", () => {
  const hashKey = Buffer.alloc(32);
  const text = "call 213-373-4253 or +44 20 7946 0958, card 4111 1111 1111 1111";
  const other = createMasker({
    rules: [{ name: "s", detectors: ["secrets", "email", "creditCard"], strategy: "redact" }],
    hashKey,
  });
  expect(other.maskText(text).findings.map((f) => f.detector)).toEqual(["creditCard"]);
  expect(other.maskJson({ note: text }).findings).toHaveLength(1);
  expect(phoneLibraryLoaded()).toBe(false);

  const phones = createMasker({ rules: [{ name: "p", detectors: ["phone"], strategy: "redact" }], hashKey });
  expect(phoneLibraryLoaded()).toBe(false); // creating the masker is not enough
  expect(phones.maskText("no digits here").findings).toEqual([]);
  expect(phoneLibraryLoaded()).toBe(false);
  expect(phones.maskText(text).findings.map((f) => f.detector)).toEqual(["phone", "phone"]);
  expect(phoneLibraryLoaded()).toBe(true);
});
