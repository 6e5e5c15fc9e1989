// @runnel/controller: the controller process as a library. startController runs it in-process (tests,
// tools); the metadata state machine, applyDelta (which brokers use to follow the metadata stream),
// placement and the store are exported for reuse and tests.
export { startController, type ControllerOptions, type RunningController, defaultTickIntervalMs } from "./controller.js";
export * from "./metadata/index.js";
export { placeReplicas, type PlacementBroker, type PlacementResult } from "./placement/index.js";
export { MetadataStore, StoreCorruption } from "./store/index.js";
export * as groups from "./groups/index.js";
