// The standard gRPC services every Runnel process serves, so generic tools (grpcurl, grpc_health_probe,
// Kubernetes probes) can list and call it: server reflection (v1 and v1alpha) over the runnel.v1 .proto
// files, and grpc.health.v1.Health.
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
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

type LoadedPackage = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const nodeModulesDir = join(dirname(fileURLToPath(import.meta.resolve("@grpc/reflection"))), "..", "..");
const healthProtoDir = join(dirname(fileURLToPath(import.meta.resolve("grpc-health-check"))), "..", "..", "proto");

function loadClientPackage(file: string, includeDir: string): LoadedPackage {
  return grpc.loadPackageDefinition(loadSync(file, { includeDirs: [includeDir], keepCase: true, enums: String })) as unknown as LoadedPackage;
}

/** Lists the services `address` serves, through server reflection (v1 or v1alpha), as a generic tool would. */
export function listServicesByReflection(address: string, version: "v1" | "v1alpha" = "v1", timeoutMs = 5_000): Promise<string[]> {
  const pkg = loadClientPackage(`grpc/reflection/${version}/reflection.proto`, join(nodeModulesDir, "build", "proto"));
  const client = new pkg.grpc.reflection[version].ServerReflection(address, grpc.credentials.createInsecure());
  return new Promise<string[]>((resolve, reject) => {
    const call = client.ServerReflectionInfo({ deadline: new Date(Date.now() + timeoutMs) });
    call.on("data", (res: { list_services_response?: { service: Array<{ name: string }> } }) => {
      resolve((res.list_services_response?.service ?? []).map((s) => s.name));
      call.end();
    });
    call.on("error", reject);
    call.write({ list_services: "*" });
  }).finally(() => client.close());
}

/** grpc.health.v1.Health/Check: "SERVING", "NOT_SERVING", "UNKNOWN" or "SERVICE_UNKNOWN". */
export function checkHealth(address: string, service = "", timeoutMs = 5_000): Promise<string> {
  const pkg = loadClientPackage("health/v1/health.proto", healthProtoDir);
  const client = new pkg.grpc.health.v1.Health(address, grpc.credentials.createInsecure());
  return new Promise<string>((resolve, reject) => {
    client.Check({ service }, { deadline: new Date(Date.now() + timeoutMs) }, (err: Error | null, res: { status: string }) => (err ? reject(err) : resolve(res.status)));
  }).finally(() => client.close());
}
