// ESM load hook: TypeScript modules as plain JavaScript (Node's own type stripping), so that the
// hooks chained before it (Jazzer.js's instrumentation) get format "module". See preload.mjs.
import { stripTypeScriptTypes } from "node:module";

export async function load(url, context, nextLoad) {
  const result = await nextLoad(url, context);
  if (result.format !== "module-typescript" || result.source == null) return result;
  const source =
    typeof result.source === "string" ? result.source : Buffer.from(result.source).toString("utf8");
  return {
    ...result,
    format: "module",
    source: stripTypeScriptTypes(source, { mode: "strip", sourceUrl: url }),
  };
}
