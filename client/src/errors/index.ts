// Errors: one class per meaningful runnel.v1 ErrorCode, built from ONE table (errorTable) that says
// for each code which class it becomes, whether a retry can help and what to tell a person. gRPC
// transport failures map onto the same classes (UNAVAILABLE -> ConnectionError, DEADLINE_EXCEEDED ->
// RequestTimedOutError with outcomeUnknown) so callers handle one hierarchy.
import { status as GrpcStatus, type ServiceError } from "@grpc/grpc-js";
import { ErrorCode, errorCodeToJSON } from "@runnel/proto";

/** Where an error happened, when it concerns a topic or a partition. */
export interface ErrorFields {
  topic?: string | undefined;
  partition?: number | undefined;
  /** The offset a request asked for (fetch offset, seek target). */
  offset?: bigint | undefined;
  /** The broker address the request went to. */
  address?: string | undefined;
}

export interface RunnelErrorInit extends ErrorFields {
  code: ErrorCode;
  retriable: boolean;
  /** True when the request may or may not have taken effect (timeouts, lost responses). */
  outcomeUnknown?: boolean;
  cause?: unknown;
}

export class RunnelError extends Error {
  override name = "RunnelError";
  readonly code: ErrorCode;
  readonly retriable: boolean;
  readonly outcomeUnknown: boolean;
  readonly topic: string | undefined;
  readonly partition: number | undefined;
  readonly offset: bigint | undefined;
  readonly address: string | undefined;

  constructor(message: string, init: RunnelErrorInit) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.code = init.code;
    this.retriable = init.retriable;
    this.outcomeUnknown = init.outcomeUnknown ?? false;
    this.topic = init.topic;
    this.partition = init.partition;
    this.offset = init.offset;
    this.address = init.address;
  }

  /** The code's protobuf name, e.g. "NOT_LEADER". */
  get codeName(): string {
    return errorCodeToJSON(this.code);
  }
}

export class UnknownServerError extends RunnelError { override name = "UnknownServerError"; }
export class UnknownTopicError extends RunnelError { override name = "UnknownTopicError"; }
export class LeaderNotAvailableError extends RunnelError { override name = "LeaderNotAvailableError"; }
export class NotEnoughReplicasError extends RunnelError { override name = "NotEnoughReplicasError"; }
export class NotEnoughReplicasAfterAppendError extends RunnelError { override name = "NotEnoughReplicasAfterAppendError"; }
export class RecordTooLargeError extends RunnelError { override name = "RecordTooLargeError"; }
export class CorruptBatchError extends RunnelError { override name = "CorruptBatchError"; }
export class InvalidTopicNameError extends RunnelError { override name = "InvalidTopicNameError"; }
/** A share-group acknowledgement named a record this member no longer holds (lock expired, settled). */
export class InvalidRecordStateError extends RunnelError { override name = "InvalidRecordStateError"; }
export class TopicAlreadyExistsError extends RunnelError { override name = "TopicAlreadyExistsError"; }
export class InvalidPartitionsError extends RunnelError { override name = "InvalidPartitionsError"; }
export class InvalidReplicationFactorError extends RunnelError { override name = "InvalidReplicationFactorError"; }
export class InvalidConfigError extends RunnelError { override name = "InvalidConfigError"; }
export class InvalidRequestError extends RunnelError { override name = "InvalidRequestError"; }
export class FencedLeaderEpochError extends RunnelError { override name = "FencedLeaderEpochError"; }
export class UnknownLeaderEpochError extends RunnelError { override name = "UnknownLeaderEpochError"; }
export class RequestTimedOutError extends RunnelError { override name = "RequestTimedOutError"; }
export class NotReadyError extends RunnelError { override name = "NotReadyError"; }
export class OutOfOrderSequenceError extends RunnelError { override name = "OutOfOrderSequenceError"; }
export class DuplicateSequenceError extends RunnelError { override name = "DuplicateSequenceError"; }
export class InvalidProducerEpochError extends RunnelError { override name = "InvalidProducerEpochError"; }
export class UnknownProducerIdError extends RunnelError { override name = "UnknownProducerIdError"; }
export class StorageError extends RunnelError { override name = "StorageError"; }
export class TopicDeletionInProgressError extends RunnelError { override name = "TopicDeletionInProgressError"; }
export class BrokerNotAvailableError extends RunnelError { override name = "BrokerNotAvailableError"; }
export class ThrottledError extends RunnelError { override name = "ThrottledError"; }
export class GroupError extends RunnelError { override name = "GroupError"; }

/** This broker does not lead the partition; `leaderHint` is the leader it knows, if any. */
export class NotLeaderError extends RunnelError {
  override name = "NotLeaderError";
  leaderHint: { leaderId: number; leaderEpoch: number } | undefined;
}

/** The requested offset is outside [logStartOffset, logEndOffset]. */
export class OffsetOutOfRangeError extends RunnelError {
  override name = "OffsetOutOfRangeError";
  logStartOffset: bigint | undefined;
  logEndOffset: bigint | undefined;
}

/** No peer could be reached (connection refused, DNS failure, channel closed). Retriable. */
export class ConnectionError extends RunnelError {
  override name = "ConnectionError";
}

/** A client-side misuse (bad option, call after close); never retriable. */
export class ClientUsageError extends RunnelError {
  override name = "ClientUsageError";
}

type ErrorClass = new (message: string, init: RunnelErrorInit) => RunnelError;

interface ErrorEntry {
  errorClass: ErrorClass;
  retriable: boolean;
  /** Outcome unknown: the request may have been applied. */
  outcomeUnknown?: boolean;
  message: string;
}

/** The one mapping from ErrorCode to class, retriability and a readable message. */
export const errorTable: Readonly<Record<Exclude<ErrorCode, ErrorCode.ERROR_CODE_NONE | ErrorCode.UNRECOGNIZED>, ErrorEntry>> = {
  [ErrorCode.UNKNOWN_SERVER_ERROR]: { errorClass: UnknownServerError, retriable: true, message: "unexpected server error" },
  [ErrorCode.UNKNOWN_TOPIC_OR_PARTITION]: { errorClass: UnknownTopicError, retriable: false, message: "topic or partition does not exist" },
  [ErrorCode.NOT_LEADER]: { errorClass: NotLeaderError, retriable: true, message: "broker is not the partition leader" },
  [ErrorCode.LEADER_NOT_AVAILABLE]: { errorClass: LeaderNotAvailableError, retriable: true, message: "partition has no leader right now" },
  [ErrorCode.NOT_ENOUGH_REPLICAS]: { errorClass: NotEnoughReplicasError, retriable: true, message: "fewer in-sync replicas than min.insync.replicas; nothing was written" },
  [ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND]: { errorClass: NotEnoughReplicasAfterAppendError, retriable: true, outcomeUnknown: true, message: "in-sync replicas shrank below min.insync.replicas after the append" },
  [ErrorCode.OFFSET_OUT_OF_RANGE]: { errorClass: OffsetOutOfRangeError, retriable: false, message: "offset is out of range" },
  [ErrorCode.RECORD_TOO_LARGE]: { errorClass: RecordTooLargeError, retriable: false, message: "record batch is larger than the topic allows" },
  [ErrorCode.CORRUPT_BATCH]: { errorClass: CorruptBatchError, retriable: false, message: "record batch failed validation" },
  [ErrorCode.INVALID_TOPIC_NAME]: { errorClass: InvalidTopicNameError, retriable: false, message: "invalid topic name" },
  [ErrorCode.TOPIC_ALREADY_EXISTS]: { errorClass: TopicAlreadyExistsError, retriable: false, message: "topic already exists" },
  [ErrorCode.INVALID_PARTITIONS]: { errorClass: InvalidPartitionsError, retriable: false, message: "invalid partition count" },
  [ErrorCode.INVALID_REPLICATION_FACTOR]: { errorClass: InvalidReplicationFactorError, retriable: false, message: "invalid replication factor" },
  [ErrorCode.INVALID_CONFIG]: { errorClass: InvalidConfigError, retriable: false, message: "invalid topic configuration" },
  [ErrorCode.INVALID_REQUEST]: { errorClass: InvalidRequestError, retriable: false, message: "invalid request" },
  [ErrorCode.FENCED_LEADER_EPOCH]: { errorClass: FencedLeaderEpochError, retriable: true, message: "client metadata is stale (older leader epoch)" },
  [ErrorCode.UNKNOWN_LEADER_EPOCH]: { errorClass: UnknownLeaderEpochError, retriable: true, message: "replica has not caught up with the leader epoch yet" },
  [ErrorCode.STALE_BROKER_EPOCH]: { errorClass: RunnelError, retriable: false, message: "stale broker epoch" },
  [ErrorCode.REQUEST_TIMED_OUT]: { errorClass: RequestTimedOutError, retriable: true, outcomeUnknown: true, message: "request timed out; the outcome is unknown" },
  [ErrorCode.INVALID_PARTITION_EPOCH]: { errorClass: RunnelError, retriable: false, message: "stale partition epoch" },
  [ErrorCode.NOT_READY]: { errorClass: NotReadyError, retriable: true, message: "server is not ready yet" },
  [ErrorCode.OUT_OF_ORDER_SEQUENCE]: { errorClass: OutOfOrderSequenceError, retriable: false, message: "producer sequence is out of order" },
  [ErrorCode.DUPLICATE_SEQUENCE]: { errorClass: DuplicateSequenceError, retriable: false, message: "batch was already written" },
  [ErrorCode.INVALID_PRODUCER_EPOCH]: { errorClass: InvalidProducerEpochError, retriable: false, message: "a newer producer instance took over this producer id" },
  [ErrorCode.UNKNOWN_PRODUCER_ID]: { errorClass: UnknownProducerIdError, retriable: false, message: "the leader has no state for this producer id" },
  [ErrorCode.STORAGE_ERROR]: { errorClass: StorageError, retriable: true, message: "broker storage failed" },
  [ErrorCode.FENCED_MEMBER_EPOCH]: { errorClass: GroupError, retriable: false, message: "group member was fenced" },
  [ErrorCode.UNKNOWN_MEMBER_ID]: { errorClass: GroupError, retriable: false, message: "unknown group member" },
  [ErrorCode.REBALANCE_IN_PROGRESS]: { errorClass: GroupError, retriable: true, message: "group is rebalancing" },
  [ErrorCode.GROUP_ID_NOT_FOUND]: { errorClass: GroupError, retriable: false, message: "consumer group does not exist" },
  [ErrorCode.NON_EMPTY_GROUP]: { errorClass: GroupError, retriable: false, message: "group has active members" },
  [ErrorCode.INVALID_GROUP_ID]: { errorClass: GroupError, retriable: false, message: "invalid group id" },
  [ErrorCode.TOPIC_DELETION_IN_PROGRESS]: { errorClass: TopicDeletionInProgressError, retriable: true, message: "topic is being deleted" },
  [ErrorCode.BROKER_NOT_AVAILABLE]: { errorClass: BrokerNotAvailableError, retriable: true, message: "broker is not available" },
  [ErrorCode.THROTTLED]: { errorClass: ThrottledError, retriable: true, message: "broker is busy; retry after a backoff" },
  [ErrorCode.UNSUPPORTED_COMPRESSION]: { errorClass: RunnelError, retriable: false, message: "unsupported compression codec" },
  [ErrorCode.UNRELEASED_INSTANCE_ID]: { errorClass: GroupError, retriable: false, message: "another live member of the group holds this instance id; stop that process first" },
  [ErrorCode.INVALID_RECORD_STATE]: { errorClass: InvalidRecordStateError, retriable: false, message: "record is not acquired by this share-group member (its lock expired or it was settled)" },
};

function where(fields: ErrorFields): string {
  if (fields.topic === undefined) return "";
  return fields.partition === undefined ? ` (topic "${fields.topic}")` : ` (topic "${fields.topic}" partition ${fields.partition})`;
}

export interface ErrorDetails extends ErrorFields {
  /** The server's readable detail. */
  detail?: string | undefined;
  leaderHint?: { leaderId: number; leaderEpoch: number } | undefined;
  logStartOffset?: bigint | undefined;
  logEndOffset?: bigint | undefined;
}

/** Builds the error for a non-NONE ErrorCode from a response. */
export function errorFromCode(code: ErrorCode, details: ErrorDetails = {}): RunnelError {
  const entry = (errorTable as Record<number, ErrorEntry | undefined>)[code];
  const base = entry?.message ?? `server answered unknown error code ${code}`;
  const detail = details.detail !== undefined && details.detail !== "" ? `: ${details.detail}` : "";
  const message = `${base}${where(details)}${detail}`;
  const init: RunnelErrorInit = {
    code,
    retriable: entry?.retriable ?? false,
    outcomeUnknown: entry?.outcomeUnknown ?? false,
    topic: details.topic,
    partition: details.partition,
    offset: details.offset,
    address: details.address,
  };
  const err = new (entry?.errorClass ?? RunnelError)(message, init);
  if (err instanceof NotLeaderError) err.leaderHint = details.leaderHint;
  if (err instanceof OffsetOutOfRangeError) {
    err.logStartOffset = details.logStartOffset;
    err.logEndOffset = details.logEndOffset;
  }
  return err;
}

function isServiceError(err: unknown): err is ServiceError {
  return err instanceof Error && typeof (err as Partial<ServiceError>).code === "number" && "details" in err;
}

/** Maps a failed gRPC call (transport or status) onto the hierarchy. */
export function errorFromGrpc(err: unknown, address: string, what: string): RunnelError {
  if (err instanceof RunnelError) return err;
  if (!isServiceError(err)) {
    return new UnknownServerError(`${what} to ${address} failed: ${err instanceof Error ? err.message : String(err)}`, {
      code: ErrorCode.UNKNOWN_SERVER_ERROR, retriable: true, outcomeUnknown: true, address, cause: err,
    });
  }
  const detail = err.details || err.message;
  switch (err.code) {
    case GrpcStatus.UNAVAILABLE:
    case GrpcStatus.CANCELLED:
      // The request may have reached the server before the connection broke.
      return new ConnectionError(`cannot reach ${address} (${what}): ${detail}`, {
        code: ErrorCode.BROKER_NOT_AVAILABLE, retriable: true, outcomeUnknown: true, address, cause: err,
      });
    case GrpcStatus.DEADLINE_EXCEEDED:
      return new RequestTimedOutError(`${what} to ${address} timed out; the outcome is unknown`, {
        code: ErrorCode.REQUEST_TIMED_OUT, retriable: true, outcomeUnknown: true, address, cause: err,
      });
    case GrpcStatus.INVALID_ARGUMENT:
      return new InvalidRequestError(`${what} rejected by ${address}: ${detail}`, {
        code: ErrorCode.INVALID_REQUEST, retriable: false, address, cause: err,
      });
    case GrpcStatus.RESOURCE_EXHAUSTED:
      return new RecordTooLargeError(`${what} to ${address} is too large: ${detail}`, {
        code: ErrorCode.RECORD_TOO_LARGE, retriable: false, address, cause: err,
      });
    case GrpcStatus.UNIMPLEMENTED:
      return new RunnelError(`${address} does not implement ${what}: ${detail}`, {
        code: ErrorCode.UNKNOWN_SERVER_ERROR, retriable: false, address, cause: err,
      });
    default:
      return new UnknownServerError(`${what} to ${address} failed: ${detail}`, {
        code: ErrorCode.UNKNOWN_SERVER_ERROR, retriable: true, outcomeUnknown: true, address, cause: err,
      });
  }
}

/** Whether metadata should be refreshed before retrying after this error. */
export function needsMetadataRefresh(err: unknown): boolean {
  return (
    err instanceof NotLeaderError ||
    err instanceof UnknownTopicError ||
    err instanceof LeaderNotAvailableError ||
    err instanceof FencedLeaderEpochError ||
    err instanceof UnknownLeaderEpochError ||
    err instanceof ConnectionError ||
    err instanceof RequestTimedOutError
  );
}
