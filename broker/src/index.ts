// @runnel/broker: the broker process as a library (tests run it in-process) and its parts.
export { Broker, type BrokerOptions } from "./node.js";
export * from "./log/index.js";
export { MetadataCache } from "./metadata/cache.js";
