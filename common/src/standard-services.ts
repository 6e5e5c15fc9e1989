// The standard gRPC services every Runnel process serves, so generic tools (grpcurl, grpc_health_probe,
// Kubernetes probes) can list and call it: server reflection (v1 and v1alpha) over the runnel.v1 .proto
// files, and grpc.health.v1.Health.
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type * as grpc from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { HealthImplementation } from "grpc-health-check";

export { HealthImplementation };

/** The folder holding runnel/v1/*.proto (common/dist/standard-services.js -> <repo>/proto). */
export const protoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "proto");
const protoFiles = ["runnel/v1/broker.proto", "runnel/v1/replication.proto", "runnel/v1/controller.proto"];

/**
 * Adds reflection for `services` (fully qualified, e.g. "runnel.v1.BrokerService") and the health
 * service, which reports every one of them (and "") as SERVING until the caller changes it.
 */
export function addStandardServices(server: grpc.Server, services: readonly string[]): HealthImplementation {
  const definitions = loadSync(protoFiles, { includeDirs: [protoRoot], keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
  new ReflectionService(definitions, { services: [...services] }).addToServer(server);
  const health = new HealthImplementation({ "": "SERVING", ...Object.fromEntries(services.map((s) => [s, "SERVING" as const])) });
  health.addToServer(server);
  return health;
}
