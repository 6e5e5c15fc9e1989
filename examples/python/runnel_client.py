"""A small, synchronous Runnel client in Python, written from the .proto files and docs/protocol.md alone.
It owns: bootstrap and metadata (Cluster), routing to partition leaders with NOT_LEADER redirects,
record batches with their CRC32C (build_batch, decode_batch), an idempotent producer (Producer),
topic creation (create_topic) and a consumer-group member with heartbeats and offset commits
(GroupConsumer). Share groups (task-queue workers) are in runnel_share.py, built on this module.
Every wait has a deadline; every retry is bounded by a total time budget."""
import collections
import time

import grpc

import runnel_stubs
from runnel_codec import crc32c, partition_for_key

pb = runnel_stubs.load()
records_pb2 = pb.records_pb2
broker_pb2 = pb.broker_pb2
controller_pb2 = pb.controller_pb2
E = pb.errors_pb2  # ErrorCode values: E.NOT_LEADER, ...

# Limits, with their units.
request_timeout_s = 10.0          # deadline of every call that is not a long poll
retry_budget_ms = 30_000          # a failed send or lookup is retried for at most this long (outlives a failover)
initial_backoff_ms = 100
max_backoff_ms = 1_000
max_batch_records = 500           # records per produced batch
max_batch_bytes = 256 * 1024      # payload bytes per produced batch
max_receive_message_bytes = 80 * 1024 * 1024  # a fetch answer may carry up to 64 MiB of batches
fetch_max_bytes = 4 * 1024 * 1024
rebalance_timeout_ms = 60_000
default_auto_commit_interval_ms = 1_000

_channel_options = [
    ("grpc.max_receive_message_length", max_receive_message_bytes),
    ("grpc.max_send_message_length", max_receive_message_bytes),
    ("grpc.enable_http_proxy", 0),
]

# Codes after which the same request may succeed later (docs/protocol.md, "Acks and errors").
RETRIABLE = {
    E.UNKNOWN_SERVER_ERROR, E.UNKNOWN_TOPIC_OR_PARTITION, E.NOT_LEADER, E.LEADER_NOT_AVAILABLE,
    E.NOT_ENOUGH_REPLICAS, E.NOT_ENOUGH_REPLICAS_AFTER_APPEND, E.FENCED_LEADER_EPOCH, E.UNKNOWN_LEADER_EPOCH,
    E.REQUEST_TIMED_OUT, E.NOT_READY, E.STORAGE_ERROR, E.REBALANCE_IN_PROGRESS, E.THROTTLED,
}
# Codes that mean "your picture of the cluster is stale": refresh metadata before retrying.
REFRESH_METADATA = {E.UNKNOWN_TOPIC_OR_PARTITION, E.NOT_LEADER, E.LEADER_NOT_AVAILABLE, E.FENCED_LEADER_EPOCH}
_RETRIABLE_GRPC = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}


class RunnelError(Exception):
    def __init__(self, code, message, topic=None, partition=None):
        self.code = code
        self.code_name = E.ErrorCode.Name(code) if code in E.ErrorCode.values() else str(code)
        self.retriable = code in RETRIABLE
        self.topic = topic
        self.partition = partition
        where = "" if topic is None else " (topic %s partition %s)" % (topic, partition)
        super().__init__("%s%s: %s" % (self.code_name, where, message))


def now_ms():
    return int(time.time() * 1000)


def _monotonic_ms():
    return time.monotonic() * 1000


class _Deadline:
    """A retry budget: backoff() sleeps (doubling up to max_backoff_ms) or raises once time is up."""

    def __init__(self, budget_ms=retry_budget_ms):
        self.end_ms = _monotonic_ms() + budget_ms
        self.backoff_ms = initial_backoff_ms

    def backoff(self, last_error):
        if _monotonic_ms() + self.backoff_ms > self.end_ms:
            raise last_error
        time.sleep(self.backoff_ms / 1000)
        self.backoff_ms = min(max_backoff_ms, self.backoff_ms * 2)


def _grpc_error(err, what):
    code = E.REQUEST_TIMED_OUT if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED else (
        E.NOT_READY if err.code() in _RETRIABLE_GRPC else E.INVALID_REQUEST)
    return RunnelError(code, "%s: gRPC %s: %s" % (what, err.code().name, err.details()))


# ---------------------------------------------------------------------------------------------
# Record batches


Record = collections.namedtuple("Record", "key value headers partition timestamp", defaults=(None, None, (), None, None))
ConsumedRecord = collections.namedtuple("ConsumedRecord", "topic partition offset timestamp key value headers leader_epoch")


def build_batch(records, now=None, producer_id=0, producer_epoch=0, base_sequence=0):
    """A RecordBatch ready to produce: the records encoded as one RecordSet, covered by its CRC32C.
    base_offset and leader_epoch stay 0 (the leader assigns them)."""
    if not records:
        raise ValueError("a record batch needs at least one record")
    now = now_ms() if now is None else now
    stamps = [now if r.timestamp is None else int(r.timestamp) for r in records]
    first, last = min(stamps), max(stamps)
    record_set = records_pb2.RecordSet()
    for i, r in enumerate(records):
        rec = record_set.records.add(timestamp_delta=stamps[i] - first, offset_delta=i)
        if r.key is not None:
            rec.key = r.key          # setting the field marks it present, even when empty
        if r.value is not None:
            rec.value = r.value      # absent value = null (a tombstone)
        for hk, hv in r.headers:
            rec.headers.add(key=hk, value=hv)
    payload = record_set.SerializeToString()
    header = records_pb2.RecordBatchHeader(
        base_offset=0, record_count=len(records), first_timestamp=first, max_timestamp=last, leader_epoch=0,
        producer_id=producer_id, producer_epoch=producer_epoch, base_sequence=base_sequence,
        crc=crc32c(payload), attributes=0)
    return records_pb2.RecordBatch(header=header, records=payload)


def decode_batch(topic, partition, batch):
    """The records of a fetched batch with absolute offsets and timestamps, after checking its CRC32C."""
    h = batch.header
    if crc32c(batch.records) != h.crc:
        raise RunnelError(E.CORRUPT_BATCH, "CRC32C mismatch in batch at offset %d" % h.base_offset, topic, partition)
    if h.attributes & 0b111:
        raise RunnelError(E.UNSUPPORTED_COMPRESSION, "compressed batch at offset %d" % h.base_offset, topic, partition)
    record_set = records_pb2.RecordSet.FromString(batch.records)
    if len(record_set.records) != h.record_count:
        raise RunnelError(E.CORRUPT_BATCH, "record_count %d but %d records" % (h.record_count, len(record_set.records)), topic, partition)
    return [ConsumedRecord(
        topic, partition, h.base_offset + r.offset_delta, h.first_timestamp + r.timestamp_delta,
        r.key if r.HasField("key") else None, r.value if r.HasField("value") else None,
        [(x.key, x.value) for x in r.headers], h.leader_epoch) for r in record_set.records]


# ---------------------------------------------------------------------------------------------
# Metadata and routing


PartitionInfo = collections.namedtuple("PartitionInfo", "partition leader_id leader_epoch replicas isr")


class Cluster:
    """Bootstraps from any broker; caches brokers, the controller and partition leaders; one gRPC
    channel per address."""

    def __init__(self, bootstrap):
        if isinstance(bootstrap, str):
            bootstrap = bootstrap.split(",")
        self.bootstrap = [b.strip() for b in bootstrap if b.strip()]
        if not self.bootstrap:
            raise ValueError("bootstrap needs at least one host:port")
        self.brokers = {}        # broker id -> "host:port"
        self.controller = None   # "host:port"
        self.topics = {}         # name -> [PartitionInfo] in partition order
        self._channels = {}
        self.stats = collections.Counter()

    def close(self):
        for ch in self._channels.values():
            ch.close()
        self._channels.clear()

    def _channel(self, address):
        ch = self._channels.get(address)
        if ch is None:
            ch = self._channels[address] = grpc.insecure_channel(address, options=_channel_options)
        return ch

    def broker_stub(self, address):
        return pb.broker_pb2_grpc.BrokerServiceStub(self._channel(address))

    def controller_stub(self):
        if self.controller is None:
            self.refresh()
        return pb.controller_pb2_grpc.ControllerServiceStub(self._channel(self.controller))

    def refresh(self, topics=()):
        """Metadata from the first broker that answers: known live brokers first, then the bootstrap list."""
        self.stats["metadata_refreshes"] += 1
        wanted = sorted(set(topics) | set(self.topics))
        last = None
        for address in list(dict.fromkeys(list(self.brokers.values()) + self.bootstrap)):
            try:
                res = self.broker_stub(address).Metadata(broker_pb2.MetadataRequest(topics=wanted), timeout=request_timeout_s)
            except grpc.RpcError as err:
                last = _grpc_error(err, "Metadata from %s" % address)
                continue
            if res.brokers:
                self.brokers = {b.broker_id: "%s:%d" % (b.host, b.port) for b in res.brokers}
            if res.controller.host:
                self.controller = "%s:%d" % (res.controller.host, res.controller.port)
            for t in res.topics:
                if t.error_code == E.ERROR_CODE_NONE:
                    self.topics[t.name] = [PartitionInfo(p.partition, p.leader_id, p.leader_epoch, list(p.replicas), list(p.isr))
                                           for p in sorted(t.partitions, key=lambda p: p.partition)]
                else:
                    self.topics.pop(t.name, None)
            return
        raise RunnelError(E.BROKER_NOT_AVAILABLE, "no bootstrap broker answers (%s): %s" % (",".join(self.bootstrap), last))

    def partitions(self, topic):
        """The topic's partitions; waits (bounded) for a topic that is being created to appear."""
        deadline = _Deadline()
        while True:
            if topic in self.topics:
                return self.topics[topic]
            self.refresh([topic])
            if topic in self.topics:
                return self.topics[topic]
            deadline.backoff(RunnelError(E.UNKNOWN_TOPIC_OR_PARTITION, "topic does not exist", topic))

    def leader(self, topic, partition):
        """(leader broker id, address, leader epoch), or a retriable LEADER_NOT_AVAILABLE."""
        parts = self.partitions(topic)
        p = parts[partition] if 0 <= partition < len(parts) else None
        if p is None or p.leader_id < 0 or p.leader_id not in self.brokers:
            raise RunnelError(E.LEADER_NOT_AVAILABLE, "no known leader", topic, partition)
        return p.leader_id, self.brokers[p.leader_id], p.leader_epoch

    def follow_hint(self, topic, partition, hint):
        """NOT_LEADER / FENCED_LEADER_EPOCH carry the leader the broker knows: use it without a metadata
        round trip when it names a known broker and a newer epoch, else refresh."""
        self.stats["not_leader_redirects"] += 1
        parts = self.topics.get(topic)
        if hint is not None and parts and 0 <= partition < len(parts) and hint.leader_id in self.brokers \
                and hint.leader_epoch >= parts[partition].leader_epoch:
            parts[partition] = parts[partition]._replace(leader_id=hint.leader_id, leader_epoch=hint.leader_epoch)
        else:
            self.refresh([topic])


def create_topic(cluster, name, partitions=1, replication_factor=0, configs=None):
    """CreateTopics at the controller, then waits until every partition has a leader. Returns False when
    the topic already existed."""
    req = controller_pb2.CreateTopicsRequest(topics=[controller_pb2.CreatableTopic(
        name=name, partitions=partitions, replication_factor=replication_factor, configs=configs or {})])
    res = cluster.controller_stub().CreateTopics(req, timeout=request_timeout_s)
    result = res.topics[0]
    if result.error_code not in (E.ERROR_CODE_NONE, E.TOPIC_ALREADY_EXISTS):
        raise RunnelError(result.error_code, result.error_message, name)
    deadline = _Deadline()
    while True:
        cluster.refresh([name])
        parts = cluster.topics.get(name)
        if parts and all(p.leader_id >= 0 for p in parts):
            return result.error_code == E.ERROR_CODE_NONE
        deadline.backoff(RunnelError(E.LEADER_NOT_AVAILABLE, "partitions have no leader yet", name))


# ---------------------------------------------------------------------------------------------
# Producer


RecordMetadata = collections.namedtuple("RecordMetadata", "topic partition offset")


class _PendingBatch:
    def __init__(self, topic, partition, records):
        self.topic, self.partition, self.records = topic, partition, records
        self.encoded = None   # built at first send, with its sequence, and resent unchanged on retries
        self.base_offset = None


class Producer:
    """Sends records to partition leaders in batches. Idempotent by default (docs/protocol.md,
    "Idempotent producing"): a batch keeps its sequence on every retry, so a retry after a lost answer
    cannot duplicate it; one batch per partition is in flight at a time, so retries keep order."""

    def __init__(self, cluster, acks=broker_pb2.ACKS_ALL, idempotent=True, ack_timeout_ms=30_000):
        if idempotent and acks == broker_pb2.ACKS_NONE:
            raise ValueError("an idempotent producer needs acknowledgements")
        self.cluster, self.acks, self.idempotent, self.ack_timeout_ms = cluster, acks, idempotent, ack_timeout_ms
        self.producer_id, self.producer_epoch = 0, 0
        self._next_sequence = collections.Counter()   # (topic, partition) -> next base_sequence
        self._round_robin = 0

    def _init_producer_id(self):
        deadline = _Deadline()
        while True:
            try:
                res = self.cluster.controller_stub().InitProducerId(controller_pb2.InitProducerIdRequest(
                    producer_id=self.producer_id, producer_epoch=self.producer_epoch), timeout=request_timeout_s)
                err = None if res.error_code == E.ERROR_CODE_NONE else RunnelError(res.error_code, res.error_message)
            except grpc.RpcError as e:
                err = _grpc_error(e, "InitProducerId")
            if err is None:
                self.producer_id, self.producer_epoch = res.producer_id, res.producer_epoch
                self._next_sequence.clear()   # a new epoch restarts every partition's sequence at 0
                return
            if not err.retriable:
                raise err
            self.cluster.refresh()
            deadline.backoff(err)

    def _partition_of(self, topic, record, count):
        if record.partition is not None:
            if not 0 <= record.partition < count:
                raise RunnelError(E.UNKNOWN_TOPIC_OR_PARTITION, "no such partition", topic, record.partition)
            return record.partition
        if record.key is not None:
            return partition_for_key(record.key, count)
        self._round_robin += 1
        return self._round_robin % count

    def send(self, topic, records):
        """Sends `records` (Record tuples) and returns one RecordMetadata per record, in input order,
        once each is acknowledged per `acks` (offset -1 with ACKS_NONE)."""
        if self.idempotent and self.producer_id == 0:
            self._init_producer_id()
        count = len(self.cluster.partitions(topic))
        per_partition = collections.OrderedDict()
        placed = []
        for r in records:
            p = self._partition_of(topic, r, count)
            per_partition.setdefault(p, []).append(r)
            placed.append((p, len(per_partition[p]) - 1))
        queues = {}
        for p, recs in per_partition.items():
            batches, current, size = [], [], 0
            for r in recs:
                rsize = len(r.key or b"") + len(r.value or b"") + sum(len(k) + len(v) for k, v in r.headers) + 16
                if current and (len(current) >= max_batch_records or size + rsize > max_batch_bytes):
                    batches.append(_PendingBatch(topic, p, current))
                    current, size = [], 0
                current.append(r)
                size += rsize
            batches.append(_PendingBatch(topic, p, current))
            queues[p] = collections.deque(batches)
        done = {p: [] for p in queues}
        deadline = _Deadline()
        while queues:
            # One batch per partition per round, grouped into one request per leader, sent in parallel.
            by_leader = collections.defaultdict(list)
            last_error = None
            for p, q in queues.items():
                try:
                    _, address, _ = self.cluster.leader(topic, p)
                except RunnelError as err:
                    last_error = err
                    continue
                by_leader[address].append(q[0])
            calls = [(address, batches, self._produce_call(address, batches)) for address, batches in by_leader.items()]
            progressed = False
            for address, batches, future in calls:
                outcomes = self._outcomes(address, batches, future)
                for b, (code, message, base_offset, hint) in zip(batches, outcomes):
                    if code in (E.ERROR_CODE_NONE, E.DUPLICATE_SEQUENCE):   # a duplicate carries its original offset
                        b.base_offset = base_offset
                        done[b.partition].append(queues[b.partition].popleft())
                        if not queues[b.partition]:
                            del queues[b.partition]
                        progressed = True
                        continue
                    err = RunnelError(code, message, topic, b.partition)
                    if not err.retriable:
                        if self.idempotent and b.encoded is not None:
                            # The sequence may now have a gap on that partition: a new epoch resets it.
                            self._init_producer_id()
                        raise err
                    last_error = err
                    if code in (E.NOT_LEADER, E.FENCED_LEADER_EPOCH):
                        self.cluster.follow_hint(topic, b.partition, hint)
                    elif code in REFRESH_METADATA:
                        self.cluster.refresh([topic])
            if queues and not progressed:
                self.cluster.stats["retries"] += 1
                deadline.backoff(last_error or RunnelError(E.LEADER_NOT_AVAILABLE, "no leader", topic))
            elif progressed:
                deadline = _Deadline()   # the budget is per batch, not for the whole call
        offsets = {}
        for p, batches in done.items():
            i = 0
            for b in batches:
                for j in range(len(b.records)):
                    offsets[(p, i)] = -1 if self.acks == broker_pb2.ACKS_NONE else b.base_offset + j
                    i += 1
        return [RecordMetadata(topic, p, offsets[(p, i)]) for p, i in placed]

    def _produce_call(self, address, batches):
        for b in batches:
            if b.encoded is None:
                seq = 0
                if self.idempotent:
                    key = (b.topic, b.partition)
                    seq = self._next_sequence[key]
                    self._next_sequence[key] = seq + len(b.records)
                b.encoded = build_batch(b.records, producer_id=self.producer_id, producer_epoch=self.producer_epoch, base_sequence=seq)
        req = broker_pb2.ProduceRequest(acks=self.acks, timeout_ms=self.ack_timeout_ms, topics=[broker_pb2.TopicProduceData(
            topic=batches[0].topic, partitions=[broker_pb2.PartitionProduceData(partition=b.partition, batch=b.encoded) for b in batches])])
        return self.cluster.broker_stub(address).Produce.future(req, timeout=self.ack_timeout_ms / 1000 + request_timeout_s)

    def _outcomes(self, address, batches, future):
        try:
            res = future.result()
        except grpc.RpcError as err:
            e = _grpc_error(err, "Produce to %s" % address)
            if e.retriable:
                self.cluster.refresh()
            return [(e.code, str(e), -1, None)] * len(batches)
        by_partition = {p.partition: p for t in res.topics for p in t.partitions}
        out = []
        for b in batches:
            p = by_partition.get(b.partition)
            if p is None:
                out.append((E.UNKNOWN_SERVER_ERROR, "no answer for the partition", -1, None))
            else:
                out.append((p.error_code, p.error_message, p.base_offset, p.current_leader if p.HasField("current_leader") else None))
        return out


# ---------------------------------------------------------------------------------------------
# Group consumer


class GroupConsumer:
    """A member of a consumer group (KIP-848 style, docs/protocol.md "Consumer groups"): it heartbeats to
    the controller, follows the assignment in the answers (revoking first: commit, drop, confirm at
    once), fetches its partitions from their leaders and commits the next offset to read.
    Single-threaded: poll() heartbeats when due and never long-polls past the next heartbeat."""

    def __init__(self, cluster, group_id, topics, reset="earliest", auto_commit_interval_ms=default_auto_commit_interval_ms,
                 client_id="runnel-python"):
        if reset not in ("earliest", "latest"):
            raise ValueError("reset must be earliest or latest")
        self.cluster, self.group_id, self.topics, self.reset = cluster, group_id, list(topics), reset
        self.client_id = client_id
        self.member_id, self.member_epoch = "", 0
        self.heartbeat_interval_ms = 1_000
        self.positions = {}        # (topic, partition) -> next offset to read; the owned partitions
        self.leader_epochs = {}    # (topic, partition) -> leader epoch of the last record read
        self.committed = {}        # (topic, partition) -> last committed offset
        self._next_heartbeat_ms = 0
        self._auto_commit_interval_ms = auto_commit_interval_ms
        self._next_commit_ms = _monotonic_ms() + auto_commit_interval_ms
        self.stats = collections.Counter()

    def assignment(self):
        return sorted(self.positions)

    # --- membership

    def _owned(self):
        by_topic = collections.defaultdict(list)
        for t, p in self.positions:
            by_topic[t].append(p)
        return [records_pb2.TopicPartitions(topic=t, partitions=sorted(ps)) for t, ps in sorted(by_topic.items())]

    def _heartbeat_call(self, epoch):
        req = controller_pb2.ConsumerGroupHeartbeatRequest(
            group_id=self.group_id, member_id=self.member_id, member_epoch=epoch, rebalance_timeout_ms=rebalance_timeout_ms,
            subscribed_topic_names=self.topics, owned_partitions=self._owned(), client_id=self.client_id)
        return self.cluster.controller_stub().ConsumerGroupHeartbeat(req, timeout=request_timeout_s)

    def heartbeat(self):
        self.stats["heartbeats"] += 1
        self._next_heartbeat_ms = _monotonic_ms() + self.heartbeat_interval_ms
        try:
            res = self._heartbeat_call(self.member_epoch)
        except grpc.RpcError:
            # Controller unreachable or restarting: keep reading what we own; try again next interval.
            self.cluster.refresh()
            return
        if res.error_code in (E.FENCED_MEMBER_EPOCH, E.UNKNOWN_MEMBER_ID):
            self._lose_partitions(res.error_code)
            return
        if res.error_code != E.ERROR_CODE_NONE:
            err = RunnelError(res.error_code, res.error_message)
            if err.retriable:
                return
            raise err
        if res.heartbeat_interval_ms > 0:
            self.heartbeat_interval_ms = res.heartbeat_interval_ms
            self._next_heartbeat_ms = _monotonic_ms() + self.heartbeat_interval_ms
        self.member_id, self.member_epoch = res.member_id, res.member_epoch
        if not res.HasField("assignment"):
            return   # unchanged
        target = {(t.topic, p) for t in res.assignment.partitions for p in t.partitions}
        revoked = [tp for tp in self.positions if tp not in target]
        if revoked:
            # Revoke before reassign: commit, drop, then confirm at once so the new owner can start.
            self.commit(revoked)
            for tp in revoked:
                del self.positions[tp]
                self.committed.pop(tp, None)
            self.stats["revoked"] += len(revoked)
            self._next_heartbeat_ms = 0
        added = sorted(tp for tp in target if tp not in self.positions)
        if added:
            self._start(added)
            self.stats["assigned"] += len(added)

    def _lose_partitions(self, code):
        """Fenced or removed: our partitions may belong to someone else already, so drop them without
        committing and rejoin with epoch 0 at the next poll."""
        self.stats["rejoins"] += 1
        self.positions.clear()
        self.committed.clear()
        if code == E.UNKNOWN_MEMBER_ID:
            self.member_id = ""
        self.member_epoch = 0
        self._next_heartbeat_ms = 0

    def _start(self, tps):
        """Positions for newly assigned partitions: the committed offset, else per the reset policy."""
        req = controller_pb2.OffsetFetchRequest(group_id=self.group_id, topics=[
            records_pb2.TopicPartitions(topic=t, partitions=[p for tt, p in tps if tt == t]) for t in sorted({t for t, _ in tps})])
        res = self.cluster.controller_stub().OffsetFetch(req, timeout=request_timeout_s)
        if res.error_code not in (E.ERROR_CODE_NONE, E.GROUP_ID_NOT_FOUND):
            raise RunnelError(res.error_code, res.error_message)
        committed = {(o.topic, o.partition): o.committed_offset for o in res.offsets if o.committed_offset >= 0}
        for tp in tps:
            if tp in committed:
                self.positions[tp] = self.committed[tp] = committed[tp]
            else:
                self.positions[tp] = list_offset(self.cluster, tp[0], tp[1], self.reset)

    def commit(self, tps=None):
        """Commits the position (next offset to read) of the given owned partitions (default: all)."""
        tps = [tp for tp in (self.positions if tps is None else tps) if self.positions.get(tp) != self.committed.get(tp)]
        if not tps or self.member_id == "":
            return
        by_topic = collections.defaultdict(list)
        for t, p in tps:
            by_topic[t].append(controller_pb2.OffsetCommitPartition(
                partition=p, committed_offset=self.positions[(t, p)], committed_leader_epoch=self.leader_epochs.get((t, p), -1)))
        req = controller_pb2.OffsetCommitRequest(group_id=self.group_id, member_id=self.member_id, member_epoch=self.member_epoch,
                                                 topics=[controller_pb2.OffsetCommitTopic(topic=t, partitions=ps) for t, ps in by_topic.items()])
        res = self.cluster.controller_stub().OffsetCommit(req, timeout=request_timeout_s)
        if res.error_code in (E.FENCED_MEMBER_EPOCH, E.UNKNOWN_MEMBER_ID):
            self._lose_partitions(res.error_code)   # not ours any more: nothing to commit
            return
        if res.error_code != E.ERROR_CODE_NONE:
            raise RunnelError(res.error_code, res.error_message)
        for t in res.topics:
            for p in t.partitions:
                if p.error_code == E.ERROR_CODE_NONE:
                    self.committed[(t.topic, p.partition)] = self.positions[(t.topic, p.partition)]
                else:
                    raise RunnelError(p.error_code, p.error_message, t.topic, p.partition)
        self.stats["commits"] += 1

    def close(self):
        """Commits, then leaves the group (member epoch -1) so its partitions move at once."""
        if self.member_id:
            try:
                self.commit()
            finally:
                try:
                    self._heartbeat_call(-1)
                except grpc.RpcError:
                    pass   # the controller will expire us after the session timeout instead
        self.positions.clear()
        self.member_id, self.member_epoch = "", 0

    # --- reading

    def poll(self, max_wait_ms=500):
        """Heartbeats when due, then fetches from owned partitions (waiting at most until the next
        heartbeat) and returns the records read, in offset order per partition."""
        if _monotonic_ms() >= self._next_heartbeat_ms:
            self.heartbeat()
        if _monotonic_ms() >= self._next_commit_ms:
            self._next_commit_ms = _monotonic_ms() + self._auto_commit_interval_ms
            try:
                self.commit()
            except grpc.RpcError:
                self.cluster.refresh()   # controller unreachable: the next interval tries again
        wait_ms = int(max(0, min(max_wait_ms, self._next_heartbeat_ms - _monotonic_ms())))
        if not self.positions:
            time.sleep(wait_ms / 1000)
            return []
        return fetch(self.cluster, self.positions, wait_ms, self.leader_epochs, self.reset)


def list_offset(cluster, topic, partition, spec):
    """The log start offset ("earliest") or the high watermark ("latest") from the partition leader."""
    spec_value = broker_pb2.OFFSET_SPEC_EARLIEST if spec == "earliest" else broker_pb2.OFFSET_SPEC_LATEST
    deadline = _Deadline()
    while True:
        try:
            _, address, epoch = cluster.leader(topic, partition)
            res = cluster.broker_stub(address).ListOffsets(broker_pb2.ListOffsetsRequest(topics=[broker_pb2.ListOffsetsTopic(
                topic=topic, partitions=[broker_pb2.ListOffsetsPartition(partition=partition, spec=spec_value, current_leader_epoch=epoch)])]),
                timeout=request_timeout_s)
            p = res.topics[0].partitions[0]
            if p.error_code == E.ERROR_CODE_NONE:
                return p.offset
            err = RunnelError(p.error_code, p.error_message, topic, partition)
            if p.error_code in (E.NOT_LEADER, E.FENCED_LEADER_EPOCH):
                cluster.follow_hint(topic, partition, p.current_leader if p.HasField("current_leader") else None)
        except grpc.RpcError as e:
            err = _grpc_error(e, "ListOffsets")
            cluster.refresh([topic])
        except RunnelError as e:
            err = e
            cluster.refresh([topic])
        if not err.retriable:
            raise err
        deadline.backoff(err)


def fetch(cluster, positions, max_wait_ms, leader_epochs, reset):
    """One Fetch per leader (in parallel) for every partition in `positions`; advances `positions` past
    the records returned. Retriable errors are handled by updating routing; the next call retries."""
    by_leader = collections.defaultdict(list)
    for (topic, partition) in sorted(positions):
        try:
            _, address, epoch = cluster.leader(topic, partition)
        except RunnelError:
            cluster.refresh([topic])
            continue
        by_leader[address].append((topic, partition, epoch))
    futures = []
    for address, tps in by_leader.items():
        topics = collections.defaultdict(list)
        for topic, partition, epoch in tps:
            topics[topic].append(broker_pb2.FetchPartition(partition=partition, fetch_offset=positions[(topic, partition)], current_leader_epoch=epoch))
        req = broker_pb2.FetchRequest(max_wait_ms=max_wait_ms, min_bytes=1, max_bytes=fetch_max_bytes,
                                      topics=[broker_pb2.FetchTopic(topic=t, partitions=ps) for t, ps in topics.items()])
        futures.append((address, cluster.broker_stub(address).Fetch.future(req, timeout=max_wait_ms / 1000 + request_timeout_s)))
    out = []
    for address, future in futures:
        try:
            res = future.result()
        except grpc.RpcError:
            cluster.refresh()
            continue
        for t in res.topics:
            for p in t.partitions:
                tp = (t.topic, p.partition)
                if tp not in positions:
                    continue
                if p.error_code == E.OFFSET_OUT_OF_RANGE:
                    positions[tp] = p.log_start_offset if reset == "earliest" else p.high_watermark
                    continue
                if p.error_code in (E.NOT_LEADER, E.FENCED_LEADER_EPOCH):
                    cluster.follow_hint(t.topic, p.partition, p.current_leader if p.HasField("current_leader") else None)
                    continue
                if p.error_code != E.ERROR_CODE_NONE:
                    if p.error_code in REFRESH_METADATA:
                        cluster.refresh([t.topic])
                    if p.error_code not in RETRIABLE:
                        raise RunnelError(p.error_code, p.error_message, t.topic, p.partition)
                    continue
                for batch in p.batches:
                    for r in decode_batch(t.topic, p.partition, batch):
                        if r.offset < positions[tp]:
                            continue   # a fetch inside a batch returns the whole batch
                        out.append(r)
                        positions[tp] = r.offset + 1
                        leader_epochs[tp] = r.leader_epoch
    return out
