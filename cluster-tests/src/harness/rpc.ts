// Promise wrappers for the generated grpc-js clients, each call with its own deadline so a paused or
// partitioned process turns into a DEADLINE_EXCEEDED error instead of a hung test.
import * as grpc from "@grpc/grpc-js";

/** Deadline of one harness RPC (DescribeCluster, Metadata) while polling. */
export const harnessRpcTimeoutMs = 2_000;

type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: grpc.Metadata,
  options: Partial<grpc.CallOptions>,
  callback: (err: grpc.ServiceError | null, response: Res) => void,
) => grpc.ClientUnaryCall;

/**
 * Calls a unary method of a generated client with a deadline. The call waits for the channel to
 * (re)connect within that deadline instead of failing at once, so a call right after a restart does
 * not fail on the reconnect backoff left by the process's death.
 */
export function callUnary<Req, Res>(
  client: grpc.Client,
  method: UnaryMethod<Req, Res>,
  request: Req,
  timeoutMs = harnessRpcTimeoutMs,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    method.call(client, request, new grpc.Metadata({ waitForReady: true }), { deadline: new Date(Date.now() + timeoutMs) }, (err, response) => {
      if (err !== null) reject(err);
      else resolve(response);
    });
  });
}
