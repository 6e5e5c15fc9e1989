// Every Runnel process serves gRPC reflection and the standard health service (DESIGN.md: generic
// tools can list and call it), checked on real controller and broker processes.
import { describe, expect, it } from "vitest";
import { checkHealth, listServicesByReflection } from "@runnel/common";
import { startClusterForTest } from "../src/harness/index.js";

describe("reflection and health on every process", () => {
  it("lists each process's services and reports SERVING", async (ctx) => {
    const cluster = await startClusterForTest(ctx, { brokers: 1 });
    const controller = await listServicesByReflection(cluster.controllerAddress);
    expect(controller).toContain("runnel.v1.ControllerService");
    const broker = await listServicesByReflection(cluster.brokerAddress(1));
    expect(broker).toEqual(expect.arrayContaining(["runnel.v1.BrokerService", "runnel.v1.ReplicationService"]));
    expect(await checkHealth(cluster.controllerAddress, "runnel.v1.ControllerService")).toBe("SERVING");
    expect(await checkHealth(cluster.brokerAddress(1), "runnel.v1.BrokerService")).toBe("SERVING");
  });
});
