// A broker process's parts wired together: the log store, the metadata cache fed by the controller
// link, the replica manager, the share-group manager, the gRPC services, the metrics and the HTTP endpoints; and the order they start and
// stop in (controlled shutdown first, so a planned stop costs clients no failed requests).
import { randomUUID } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Server as HttpServer } from "node:http";
import * as grpc from "@grpc/grpc-js";
import { ErrorCode, type MetadataEvent } from "@runnel/proto";
import { addStandardServices, bindServer, type HealthImplementation, type HostPort, instrumentedServerOptions, type Logger, serverOptions, shutdownServer, startHttpServer } from "@runnel/common";
import { ControllerLink } from "./controller-link/link.js";
import { LogStore } from "./log/index.js";
import { MetadataCache } from "./metadata/cache.js";
import { BrokerMetrics, outOfSyncPartitions } from "./metrics/broker-metrics.js";
import { ReplicaManager } from "./partition/replica-manager.js";
import { BrokerServiceHandlers, brokerServiceDefinition } from "./server/broker-service.js";
import { ReplicationServiceHandlers, replicationServiceDefinition } from "./server/replication-service.js";
import { ClientDeadLetterSink, LocalDeadLetterSink } from "./share/dead-letters.js";
import { ShareManager } from "./share/manager.js";
import { ControllerShareStateStore, InMemoryShareStateStore } from "./share/store.js";

/** Longest a controlled shutdown waits for the controller to move leaderships away. */
export const controlledShutdownTimeoutMs = 30_000;
/** Grace for in-flight requests when the gRPC server stops. */
export const serverShutdownGraceMs = 5_000;
/** Partitions named in a /readyz answer (the count is always given). */
export const maxNotReadyPartitionsListed = 5;

export interface BrokerOptions {
  brokerId: number;
  listen: HostPort;
  /** Host announced to clients and peers; defaults to the listen host. */
  advertisedHost?: string;
  /** Port announced to clients and peers (e.g. a proxy in front of this broker); defaults to the bound port. */
  advertisedPort?: number;
  http?: HostPort;
  dataDir: string;
  /** Omitted: standalone (metadata applied by the caller; tests only). */
  controller?: HostPort;
  rack?: string;
  replicaLagTimeMaxMs: number;
  retentionCheckIntervalMs?: number;
  logger: Logger;
  /** Called on an impossible internal state; default: log fatal and exit(1). */
  onFatal?: (err: unknown) => void;
}

export class Broker {
  readonly metadata = new MetadataCache();
  readonly store: LogStore;
  readonly replicas: ReplicaManager;
  private link: ControllerLink | undefined;
  readonly metrics: BrokerMetrics;
  /** Share groups on the partitions this broker leads. */
  readonly share: ShareManager;
  private readonly server: grpc.Server;
  private http: HttpServer | undefined;
  private health: HealthImplementation | undefined;
  grpcPort = 0;
  httpPort = 0;
  private stopping: Promise<void> | undefined;

  constructor(readonly options: BrokerOptions) {
    mkdirSync(options.dataDir, { recursive: true });
    this.store = LogStore.open({ dir: join(options.dataDir, "log") });
    this.replicas = new ReplicaManager({
      brokerId: options.brokerId,
      store: this.store,
      metadata: this.metadata,
      logger: options.logger,
      replicaLagTimeMaxMs: options.replicaLagTimeMaxMs,
      ...(options.retentionCheckIntervalMs === undefined ? {} : { retentionCheckIntervalMs: options.retentionCheckIntervalMs }),
      brokerEpoch: () => this.link?.brokerEpoch ?? 0n,
      alterPartition: async (p, proposal) => {
        if (this.link === undefined) return undefined;
        const res = await this.link.alterPartition({ topic: p.topic, partition: p.index, leaderEpoch: proposal.leaderEpoch, partitionEpoch: proposal.partitionEpoch, newIsr: proposal.newIsr });
        if (res.errorCode !== ErrorCode.ERROR_CODE_NONE) {
          options.logger.info({ partition: p.name, error: ErrorCode[res.errorCode], message: res.errorMessage }, "controller refused the ISR change");
          return undefined;
        }
        return res.partition;
      },
      fatal: (err) => this.fatal(err),
      followerAppendedBytes: (leaderId, bytes) => this.metrics.followerAppendedBytes(leaderId, bytes),
    });
    this.metrics = new BrokerMetrics({ brokerId: options.brokerId, replicas: this.replicas, metadata: this.metadata });
    // Standalone-metadata mode (tests) has no controller: share state lives in memory and dead letters
    // are appended locally; in a cluster both go through the controller and the cluster.
    const standalone = options.controller === undefined;
    this.share = new ShareManager({
      partition: (topic, index) => this.replicas.partition(topic, index),
      store: standalone ? new InMemoryShareStateStore() : new ControllerShareStateStore(() => this.link),
      deadLetters: standalone
        ? new LocalDeadLetterSink((topic, index) => this.replicas.partition(topic, index))
        : new ClientDeadLetterSink({
            bootstrap: () => `${options.advertisedHost ?? options.listen.host}:${options.advertisedPort ?? this.grpcPort}`,
            brokerId: options.brokerId,
            liveBrokers: () => this.metadata.brokers().filter((b) => b.alive).length,
            logger: options.logger,
          }),
      logger: options.logger,
      metrics: this.metrics.share,
      fatal: (err) => this.fatal(err),
    });
    this.server = new grpc.Server(instrumentedServerOptions(serverOptions, this.metrics.process));
  }

  get notReadyReason(): string | undefined {
    if (this.stopping !== undefined) return "shutting down";
    if (this.options.controller !== undefined && !(this.link?.registered ?? false)) return "not registered with the controller";
    if (!this.metadata.loaded) return "no metadata from the controller yet";
    // Caught up: in the ISR of every partition it replicates that has a leader.
    const behind = outOfSyncPartitions(this.options.brokerId, this.replicas.partitions());
    if (behind.length > 0) {
      const names = behind.slice(0, maxNotReadyPartitionsListed).map((p) => p.name);
      return `not in the ISR of ${behind.length} partition(s) yet: ${names.join(", ")}${behind.length > names.length ? ", ..." : ""}`;
    }
    return undefined;
  }

  async start(): Promise<void> {
    const o = this.options;
    const handlers = new BrokerServiceHandlers({
      brokerId: o.brokerId,
      metadata: this.metadata,
      replicas: this.replicas,
      controller: o.controller,
      logger: o.logger,
      metrics: this.metrics,
      share: this.share,
    });
    const replication = new ReplicationServiceHandlers({ brokerId: o.brokerId, metadata: this.metadata, replicas: this.replicas, logger: o.logger, metrics: this.metrics });
    this.server.addService(brokerServiceDefinition, handlers.implementation());
    this.server.addService(replicationServiceDefinition, replication.implementation());
    this.health = addStandardServices(this.server, ["runnel.v1.BrokerService", "runnel.v1.ReplicationService"]);
    this.grpcPort = await bindServer(this.server, `${o.listen.host}:${o.listen.port}`);
    if (o.http !== undefined) {
      this.http = await startHttpServer(o.http.host, o.http.port, { notReadyReason: () => this.notReadyReason, metrics: () => this.metrics.text() });
      const address = this.http.address();
      this.httpPort = typeof address === "object" && address !== null ? address.port : 0;
    }
    o.logger.info({ grpcPort: this.grpcPort, httpPort: this.httpPort, brokerId: o.brokerId }, "broker listening");
    if (o.controller !== undefined) {
      this.link = new ControllerLink({
        controllerAddress: `${o.controller.host}:${o.controller.port}`,
        brokerId: o.brokerId,
        host: o.advertisedHost ?? o.listen.host,
        port: o.advertisedPort ?? this.grpcPort,
        rack: o.rack ?? "",
        incarnationId: incarnationId(o.dataDir),
        logger: o.logger,
        onMetadata: (event) => this.applyMetadata(event),
        onRegistered: () => undefined,
      });
      this.link.start();
    }
  }

  /** Applies a metadata event (from the controller stream, or a test in standalone mode). False on a gap. */
  applyMetadata(event: MetadataEvent): boolean {
    const change = this.metadata.apply(event);
    if (change === undefined) return false;
    void this.replicas.onMetadataChange(change);
    return true;
  }

  /** Asks the controller to move leaderships away, then waits until this broker leads nothing. */
  async controlledShutdown(): Promise<void> {
    const link = this.link;
    if (link === undefined || !link.registered) return;
    const deadline = Date.now() + controlledShutdownTimeoutMs;
    // Leaderships no other in-sync replica can take stay here until the process exits.
    const remaining = new Set<string>();
    try {
      const res = await link.controlledShutdown(controlledShutdownTimeoutMs);
      if (res.errorCode !== ErrorCode.ERROR_CODE_NONE) {
        this.options.logger.warn({ error: ErrorCode[res.errorCode], message: res.errorMessage }, "controlled shutdown refused");
        return;
      }
      for (const t of res.remainingLeaderships) for (const p of t.partitions) remaining.add(`${t.topic}-${p}`);
    } catch (err) {
      this.options.logger.warn({ err: (err as Error).message }, "controlled shutdown failed; stopping anyway");
      return;
    }
    const movable = () => this.replicas.partitions().filter((p) => p.role === "leader" && !remaining.has(p.name)).length;
    while (movable() > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
      await this.replicas.settled();
    }
    this.options.logger.info({ stillLeading: this.replicas.leaderCount(), couldNotMove: [...remaining] }, "controlled shutdown complete");
  }

  stop(options: { controlled?: boolean } = {}): Promise<void> {
    this.stopping ??= (async () => {
      for (const service of ["", "runnel.v1.BrokerService", "runnel.v1.ReplicationService"]) this.health?.setStatus(service, "NOT_SERVING");
      if (options.controlled === true) await this.controlledShutdown();
      this.link?.stop();
      await shutdownServer(this.server, serverShutdownGraceMs);
      await new Promise<void>((resolve) => (this.http === undefined ? resolve() : this.http.close(() => resolve())));
      await this.share.stop();
      await this.replicas.stop();
      await this.store.close();
    })();
    return this.stopping;
  }

  private fatal(err: unknown): void {
    if (this.options.onFatal !== undefined) {
      this.options.onFatal(err);
      return;
    }
    this.options.logger.fatal({ err }, "impossible internal state; stopping");
    process.exit(1);
  }
}

/** A random id kept in the data directory, so two processes cannot claim one broker id by mistake. */
function incarnationId(dataDir: string): string {
  const file = join(dataDir, "incarnation-id");
  try {
    return readFileSync(file, "utf8").trim();
  } catch {
    const id = randomUUID();
    writeFileSync(file, `${id}\n`);
    return id;
  }
}
