// AWS secret access keys: 40 base64 characters, indistinguishable from any other 40-character
// token on their own, so only where a key-like label names them ("aws_secret_access_key = …",
// "SecretAccessKey": "…") or the field/column is called that.

import { pendingToken } from "./chars.ts";
import { isAwsSecretKey } from "./hints.ts";
import type { Detector, Finding } from "./types.ts";

const LABELLED =
  /(?<![A-Za-z0-9])(?:aws_?)?secret_?access_?key["']?[ \t]{0,4}(?::|=>?)[ \t]{0,4}["']?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])/dgi;
const BARE = /^[ \t]*([A-Za-z0-9/+]{40})[ \t]*$/d;

export const awsSecretKey: Detector = {
  id: "awsSecretKey",
  maxLength: 100,
  // What LABELLED and isAwsSecretKey need: "secret_access", "SecretAccess", "aws_secret", "awsSecret"…
  keywords: [
    "secretaccess",
    "secret_access",
    "secret-access",
    "secret access",
    "awssecret",
    "aws_secret",
    "aws-secret",
  ],
  keywordsInKey: true,
  lookBehind: 40,
  pendingFrom: pendingToken,
  find(text, hint) {
    const out: Finding[] = [];
    for (const m of text.matchAll(LABELLED)) {
      const span = m.indices?.[1];
      if (span) out.push({ start: span[0], end: span[1], detector: "awsSecretKey" });
    }
    if (out.length === 0 && isAwsSecretKey(hint?.key)) {
      const span = BARE.exec(text)?.indices?.[1];
      if (span) out.push({ start: span[0], end: span[1], detector: "awsSecretKey" });
    }
    return out;
  },
};
