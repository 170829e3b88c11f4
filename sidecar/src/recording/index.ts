// Session recording and its reading side: SSH sessions as asciicast v2, SQL/HTTP sessions as JSON
// lines, to the stdout audit stream or to files (format.ts, recorder.ts); reading them back from
// a directory or a sidecar log for replay (read.ts).
export * from "./format.ts";
export * from "./read.ts";
export * from "./recorder.ts";
export * from "./settings.ts";
