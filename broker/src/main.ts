#!/usr/bin/env node
// The broker process: flags (with environment fallbacks), logging, signals. SIGTERM and SIGINT run a
// controlled shutdown (leaderships move away first); an impossible internal state exits 1.
import { createLogger, formatHostPort, intFlag, logLevels, choiceFlag, parseFlags, parseHostPort, stringFlag } from "@runnel/common";
import { Broker } from "./node.js";

const flags = parseFlags("runnel-broker", "A Runnel broker: stores partition replicas and serves produce, fetch and replication.", {
  id: { name: "id", env: "RUNNEL_BROKER_ID", description: "broker id (unique in the cluster)", default: 1, parse: intFlag(0, 1_000_000) },
  listen: { name: "listen", env: "RUNNEL_BROKER_LISTEN", description: "gRPC listen address host:port (default 127.0.0.1:7400+id)", default: "", parse: stringFlag() },
  advertisedHost: { name: "advertised-host", env: "RUNNEL_BROKER_ADVERTISED_HOST", description: "host announced to clients and peers (default: the listen host)", default: "", parse: stringFlag() },
  advertisedPort: { name: "advertised-port", env: "RUNNEL_BROKER_ADVERTISED_PORT", description: "port announced to clients and peers (default: the bound gRPC port; 0 means that too)", default: 0, parse: intFlag(0, 65535) },
  http: { name: "http", env: "RUNNEL_BROKER_HTTP", description: "HTTP address for /healthz, /readyz, /metrics (default 127.0.0.1:7480+id)", default: "", parse: stringFlag() },
  dataDir: { name: "data-dir", env: "RUNNEL_BROKER_DATA_DIR", description: "data directory (default data/broker-<id>)", default: "", parse: stringFlag() },
  controller: { name: "controller", env: "RUNNEL_CONTROLLER", description: "controller address host:port", default: "127.0.0.1:7400", parse: stringFlag() },
  rack: { name: "rack", env: "RUNNEL_BROKER_RACK", description: "rack (failure domain) of this broker", default: "", parse: stringFlag() },
  replicaLagTimeMaxMs: { name: "replica-lag-time-max-ms", env: "RUNNEL_REPLICA_LAG_TIME_MAX_MS", description: "a follower that has not caught up for this long leaves the ISR", default: 10_000, parse: intFlag(100, 600_000) },
  logLevel: { name: "log-level", env: "RUNNEL_LOG_LEVEL", description: `log level (${logLevels.join(", ")})`, default: "info", parse: choiceFlag(logLevels) },
});

function address(text: string, what: string) {
  try {
    return parseHostPort(text);
  } catch (err) {
    process.stderr.write(`runnel-broker: bad --${what}: ${(err as Error).message}\n`);
    process.exit(2);
  }
}

const id = flags.id;
const listen = address(flags.listen || `127.0.0.1:${7400 + id}`, "listen");
const http = address(flags.http || `127.0.0.1:${7480 + id}`, "http");
const controller = address(flags.controller, "controller");
const logger = createLogger({ role: "broker", id, level: flags.logLevel });

const broker = new Broker({
  brokerId: id,
  listen,
  ...(flags.advertisedHost ? { advertisedHost: flags.advertisedHost } : {}),
  ...(flags.advertisedPort > 0 ? { advertisedPort: flags.advertisedPort } : {}),
  http,
  dataDir: flags.dataDir || `data/broker-${id}`,
  controller,
  rack: flags.rack,
  replicaLagTimeMaxMs: flags.replicaLagTimeMaxMs,
  logger,
});

let stopping = false;
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "stopping: controlled shutdown");
    broker.stop({ controlled: true }).then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, "error while stopping");
        process.exit(1);
      },
    );
  });
}

broker.start().catch((err: unknown) => {
  logger.fatal({ err: (err as Error).message, listen: formatHostPort(listen) }, "broker failed to start");
  process.exit(1);
});
