// Network faults for a local cluster: a TcpProxy in front of every process's gRPC port. Brokers
// advertise their proxy (--advertised-port), so clients and followers reach them only through it, and
// every broker's --controller is the controller's proxy. Each connection is attributed to the process
// that opened it, so one rule table ("is traffic from A to B cut?") covers broker<->broker,
// broker<->controller and client<->broker links. The harness's own clients (cluster.brokerClient,
// cluster.metadata) use the real ports and are never cut: the test can always observe.
import type { Socket } from "node:net";
import {
  type Cluster,
  type ClusterOptions,
  type TestContextLike,
  startCluster,
} from "../harness/index.js";
import { ownerOfConnection } from "./attribution.js";
import { type Endpoint, TcpProxy } from "./proxy.js";

const host = "127.0.0.1";

function key(from: Endpoint, to: Endpoint): string {
  return `${String(from)}->${String(to)}`;
}

export interface IsolateOptions {
  /** Also cut clients (anything not a cluster process) from the isolated process; default false: clients stay on its side. */
  clients?: boolean;
}

export class Network {
  private readonly proxies = new Map<Endpoint, TcpProxy>();
  private readonly cuts = new Set<string>();
  private cluster: Cluster | undefined;
  private readonly brokerIdsValue: number[];

  private constructor(brokerIds: readonly number[]) {
    this.brokerIdsValue = [...brokerIds];
  }

  /** Starts one proxy for the controller and one per broker id; attach() a cluster to give them upstreams. */
  static async start(brokerIds: readonly number[]): Promise<Network> {
    const net = new Network(brokerIds);
    try {
      for (const target of ["controller" as const, ...brokerIds]) {
        const proxy = new TcpProxy({
          target,
          upstream: () => net.upstreamOf(target),
          identify: (socket) => net.identify(socket),
          isCut: (from, to) => net.isCut(from, to),
        });
        await proxy.listen(0);
        net.proxies.set(target, proxy);
      }
    } catch (err) {
      await net.close();
      throw err;
    }
    return net;
  }

  /** Broker flags that route it through the proxies: advertise its proxy port, reach the controller by proxy. */
  brokerArgs(id: number): string[] {
    return ["--advertised-host", host, "--advertised-port", String(this.proxy(id).port), "--controller", this.controllerAddress];
  }

  /** The controller's proxied address (what brokers and clients use). */
  get controllerAddress(): string {
    return `${host}:${this.proxy("controller").port}`;
  }

  /** A broker's proxied (advertised) address. */
  address(id: number): string {
    return `${host}:${this.proxy(id).port}`;
  }

  /** Bootstrap list of proxied broker addresses, for clients that should feel the faults. */
  get bootstrap(): string[] {
    return this.brokerIdsValue.map((id) => this.address(id));
  }

  attach(cluster: Cluster): void {
    this.cluster = cluster;
  }

  /** Cuts traffic from `from` to `to` (one direction; connections `to` opened towards `from` keep flowing). */
  cut(from: Endpoint, to: Endpoint): void {
    this.cuts.add(key(from, to));
    this.applyRules();
  }

  isCut(from: Endpoint, to: Endpoint): boolean {
    return this.cuts.has(key(from, to));
  }

  /**
   * Partitions `id` from every other cluster process (both directions), and from clients if asked.
   * It keeps running: a leader isolated like this believes it still leads until it hears otherwise.
   */
  isolate(id: Endpoint, options: IsolateOptions = {}): void {
    const others: Endpoint[] = (["controller", ...this.brokerIdsValue] as Endpoint[]).filter((x) => x !== id);
    if (options.clients === true) others.push("external");
    for (const other of others) {
      this.cuts.add(key(id, other));
      this.cuts.add(key(other, id));
    }
    this.applyRules();
  }

  /** Removes every cut involving `id`, or every cut when no id is given. */
  heal(id?: Endpoint): void {
    if (id === undefined) this.cuts.clear();
    else for (const k of [...this.cuts]) if (k.startsWith(`${String(id)}->`) || k.endsWith(`->${String(id)}`)) this.cuts.delete(k);
    this.applyRules();
  }

  /** Open proxied connections into `target`, by source (for tests of the proxy itself). */
  connectionsTo(target: Endpoint): Array<{ source: Endpoint; held: boolean }> {
    return this.proxy(target).connections();
  }

  async close(): Promise<void> {
    await Promise.all([...this.proxies.values()].map((p) => p.close()));
  }

  private applyRules(): void {
    for (const p of this.proxies.values()) p.applyRules();
  }

  private proxy(target: Endpoint): TcpProxy {
    const p = this.proxies.get(target);
    if (p === undefined) throw new Error(`no proxy for ${String(target)} (brokers: ${this.brokerIdsValue.join(", ")})`);
    return p;
  }

  private upstreamOf(target: Endpoint): { host: string; port: number } {
    const cluster = this.cluster;
    if (cluster === undefined || target === "external") throw new Error(`proxy for ${String(target)} has no cluster attached`);
    const address = target === "controller" ? cluster.controllerAddress : cluster.brokerAddress(target);
    const [h, p] = address.split(":");
    return { host: h!, port: Number(p) };
  }

  private identify(socket: Socket): Endpoint {
    const cluster = this.cluster;
    if (cluster === undefined || socket.remotePort === undefined || socket.localPort === undefined) return "external";
    const candidates: Array<readonly [Endpoint, number]> = [];
    for (const id of ["controller" as const, ...cluster.brokerIds]) {
      const pid = cluster.pid(id);
      if (pid !== undefined) candidates.push([id, pid]);
    }
    return ownerOfConnection(socket.remotePort, socket.localPort, candidates) ?? "external";
  }
}

/** startCluster behind a Network: brokers advertise their proxies. Close both (network after cluster). */
export async function startNetworkedCluster(options: ClusterOptions): Promise<{ cluster: Cluster; network: Network }> {
  const ids = Array.from({ length: options.brokers }, (_, i) => i + 1);
  const network = await Network.start(ids);
  const userArgs = options.brokerArgs;
  let cluster: Cluster;
  try {
    cluster = await startCluster({
      ...options,
      onCreated: (c) => {
        network.attach(c);
        options.onCreated?.(c);
      },
      brokerArgs: (id) => [...(typeof userArgs === "function" ? userArgs(id) : (userArgs ?? [])), ...network.brokerArgs(id)],
    });
  } catch (err) {
    await network.close();
    throw err;
  }
  return { cluster, network };
}

/** startNetworkedCluster for a vitest test: both are closed when the test finishes, logs kept on failure. */
export async function startNetworkedClusterForTest(ctx: TestContextLike, options: ClusterOptions): Promise<{ cluster: Cluster; network: Network }> {
  const started = await startNetworkedCluster(options);
  started.cluster.keepLogsOnFailure(ctx);
  ctx.onTestFinished(() => started.network.close());
  return started;
}
