// The controller process wiring, callable in-process: open the store, load the state, serve gRPC and
// HTTP (health, readiness, Prometheus metrics), tick the state machine with the wall clock, and stop cleanly.
import { randomUUID } from "node:crypto";
import type { Server as HttpServer } from "node:http";
import * as grpc from "@grpc/grpc-js";
import {
  addStandardServices,
  bindServer,
  createLogger,
  instrumentedServerOptions,
  InvariantError,
  type Logger,
  parseHostPort,
  serverOptions,
  shutdownServer,
  startHttpServer,
} from "@runnel/common";
import { ControllerServiceService } from "@runnel/proto";
import { ControllerMetrics } from "./metrics/controller-metrics.js";
import { HighWatermarkReader } from "./metrics/high-watermarks.js";
import { ControllerCore, defaultGroupHeartbeatIntervalMs, defaultGroupSessionTimeoutMs } from "./server/index.js";
import { MetadataStore } from "./store/index.js";

/** How often the state machine sees the clock (session expiry, preferred-leader balancing). */
export const defaultTickIntervalMs = 100;
/** How long stop() lets in-flight calls finish before closing connections. */
export const shutdownGraceMs = 2_000;

export interface ControllerOptions {
  /** gRPC address, host:port (port 0 binds a free one). */
  listen: string;
  /** HTTP address for /healthz, /readyz, /metrics, host:port (port 0 binds a free one). */
  http: string;
  dataDir: string;
  sessionTimeoutMs: number;
  heartbeatIntervalMs: number;
  autoLeaderRebalance: boolean;
  leaderImbalanceCheckMs: number;
  /** A group member without a heartbeat for this long is removed and its partitions move. */
  groupSessionTimeoutMs?: number;
  /** The heartbeat interval group members are told to use. */
  groupHeartbeatIntervalMs?: number;
  /** A group with no members for this long is deleted with its committed offsets (default 7 days). */
  groupOffsetsRetentionMs?: number;
  logger?: Logger;
  logLevel?: string;
  tickIntervalMs?: number;
  /** Called on an impossible internal state. Default: log fatal and exit 1. */
  onFatal?: (err: unknown) => void;
}

export interface RunningController {
  grpcPort: number;
  httpPort: number;
  /** Stops serving, ends metadata streams, closes the store. Idempotent. */
  stop(): Promise<void>;
}

export async function startController(options: ControllerOptions): Promise<RunningController> {
  const logger = options.logger ?? createLogger({ role: "controller", id: "controller", level: options.logLevel ?? "info" });
  const listen = parseHostPort(options.listen);
  const httpAddress = parseHostPort(options.http);
  let ready = false;
  let stopping: Promise<void> | undefined;
  const onFatal =
    options.onFatal ??
    ((err: unknown) => {
      logger.fatal({ err }, err instanceof InvariantError ? "controller invariant broken" : "controller failed");
      process.exit(1);
    });

  const store = MetadataStore.open(options.dataDir);
  let core: ControllerCore;
  let grpcServer: grpc.Server | undefined;
  let httpServer: HttpServer | undefined;
  let timer: NodeJS.Timeout | undefined;
  try {
    const state = await store.load(randomUUID, Date.now());
    const groups = store.loadGroups(Date.now());
    core = new ControllerCore({
      store,
      state,
      groups,
      groupConfig: {
        sessionTimeoutMs: options.groupSessionTimeoutMs ?? defaultGroupSessionTimeoutMs,
        heartbeatIntervalMs: options.groupHeartbeatIntervalMs ?? defaultGroupHeartbeatIntervalMs,
        ...(options.groupOffsetsRetentionMs === undefined ? {} : { offsetsRetentionMs: options.groupOffsetsRetentionMs }),
      },
      config: {
        sessionTimeoutMs: options.sessionTimeoutMs,
        autoLeaderRebalance: options.autoLeaderRebalance,
        leaderImbalanceCheckMs: options.leaderImbalanceCheckMs,
      },
      heartbeatIntervalMs: options.heartbeatIntervalMs,
      logger,
      onFatal,
    });
    logger.info(
      { clusterId: state.clusterId, metadataVersion: state.metadataVersion.toString(), brokers: state.brokers.size, topics: state.topics.size, groups: groups.groups.size, shareStates: core.shareStates.stateCount, dataDir: options.dataDir },
      "controller state loaded",
    );
    const highWatermarks = new HighWatermarkReader();
    const metrics = new ControllerMetrics(core, highWatermarks);

    httpServer = await startHttpServer(httpAddress.host, httpAddress.port, {
      notReadyReason: () => (ready ? undefined : stopping !== undefined ? "shutting down" : "starting"),
      metrics: () => metrics.text(),
    });
    grpcServer = new grpc.Server(instrumentedServerOptions(serverOptions, metrics.process));
    grpcServer.addService(ControllerServiceService, core.service());
    const health = addStandardServices(grpcServer, ["runnel.v1.ControllerService"]);
    const grpcPort = await bindServer(grpcServer, options.listen);
    core.controllerEndpoint = { brokerId: -1, host: listen.host, port: grpcPort, rack: "" };
    core.startGrace(Date.now());
    timer = setInterval(() => core.requestTick(), options.tickIntervalMs ?? defaultTickIntervalMs);
    timer.unref();
    const address = httpServer.address();
    const httpPort = typeof address === "object" && address !== null ? address.port : httpAddress.port;
    ready = true;
    logger.info({ grpcPort, httpPort, clusterId: state.clusterId }, "controller listening");

    const server = grpcServer;
    const http = httpServer;
    const stop = (): Promise<void> => {
      stopping ??= (async () => {
        ready = false;
        for (const service of ["", "runnel.v1.ControllerService"]) health.setStatus(service, "NOT_SERVING");
        clearInterval(timer);
        await core.stop();
        highWatermarks.close();
        await shutdownServer(server, shutdownGraceMs);
        const httpClosed = new Promise<void>((resolve) => http.close(() => resolve()));
        http.closeAllConnections();
        await httpClosed;
        await store.close();
        logger.info("controller stopped");
      })();
      return stopping;
    };
    return { grpcPort, httpPort, stop };
  } catch (err) {
    clearInterval(timer);
    grpcServer?.forceShutdown();
    httpServer?.close();
    await store.close().catch(() => undefined);
    throw err;
  }
}
