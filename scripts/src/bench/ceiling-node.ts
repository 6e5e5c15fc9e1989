// One process of the ceiling step (ceiling.ts forks three): a "replica" that does only what the
// machine must do for W1, with no broker logic. `solo` appends batches to its own LMDB environment
// with an fsync per write (group commit). `leader` serves one bidi gRPC stream per follower and
// pushes every batch to each; a batch counts once the leader has it flushed (when it stores) and
// every follower has acknowledged it. `follower` acknowledges each batch on receipt, or once its
// own LMDB has it flushed (when it stores). Driven over the fork IPC channel: init -> ready ->
// start -> done. Exits when the parent goes away, so nothing outlives the bench.
import * as grpc from "@grpc/grpc-js";
import { open, type Database, type RootDatabase } from "lmdb";
import { performance } from "node:perf_hooks";
import { channelOptions, serverOptions } from "@runnel/common";

export type CeilingRole = "solo" | "leader" | "follower";

export interface CeilingNodeInit {
  type: "init";
  role: CeilingRole;
  /** LMDB directory; undefined: this process stores nothing (the network-only step). */
  dir: string | undefined;
  /** follower: the leader's host:port. */
  leaderAddress?: string;
  /** leader: how many follower streams to wait for. */
  followers?: number;
  /** The batch value (an encoded RecordBatch); sent to the leader and solo processes. */
  batch?: Uint8Array;
  recordsPerBatch: number;
  /** Records unacknowledged at once, as W1's producer window. */
  windowRecords: number;
  maxRecords: number;
  durationMs: number;
}

export type CeilingNodeMessage =
  | CeilingNodeInit
  | { type: "start" };

export type CeilingNodeReply =
  | { type: "ready"; port?: number }
  | { type: "done"; records: number; elapsedMs: number }
  | { type: "error"; message: string };

/** The one method: bidi stream, raw bytes both ways (no protobuf encode on the hot path, as the broker). */
const streamPath = "/runnel.bench.Ceiling/Replicate";
const identity = (b: Buffer): Buffer => b;
/** A follower's first message, so the leader knows the stream is open before the clock starts. */
const helloBytes = Buffer.from("hello");
/** Followers connect within this long, or the step fails. */
const followerWaitTimeoutMs = 30_000;
/** Each LMDB environment may grow to this size (sparse file; the step writes at most --records). */
const mapSizeBytes = 64 * 1024 ** 3;

function send(reply: CeilingNodeReply): void {
  process.send?.(reply);
}

function openStore(dir: string): { root: RootDatabase; db: Database<Uint8Array, Buffer> } {
  const root = open({ path: dir, maxDbs: 2, mapSize: mapSizeBytes });
  return { root, db: root.openDB<Uint8Array, Buffer>({ name: "partition", encoding: "binary", keyEncoding: "binary" }) };
}

function offsetKey(offset: number): Buffer {
  const key = Buffer.alloc(8);
  key.writeBigUInt64BE(BigInt(offset));
  return key;
}

/** put, then wait for the fsync that covers it: concurrent writes share LMDB transactions and flushes. */
function appendFlushed(store: ReturnType<typeof openStore>, baseOffset: number, value: Uint8Array): Promise<unknown> {
  return store.db.put(offsetKey(baseOffset), value).then(() => store.root.flushed);
}

/**
 * Issues batches while the window has room, until `maxRecords` or `durationMs`; `issue(seq)` resolves
 * when batch `seq` counts as done. Completions may arrive out of order; the window moves on count.
 */
async function windowLoop(init: CeilingNodeInit, issue: (seq: number) => Promise<unknown>): Promise<{ records: number; elapsedMs: number }> {
  const maxBatches = Math.max(1, Math.floor(init.maxRecords / init.recordsPerBatch));
  const windowBatches = Math.max(1, Math.ceil(init.windowRecords / init.recordsPerBatch));
  const start = performance.now();
  let issued = 0;
  let done = 0;
  let lastDoneAt = start;
  let failure: unknown;
  let wake: (() => void) | undefined;
  const settle = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  while (failure === undefined && issued < maxBatches && performance.now() - start < init.durationMs) {
    if (issued - done >= windowBatches) {
      await new Promise<void>((r) => (wake = r));
      continue;
    }
    const seq = issued++;
    issue(seq).then(
      () => { done += 1; lastDoneAt = performance.now(); settle(); },
      (err: unknown) => { failure ??= err; done += 1; settle(); },
    );
    // Let completions, stream writes and IPC run between issues.
    if (issued % windowBatches === 0) await new Promise<void>((r) => setImmediate(r));
  }
  while (done < issued) await new Promise<void>((r) => (wake = r));
  if (failure !== undefined) throw failure instanceof Error ? failure : new Error(String(failure));
  return { records: done * init.recordsPerBatch, elapsedMs: lastDoneAt - start };
}

class Leader {
  private readonly streams: Array<grpc.ServerDuplexStream<Buffer, Buffer>> = [];
  /** Per follower: batches acknowledged (cumulative, in order). */
  private readonly acked: number[] = [];
  private readonly waiting = new Map<number, () => void>();
  private leaderDone = new Set<number>();
  private streamsChanged: (() => void) | undefined;
  readonly server = new grpc.Server(serverOptions);
  private readonly store: ReturnType<typeof openStore> | undefined;

  constructor(private readonly init: CeilingNodeInit) {
    this.store = init.dir === undefined ? undefined : openStore(init.dir);
    this.server.addService(
      { replicate: { path: streamPath, requestStream: true, responseStream: true, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity } },
      { replicate: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => this.onStream(call) },
    );
  }

  private onStream(call: grpc.ServerDuplexStream<Buffer, Buffer>): void {
    // The index is taken at the hello, when the stream is added: streams may open before either says hello.
    let index = -1;
    call.on("data", (msg: Buffer) => {
      if (index < 0) {
        index = this.streams.length;
        this.streams.push(call);
        this.acked.push(0);
        this.streamsChanged?.();
        return;
      }
      this.acked[index] = Number(msg.readBigUInt64BE(0));
      this.check();
    });
    call.on("error", () => undefined);
  }

  private committed(seq: number): boolean {
    if (this.store !== undefined && !this.leaderDone.has(seq)) return false;
    return this.acked.every((a) => a > seq);
  }

  private check(): void {
    for (const [seq, resolve] of this.waiting) {
      if (!this.committed(seq)) continue;
      this.waiting.delete(seq);
      this.leaderDone.delete(seq);
      resolve();
    }
  }

  async listen(): Promise<number> {
    return new Promise((resolve, reject) =>
      this.server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, port) => (err === null ? resolve(port) : reject(err))),
    );
  }

  async run(): Promise<{ records: number; elapsedMs: number }> {
    const followers = this.init.followers ?? 0;
    const deadline = Date.now() + followerWaitTimeoutMs;
    while (this.streams.length < followers) {
      if (Date.now() > deadline) throw new Error(`ceiling leader: ${this.streams.length} of ${followers} followers connected within ${followerWaitTimeoutMs} ms`);
      await new Promise<void>((r) => {
        this.streamsChanged = r;
        setTimeout(r, 100);
      });
    }
    const batch = Buffer.from(this.init.batch!);
    return windowLoop(this.init, (seq) => {
      const committed = new Promise<void>((resolve) => this.waiting.set(seq, resolve));
      // HTTP/2 flow control applies backpressure inside grpc-js; the window bounds what is queued.
      for (const s of this.streams) s.write(batch);
      if (this.store !== undefined) {
        void appendFlushed(this.store, seq * this.init.recordsPerBatch, batch).then(() => {
          this.leaderDone.add(seq);
          this.check();
        });
      }
      this.check();
      return committed;
    });
  }
}

function runFollower(init: CeilingNodeInit): Promise<void> {
  const store = init.dir === undefined ? undefined : openStore(init.dir);
  const client = new grpc.Client(init.leaderAddress!, grpc.credentials.createInsecure(), channelOptions);
  const call = client.makeBidiStreamRequest<Buffer, Buffer>(streamPath, identity, identity);
  let received = 0;
  let contiguous = 0;
  const done = new Set<number>();
  const ack = () => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(contiguous));
    call.write(b);
  };
  call.on("data", (msg: Buffer) => {
    const seq = received++;
    if (store === undefined) {
      contiguous = seq + 1;
      ack();
      return;
    }
    void appendFlushed(store, seq * init.recordsPerBatch, msg).then(() => {
      done.add(seq);
      const before = contiguous;
      while (done.delete(contiguous)) contiguous += 1;
      if (contiguous > before) ack();
    }, (err: unknown) => {
      send({ type: "error", message: `ceiling follower: ${err instanceof Error ? err.message : String(err)}` });
      process.exit(1);
    });
  });
  call.on("error", () => undefined);
  call.write(helloBytes);
  return Promise.resolve();
}

let leader: Leader | undefined;
let soloInit: CeilingNodeInit | undefined;

async function onMessage(msg: CeilingNodeMessage): Promise<void> {
  if (msg.type === "init") {
    // The parent forks with serialization "advanced", so the batch arrives as a Uint8Array.
    const init = msg;
    if (init.role === "leader") {
      leader = new Leader(init);
      send({ type: "ready", port: await leader.listen() });
    } else if (init.role === "follower") {
      await runFollower(init);
      send({ type: "ready" });
    } else {
      soloInit = init;
      send({ type: "ready" });
    }
    return;
  }
  if (leader !== undefined) {
    send({ type: "done", ...(await leader.run()) });
  } else if (soloInit !== undefined) {
    const init = soloInit;
    const store = openStore(init.dir!);
    const batch = Buffer.from(init.batch!);
    send({ type: "done", ...(await windowLoop(init, (seq) => appendFlushed(store, seq * init.recordsPerBatch, batch))) });
  }
}

process.on("message", (msg: CeilingNodeMessage) => {
  onMessage(msg).catch((err: unknown) => {
    send({ type: "error", message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  });
});
process.on("disconnect", () => process.exit(0));
