// Lossless JSON numbers. JSON.parse rounds a 19-digit card number stored as a JSON number to
// the nearest double: masking the rounded number would miss the real digits (the Luhn check
// fails), and re-serialising it would still leak most of them. Numbers whose source text a JS
// number does not reproduce are kept as JSON.rawJSON values instead: masking sees the original
// digits and JSON.stringify writes them back unchanged.

interface RawJson {
  readonly rawJSON: string;
}

// JSON.rawJSON / isRawJSON and the reviver's source context are in Node 24 but not yet in the
// TypeScript lib this project targets.
const J = JSON as unknown as {
  rawJSON(text: string): RawJson;
  isRawJSON(value: unknown): boolean;
  parse(
    text: string,
    reviver: (key: string, value: unknown, context?: { source?: string }) => unknown,
  ): unknown;
};

export function parseJsonLossless(text: string): unknown {
  return J.parse(text, (_key, value, context) =>
    typeof value === "number" && context?.source !== undefined && String(value) !== context.source
      ? J.rawJSON(context.source)
      : value,
  );
}

export function isRawJson(value: unknown): value is RawJson {
  return J.isRawJSON(value);
}
