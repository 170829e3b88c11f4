// Field/column names as context: "customer_ssn", "phoneNumber", "AWS_SECRET_ACCESS_KEY".

/** Lower-case words of an identifier, split at non-alphanumerics and camelCase humps. */
export function keyWords(key: string): string[] {
  return key
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((w) => w.length > 0);
}

function hasWord(key: string | undefined, test: (words: string[]) => boolean): boolean {
  return key !== undefined && test(keyWords(key));
}

const singular = (w: string) => (w.endsWith("s") && w.length > 3 ? w.slice(0, -1) : w);

export function isSsnKey(key: string | undefined): boolean {
  return hasWord(key, (ws) => {
    const w = ws.map(singular);
    return w.includes("ssn") || w.join(" ").includes("social security");
  });
}

export function isPhoneKey(key: string | undefined): boolean {
  return hasWord(key, (ws) =>
    ws
      .map(singular)
      .some((w) => ["phone", "mobile", "tel", "telephone", "fax", "msisdn", "cell"].includes(w)),
  );
}

export function isAwsSecretKey(key: string | undefined): boolean {
  return hasWord(
    key,
    (ws) => ws.join(" ").includes("secret access key") || ws.join(" ") === "aws secret key",
  );
}
