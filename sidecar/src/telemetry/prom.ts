// prom-client's classes, taken from their own modules: its index also loads the Pushgateway
// (node:http, node:https, node:zlib) and the cluster aggregator, which a sidecar never uses but
// every pod would carry. The types are the package's; prom.test.ts proves these are its classes.
import { createRequire } from "node:module";
import type * as Prom from "prom-client";

const require = createRequire(import.meta.url);

export const Registry = require("prom-client/lib/registry") as typeof Prom.Registry;
export const Counter = require("prom-client/lib/counter") as typeof Prom.Counter;
export const Gauge = require("prom-client/lib/gauge") as typeof Prom.Gauge;
export const Histogram = require("prom-client/lib/histogram") as typeof Prom.Histogram;
export const collectDefaultMetrics =
  require("prom-client/lib/defaultMetrics") as typeof Prom.collectDefaultMetrics;
export type Registry = Prom.Registry;
export type Counter<T extends string = string> = Prom.Counter<T>;
export type Gauge<T extends string = string> = Prom.Gauge<T>;
export type Histogram<T extends string = string> = Prom.Histogram<T>;
