#!/usr/bin/env node
// The runnel-controller process: flags (with environment fallbacks), startController, one
// "controller listening" log line, graceful stop on SIGTERM/SIGINT, exit 1 on a broken invariant.
import { choiceFlag, createLogger, intFlag, InvariantError, logLevels, parseFlags, stringFlag } from "@runnel/common";
import { startController } from "./controller.js";

const flags = parseFlags("runnel-controller", "Runnel controller: cluster metadata, broker liveness, placement, leader election.", {
  listen: { name: "listen", env: "RUNNEL_CONTROLLER_LISTEN", description: "gRPC address host:port", default: "127.0.0.1:7400", parse: stringFlag() },
  http: { name: "http", env: "RUNNEL_CONTROLLER_HTTP", description: "HTTP address for /healthz, /readyz, /metrics", default: "127.0.0.1:7480", parse: stringFlag() },
  dataDir: { name: "data-dir", env: "RUNNEL_CONTROLLER_DATA_DIR", description: "LMDB directory for the metadata", default: "data/controller", parse: stringFlag() },
  sessionTimeoutMs: {
    name: "session-timeout-ms",
    env: "RUNNEL_SESSION_TIMEOUT_MS",
    description: "a broker without a heartbeat for this long is fenced",
    default: 6000,
    parse: intFlag(100, 3_600_000),
  },
  heartbeatIntervalMs: {
    name: "heartbeat-interval-ms",
    env: "RUNNEL_HEARTBEAT_INTERVAL_MS",
    description: "heartbeat interval brokers are told to use",
    default: 1000,
    parse: intFlag(10, 600_000),
  },
  autoLeaderRebalance: {
    name: "auto-leader-rebalance",
    env: "RUNNEL_AUTO_LEADER_REBALANCE",
    description: "return leadership to preferred replicas (true|false)",
    default: "true",
    parse: choiceFlag(["true", "false"] as const),
  },
  leaderImbalanceCheckMs: {
    name: "leader-imbalance-check-ms",
    env: "RUNNEL_LEADER_IMBALANCE_CHECK_MS",
    description: "how often preferred leaders are checked",
    default: 1000,
    parse: intFlag(10, 3_600_000),
  },
  groupSessionTimeoutMs: {
    name: "group-session-timeout-ms",
    env: "RUNNEL_GROUP_SESSION_TIMEOUT_MS",
    description: "a consumer-group member without a heartbeat for this long is removed",
    default: 45000,
    parse: intFlag(100, 3_600_000),
  },
  groupHeartbeatIntervalMs: {
    name: "group-heartbeat-interval-ms",
    env: "RUNNEL_GROUP_HEARTBEAT_INTERVAL_MS",
    description: "heartbeat interval consumer-group members are told to use",
    default: 3000,
    parse: intFlag(10, 600_000),
  },
  groupOffsetsRetentionMs: {
    name: "group-offsets-retention-ms",
    env: "RUNNEL_GROUP_OFFSETS_RETENTION_MS",
    description: "a consumer group with no members for this long is deleted with its committed offsets (Kafka's offsets.retention.minutes)",
    default: 7 * 24 * 3600 * 1000,
    parse: intFlag(60_000, 365 * 24 * 3600 * 1000),
  },
  logLevel: { name: "log-level", env: "RUNNEL_LOG_LEVEL", description: "log level", default: "info", parse: choiceFlag(logLevels) },
});

const logger = createLogger({ role: "controller", id: "controller", level: flags.logLevel });

function fatal(err: unknown): never {
  logger.fatal({ err }, err instanceof InvariantError ? "controller invariant broken" : "controller failed");
  // pino writes synchronously to stdout by default, so the line is out before exiting.
  process.exit(1);
}

process.on("uncaughtException", fatal);
process.on("unhandledRejection", fatal);

if (flags.heartbeatIntervalMs >= flags.sessionTimeoutMs) {
  logger.fatal({ heartbeatIntervalMs: flags.heartbeatIntervalMs, sessionTimeoutMs: flags.sessionTimeoutMs }, "heartbeat interval must be below the session timeout");
  process.exit(2);
}

if (flags.groupHeartbeatIntervalMs >= flags.groupSessionTimeoutMs) {
  logger.fatal({ groupHeartbeatIntervalMs: flags.groupHeartbeatIntervalMs, groupSessionTimeoutMs: flags.groupSessionTimeoutMs }, "group heartbeat interval must be below the group session timeout");
  process.exit(2);
}

try {
  const controller = await startController({
    listen: flags.listen,
    http: flags.http,
    dataDir: flags.dataDir,
    sessionTimeoutMs: flags.sessionTimeoutMs,
    heartbeatIntervalMs: flags.heartbeatIntervalMs,
    autoLeaderRebalance: flags.autoLeaderRebalance === "true",
    leaderImbalanceCheckMs: flags.leaderImbalanceCheckMs,
    groupSessionTimeoutMs: flags.groupSessionTimeoutMs,
    groupHeartbeatIntervalMs: flags.groupHeartbeatIntervalMs,
    groupOffsetsRetentionMs: flags.groupOffsetsRetentionMs,
    logger,
    onFatal: fatal,
  });
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) return;
    signalled = true;
    logger.info({ signal }, "stopping");
    controller.stop().then(
      () => process.exit(0),
      (err: unknown) => fatal(err),
    );
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
} catch (err) {
  fatal(err);
}
