// Prometheus metrics every process shares: one prom-client Registry per process (never the global
// default, so tests can run several brokers and a controller in one Node process), Node's default
// metrics (memory, CPU, event-loop delay) and per-RPC request counts and latency, recorded by a grpc-js
// server interceptor so no handler has to remember it. Process-specific metrics (partitions, groups)
// are added by the broker and the controller, computed at scrape time rather than on the hot path.
import * as grpc from "@grpc/grpc-js";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";

export { Counter, Gauge, Histogram, Registry };

/** Content type of the Prometheus text exposition format that `ProcessMetrics.text()` returns. */
export const metricsContentType = "text/plain; version=0.0.4; charset=utf-8";

/** Latency buckets for unary RPCs, in seconds: 0.25 ms (a metadata answer) to 30 s (a long-polling fetch). */
export const rpcDurationBucketsSeconds: readonly number[] = [0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** Resolution of the event-loop delay monitor behind nodejs_eventloop_lag_* (prom-client's default). */
export const eventLoopMonitoringPrecisionMs = 10;

/** A status code's name as a label value ("OK", "INVALID_ARGUMENT"); 17 values at most. */
export function statusName(code: number): string {
  return grpc.status[code] ?? "UNKNOWN";
}

/**
 * Request counts and latency per gRPC method and status code. The method label is the method path
 * without the leading slash ("runnel.v1.BrokerService/Produce"); grpc-js answers calls to unknown paths
 * before any interceptor runs, so the label set is bounded by the registered services.
 */
export class RpcMetrics {
  private readonly requests: Counter<"method" | "code">;
  private readonly duration: Histogram<"method" | "code">;
  // Children are cached per (method, code): prom-client hashes the label object on every labels() call.
  private readonly counterChildren = new Map<string, { inc(): void }>();
  private readonly histogramChildren = new Map<string, { observe(value: number): void }>();

  constructor(registry: Registry) {
    this.requests = new Counter({
      name: "runnel_rpc_requests_total",
      help: "gRPC calls served, by method and status code (server streams count once, when they end).",
      labelNames: ["method", "code"],
      registers: [registry],
    });
    this.duration = new Histogram({
      name: "runnel_rpc_duration_seconds",
      help: "Time from the arrival of a unary gRPC call to its status, by method and status code (long-polling fetches include their wait).",
      labelNames: ["method", "code"],
      buckets: [...rpcDurationBucketsSeconds],
      registers: [registry],
    });
  }

  /** Records one finished call. `seconds` is undefined for streams (their lifetime is not a latency). */
  record(method: string, code: number, seconds: number | undefined): void {
    const codeName = statusName(code);
    const key = `${method} ${codeName}`;
    let counter = this.counterChildren.get(key);
    if (counter === undefined) {
      counter = this.requests.labels(method, codeName);
      this.counterChildren.set(key, counter);
    }
    counter.inc();
    if (seconds === undefined) return;
    let histogram = this.histogramChildren.get(key);
    if (histogram === undefined) {
      histogram = this.duration.labels(method, codeName);
      this.histogramChildren.set(key, histogram);
    }
    histogram.observe(seconds);
  }

  /** A grpc-js server interceptor recording every call's status and (for unary calls) its latency. */
  readonly interceptor: grpc.ServerInterceptor = (descriptor, call) => {
    const method = descriptor.path.startsWith("/") ? descriptor.path.slice(1) : descriptor.path;
    const unary = !descriptor.requestStream && !descriptor.responseStream;
    const startNs = process.hrtime.bigint();
    let done = false;
    const finish = (code: number) => {
      if (done) return;
      done = true;
      this.record(method, code, unary ? Number(process.hrtime.bigint() - startNs) / 1e9 : undefined);
    };
    return new grpc.ServerInterceptingCall(call, {
      start: (next) => next({ onCancel: () => finish(grpc.status.CANCELLED) }),
      sendStatus: (status, next) => {
        finish(status.code);
        next(status);
      },
    });
  };
}

export interface ProcessMetrics {
  readonly registry: Registry;
  readonly rpc: RpcMetrics;
  /** The Prometheus text exposition of every metric of this process. */
  text(): Promise<string>;
}

/**
 * A process's registry with Node's default metrics (process_resident_memory_bytes,
 * nodejs_heap_size_used_bytes, nodejs_eventloop_lag_p99_seconds, ...) and the RPC metrics.
 */
export function createProcessMetrics(): ProcessMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: eventLoopMonitoringPrecisionMs });
  const rpc = new RpcMetrics(registry);
  return { registry, rpc, text: () => registry.metrics() };
}

/** Server options with the RPC metrics interceptor added. */
export function instrumentedServerOptions(base: grpc.ServerOptions, metrics: ProcessMetrics): grpc.ServerOptions {
  return { ...base, interceptors: [...(base.interceptors ?? []), metrics.rpc.interceptor] };
}

/** One sample of Prometheus text exposition. */
export interface MetricSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses Prometheus text exposition as Runnel writes it (label values have no escaped quotes). */
export function parseMetricsText(text: string): MetricSample[] {
  const out: MetricSample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null) throw new Error(`unparsable metrics line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** The one sample named `name` whose labels include `labels`; undefined when none, an error when several. */
export function metricSample(samples: readonly MetricSample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (found.length > 1) throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(labels)}`);
  return found[0]?.value;
}

/** The sum of every sample named `name` whose labels include `labels`. */
export function metricTotal(samples: readonly MetricSample[], name: string, labels: Record<string, string> = {}): number {
  return samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((sum, s) => sum + s.value, 0);
}
