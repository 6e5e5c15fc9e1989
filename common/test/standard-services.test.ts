// Reflection and health on a real gRPC server: generic tools must be able to list Runnel's services
// and ask whether it is serving, with nothing but the standard protocols.
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BrokerServiceService } from "@runnel/proto";
import { addStandardServices, bindServer } from "../src/index.js";

const nodeModules = join(import.meta.dirname, "..", "..", "node_modules");
let server: grpc.Server;
let port: number;

beforeAll(async () => {
  server = new grpc.Server();
  server.addService(BrokerServiceService, {});
  const health = addStandardServices(server, ["runnel.v1.BrokerService"]);
  health.setStatus("runnel.v1.ReplicationService", "NOT_SERVING");
  port = await bindServer(server, "127.0.0.1:0");
});

afterAll(() => server.forceShutdown());

function load(file: string, includeDir: string) {
  return grpc.loadPackageDefinition(loadSync(file, { includeDirs: [includeDir], keepCase: true, enums: String })) as unknown as Record<string, any>;
}

describe("standard gRPC services", () => {
  it("lists the served services through reflection v1 and v1alpha", async () => {
    for (const version of ["v1", "v1alpha"]) {
      const pkg = load(`grpc/reflection/${version}/reflection.proto`, join(nodeModules, "@grpc", "reflection", "build", "proto"));
      const Client = pkg.grpc.reflection[version].ServerReflection;
      const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
      const names = await new Promise<string[]>((resolve, reject) => {
        const call = client.ServerReflectionInfo();
        call.on("data", (res: { list_services_response?: { service: Array<{ name: string }> } }) => {
          resolve(res.list_services_response!.service.map((s) => s.name));
          call.end();
        });
        call.on("error", reject);
        call.write({ list_services: "*" });
      });
      client.close();
      expect(names, version).toContain("runnel.v1.BrokerService");
      expect(names, version).not.toContain("runnel.v1.ControllerService");
    }
  });

  it("answers grpc.health.v1.Health/Check per service", async () => {
    const pkg = load("health/v1/health.proto", join(nodeModules, "grpc-health-check", "proto"));
    const client = new pkg.grpc.health.v1.Health(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    const check = (service: string) =>
      new Promise<string>((resolve, reject) => client.Check({ service }, (err: Error | null, res: { status: string }) => (err ? reject(err) : resolve(res.status))));
    expect(await check("")).toBe("SERVING");
    expect(await check("runnel.v1.BrokerService")).toBe("SERVING");
    expect(await check("runnel.v1.ReplicationService")).toBe("NOT_SERVING");
    client.close();
  });
});
