// Fault schedules: which fault comes next, decided from a seeded random generator and a view of the
// cluster (who leads what). Pure, so a seed and the same cluster history replay the same choices.
import type { SeededRandom } from "../faults/random.js";

export type FaultKind = "kill-broker" | "kill-controller" | "pause-leader" | "isolate-leader" | "rolling-restart";

export const faultKinds: readonly FaultKind[] = ["kill-broker", "kill-controller", "pause-leader", "isolate-leader", "rolling-restart"];

export type Fault =
  /** SIGKILL a broker, restart it after `downMs`. `partition` is set when it was chosen as that partition's leader. */
  | { kind: "kill-broker"; broker: number; partition: number | undefined; downMs: number }
  /** SIGKILL the controller, restart it after `downMs`. */
  | { kind: "kill-controller"; downMs: number }
  /** SIGSTOP a leader for longer than the session timeout (a zombie leader), then SIGCONT. */
  | { kind: "pause-leader"; broker: number; partition: number; durationMs: number }
  /** Cut a leader from the other brokers, the controller and clients, then heal. */
  | { kind: "isolate-leader"; broker: number; partition: number; durationMs: number }
  /** SIGTERM and restart every broker in turn (controlled shutdown: clients must see no error). */
  | { kind: "rolling-restart"; order: number[] };

export interface ClusterView {
  brokers: readonly number[];
  /** partition -> leader broker id (partitions without a leader are left out). */
  leaders: ReadonlyMap<number, number>;
  sessionTimeoutMs: number;
}

/** Relative frequency of each fault. Rolling restarts take longest, so they are rarer. */
export const faultWeights: ReadonlyArray<readonly [FaultKind, number]> = [
  ["kill-broker", 4],
  ["kill-controller", 2],
  ["pause-leader", 2],
  ["isolate-leader", 2],
  ["rolling-restart", 1],
];

/** Share of broker kills aimed at a partition leader (the interesting case: an election must follow). */
export const leaderBias = 0.75;
/** How far past the session timeout a pause or isolation lasts, at most, in milliseconds. */
export const overrunMaxMs = 3_000;
/** Longest a killed process stays down, in milliseconds. */
export const downMaxMs = 3_000;

/** The next fault, of `kind` if given, else drawn by faultWeights. */
export function planFault(rng: SeededRandom, view: ClusterView, kind?: FaultKind): Fault {
  const k = kind ?? rng.weighted(faultWeights);
  const led = [...view.leaders.entries()].sort(([a], [b]) => a - b);
  const leaderPick = (): { partition: number; broker: number } | undefined => {
    if (led.length === 0) return undefined;
    const [partition, broker] = rng.pick(led);
    return { partition, broker };
  };
  const overrun = () => view.sessionTimeoutMs + rng.int(500, overrunMaxMs);
  switch (k) {
    case "kill-broker": {
      const aimAtLeader = rng.next() < leaderBias;
      const target = aimAtLeader ? leaderPick() : undefined;
      const broker = target?.broker ?? rng.pick(view.brokers);
      return { kind: "kill-broker", broker, partition: target?.partition, downMs: rng.int(0, downMaxMs) };
    }
    case "kill-controller":
      return { kind: "kill-controller", downMs: rng.int(0, downMaxMs) };
    case "pause-leader":
    case "isolate-leader": {
      const target = leaderPick();
      if (target === undefined) return { kind: "kill-broker", broker: rng.pick(view.brokers), partition: undefined, downMs: rng.int(0, downMaxMs) };
      return { kind: k, broker: target.broker, partition: target.partition, durationMs: overrun() };
    }
    case "rolling-restart": {
      const order = [...view.brokers];
      // Fisher-Yates with the seeded generator.
      for (let i = order.length - 1; i > 0; i--) {
        const j = rng.int(0, i);
        [order[i], order[j]] = [order[j]!, order[i]!];
      }
      return { kind: "rolling-restart", order };
    }
  }
}

export function describeFault(f: Fault): string {
  switch (f.kind) {
    case "kill-broker":
      return `SIGKILL broker ${f.broker}${f.partition === undefined ? "" : ` (leader of partition ${f.partition})`}, down ${f.downMs} ms`;
    case "kill-controller":
      return `SIGKILL controller, down ${f.downMs} ms`;
    case "pause-leader":
      return `SIGSTOP broker ${f.broker} (leader of partition ${f.partition}) for ${f.durationMs} ms`;
    case "isolate-leader":
      return `isolate broker ${f.broker} (leader of partition ${f.partition}) for ${f.durationMs} ms`;
    case "rolling-restart":
      return `rolling restart (SIGTERM) of brokers ${f.order.join(", ")}`;
  }
}
