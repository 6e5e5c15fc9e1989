#!/usr/bin/python3
"""Checks against a running cluster the two protocol paths a happy-path run never takes, and exits
non-zero when one fails. Usage: RUNNEL_BOOTSTRAP=h:p,... /usr/bin/python3 cluster_check.py TOPIC

1. NOT_LEADER redirects: every partition's cached leader is replaced by a broker that does not lead
   it; produce, fetch and ListOffsets must still succeed by following the answer's current_leader.
2. Idempotence: the same encoded batch (same producer id, epoch and sequence) sent twice, as after a
   lost answer, is appended once; the second answer is DUPLICATE_SEQUENCE with the first offset."""
import json
import os
import sys

import runnel_client as rc


def poison(cluster, topic):
    """Points every partition of `topic` at a broker that is not its leader (same leader epoch)."""
    parts = cluster.topics[topic]
    for i, p in enumerate(parts):
        wrong = next(b for b in sorted(cluster.brokers) if b != p.leader_id)
        parts[i] = p._replace(leader_id=wrong)
    return len(parts)


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def main(topic):
    cluster = rc.Cluster(os.environ.get("RUNNEL_BOOTSTRAP", "127.0.0.1:7401"))
    results = {}
    try:
        rc.create_topic(cluster, topic, partitions=3, replication_factor=3)
        check(len(cluster.brokers) >= 2, "needs at least 2 brokers, metadata lists %s" % cluster.brokers)

        # 1. Redirects on produce.
        count = poison(cluster, topic)
        before = cluster.stats["not_leader_redirects"]
        producer = rc.Producer(cluster)
        records = [rc.Record(value=("redirect-%d" % i).encode(), partition=i % count) for i in range(3 * count)]
        acks = producer.send(topic, records)
        check(all(a.offset >= 0 for a in acks), "every record acknowledged with an offset: %s" % (acks,))
        results["produce_redirects"] = cluster.stats["not_leader_redirects"] - before
        check(results["produce_redirects"] >= count, "produce followed NOT_LEADER on every partition: %s" % results)

        # ... on ListOffsets and fetch.
        poison(cluster, topic)
        before = cluster.stats["not_leader_redirects"]
        positions = {(topic, p): rc.list_offset(cluster, topic, p, "earliest") for p in range(count)}
        results["list_offsets_redirects"] = cluster.stats["not_leader_redirects"] - before
        check(results["list_offsets_redirects"] >= count, "ListOffsets followed NOT_LEADER: %s" % results)
        poison(cluster, topic)
        before = cluster.stats["not_leader_redirects"]
        got = []
        for _ in range(20):
            got.extend(rc.fetch(cluster, positions, 200, {}, "earliest"))
            if len(got) >= len(records):
                break
        results["fetch_redirects"] = cluster.stats["not_leader_redirects"] - before
        check(results["fetch_redirects"] >= count, "fetch followed NOT_LEADER: %s" % results)
        check(sorted(r.value for r in got) == sorted(r.value for r in records), "fetched what was produced: %s" % [r.value for r in got])

        # 2. A resent idempotent batch is appended once.
        cluster.refresh([topic])
        _, address, _ = cluster.leader(topic, 0)
        batch = rc.build_batch([rc.Record(value=b"once")], producer_id=producer.producer_id, producer_epoch=producer.producer_epoch,
                               base_sequence=producer._next_sequence[(topic, 0)])
        req = rc.broker_pb2.ProduceRequest(acks=rc.broker_pb2.ACKS_ALL, topics=[rc.broker_pb2.TopicProduceData(
            topic=topic, partitions=[rc.broker_pb2.PartitionProduceData(partition=0, batch=batch)])])
        first = cluster.broker_stub(address).Produce(req, timeout=rc.request_timeout_s).topics[0].partitions[0]
        second = cluster.broker_stub(address).Produce(req, timeout=rc.request_timeout_s).topics[0].partitions[0]
        results["first"] = [rc.E.ErrorCode.Name(first.error_code), first.base_offset]
        results["resent"] = [rc.E.ErrorCode.Name(second.error_code), second.base_offset]
        check(first.error_code == rc.E.ERROR_CODE_NONE, "first send appended: %s" % results)
        check(second.error_code == rc.E.DUPLICATE_SEQUENCE and second.base_offset == first.base_offset,
              "resend answered DUPLICATE_SEQUENCE with the first offset: %s" % results)
        hw = rc.list_offset(cluster, topic, 0, "latest")
        check(hw == first.base_offset + 1, "the batch is in the log once (high watermark %d, batch at %d)" % (hw, first.base_offset))

        # A corrupted CRC is refused, not stored.
        bad = rc.build_batch([rc.Record(value=b"corrupt")])
        bad.header.crc ^= 1
        req = rc.broker_pb2.ProduceRequest(acks=rc.broker_pb2.ACKS_ALL, topics=[rc.broker_pb2.TopicProduceData(
            topic=topic, partitions=[rc.broker_pb2.PartitionProduceData(partition=0, batch=bad)])])
        answer = cluster.broker_stub(address).Produce(req, timeout=rc.request_timeout_s).topics[0].partitions[0]
        results["bad_crc"] = rc.E.ErrorCode.Name(answer.error_code)
        check(answer.error_code == rc.E.CORRUPT_BATCH, "a wrong CRC is refused with CORRUPT_BATCH: %s" % results)
    except AssertionError as err:
        print(json.dumps({"ok": False, "failed": str(err), "results": results}))
        return 1
    finally:
        cluster.close()
    print(json.dumps({"ok": True, "results": results}))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: cluster_check.py TOPIC", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
