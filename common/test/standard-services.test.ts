// Reflection and health on a real gRPC server: generic tools must be able to list Runnel's services
// and ask whether it is serving, with nothing but the standard protocols.
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BrokerServiceService } from "@runnel/proto";
import { addStandardServices, bindServer, checkHealth, listServicesByReflection } from "../src/index.js";

let server: grpc.Server;
let address: string;

beforeAll(async () => {
  server = new grpc.Server();
  server.addService(BrokerServiceService, {});
  const health = addStandardServices(server, ["runnel.v1.BrokerService"]);
  health.setStatus("runnel.v1.ReplicationService", "NOT_SERVING");
  address = `127.0.0.1:${await bindServer(server, "127.0.0.1:0")}`;
});

afterAll(() => server.forceShutdown());

describe("standard gRPC services", () => {
  it("lists the served services through reflection v1 and v1alpha", async () => {
    for (const version of ["v1", "v1alpha"] as const) {
      const names = await listServicesByReflection(address, version);
      expect(names, version).toContain("runnel.v1.BrokerService");
      expect(names, version).not.toContain("runnel.v1.ControllerService");
    }
  });

  it("answers grpc.health.v1.Health/Check per service", async () => {
    expect(await checkHealth(address)).toBe("SERVING");
    expect(await checkHealth(address, "runnel.v1.BrokerService")).toBe("SERVING");
    expect(await checkHealth(address, "runnel.v1.ReplicationService")).toBe("NOT_SERVING");
  });
});
