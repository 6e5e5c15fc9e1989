// Typed calls of the share-group RPCs through the shared ChannelPool. The pool's method tables
// (network/) do not list them, so they are typed here and passed through its generic unary path
// (which looks methods up by name on the generated clients), as groups/rpc.ts does for groups.
import type {
  DescribeShareGroupsRequest, DescribeShareGroupsResponse,
  ShareAcknowledgeRequest, ShareAcknowledgeResponse,
  ShareFetchRequest, ShareFetchResponse,
  ShareGroupHeartbeatRequest, ShareGroupHeartbeatResponse,
} from "@runnel/proto";
import type { ChannelPool } from "../network/index.js";

export interface ShareBrokerMethods {
  shareFetch: [ShareFetchRequest, ShareFetchResponse];
  shareAcknowledge: [ShareAcknowledgeRequest, ShareAcknowledgeResponse];
}

export interface ShareControllerMethods {
  shareGroupHeartbeat: [ShareGroupHeartbeatRequest, ShareGroupHeartbeatResponse];
  describeShareGroups: [DescribeShareGroupsRequest, DescribeShareGroupsResponse];
}

type Loose = (address: string, method: string, request: unknown, timeoutMs?: number) => Promise<unknown>;

export function shareBrokerCall<M extends keyof ShareBrokerMethods>(pool: ChannelPool, address: string, method: M, request: ShareBrokerMethods[M][0], timeoutMs?: number): Promise<ShareBrokerMethods[M][1]> {
  const call = pool.broker.bind(pool) as unknown as Loose;
  return call(address, method, request, timeoutMs) as Promise<ShareBrokerMethods[M][1]>;
}

export function shareControllerCall<M extends keyof ShareControllerMethods>(pool: ChannelPool, address: string, method: M, request: ShareControllerMethods[M][0], timeoutMs?: number): Promise<ShareControllerMethods[M][1]> {
  const call = pool.controller.bind(pool) as unknown as Loose;
  return call(address, method, request, timeoutMs) as Promise<ShareControllerMethods[M][1]>;
}
