// Typed calls of the controller's consumer-group methods through the shared ChannelPool. The pool's
// method table (network/) does not list the group methods yet, so they are typed here and passed
// through its generic unary path (which looks methods up by name on the generated client).
import type {
  ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse,
  DescribeGroupsRequest, DescribeGroupsResponse,
  ListGroupsRequest, ListGroupsResponse,
  OffsetCommitRequest, OffsetCommitResponse,
  OffsetFetchRequest, OffsetFetchResponse,
} from "@runnel/proto";
import type { ChannelPool } from "../network/index.js";

export interface GroupMethods {
  consumerGroupHeartbeat: [ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse];
  offsetCommit: [OffsetCommitRequest, OffsetCommitResponse];
  offsetFetch: [OffsetFetchRequest, OffsetFetchResponse];
  listGroups: [ListGroupsRequest, ListGroupsResponse];
  describeGroups: [DescribeGroupsRequest, DescribeGroupsResponse];
}

type LooseController = (address: string, method: string, request: unknown, timeoutMs?: number) => Promise<unknown>;

export function groupCall<M extends keyof GroupMethods>(pool: ChannelPool, address: string, method: M, request: GroupMethods[M][0], timeoutMs?: number): Promise<GroupMethods[M][1]> {
  const call = pool.controller.bind(pool) as unknown as LooseController;
  return call(address, method, request, timeoutMs) as Promise<GroupMethods[M][1]>;
}
