// A TCP proxy that can black-hole traffic per connection, the unit the network-fault layer is built
// from. Each accepted connection is tagged with the process that opened it (see attribution.ts), so a
// rule can cut "broker 2 -> broker 1" while "client -> broker 1" keeps flowing through the same port.
//
// Cutting black-holes open connections rather than resetting them: the proxy stops reading from both
// sockets, so bytes sit in kernel buffers and the peers see silence, as across a real partition (a
// reset would tell them at once). Healing resumes reading, and TCP delivers what was held, in order,
// as retransmission would. A new connection across a cut is closed at once (an unreachable host).
import { createConnection, createServer, type Server, type Socket } from "node:net";

/** Who opened a connection: a broker id, the controller, or anything else ("external": clients, the harness). */
export type Endpoint = number | "controller" | "external";

/** Longest an upstream connect may take before the accepted connection is dropped. */
export const upstreamConnectTimeoutMs = 5_000;
/** Connections one proxy holds at most; more are refused (a leak in a test would otherwise grow without bound). */
export const maxConnectionsPerProxy = 1_000;

export interface ProxyOptions {
  /** The process behind this proxy (for rules and messages). */
  target: Endpoint;
  /** Where to forward, read on every new connection (a restarted process keeps its port, but may not exist yet). */
  upstream: () => { host: string; port: number };
  /** Who opened an accepted socket; may be slow-ish (reads /proc) and is called once per connection. */
  identify: (socket: Socket) => Endpoint;
  /** Whether traffic from `source` to this proxy's target is cut now. */
  isCut: (source: Endpoint, target: Endpoint) => boolean;
  host?: string;
}

interface Link {
  source: Endpoint;
  downstream: Socket;
  upstream: Socket | undefined;
  held: boolean;
}

export class TcpProxy {
  readonly target: Endpoint;
  private readonly server: Server;
  private readonly links = new Set<Link>();
  private readonly options: ProxyOptions;
  private portValue = 0;
  private closed = false;

  constructor(options: ProxyOptions) {
    this.options = options;
    this.target = options.target;
    this.server = createServer({ pauseOnConnect: true }, (socket) => this.accept(socket));
    this.server.maxConnections = maxConnectionsPerProxy;
  }

  /** Listens on `port` (0: any free port) and resolves with the port. */
  listen(port = 0): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen({ port, host: this.options.host ?? "127.0.0.1", exclusive: true }, () => {
        this.server.off("error", reject);
        const address = this.server.address();
        if (address === null || typeof address === "string") return reject(new Error(`proxy for ${String(this.target)}: no TCP address`));
        this.portValue = address.port;
        resolve(address.port);
      });
    });
  }

  get port(): number {
    return this.portValue;
  }

  /** Open connections by source, for tests and reports. */
  connections(): Array<{ source: Endpoint; held: boolean }> {
    return [...this.links].map((l) => ({ source: l.source, held: l.held }));
  }

  /** Re-evaluates the cut rules for every open connection: holds the newly cut ones, releases the healed ones. */
  applyRules(): void {
    for (const link of this.links) this.setHeld(link, this.options.isCut(link.source, this.target));
  }

  /** Destroys every connection whose source matches (a process that died has no sockets left anyway). */
  dropConnectionsFrom(source: Endpoint): void {
    for (const link of [...this.links]) if (link.source === source) this.drop(link);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const link of [...this.links]) this.drop(link);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(downstream: Socket): void {
    // Explicitly paused, so attaching the data listener later does not start the flow.
    downstream.pause();
    let source: Endpoint;
    try {
      source = this.options.identify(downstream);
    } catch {
      source = "external";
    }
    if (this.options.isCut(source, this.target)) {
      // A new connection across a cut fails at once, as to an unreachable host; open ones hang instead.
      downstream.destroy();
      return;
    }
    const link: Link = { source, downstream, upstream: undefined, held: true };
    this.links.add(link);
    downstream.on("error", () => this.drop(link));
    downstream.on("close", () => this.drop(link));
    let target: { host: string; port: number };
    try {
      target = this.options.upstream();
    } catch {
      this.drop(link); // Nothing to forward to (yet): the caller sees a closed connection, as from a dead process.
      return;
    }
    const upstream = createConnection(target);
    link.upstream = upstream;
    upstream.setNoDelay(true);
    downstream.setNoDelay(true);
    upstream.setTimeout(upstreamConnectTimeoutMs, () => this.drop(link));
    upstream.on("error", () => this.drop(link));
    upstream.on("close", () => this.drop(link));
    upstream.once("connect", () => {
      upstream.setTimeout(0);
      upstream.pause();
      // Forward by hand (not pipe()) so a held link can stop both directions and keep the bytes queued.
      downstream.on("data", (chunk: Buffer) => {
        if (!upstream.write(chunk)) downstream.pause();
      });
      upstream.on("drain", () => {
        if (!link.held) downstream.resume();
      });
      upstream.on("data", (chunk: Buffer) => {
        if (!downstream.write(chunk)) upstream.pause();
      });
      downstream.on("drain", () => {
        if (!link.held) upstream.resume();
      });
      downstream.on("end", () => upstream.end());
      upstream.on("end", () => downstream.end());
      link.held = true;
      this.setHeld(link, this.options.isCut(source, this.target));
    });
  }

  private setHeld(link: Link, held: boolean): void {
    if (link.upstream === undefined || link.upstream.connecting) {
      link.held = held;
      return; // The connect handler applies the rule once connected.
    }
    if (link.held === held) return;
    link.held = held;
    if (held) {
      link.downstream.pause();
      link.upstream.pause();
    } else {
      link.downstream.resume();
      link.upstream.resume();
    }
  }

  private drop(link: Link): void {
    if (!this.links.delete(link)) return;
    link.downstream.destroy();
    link.upstream?.destroy();
  }
}
