// Issue 8 items 4-6 on real processes: every process serves /healthz, /readyz and Prometheus /metrics
// over HTTP (traffic, per-partition offsets and ISR, health counts, RPC counts, process metrics), a
// killed broker shows up as under-replicated partitions and a restarted one is ready only once it is
// back in the ISR; and both binaries answer --help, an unknown flag and a bad value as promised.
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { type MetricSample, metricSample as sample, metricTotal as total, parseMetricsText as parseMetrics } from "@runnel/common";
import { describe, expect, it } from "vitest";
import { callUnary, findFreePorts, pollUntil, startClusterForTest } from "../src/harness/index.js";
import { TestProducer } from "../src/workload/producer.js";

const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
const brokerEntry = `${repoRoot}broker/dist/main.js`;
const controllerEntry = `${repoRoot}controller/dist/main.js`;
/** Longest a wait on cluster state lasts before failing (a bound, not an assertion on speed). */
const waitTimeoutMs = 20_000;
const sessionTimeoutMs = 2_000;





async function scrape(httpAddress: string): Promise<MetricSample[]> {
  const res = await fetch(`http://${httpAddress}/metrics`);
  if (res.status !== 200) throw new Error(`/metrics on ${httpAddress} answered ${res.status}`);
  return parseMetrics(await res.text());
}

async function readyStatus(httpAddress: string): Promise<number> {
  return (await fetch(`http://${httpAddress}/readyz`)).status;
}

describe("metrics, health and readiness over HTTP", () => {
  it("every process serves what the issue lists, and the numbers follow produce, kill and restart", async (ctx) => {
    // The harness does not expose the controller's HTTP port: give it one (the last --http wins).
    const [controllerHttpPort] = await findFreePorts(1);
    const controllerHttp = `127.0.0.1:${controllerHttpPort}`;
    const cluster = await startClusterForTest(ctx, { brokers: 3, sessionTimeoutMs, heartbeatIntervalMs: 200, controllerArgs: ["--http", controllerHttp], brokerArgs: ["--replica-lag-time-max-ms", "2000"] });
    const topic = "metered";
    await cluster.createTopic({ name: topic, partitions: 2, replicationFactor: 3, fullIsr: true });
    const producer = new TestProducer(cluster, topic);
    await producer.init();
    const sent = await producer.send(0, ["a", "b", "c"], Date.now() + waitTimeoutMs);
    expect(sent.acked).toBe(true);
    const leader = (await cluster.waitForLeader(topic, 0)).leaderId;
    const followers = cluster.brokerIds.filter((id) => id !== leader);

    for (const id of cluster.brokerIds) {
      expect((await fetch(`http://${cluster.brokerHttpAddress(id)}/healthz`)).status).toBe(200);
      await pollUntil(async () => ((await readyStatus(cluster.brokerHttpAddress(id))) === 200 ? true : undefined), { timeoutMs: waitTimeoutMs, what: `broker ${id} /readyz did not answer 200` });
    }
    expect(await readyStatus(controllerHttp)).toBe(200);

    // Followers learn the high watermark on their next fetch: wait for every replica to show 3.
    const p0 = { topic, partition: "0" };
    const byBroker = new Map<number, MetricSample[]>();
    for (const id of cluster.brokerIds) {
      byBroker.set(
        id,
        await pollUntil(async () => {
          const s = await scrape(cluster.brokerHttpAddress(id));
          return sample(s, "runnel_partition_high_watermark", p0) === 3 ? s : undefined;
        }, { timeoutMs: waitTimeoutMs, what: `broker ${id} did not report high watermark 3 for ${topic}-0` }),
      );
    }
    for (const [id, s] of byBroker) {
      expect(sample(s, "runnel_partition_log_end_offset", p0), `broker ${id}`).toBe(3);
      expect(sample(s, "runnel_partition_log_start_offset", p0), `broker ${id}`).toBe(0);
      expect(sample(s, "runnel_partition_isr_size", p0), `broker ${id}`).toBe(3);
      expect(sample(s, "runnel_partition_leader", p0), `broker ${id}`).toBe(id === leader ? 1 : 0);
      expect(sample(s, "process_resident_memory_bytes"), `broker ${id}`).toBeGreaterThan(0);
      expect(sample(s, "nodejs_eventloop_lag_p99_seconds"), `broker ${id}`).toBeGreaterThanOrEqual(0);
    }
    const all = [...byBroker.values()];
    expect(all.reduce((n, s) => n + total(s, "runnel_partition_leader", { topic }), 0)).toBe(2);
    expect(all.reduce((n, s) => n + (sample(s, "runnel_broker_leader_partitions") ?? 0), 0)).toBe(2);
    const leaderSamples = byBroker.get(leader)!;
    expect(sample(leaderSamples, "runnel_broker_produce_bytes_total")).toBeGreaterThan(0);
    expect(sample(leaderSamples, "runnel_broker_under_replicated_partitions")).toBe(0);
    expect(total(leaderSamples, "runnel_rpc_requests_total", { method: "runnel.v1.BrokerService/Produce", code: "OK" })).toBeGreaterThanOrEqual(1);
    for (const f of followers) expect(sample(leaderSamples, "runnel_broker_replication_bytes_out_total", { follower: String(f) }), `to follower ${f}`).toBeGreaterThan(0);

    const controller = await scrape(controllerHttp);
    expect(sample(controller, "runnel_controller_brokers", { state: "alive" })).toBe(3);
    expect(sample(controller, "runnel_controller_partitions")).toBe(2);
    expect(sample(controller, "runnel_controller_offline_partitions")).toBe(0);
    expect(sample(controller, "runnel_controller_under_replicated_partitions")).toBe(0);
    expect(total(controller, "runnel_controller_leader_partitions")).toBe(2);
    // At least one registration each (a broker fenced on a stalled machine registers again).
    expect(sample(controller, "runnel_rpc_requests_total", { method: "runnel.v1.ControllerService/RegisterBroker", code: "OK" })).toBeGreaterThanOrEqual(3);
    expect(total(controller, "runnel_rpc_requests_total", { method: "runnel.v1.ControllerService/BrokerHeartbeat", code: "OK" })).toBeGreaterThan(0);
    expect(sample(controller, "process_resident_memory_bytes")).toBeGreaterThan(0);

    // Group lag: a group that committed offset 1 on partition 0 (high watermark 3) lags by 2.
    const c = cluster.controllerClient();
    const commit = await callUnary(c, c.offsetCommit, { groupId: "lagging", memberId: "", memberEpoch: -1, topics: [{ topic, partitions: [{ partition: 0, committedOffset: 1n, committedLeaderEpoch: -1, metadata: "" }] }] }, 5_000);
    expect(commit.errorCode).toBe(0);
    const lagged = await scrape(controllerHttp);
    expect(sample(lagged, "runnel_group_committed_offset", { group: "lagging", topic, partition: "0" })).toBe(1);
    expect(sample(lagged, "runnel_group_lag", { group: "lagging", topic, partition: "0" })).toBe(2);

    // A dead follower leaves the ISR: both partitions become under-replicated on the controller.
    const victim = followers[0]!;
    await cluster.kill(victim);
    await pollUntil(async () => {
      const s = await scrape(controllerHttp);
      return sample(s, "runnel_controller_under_replicated_partitions") === 2 && sample(s, "runnel_controller_brokers", { state: "alive" }) === 2 ? true : undefined;
    }, { timeoutMs: waitTimeoutMs, what: "the controller did not report 2 under-replicated partitions after a SIGKILL" });
    expect(sample(await scrape(controllerHttp), "runnel_controller_offline_partitions")).toBe(0);

    // Restarted, it is ready only once it is back in the ISR of both partitions.
    await cluster.restart(victim);
    await pollUntil(async () => ((await readyStatus(cluster.brokerHttpAddress(victim))) === 200 ? true : undefined), {
      timeoutMs: waitTimeoutMs,
      what: `restarted broker ${victim} did not become ready`,
    });
    // Its readiness came from the controller's ISR, which every other broker learns too.
    for (let p = 0; p < 2; p++) await cluster.waitForLeader(topic, p, (m) => m.isr.includes(victim));
    const back = await scrape(cluster.brokerHttpAddress(victim));
    expect(sample(back, "runnel_broker_out_of_sync_partitions")).toBe(0);
    expect(sample(back, "runnel_partition_log_end_offset", p0)).toBe(3);
  });
});

describe("process flags", () => {
  const run = (entry: string, args: string[]) => spawnSync(process.execPath, [entry, ...args], { encoding: "utf8", timeout: 20_000, cwd: repoRoot, env: { ...process.env, RUNNEL_LOG_LEVEL: "silent" } });

  for (const [name, entry, badValue] of [
    ["runnel-broker", brokerEntry, ["--id", "abc"]],
    ["runnel-controller", controllerEntry, ["--session-timeout-ms", "abc"]],
  ] as const) {
    it(`${name} --help lists every flag with its environment variable and default`, () => {
      const r = run(entry, ["--help"]);
      expect(r.status).toBe(0);
      // Help wraps to the terminal width: compare with whitespace runs collapsed.
      const help = r.stdout.replace(/\s+/g, " ");
      expect(help).toContain(`Usage: ${name}`);
      for (const flag of ["--listen", "--http", "--data-dir", "--log-level"]) expect(help).toContain(flag);
      // Every option with a value names its environment variable.
      expect((help.match(/env: RUNNEL_[A-Z_]+\)/g) ?? []).length).toBe((help.match(/--[a-z-]+ <value>/g) ?? []).length);
      expect(help).toContain('(default: "info", env: RUNNEL_LOG_LEVEL)');
    });

    it(`${name} exits non-zero with a one-line reason on an unknown flag`, () => {
      const r = run(entry, ["--bogus"]);
      expect(r.status).not.toBe(0);
      expect(r.stdout).toBe("");
      expect(r.stderr.trim().split("\n")).toEqual([`${name}: unknown option '--bogus'`]);
    });

    it(`${name} exits non-zero with a one-line reason on a bad value`, () => {
      const r = run(entry, [...badValue]);
      expect(r.status).not.toBe(0);
      const lines = r.stderr.trim().split("\n");
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain(`${name}: option '${badValue[0]} <value>' argument 'abc' is invalid`);
      expect(lines[0]).toContain('"abc" is not an integer');
    });
  }

  it("a bad value from the environment is refused the same way", () => {
    const r = spawnSync(process.execPath, [brokerEntry], { encoding: "utf8", timeout: 20_000, cwd: repoRoot, env: { ...process.env, RUNNEL_BROKER_ID: "x" } });
    expect(r.status).not.toBe(0);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toContain("RUNNEL_BROKER_ID");
  });
});
