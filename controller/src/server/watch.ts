// WatchMetadata subscribers: each gets a snapshot, then every event in version order. A subscriber
// whose stream is not drained fast enough buffers up to maxSubscriberBacklogEvents events; past that
// it is disconnected (RESOURCE_EXHAUSTED) and resyncs by reconnecting, which starts with a snapshot.
import * as grpc from "@grpc/grpc-js";
import { invariant } from "@runnel/common";
import type { MetadataEvent, WatchMetadataRequest } from "@runnel/proto";

/** Events one subscriber may have waiting beyond the stream's own buffer. */
export const maxSubscriberBacklogEvents = 1000;
/** Concurrent WatchMetadata streams (brokers and observers together). */
export const maxSubscribers = 1024;

export class MetadataSubscriber {
  private backlog: MetadataEvent[] = [];
  private blocked = false;
  private closed = false;
  private lastVersion = -1n;

  constructor(
    private readonly call: grpc.ServerWritableStream<WatchMetadataRequest, MetadataEvent>,
    private readonly onClose: (subscriber: MetadataSubscriber) => void,
  ) {
    call.on("cancelled", () => this.close());
    call.on("close", () => this.close());
    call.on("error", () => this.close());
  }

  get isClosed(): boolean {
    return this.closed;
  }

  offer(event: MetadataEvent): void {
    if (this.closed) return;
    invariant(
      event.event?.$case === "snapshot" || event.metadataVersion === this.lastVersion + 1n,
      () => `metadata delta ${event.metadataVersion} offered after version ${this.lastVersion}: the stream would have a gap`,
    );
    this.lastVersion = event.metadataVersion;
    if (this.blocked) {
      this.backlog.push(event);
      if (this.backlog.length > maxSubscriberBacklogEvents) {
        this.fail(grpc.status.RESOURCE_EXHAUSTED, `metadata subscriber fell more than ${maxSubscriberBacklogEvents} events behind; reconnect to resync from a snapshot`);
      }
      return;
    }
    this.write(event);
  }

  private write(event: MetadataEvent): void {
    if (!this.call.write(event)) {
      this.blocked = true;
      this.call.once("drain", () => this.flush());
    }
  }

  private flush(): void {
    this.blocked = false;
    while (!this.closed && !this.blocked && this.backlog.length > 0) this.write(this.backlog.shift()!);
  }

  /** Ends the stream with a status (the watcher reconnects and resyncs). */
  fail(code: grpc.status, details: string): void {
    if (this.closed) return;
    this.backlog = [];
    this.close();
    // grpc-js turns an 'error' event on a server stream into the call's final status.
    this.call.emit("error", { code, details, metadata: new grpc.Metadata() });
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.onClose(this);
  }
}
