// The broker's connection to the controller: registration (a new broker epoch each time), heartbeats,
// the metadata stream (snapshot then deltas, resubscribed after any break), and the calls a broker
// makes on the controller's state (AlterPartition, ControlledShutdown, Read/WriteShareState). Every
// call has a deadline and every retry a bounded backoff.
import * as grpc from "@grpc/grpc-js";
import {
  type AlterPartitionRequest,
  type AlterPartitionResponse,
  ControllerServiceClient,
  type ControlledShutdownResponse,
  ErrorCode,
  type MetadataEvent,
  type ReadShareStateRequest,
  type ReadShareStateResponse,
  type WriteShareStateRequest,
  type WriteShareStateResponse,
} from "@runnel/proto";
import { callUnary, channelOptions, type Logger } from "@runnel/common";

/** Deadline of each unary call to the controller. */
export const controllerCallTimeoutMs = 5_000;
/** Backoff between attempts to reach the controller. */
export const controllerRetryMinMs = 100;
export const controllerRetryMaxMs = 1_000;

export interface ControllerLinkOptions {
  controllerAddress: string;
  brokerId: number;
  host: string;
  port: number;
  rack: string;
  incarnationId: string;
  logger: Logger;
  /** Applies a metadata event; returns false when it cannot (a gap), which resubscribes for a snapshot. */
  onMetadata: (event: MetadataEvent) => boolean;
  /** Called with each new broker epoch after (re-)registration. */
  onRegistered: (brokerEpoch: bigint) => void;
}

export class ControllerLink {
  private readonly client: ControllerServiceClient;
  private epoch = -1n;
  private stopped = false;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private heartbeatIntervalMs = 1_000;
  private stream: grpc.ClientReadableStream<MetadataEvent> | undefined;
  private registering: Promise<void> | undefined;
  private appliedVersion = -1n;

  constructor(private readonly options: ControllerLinkOptions) {
    this.client = new ControllerServiceClient(options.controllerAddress, grpc.credentials.createInsecure(), channelOptions);
  }

  /** The current broker epoch, or -1 before the first registration. */
  get brokerEpoch(): bigint {
    return this.epoch;
  }

  get registered(): boolean {
    return this.epoch >= 0n;
  }

  start(): void {
    void this.register();
  }

  /** Registers (again), retrying until it succeeds or the link stops. Concurrent calls share one attempt. */
  private register(): Promise<void> {
    if (this.registering !== undefined) return this.registering;
    this.registering = (async () => {
      let backoff = controllerRetryMinMs;
      while (!this.stopped) {
        try {
          const res = await callUnary(
            this.client,
            this.client.registerBroker,
            {
              brokerId: this.options.brokerId,
              host: this.options.host,
              port: this.options.port,
              rack: this.options.rack,
              incarnationId: this.options.incarnationId,
            },
            controllerCallTimeoutMs,
          );
          if (res.errorCode !== ErrorCode.ERROR_CODE_NONE) throw new Error(`registration refused: ${ErrorCode[res.errorCode]} ${res.errorMessage}`);
          this.epoch = res.brokerEpoch;
          this.heartbeatIntervalMs = Math.max(50, res.heartbeatIntervalMs || 1_000);
          this.options.logger.info({ brokerEpoch: Number(res.brokerEpoch), controller: this.options.controllerAddress }, "broker registered");
          this.options.onRegistered(res.brokerEpoch);
          this.scheduleHeartbeat();
          this.watch();
          return;
        } catch (err) {
          this.options.logger.warn({ err: (err as Error).message }, "cannot register with the controller; retrying");
          await sleep(backoff);
          backoff = Math.min(controllerRetryMaxMs, backoff * 2);
        }
      }
    })().finally(() => {
      this.registering = undefined;
    });
    return this.registering;
  }

  private scheduleHeartbeat(): void {
    if (this.heartbeatTimer !== undefined) clearTimeout(this.heartbeatTimer);
    if (this.stopped) return;
    this.heartbeatTimer = setTimeout(() => void this.heartbeat(), this.heartbeatIntervalMs);
  }

  private async heartbeat(): Promise<void> {
    this.heartbeatTimer = undefined;
    try {
      const res = await callUnary(
        this.client,
        this.client.brokerHeartbeat,
        { brokerId: this.options.brokerId, brokerEpoch: this.epoch, metadataVersion: this.appliedVersion },
        Math.min(controllerCallTimeoutMs, this.heartbeatIntervalMs * 3),
      );
      if (res.errorCode === ErrorCode.STALE_BROKER_EPOCH || res.errorCode === ErrorCode.BROKER_NOT_AVAILABLE) {
        this.options.logger.warn({ brokerEpoch: Number(this.epoch), reason: res.errorMessage }, "controller fenced this broker epoch; registering again");
        this.closeStream();
        void this.register();
        return;
      }
    } catch (err) {
      this.options.logger.debug({ err: (err as Error).message }, "heartbeat failed");
    }
    this.scheduleHeartbeat();
  }

  private watch(): void {
    this.closeStream();
    if (this.stopped) return;
    const stream = this.client.watchMetadata({ brokerId: this.options.brokerId, brokerEpoch: this.epoch });
    this.stream = stream;
    let retried = false;
    const retry = (why: string) => {
      if (retried || this.stream !== stream) return;
      retried = true;
      this.stream = undefined;
      stream.cancel();
      if (this.stopped) return;
      this.options.logger.debug({ why }, "metadata stream ended; resubscribing");
      setTimeout(() => {
        if (!this.stopped && this.stream === undefined && this.registering === undefined) this.watch();
      }, controllerRetryMinMs);
    };
    stream.on("data", (event: MetadataEvent) => {
      if (this.stream !== stream) return;
      if (this.options.onMetadata(event)) {
        this.appliedVersion = event.metadataVersion;
      } else {
        retry(`gap before metadata version ${event.metadataVersion}`);
      }
    });
    stream.on("error", (err: grpc.ServiceError) => {
      if (err.code === grpc.status.CANCELLED && this.stream !== stream) return;
      retry(err.message);
    });
    stream.on("end", () => retry("stream closed by the controller"));
  }

  private closeStream(): void {
    const s = this.stream;
    this.stream = undefined;
    s?.cancel();
  }

  alterPartition(request: Omit<AlterPartitionRequest, "brokerId" | "brokerEpoch">): Promise<AlterPartitionResponse> {
    return callUnary(this.client, this.client.alterPartition, { ...request, brokerId: this.options.brokerId, brokerEpoch: this.epoch }, controllerCallTimeoutMs);
  }

  /** Reads the share state of a group on a partition this broker leads in `leaderEpoch` (fenced by the controller). */
  readShareState(request: Omit<ReadShareStateRequest, "brokerId" | "brokerEpoch">): Promise<ReadShareStateResponse> {
    return callUnary(this.client, this.client.readShareState, { ...request, brokerId: this.options.brokerId, brokerEpoch: this.epoch }, controllerCallTimeoutMs);
  }

  /** Replaces the share state; ERROR_CODE_NONE means it is on the controller's disk. */
  writeShareState(request: Omit<WriteShareStateRequest, "brokerId" | "brokerEpoch">): Promise<WriteShareStateResponse> {
    return callUnary(this.client, this.client.writeShareState, { ...request, brokerId: this.options.brokerId, brokerEpoch: this.epoch }, controllerCallTimeoutMs);
  }

  controlledShutdown(timeoutMs: number): Promise<ControlledShutdownResponse> {
    return callUnary(this.client, this.client.controlledShutdown, { brokerId: this.options.brokerId, brokerEpoch: this.epoch }, timeoutMs);
  }

  stop(): void {
    this.stopped = true;
    if (this.heartbeatTimer !== undefined) clearTimeout(this.heartbeatTimer);
    this.closeStream();
    this.client.close();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
