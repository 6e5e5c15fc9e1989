// After a controller restart every broker gets one session timeout of grace from the moment the
// controller can hear heartbeats, not from when it read its state: on a loaded machine binding the
// server took longer than the session timeout, and every broker was fenced at the first tick
// (found by controller-failover.test.ts under load).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "@runnel/common";
import { registerBroker } from "../src/metadata/index.js";
import { ControllerCore } from "../src/server/index.js";
import { MetadataStore } from "../src/store/index.js";

const config = { sessionTimeoutMs: 2_000, autoLeaderRebalance: false, leaderImbalanceCheckMs: 1_000 };
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function restartedCore(startGraceAtMs: number | undefined): Promise<{ core: ControllerCore; store: MetadataStore; clock: { now: number } }> {
  const dir = mkdtempSync(join(tmpdir(), "runnel-grace-"));
  dirs.push(dir);
  let store = MetadataStore.open(dir);
  const fresh = await store.load(() => "cluster", 0);
  const registered = registerBroker(fresh, { brokerId: 1, host: "127.0.0.1", port: 1, rack: "", incarnationId: "a" }, 0, config);
  await store.persist(fresh, registered.state);
  await store.close();
  // The restart: state read at t=1000, the server ready to hear heartbeats only at t=5000.
  store = MetadataStore.open(dir);
  const loaded = await store.load(() => "cluster", 1_000);
  const clock = { now: 1_000 };
  const core = new ControllerCore({ store, state: loaded, config, heartbeatIntervalMs: 200, logger: createLogger({ role: "test", level: "silent" }), onFatal: (err) => { throw err; }, nowMs: () => clock.now });
  if (startGraceAtMs !== undefined) core.startGrace(startGraceAtMs);
  return { core, store, clock };
}

async function tickAt(core: ControllerCore, clock: { now: number }, nowMs: number): Promise<void> {
  clock.now = nowMs;
  core.requestTick();
  // The tick runs through the command queue and the store; give it time to land.
  for (let i = 0; i < 50 && core.state.brokers.get(1)!.fenced === false; i++) await new Promise((r) => setTimeout(r, 10));
}

describe("controller restart grace", () => {
  it("fences nobody within a session timeout of the server becoming ready", async () => {
    const { core, store, clock } = await restartedCore(5_000);
    await tickAt(core, clock, 6_500);
    expect(core.state.brokers.get(1)!.fenced).toBe(false);
    await core.stop();
    await store.close();
  });

  it("without the grace starting at readiness the same tick fences the broker", async () => {
    const { core, store, clock } = await restartedCore(undefined);
    await tickAt(core, clock, 6_500);
    expect(core.state.brokers.get(1)!.fenced).toBe(true);
    await core.stop();
    await store.close();
  });
});
