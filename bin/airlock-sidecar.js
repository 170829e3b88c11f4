#!/usr/bin/env node
// The image's `airlock-sidecar` entry point: `airlock sidecar ...`.
process.argv.splice(2, 0, "sidecar");
await import("./airlock.js");
