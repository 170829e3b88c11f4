// Writes crds/*.yaml from api/src. Usage: npm run generate [-- --check]
// --check exits 1 when the checked-in files differ (what CI and the drift test rely on).
import { readFileSync, writeFileSync } from "node:fs";
import { crds } from "../src/crds.ts";
import { renderCrd } from "../src/render.ts";

const check = process.argv.includes("--check");
if (process.argv.includes("--help")) {
  process.stdout.write(
    "Usage: npm run generate [-- --check]\nRegenerates crds/*.yaml from api/src; --check only reports drift.\n",
  );
  process.exit(0);
}
let drift = 0;
for (const crd of crds) {
  const { file, text } = renderCrd(crd);
  const path = new URL(`../../crds/${file}`, import.meta.url);
  let current = "";
  try {
    current = readFileSync(path, "utf8");
  } catch {}
  if (current === text) continue;
  if (check) {
    process.stderr.write(`crds/${file} is out of date: run \`npm run generate\`\n`);
    drift++;
  } else {
    writeFileSync(path, text);
    process.stdout.write(`wrote crds/${file}\n`);
  }
}
process.exit(drift ? 1 : 0);
