// Share-group counters (records acquired, accepted, released, rejected, dead-lettered, lock expiries)
// and the number of share partitions loaded, registered on the broker's registry.
import { Counter, Gauge, type Registry } from "@runnel/common";

export class ShareMetrics {
  private readonly acquired: Counter;
  private readonly accepted: Counter;
  private readonly released: Counter;
  private readonly rejected: Counter;
  private readonly deadLettered: Counter;
  private readonly lockExpiries: Counter;
  private loadedSource: () => number = () => 0;

  constructor(registry: Registry) {
    const registers = [registry];
    const counter = (name: string, help: string) => new Counter({ name, help, registers });
    this.acquired = counter("runnel_share_records_acquired_total", "Records handed to share-group members (each delivery counts).");
    this.accepted = counter("runnel_share_records_accepted_total", "Records share-group members accepted (settled).");
    this.released = counter("runnel_share_records_released_total", "Records share-group members released for another delivery.");
    this.rejected = counter("runnel_share_records_rejected_total", "Records share-group members rejected (sent to the dead-letter topic).");
    this.deadLettered = counter("runnel_share_records_dead_lettered_total", "Records produced to a dead-letter topic by this broker.");
    this.lockExpiries = counter("runnel_share_lock_expiries_total", "Acquired records whose lock expired before an acknowledgement.");
    const loaded = () => this.loadedSource();
    new Gauge({
      name: "runnel_share_partitions_loaded",
      help: "Share partitions (share group x partition) whose state this broker holds in memory as leader.",
      registers,
      collect() {
        this.set(loaded());
      },
    });
  }

  setLoadedSource(source: () => number): void {
    this.loadedSource = source;
  }

  recordsAcquired(n: number): void {
    if (n > 0) this.acquired.inc(n);
  }

  recordsAcknowledged(type: "accept" | "release" | "reject" | "renew", n: number): void {
    if (n <= 0) return;
    if (type === "accept") this.accepted.inc(n);
    else if (type === "release") this.released.inc(n);
    else if (type === "reject") this.rejected.inc(n);
  }

  recordsDeadLettered(n: number): void {
    if (n > 0) this.deadLettered.inc(n);
  }

  locksExpired(n: number): void {
    if (n > 0) this.lockExpiries.inc(n);
  }
}
