// The hand-written encoders for batch-carrying responses must produce exactly what the generated
// encoders produce from decoded batches, so clients in any language read them as the .proto says.
import { describe, expect, it } from "vitest";
import { buildBatch, ErrorCode, FetchResponse, RecordBatch, ReplicaFetchResponse } from "@runnel/proto";
import { decodeReplicaFetchResponse, encodeFetchResponse, encodeReplicaFetchResponse } from "../src/server/wire.js";

const enc = new TextEncoder();
const batches = [buildBatch([{ value: enc.encode("a") }, { key: enc.encode("k"), value: enc.encode("b") }], { nowMs: 1 }), buildBatch([{ value: new Uint8Array(300) }], { nowMs: 2 })];
batches[1]!.header!.baseOffset = 2n;
const encoded = batches.map((b) => RecordBatch.encode(b).finish());

describe("pre-encoded batch responses", () => {
  it("FetchResponse bytes equal the generated encoding", () => {
    const mine = encodeFetchResponse([
      {
        topic: "t",
        partitions: [
          { partition: 3, errorCode: ErrorCode.ERROR_CODE_NONE, errorMessage: "", highWatermark: 3n, logStartOffset: 0n, logEndOffset: 5n, currentLeader: undefined, batches: encoded },
          { partition: 4, errorCode: ErrorCode.NOT_LEADER, errorMessage: "no", highWatermark: -1n, logStartOffset: -1n, logEndOffset: -1n, currentLeader: { leaderId: 2, leaderEpoch: 7 }, batches: [] },
        ],
      },
    ]);
    const theirs = FetchResponse.encode({
      topics: [
        {
          topic: "t",
          partitions: [
            { partition: 3, errorCode: ErrorCode.ERROR_CODE_NONE, errorMessage: "", highWatermark: 3n, logStartOffset: 0n, logEndOffset: 5n, currentLeader: undefined, batches },
            { partition: 4, errorCode: ErrorCode.NOT_LEADER, errorMessage: "no", highWatermark: -1n, logStartOffset: -1n, logEndOffset: -1n, currentLeader: { leaderId: 2, leaderEpoch: 7 }, batches: [] },
          ],
        },
      ],
    }).finish();
    expect(Buffer.from(mine).equals(Buffer.from(theirs))).toBe(true);
    expect(FetchResponse.decode(mine).topics[0]!.partitions[0]!.batches[1]!.header!.baseOffset).toBe(2n);
  });

  it("ReplicaFetchResponse round-trips through the raw decoder with batch bytes unchanged", () => {
    const parts = [
      { topic: "t", partition: 1, errorCode: ErrorCode.ERROR_CODE_NONE, errorMessage: "", highWatermark: 2n, logStartOffset: 0n, logEndOffset: 3n, divergingEpoch: undefined, batches: encoded },
      { topic: "u", partition: 0, errorCode: ErrorCode.ERROR_CODE_NONE, errorMessage: "", highWatermark: 9n, logStartOffset: 1n, logEndOffset: 9n, divergingEpoch: { leaderEpoch: 3, endOffset: 7n }, batches: [] },
    ];
    const mine = encodeReplicaFetchResponse(parts);
    const theirs = ReplicaFetchResponse.encode({ partitions: parts.map((p) => ({ ...p, batches: p.batches.map((b) => RecordBatch.decode(b)) })) }).finish();
    expect(Buffer.from(mine).equals(Buffer.from(theirs))).toBe(true);
    const back = decodeReplicaFetchResponse(mine);
    expect(back).toHaveLength(2);
    expect(back[0]!.batches.map((b) => Buffer.from(b).toString("hex"))).toEqual(encoded.map((b) => Buffer.from(b).toString("hex")));
    expect(back[1]).toMatchObject({ topic: "u", highWatermark: 9n, logStartOffset: 1n, divergingEpoch: { leaderEpoch: 3, endOffset: 7n } });
  });

  it("large batches (multi-byte length prefixes), empty names and many partitions encode exactly as the generated code does", () => {
    const big = [buildBatch([{ value: new Uint8Array(300 * 1024).fill(7) }], { nowMs: 3 }), buildBatch([{ value: new Uint8Array(20_000) }], { nowMs: 4 })];
    const bigEncoded = big.map((b) => RecordBatch.encode(b).finish());
    const fetchParts = Array.from({ length: 5 }, (_, i) => ({
      partition: i, errorCode: ErrorCode.ERROR_CODE_NONE, errorMessage: "", highWatermark: BigInt(i) * 1_000_000_000_000n, logStartOffset: 0n, logEndOffset: 2n ** 62n, currentLeader: undefined,
    }));
    const mine = encodeFetchResponse([{ topic: "", partitions: fetchParts.map((p) => ({ ...p, batches: bigEncoded })) }, { topic: "x".repeat(200), partitions: [] }]);
    const theirs = FetchResponse.encode({ topics: [{ topic: "", partitions: fetchParts.map((p) => ({ ...p, batches: big })) }, { topic: "x".repeat(200), partitions: [] }] }).finish();
    expect(Buffer.from(mine).equals(Buffer.from(theirs))).toBe(true);

    const replicaParts = fetchParts.map((p) => ({ topic: "", partition: p.partition, errorCode: p.errorCode, errorMessage: "", highWatermark: p.highWatermark, logStartOffset: 0n, logEndOffset: p.logEndOffset, divergingEpoch: undefined }));
    const mineReplica = encodeReplicaFetchResponse(replicaParts.map((p) => ({ ...p, batches: bigEncoded })));
    const theirsReplica = ReplicaFetchResponse.encode({ partitions: replicaParts.map((p) => ({ ...p, batches: big })) }).finish();
    expect(Buffer.from(mineReplica).equals(Buffer.from(theirsReplica))).toBe(true);
    expect(encodeReplicaFetchResponse([]).length).toBe(0);
  });
});
