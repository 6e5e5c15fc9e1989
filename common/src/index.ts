// @runnel/common: what every Runnel process shares and nothing protocol-specific: invariants, logging,
// gRPC limits and status helpers, process flags with environment fallbacks, the HTTP health endpoint,
// the per-process Prometheus registry and RPC metrics.
export * from "./invariant.js";
export * from "./logger.js";
export * from "./grpc.js";
export * from "./flags.js";
export * from "./http.js";
export * from "./address.js";
export * from "./standard-services.js";
export * from "./metrics.js";
