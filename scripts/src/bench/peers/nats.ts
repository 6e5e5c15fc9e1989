// NATS JetStream as a bench peer: three Debian nats-server processes on loopback forming one
// cluster (server_name, jetstream store dir, cluster routes), a file-storage stream with 3 replicas
// per workload, and the `nats` npm client. Publishing counts PubAcks on one wildcard inbox (what the
// Go client's PublishAsync does) instead of a request/reply per record, which was client-bound.
// Readers are ordered consumers (each a separate reader from the first message; no per-record acks).
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect, createInbox, StorageType, type NatsConnection } from "nats";
import type { BenchProducer, BenchTarget, ConsumeHandle, StreamSpec, TargetCluster } from "../target.js";
import { PeerUnavailableError } from "../target.js";
import { ensureInstalled, spawnGroup, waitUntil, type GroupProcess } from "./procs.js";

const natsServerBinary = "/usr/sbin/nats-server";
export const natsNodeCount = 3;
/** Client ports 14231..14233 and cluster ports 16231..16233, away from NATS's defaults. */
const clientPortBase = 14230;
const clusterPortBase = 16230;
const clusterReadyTimeoutMs = 60_000;
/** A PubAck not back within this long fails the send (so a lost ack cannot hang the window). */
const pubAckTimeoutMs = 30_000;
const pubAckSweepMs = 1_000;
/** Pull batch of the ordered consumer. */
const consumeMaxMessages = 4_096;

function streamName(spec: StreamSpec): string {
  return `bench_${spec.label.replace(/[^A-Za-z0-9_-]/g, "_")}`;
}

class NatsTarget implements BenchTarget {
  readonly name = "NATS R3";
  readonly settings =
    "nats-server 2.9 (Debian), 3 servers on loopback, JetStream file storage, stream with num_replicas 3 (RAFT: a PubAck " +
    "means a quorum of 2 of 3 has the message in its log); JetStream 2.9 does not fsync before acknowledging (sync_interval " +
    "default 2 min), so an acknowledged message survives a process crash but not a power loss of 2 nodes; publish with " +
    "reply subjects and one wildcard inbox, window as for Runnel; readers are ordered consumers (no per-message acks)";
  private readonly conns = new Set<NatsConnection>();

  constructor(private readonly servers: string[], private readonly procs: GroupProcess[]) {}

  private async connect(name: string): Promise<NatsConnection> {
    const nc = await connect({ servers: this.servers, name, maxReconnectAttempts: 10 });
    this.conns.add(nc);
    return nc;
  }

  async createStream(spec: StreamSpec): Promise<void> {
    const name = streamName(spec);
    // Right after start-up the servers may not listen yet and the JetStream meta group may still be
    // electing: retry (connection and creation) until it answers.
    let lastError: unknown;
    try {
      await waitUntil(`NATS stream ${name} creation`, async () => {
        let nc: NatsConnection | undefined;
        try {
          nc = await this.connect("bench-admin");
          const jsm = await nc.jetstreamManager();
          await jsm.streams.add({ name, subjects: [name], num_replicas: natsNodeCount, storage: StorageType.File });
          return true;
        } catch (err) {
          lastError = err;
          return false;
        } finally {
          if (nc !== undefined) {
            this.conns.delete(nc);
            await nc.close().catch(() => undefined);
          }
        }
      }, clusterReadyTimeoutMs, 500);
    } catch (err) {
      throw new PeerUnavailableError(`${err instanceof Error ? err.message : String(err)}; last error: ${String(lastError)}`);
    }
  }

  async producer(spec: StreamSpec): Promise<BenchProducer> {
    const nc = await this.connect("bench-producer");
    const subject = streamName(spec);
    const inbox = createInbox();
    const pending = new Map<number, { resolve: () => void; reject: (e: Error) => void; sentAtMs: number }>();
    let nextId = 0;
    nc.subscribe(`${inbox}.*`, {
      callback: (err, msg) => {
        if (err !== null) return;
        const id = Number(msg.subject.slice(inbox.length + 1));
        const p = pending.get(id);
        if (p === undefined) return;
        pending.delete(id);
        // A PubAck is {"stream":..,"seq":..}; a refusal carries "error".
        const text = new TextDecoder().decode(msg.data);
        if (text.includes('"error"')) p.reject(new Error(`NATS refused the publish: ${text}`));
        else p.resolve();
      },
    });
    const sweep = setInterval(() => {
      const cutoff = Date.now() - pubAckTimeoutMs;
      for (const [id, p] of pending) {
        if (p.sentAtMs > cutoff) break; // insertion order = send order
        pending.delete(id);
        p.reject(new Error(`no PubAck within ${pubAckTimeoutMs} ms`));
      }
    }, pubAckSweepMs);
    return {
      send: (value) =>
        new Promise<void>((resolve, reject) => {
          const id = nextId++;
          pending.set(id, { resolve, reject, sentAtMs: Date.now() });
          nc.publish(subject, value, { reply: `${inbox}.${id}` });
        }),
      close: async () => {
        clearInterval(sweep);
        await nc.drain().catch(() => undefined);
        this.conns.delete(nc);
      },
    };
  }

  async consume(spec: StreamSpec, group: number, onRecord: (value: Uint8Array) => void): Promise<ConsumeHandle> {
    const nc = await this.connect(`bench-reader-${group}`);
    const consumer = await nc.jetstream().consumers.get(streamName(spec));
    const messages = await consumer.consume({ max_messages: consumeMaxMessages });
    const loop = (async () => {
      for await (const m of messages) onRecord(m.data);
    })();
    return {
      close: async () => {
        await messages.close().catch(() => undefined);
        await loop.catch(() => undefined);
        await nc.close().catch(() => undefined);
        this.conns.delete(nc);
      },
    };
  }

  pids(): Map<string, number> {
    return new Map(this.procs.map((p, i) => [`nats-${i + 1}`, p.pid] as const));
  }

  async closeConnections(): Promise<void> {
    await Promise.allSettled([...this.conns].map((nc) => nc.close()));
  }
}

/** Starts the 3-server cluster in `dir` (installing nats-server with apt-get when missing). */
export async function startNats(dir: string, log: (line: string) => void): Promise<TargetCluster> {
  ensureInstalled(natsServerBinary, ["nats-server"], log);
  const procs: GroupProcess[] = [];
  const routes = Array.from({ length: natsNodeCount }, (_, i) => `nats-route://127.0.0.1:${clusterPortBase + i + 1}`);
  const stopAll = () => Promise.allSettled(procs.map((p) => p.stop()));
  try {
    for (let i = 1; i <= natsNodeCount; i++) {
      const nodeDir = join(dir, `nats-${i}`);
      mkdirSync(join(nodeDir, "store"), { recursive: true });
      const conf = [
        `server_name: n${i}`,
        `listen: 127.0.0.1:${clientPortBase + i}`,
        `jetstream { store_dir: "${join(nodeDir, "store")}" }`,
        `cluster { name: bench, listen: 127.0.0.1:${clusterPortBase + i}, routes: [${routes.join(", ")}] }`,
      ].join("\n");
      writeFileSync(join(nodeDir, "nats.conf"), `${conf}\n`);
      procs.push(spawnGroup(natsServerBinary, ["-c", join(nodeDir, "nats.conf")], process.env, join(nodeDir, "server.log")));
    }
    const servers = Array.from({ length: natsNodeCount }, (_, i) => `127.0.0.1:${clientPortBase + i + 1}`);
    const target = new NatsTarget(servers, procs);
    // The cluster is usable once a replicated stream can be created (the meta group has a leader).
    await target.createStream({ label: "ready-check", groups: 1 });
    if (procs.some((p) => p.exited())) throw new PeerUnavailableError(`a nats-server exited during start-up; logs in ${dir}`);
    log(`NATS cluster up (${servers.join(", ")})`);
    return {
      system: "NATS JetStream",
      targets: [target],
      close: async () => {
        await target.closeConnections();
        await stopAll();
      },
    };
  } catch (err) {
    await stopAll();
    if (err instanceof PeerUnavailableError) throw err;
    throw new PeerUnavailableError(`NATS did not start: ${err instanceof Error ? err.message : String(err)} (logs in ${dir})`);
  }
}
