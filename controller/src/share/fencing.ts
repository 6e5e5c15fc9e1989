// Fencing of share-state reads and writes: only the partition's current leader, in its current leader
// epoch and broker registration, may read or replace the state. Pure: decided from the ClusterState.
import { ErrorCode } from "@runnel/proto";
import { brokerEpochProblem, type ClusterState, noLeader } from "../metadata/index.js";

export interface ShareStateCaller {
  brokerId: number;
  brokerEpoch: bigint;
  topic: string;
  partition: number;
  leaderEpoch: number;
}

export type ShareFenceOutcome =
  | { ok: true; topicId: string }
  | { ok: false; errorCode: ErrorCode; errorMessage: string };

export function fenceShareStateCall(state: ClusterState, caller: ShareStateCaller): ShareFenceOutcome {
  const fail = (errorCode: ErrorCode, errorMessage: string): ShareFenceOutcome => ({ ok: false, errorCode, errorMessage });
  const epochProblem = brokerEpochProblem(state, caller.brokerId, caller.brokerEpoch);
  if (epochProblem !== undefined) return fail(ErrorCode.STALE_BROKER_EPOCH, epochProblem);
  const topic = state.topics.get(caller.topic);
  const p = topic?.partitions[caller.partition];
  const name = `${caller.topic}-${caller.partition}`;
  if (topic === undefined || p === undefined) return fail(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, `partition ${name} does not exist`);
  const leader = p.leader === noLeader ? "none" : `broker ${p.leader}`;
  if (caller.leaderEpoch < p.leaderEpoch) {
    return fail(ErrorCode.FENCED_LEADER_EPOCH, `partition ${name}: leader epoch ${caller.leaderEpoch} is older than the current ${p.leaderEpoch} (leader ${leader})`);
  }
  if (p.leader !== caller.brokerId || caller.leaderEpoch > p.leaderEpoch) {
    return fail(ErrorCode.NOT_LEADER, `partition ${name}: broker ${caller.brokerId} in leader epoch ${caller.leaderEpoch} is not its leader (current leader ${leader}, leader epoch ${p.leaderEpoch})`);
  }
  return { ok: true, topicId: topic.topicId };
}
