#!/usr/bin/python3
"""The Runnel Python example: a command-line client built on runnel_client.py (stubs generated from
proto/ at start-up). Run with Debian's /usr/bin/python3. Every command prints one JSON object per line
on stdout; a summary (counters) goes to stderr.

  example.py [--bootstrap H:P,...] create-topic NAME [--partitions N] [--replication-factor R]
  example.py produce TOPIC --count N [--key-prefix K] [--value-prefix V] [--header k=v ...]
  example.py consume TOPIC --group G [--max-messages N] [--timeout-ms T] [--reset earliest|latest]
  example.py share-work TOPIC --group G [--max-messages N] [--timeout-ms T] [--reject-value V] [--max-in-flight N]
  example.py demo [TOPIC]
  example.py encode-batch --now-ms MS   (JSON records on stdin -> the encoded batch, for checking the codec)

--bootstrap defaults to RUNNEL_BOOTSTRAP, else 127.0.0.1:7401."""
import argparse
import json
import os
import sys
import time

import runnel_client as rc
import runnel_share as rs


def text(b):
    return None if b is None else b.decode("utf-8", errors="replace")


def emit(obj):
    print(json.dumps(obj, sort_keys=True), flush=True)


def cmd_create_topic(cluster, args):
    created = rc.create_topic(cluster, args.name, args.partitions, args.replication_factor)
    emit({"topic": args.name, "created": created, "partitions": len(cluster.topics[args.name])})


def make_records(count, key_prefix, value_prefix, headers, start=0):
    return [rc.Record(key=None if key_prefix is None else ("%s%d" % (key_prefix, i)).encode(),
                      value=("%s%d" % (value_prefix, i)).encode(),
                      headers=tuple(headers) + (("index", str(i).encode()),))
            for i in range(start, start + count)]


def cmd_produce(cluster, args):
    headers = []
    for h in args.header:
        k, _, v = h.partition("=")
        headers.append((k, v.encode()))
    producer = rc.Producer(cluster, acks=rc.broker_pb2.ACKS_ALL, idempotent=not args.no_idempotence)
    records = make_records(args.count, args.key_prefix, args.value_prefix, headers)
    for i in range(0, len(records), args.send_size):
        chunk = records[i:i + args.send_size]
        for r, m in zip(chunk, producer.send(args.topic, chunk)):
            emit({"partition": m.partition, "offset": m.offset, "key": text(r.key), "value": text(r.value)})
    summary = dict(cluster.stats, producer_id=producer.producer_id, producer_epoch=producer.producer_epoch)
    print(json.dumps({"summary": summary}), file=sys.stderr)


def cmd_consume(cluster, args):
    consumer = rc.GroupConsumer(cluster, args.group, [args.topic], reset=args.reset, auto_commit_interval_ms=args.commit_interval_ms)
    seen = 0
    end_ms = time.monotonic() * 1000 + args.timeout_ms
    try:
        while time.monotonic() * 1000 < end_ms and (args.max_messages is None or seen < args.max_messages):
            for r in consumer.poll(max_wait_ms=500):
                emit({"topic": r.topic, "partition": r.partition, "offset": r.offset, "timestamp": r.timestamp,
                      "key": text(r.key), "value": text(r.value), "headers": {k: text(v) for k, v in r.headers}})
                seen += 1
    finally:
        assignment = consumer.assignment()
        committed = {"%s/%d" % tp: consumer.positions[tp] for tp in assignment}
        member_id = consumer.member_id
        consumer.close()
        print(json.dumps({"summary": dict(consumer.stats, member_id=member_id or None, read=seen,
                                          assignment=["%s/%d" % tp for tp in assignment], committed=committed)}), file=sys.stderr)
    if args.max_messages is not None and seen < args.max_messages:
        print("read %d of %d records before the timeout" % (seen, args.max_messages), file=sys.stderr)
        return 3
    return 0


reject_reason = "python says no"


def cmd_share_work(cluster, args):
    """A task-queue worker in share group G: accepts each record it acquires, except records whose value
    is --reject-value, which it rejects (dead-letters). Acknowledgements ride the next ShareFetch to the
    leader (flush() sends what is left); a line is printed only once the leader answered the
    acknowledgement without error, so every printed record is settled. Stops after N accepted."""
    consumer = rs.ShareConsumer(cluster, args.group, [args.topic], max_in_flight_records=args.max_in_flight,
                                lock_duration_ms=args.lock_duration_ms)
    reject_value = None if args.reject_value is None else args.reject_value.encode()
    awaiting = {}   # (topic, partition, offset) -> the record whose acknowledgement is not answered yet
    counts = {"accepted": 0, "rejected": 0, "failed_acks": 0}

    def report(results):
        for res in results:
            r = awaiting.pop((res.topic, res.partition, res.offset), None)
            if res.error is not None:
                # INVALID_RECORD_STATE: the lock had expired and the record went back to the group.
                counts["failed_acks"] += 1
                print("acknowledgement failed: %s %s" % (res.type, res.error), file=sys.stderr)
            elif r is None:
                continue   # not one of ours to report (a release of an unreadable record)
            elif res.type == "accept":
                counts["accepted"] += 1
                emit({"topic": r.topic, "partition": r.partition, "offset": r.offset, "key": text(r.key),
                      "value": text(r.value), "delivery_count": r.delivery_count})
            elif res.type == "reject":
                counts["rejected"] += 1
                emit({"rejected": r.offset, "topic": r.topic, "partition": r.partition, "value": text(r.value),
                      "delivery_count": r.delivery_count, "reason": reject_reason})

    end_ms = time.monotonic() * 1000 + args.timeout_ms
    try:
        while True:
            left_ms = end_ms - time.monotonic() * 1000
            if left_ms <= 0 or (args.max_messages is not None and counts["accepted"] >= args.max_messages):
                break
            # Never acquire more than is still to do, so that stopping leaves nothing to give back.
            want = None
            if args.max_messages is not None:
                want = min(args.max_in_flight, args.max_messages - counts["accepted"] - len(awaiting))
                if want <= 0:
                    report(consumer.flush())   # enough are accepted if their answers say so
                    continue
            records = consumer.poll(max_wait_ms=int(min(500, left_ms)), max_records=want)
            report(consumer.take_results())   # answers to the acknowledgements that rode this poll
            for r in records:
                awaiting[(r.topic, r.partition, r.offset)] = r
                if reject_value is not None and r.value == reject_value:
                    consumer.reject(r, reject_reason)
                else:
                    consumer.accept(r)
        report(consumer.flush())
    finally:
        member_id = consumer.member_id
        consumer.close()
        print(json.dumps({"summary": dict(consumer.stats, member_id=member_id or None, **counts)}), file=sys.stderr)
    if args.max_messages is not None and counts["accepted"] < args.max_messages:
        print("accepted %d of %d records before the timeout" % (counts["accepted"], args.max_messages), file=sys.stderr)
        return 3
    return 0


def cmd_demo(cluster, args):
    topic = args.topic
    rc.create_topic(cluster, topic, partitions=3)
    producer = rc.Producer(cluster)
    acks = producer.send(topic, make_records(10, "demo-key-", "demo-value-", [("source", b"python-demo")]))
    print("produced 10 records: %s" % ", ".join("p%d@%d" % (m.partition, m.offset) for m in acks))
    consumer = rc.GroupConsumer(cluster, "python-demo", [topic], reset="earliest")
    got = []
    end = time.monotonic() + 20
    while len(got) < 10 and time.monotonic() < end:
        got.extend(consumer.poll())
    consumer.close()
    for r in got:
        print("p%d@%d %s=%s %s" % (r.partition, r.offset, text(r.key), text(r.value), dict((k, text(v)) for k, v in r.headers)))
    print("read %d records as member of group python-demo; offsets committed, group left" % len(got))
    return 0 if len(got) >= 10 else 3


def cmd_encode_batch(_cluster, args):
    records = []
    for line in sys.stdin:
        if line.strip():
            o = json.loads(line)
            records.append(rc.Record(key=None if o.get("key") is None else o["key"].encode(),
                                     value=None if o.get("value") is None else o["value"].encode(),
                                     headers=tuple((k, v.encode()) for k, v in o.get("headers", [])),
                                     timestamp=o.get("timestamp")))
    batch = rc.build_batch(records, now=args.now_ms)
    h = batch.header
    emit({"records_hex": batch.records.hex(), "crc": h.crc, "record_count": h.record_count,
          "first_timestamp": h.first_timestamp, "max_timestamp": h.max_timestamp})


def main(argv):
    parser = argparse.ArgumentParser(description="Runnel Python example client")
    parser.add_argument("--bootstrap", default=os.environ.get("RUNNEL_BOOTSTRAP", "127.0.0.1:7401"))
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("create-topic")
    p.add_argument("name")
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument("--replication-factor", type=int, default=0)
    p = sub.add_parser("produce")
    p.add_argument("topic")
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--key-prefix", default="key-")
    p.add_argument("--value-prefix", default="value-")
    p.add_argument("--header", action="append", default=[], help="k=v, repeatable")
    p.add_argument("--send-size", type=int, default=100, help="records per send() call")
    p.add_argument("--no-idempotence", action="store_true")
    p = sub.add_parser("consume")
    p.add_argument("topic")
    p.add_argument("--group", required=True)
    p.add_argument("--max-messages", type=int)
    p.add_argument("--timeout-ms", type=int, default=30_000)
    p.add_argument("--reset", choices=["earliest", "latest"], default="earliest")
    p.add_argument("--commit-interval-ms", type=int, default=rc.default_auto_commit_interval_ms)
    p = sub.add_parser("share-work")
    p.add_argument("topic")
    p.add_argument("--group", required=True)
    p.add_argument("--max-messages", type=int)
    p.add_argument("--timeout-ms", type=int, default=30_000)
    p.add_argument("--reject-value", help="reject (dead-letter) records with exactly this value")
    p.add_argument("--max-in-flight", type=int, default=rs.default_max_in_flight_records, help="records held at once")
    p.add_argument("--lock-duration-ms", type=int, default=rs.default_lock_duration_ms)
    p = sub.add_parser("demo")
    p.add_argument("topic", nargs="?", default="python-demo")
    p = sub.add_parser("encode-batch")
    p.add_argument("--now-ms", type=int, required=True)
    args = parser.parse_args(argv)
    cluster = rc.Cluster(args.bootstrap)
    try:
        handler = {"create-topic": cmd_create_topic, "produce": cmd_produce, "consume": cmd_consume,
                   "share-work": cmd_share_work, "demo": cmd_demo, "encode-batch": cmd_encode_batch}[args.command]
        return handler(cluster, args) or 0
    except rc.RunnelError as err:
        print("error: %s" % err, file=sys.stderr)
        return 1
    finally:
        cluster.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
