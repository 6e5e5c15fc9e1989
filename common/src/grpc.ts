// gRPC limits and helpers shared by servers and clients. grpc-js silently ignores unknown channel
// options and defaults to a 4 MiB receive limit, so every limit here is set on purpose.
import * as grpc from "@grpc/grpc-js";

/** Largest gRPC message a Runnel process accepts or sends (a fetch response of several partitions). */
export const maxGrpcMessageBytes = 64 * 1024 * 1024;
/** HTTP/2 flow-control window for client channels: lifts server→client streams past 280 MiB/s. */
export const channelFlowControlWindowBytes = 4 * 1024 * 1024;
/** Concurrent streams one client connection may open on a server (bounds in-flight requests per connection). */
export const maxConcurrentStreamsPerConnection = 256;
/** Idle connections are closed after this long without a call. */
export const maxConnectionIdleMs = 5 * 60 * 1000;
/** Keepalive pings find dead peers on idle connections. */
export const keepaliveTimeMs = 20_000;
export const keepaliveTimeoutMs = 10_000;

export const serverOptions: grpc.ServerOptions = {
  "grpc.max_receive_message_length": maxGrpcMessageBytes,
  "grpc.max_send_message_length": maxGrpcMessageBytes,
  "grpc.max_concurrent_streams": maxConcurrentStreamsPerConnection,
  "grpc.max_connection_idle_ms": maxConnectionIdleMs,
  "grpc.keepalive_time_ms": keepaliveTimeMs,
  "grpc.keepalive_timeout_ms": keepaliveTimeoutMs,
  "grpc.keepalive_permit_without_calls": 1,
  "grpc-node.max_session_memory": 64,
};

export const channelOptions: grpc.ChannelOptions = {
  "grpc.max_receive_message_length": maxGrpcMessageBytes,
  "grpc.max_send_message_length": maxGrpcMessageBytes,
  "grpc-node.flow_control_window": channelFlowControlWindowBytes,
  "grpc.keepalive_time_ms": keepaliveTimeMs,
  "grpc.keepalive_timeout_ms": keepaliveTimeoutMs,
  "grpc.keepalive_permit_without_calls": 1,
  // Reconnect quickly after a peer restarts: failover time matters more than connection churn.
  "grpc.initial_reconnect_backoff_ms": 100,
  "grpc.max_reconnect_backoff_ms": 1000,
};

/** A deadline `ms` from now, for a call's `deadline` option. */
export function deadlineIn(ms: number): Date {
  return new Date(Date.now() + ms);
}

/** An error to pass to a gRPC callback: a status code and a readable message. */
export function grpcError(code: grpc.status, message: string): Partial<grpc.StatusObject> {
  return { code, details: message, metadata: new grpc.Metadata() };
}

/** The malformed-request answer: INVALID_ARGUMENT with a readable reason. */
export class InvalidRequest extends Error {
  override name = "InvalidRequest";
}

/** Any other deliberate gRPC status (RESOURCE_EXHAUSTED for load shedding, UNAVAILABLE while starting). */
export class StatusError extends Error {
  override name = "StatusError";
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
  }
}

/** Binds a server, resolving the bound port (port 0 binds a free one). */
export function bindServer(server: grpc.Server, address: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port)));
  });
}

/** Stops a server gracefully, forcing it after `graceMs`. */
export function shutdownServer(server: grpc.Server, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/**
 * Wraps an async handler as a grpc-js unary handler: InvalidRequest becomes INVALID_ARGUMENT, anything
 * else INTERNAL with its message (and is reported through `onUnexpected`).
 */
export function unary<Req, Res>(
  handler: (request: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>,
  onUnexpected: (err: unknown, method: string) => void,
): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    handler(call.request, call).then(
      (res) => callback(null, res),
      (err: unknown) => {
        if (err instanceof InvalidRequest) {
          callback(grpcError(grpc.status.INVALID_ARGUMENT, err.message));
        } else if (err instanceof StatusError) {
          callback(grpcError(err.code, err.message));
        } else {
          onUnexpected(err, call.getPath());
          callback(grpcError(grpc.status.INTERNAL, err instanceof Error ? err.message : String(err)));
        }
      },
    );
  };
}

type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: grpc.Metadata,
  options: Partial<grpc.CallOptions>,
  callback: (error: grpc.ServiceError | null, response: Res) => void,
) => grpc.ClientUnaryCall;

/** Calls a generated unary client method with a deadline; rejects with the grpc ServiceError. */
export function callUnary<Req, Res>(client: grpc.Client, method: UnaryMethod<Req, Res>, request: Req, timeoutMs: number): Promise<Res> {
  return new Promise((resolve, reject) => {
    method.call(client, request, new grpc.Metadata(), { deadline: deadlineIn(timeoutMs) }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

/** True for a gRPC error that says the peer could not be reached or did not answer in time. */
export function isUnavailable(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  return code === grpc.status.UNAVAILABLE || code === grpc.status.DEADLINE_EXCEEDED || code === grpc.status.CANCELLED;
}
