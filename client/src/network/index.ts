// Network: one gRPC client per peer address (brokers and the controller), reused by every request,
// and a deadline on every call. Calls come back as promises; failures are already mapped onto the
// RunnelError hierarchy (errors/), so nothing above this folder sees grpc-js types.
import * as grpc from "@grpc/grpc-js";
import { channelOptions, formatHostPort, type HostPort } from "@runnel/common";
import {
  BrokerServiceClient,
  ControllerServiceClient,
  type MetadataRequest, type MetadataResponse,
  type ProduceRequest, type ProduceResponse,
  type FetchRequest, type FetchResponse,
  type ListOffsetsRequest, type ListOffsetsResponse,
  type CreateTopicsRequest, type CreateTopicsResponse,
  type DeleteTopicsRequest, type DeleteTopicsResponse,
  type AlterTopicConfigsRequest, type AlterTopicConfigsResponse,
  type DescribeClusterRequest, type DescribeClusterResponse,
  type InitProducerIdRequest, type InitProducerIdResponse,
  type ConsumerGroupHeartbeatRequest, type ConsumerGroupHeartbeatResponse,
  type OffsetCommitRequest, type OffsetCommitResponse,
  type OffsetFetchRequest, type OffsetFetchResponse,
  type ListGroupsRequest, type ListGroupsResponse,
  type DescribeGroupsRequest, type DescribeGroupsResponse,
  type ShareFetchRequest, type ShareFetchResponse,
  type ShareAcknowledgeRequest, type ShareAcknowledgeResponse,
  type ShareGroupHeartbeatRequest, type ShareGroupHeartbeatResponse,
  type DescribeShareGroupsRequest, type DescribeShareGroupsResponse,
} from "@runnel/proto";
import { ClientUsageError, errorFromGrpc } from "../errors/index.js";
import { ErrorCode } from "@runnel/proto";

/** Default deadline of a request that does not wait on purpose (not a long poll), in milliseconds. */
export const defaultRequestTimeoutMs = 30_000;

export interface BrokerMethods {
  metadata: [MetadataRequest, MetadataResponse];
  produce: [ProduceRequest, ProduceResponse];
  fetch: [FetchRequest, FetchResponse];
  listOffsets: [ListOffsetsRequest, ListOffsetsResponse];
  shareFetch: [ShareFetchRequest, ShareFetchResponse];
  shareAcknowledge: [ShareAcknowledgeRequest, ShareAcknowledgeResponse];
}

export interface ControllerMethods {
  createTopics: [CreateTopicsRequest, CreateTopicsResponse];
  deleteTopics: [DeleteTopicsRequest, DeleteTopicsResponse];
  alterTopicConfigs: [AlterTopicConfigsRequest, AlterTopicConfigsResponse];
  describeCluster: [DescribeClusterRequest, DescribeClusterResponse];
  initProducerId: [InitProducerIdRequest, InitProducerIdResponse];
  consumerGroupHeartbeat: [ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse];
  offsetCommit: [OffsetCommitRequest, OffsetCommitResponse];
  offsetFetch: [OffsetFetchRequest, OffsetFetchResponse];
  listGroups: [ListGroupsRequest, ListGroupsResponse];
  describeGroups: [DescribeGroupsRequest, DescribeGroupsResponse];
  shareGroupHeartbeat: [ShareGroupHeartbeatRequest, ShareGroupHeartbeatResponse];
  describeShareGroups: [DescribeShareGroupsRequest, DescribeShareGroupsResponse];
}

type UnaryFn = (req: unknown, md: grpc.Metadata, options: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: unknown) => void) => grpc.ClientUnaryCall;

export function addressOf(hp: HostPort): string {
  return formatHostPort(hp);
}

export class ChannelPool {
  private readonly brokers = new Map<string, BrokerServiceClient>();
  private readonly controllers = new Map<string, ControllerServiceClient>();
  private readonly calls = new Set<grpc.ClientUnaryCall>();
  private closed = false;

  constructor(private readonly defaultTimeoutMs: number = defaultRequestTimeoutMs) {}

  get requestTimeoutMs(): number {
    return this.defaultTimeoutMs;
  }

  /** Calls a BrokerService method on `address` with a deadline of `timeoutMs` (default: the request timeout). */
  broker<M extends keyof BrokerMethods>(address: string, method: M, request: BrokerMethods[M][0], timeoutMs?: number): Promise<BrokerMethods[M][1]> {
    let client = this.brokers.get(address);
    if (client === undefined) {
      this.assertOpen();
      client = new BrokerServiceClient(address, grpc.credentials.createInsecure(), channelOptions);
      this.brokers.set(address, client);
    }
    return this.unary(client, method, address, request, timeoutMs) as Promise<BrokerMethods[M][1]>;
  }

  /** Calls a ControllerService method on `address`. */
  controller<M extends keyof ControllerMethods>(address: string, method: M, request: ControllerMethods[M][0], timeoutMs?: number): Promise<ControllerMethods[M][1]> {
    let client = this.controllers.get(address);
    if (client === undefined) {
      this.assertOpen();
      client = new ControllerServiceClient(address, grpc.credentials.createInsecure(), channelOptions);
      this.controllers.set(address, client);
    }
    return this.unary(client, method, address, request, timeoutMs) as Promise<ControllerMethods[M][1]>;
  }

  private unary(client: grpc.Client, method: string, address: string, request: unknown, timeoutMs: number | undefined): Promise<unknown> {
    this.assertOpen();
    const fn = (client as unknown as Record<string, UnaryFn>)[method]!;
    const deadline = new Date(Date.now() + (timeoutMs ?? this.defaultTimeoutMs));
    return new Promise((resolve, reject) => {
      const call = fn.call(client, request, new grpc.Metadata(), { deadline }, (err, res) => {
        this.calls.delete(call);
        if (err !== null) reject(errorFromGrpc(err, address, method));
        else resolve(res);
      });
      this.calls.add(call);
    });
  }

  private assertOpen(): void {
    if (this.closed) throw new ClientUsageError("the Runnel client is closed", { code: ErrorCode.INVALID_REQUEST, retriable: false });
  }

  /** Cancels calls still running and closes every channel. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const call of this.calls) call.cancel();
    this.calls.clear();
    for (const c of this.brokers.values()) c.close();
    for (const c of this.controllers.values()) c.close();
    this.brokers.clear();
    this.controllers.clear();
  }
}
