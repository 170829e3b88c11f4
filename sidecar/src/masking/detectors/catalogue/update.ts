// Regenerates the secret catalogue from a gitleaks release:
//
//   node sidecar/src/masking/detectors/catalogue/update.ts v8.30.1            # downloads that tag's rules
//   node sidecar/src/masking/detectors/catalogue/update.ts v8.30.1 FILE.toml  # or uses a local copy
//
// Writes gitleaks.toml (the rules as released, byte for byte), VERSION and rules.generated.ts beside this
// file; the catalogue test fails until rules.generated.ts matches gitleaks.toml and VERSION. Read the diff of
// rules.generated.ts (new, changed and skipped rules) before committing an update.
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { renderCatalogue } from "./compile.ts";

const here = (name: string) => fileURLToPath(new URL(name, import.meta.url));
const [version, file] = process.argv.slice(2);
if (!version || !/^v\d+\.\d+\.\d+$/.test(version)) {
  process.stderr.write("usage: update.ts vX.Y.Z [gitleaks.toml]\n");
  process.exit(2);
}
let toml: string;
if (file) toml = readFileSync(file, "utf8");
else {
  const url = `https://raw.githubusercontent.com/gitleaks/gitleaks/${version}/config/gitleaks.toml`;
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  toml = await res.text();
}
const sha256 = createHash("sha256").update(toml).digest("hex");
const rules = renderCatalogue(toml, version, sha256);
writeFileSync(here("gitleaks.toml"), toml);
writeFileSync(here("VERSION"), `${version}\n`);
writeFileSync(here("rules.generated.ts"), rules);
process.stdout.write(`gitleaks ${version} (sha256 ${sha256.slice(0, 12)}…): rules.generated.ts written\n`);
