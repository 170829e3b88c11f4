// Keeps V8 from recompiling libpg-query's WebAssembly with its optimizing compiler (TurboFan).
// Each grammar line is one big Emscripten module whose generated parser is a single function of
// 70-260 KB of code; once a few thousand statements have been parsed (one catalog load does that)
// V8 tiers it up in the background, and that one compilation takes ~550 MB of native memory per
// module for a second or two (VmHWM 587 MB parsing with libpg-query-15, 633 MB with the newest
// line; 64 MB with the baseline compiler only; measured on Node 24.21). The sidecar loads two
// lines (the server's grammar and the newest, for fingerprints), so its first guarded PostgreSQL
// session peaked at ~1 GB RSS and was OOM-killed under a 512Mi limit. Baseline (Liftoff) code
// parses a typical statement ~30% slower (48 → 65 µs, JSON included), well under a millisecond;
// `npm run bench -- --only postgres` showed no higher proxy CPU per transaction (pgbench).
//
// The flags must be set before the first module is compiled, which libpg-query starts when it is
// imported: every import of libpg-query goes through ./libpg-query.ts, which imports this first.
// Both are needed: `wasm-dynamic-tiering` alone still tiers up every function eagerly.
import { setFlagsFromString } from "node:v8";

setFlagsFromString("--no-wasm-tier-up");
setFlagsFromString("--no-wasm-dynamic-tiering");
