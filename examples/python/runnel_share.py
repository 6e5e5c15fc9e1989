"""A share-group member for the Python example client (task-queue consumption, docs/protocol.md §9),
written from proto/runnel/v1/share.proto and the protocol doc; client/src/share/consumer.ts is the
TypeScript reference. It owns: joining and heartbeating a share group (ShareGroupHeartbeat at the
controller), acquiring records from every partition leader (one ShareFetch per leader, in parallel, with
acquired_records_only), keeping only the acquired offsets, and settling each record once (accept,
release, reject) with acknowledgements coalesced into runs that ride the next ShareFetch to that leader,
or go alone in ShareAcknowledge at flush() and close().
Synchronous and single-threaded like runnel_client.GroupConsumer: poll() heartbeats when due and never
long-polls past the next heartbeat. The pure rules (coalesce_acks, acquired_from_batches,
split_record_budget, truncate_reason) touch no clock or socket and are tested offline (test_share.py)."""
import collections
import time

import grpc

import runnel_client as rc
from runnel_client import E, RunnelError

share_pb2 = rc.pb.share_pb2

# Limits, with their units (the broker's ranges are in share.proto).
default_max_in_flight_records = 100   # acquired and not yet acknowledged; poll asks for no more
default_lock_duration_ms = 30_000
min_lock_duration_ms = 1_000
max_lock_duration_ms = 3_600_000
max_share_fetch_wait_ms = 60_000       # ShareFetchRequest.max_wait_ms cap
max_records_per_share_fetch = 10_000   # ShareFetchRequest.max_records cap
max_release_delay_ms = 86_400_000      # ShareAcknowledgement.release_delay_ms cap
max_reason_bytes = 1024                # the broker keeps at most this much of a failure reason (UTF-8)
max_group_id_chars = 255
initial_share_heartbeat_interval_ms = 1_000   # used until the controller answers with its interval
share_heartbeat_timeout_s = 5.0
max_unreported_ack_results = 10_000    # outcomes kept for the next flush(); the oldest go beyond this
closed_release_reason = "share consumer closed"

ACK_TYPES = {
    "accept": share_pb2.SHARE_ACKNOWLEDGE_ACCEPT,
    "release": share_pb2.SHARE_ACKNOWLEDGE_RELEASE,
    "reject": share_pb2.SHARE_ACKNOWLEDGE_REJECT,
}

# A record handed to this member under an acquisition lock until lock_deadline_ms (ms since the Unix
# epoch); delivery_count is 1 on the first delivery.
ShareRecord = collections.namedtuple(
    "ShareRecord", "topic partition offset timestamp key value headers leader_epoch delivery_count lock_deadline_ms")
# One record's pending acknowledgement: type is "accept", "release" or "reject".
PendingAck = collections.namedtuple("PendingAck", "offset type release_delay_ms reason", defaults=(0, ""))
# The outcome of one record's acknowledgement: error is None, or a RunnelError (INVALID_RECORD_STATE:
# the lock had expired and the record went back to the group; or why it could not be sent).
AckResult = collections.namedtuple("AckResult", "topic partition offset type error")


# ---------------------------------------------------------------------------------------------
# Pure rules


def coalesce_acks(acks):
    """PendingAcks of one partition -> the fewest ShareAcknowledgement runs: consecutive offsets with the
    same type, delay and reason (a run carries one of each), in offset order. An offset given twice is a
    ValueError: runs must not overlap."""
    runs = []
    prev = None
    for a in sorted(acks, key=lambda x: x.offset):
        if a.type not in ACK_TYPES:
            raise ValueError("unknown acknowledgement type %r" % (a.type,))
        if prev is not None and a.offset == prev.offset:
            raise ValueError("offset %d is acknowledged twice" % a.offset)
        delay = a.release_delay_ms if a.type == "release" else 0
        reason = a.reason if a.type in ("release", "reject") else ""
        if prev is not None and runs and a.offset == prev.offset + 1 and a.type == prev.type \
                and delay == runs[-1].release_delay_ms and reason == runs[-1].reason:
            runs[-1].last_offset = a.offset
        else:
            runs.append(share_pb2.ShareAcknowledgement(
                first_offset=a.offset, last_offset=a.offset, type=ACK_TYPES[a.type], release_delay_ms=delay, reason=reason))
        prev = a
    return runs


def truncate_reason(reason):
    """At most max_reason_bytes of UTF-8, never splitting a character."""
    data = reason.encode("utf-8")
    if len(data) <= max_reason_bytes:
        return reason
    return data[:max_reason_bytes].decode("utf-8", errors="ignore")


def acquired_from_batches(topic, partition, batches, acquired, lock_deadline_ms=0):
    """The acquired records of a ShareFetch answer: (records, missing, batch_error). A batch may also
    hold records acquired by other members or already settled, so only offsets inside an `acquired` run
    are kept, each with its run's delivery count; an offset in two runs is taken once. `missing` lists
    acquired offsets no batch held (or whose batch failed its CRC): the member holds their locks but
    cannot process them, so they should be released."""
    decoded = {}
    batch_error = None
    for batch in batches:
        try:
            for r in rc.decode_batch(topic, partition, batch):
                decoded.setdefault(r.offset, r)
        except RunnelError as err:
            batch_error = batch_error or str(err)
    records, missing, taken = [], [], set()
    for run in sorted(acquired, key=lambda a: a.first_offset):
        for offset in range(run.first_offset, run.last_offset + 1):
            if offset in taken:
                continue
            taken.add(offset)
            r = decoded.get(offset)
            if r is None:
                missing.append(offset)
            else:
                records.append(ShareRecord(topic, partition, offset, r.timestamp, r.key, r.value, r.headers,
                                           r.leader_epoch, run.delivery_count, lock_deadline_ms))
    return records, missing, batch_error


def split_record_budget(total, slots):
    """`total` records over `slots` requests, never more in all: the first ones get the remainder."""
    if slots <= 0:
        return []
    total = max(0, total)
    return [total // slots + (1 if i < total % slots else 0) for i in range(slots)]


# ---------------------------------------------------------------------------------------------
# The member


class _AckEntry:
    __slots__ = ("topic", "partition", "ack", "member_id", "first_queued_ms", "attempts")

    def __init__(self, topic, partition, ack, member_id, first_queued_ms):
        self.topic, self.partition, self.ack, self.member_id = topic, partition, ack, member_id
        self.first_queued_ms, self.attempts = first_queued_ms, 0


class ShareConsumer:
    """A member of share group `group_id` reading `topics`. poll() returns records acquired for this
    member (at most max_in_flight_records held at once); settle each with accept / release / reject.
    Acknowledgements are queued and sent with the next ShareFetch to that partition's leader, or by
    flush(), which returns one AckResult per record acknowledged since the last flush(). close()
    releases what is still held, flushes and leaves the group."""

    def __init__(self, cluster, group_id, topics, max_in_flight_records=default_max_in_flight_records,
                 lock_duration_ms=default_lock_duration_ms, client_id="runnel-python"):
        if not isinstance(group_id, str) or not 1 <= len(group_id) <= max_group_id_chars:
            raise ValueError("group_id must be 1 to %d characters" % max_group_id_chars)
        topics = list(dict.fromkeys(topics))
        if not topics:
            raise ValueError("a share consumer needs at least one topic")
        if not (isinstance(max_in_flight_records, int) and max_in_flight_records >= 1):
            raise ValueError("max_in_flight_records must be an integer >= 1, got %r" % (max_in_flight_records,))
        if not min_lock_duration_ms <= lock_duration_ms <= max_lock_duration_ms:
            raise ValueError("lock_duration_ms must be %d..%d, got %r" % (min_lock_duration_ms, max_lock_duration_ms, lock_duration_ms))
        self.cluster, self.group_id, self.topics, self.client_id = cluster, group_id, topics, client_id
        self.max_in_flight_records = max_in_flight_records
        self.lock_duration_ms = int(lock_duration_ms)
        self.member_id, self.member_epoch = "", 0
        self.heartbeat_interval_ms = initial_share_heartbeat_interval_ms
        self._next_heartbeat_ms = 0
        self._held = {}            # (topic, partition, offset) -> (ShareRecord, member id holding its lock)
        self._buffer = []          # acquired, not yet returned by poll()
        self._pending = []         # _AckEntry, not yet answered
        self._results = []         # AckResult since the last flush()
        self._errors = []          # RunnelError for poll()'s caller (retrying cannot help)
        self._backoff = {}         # (topic, partition) -> [failures, retry not before (monotonic ms)]
        self._topics_checked = False
        self._fetch_rounds = 0
        self._closed = False
        self.stats = collections.Counter()

    @property
    def in_flight_records(self):
        """Records acquired and not yet acknowledged (returned by poll() or still buffered)."""
        return len(self._held)

    # --- reading

    def poll(self, max_wait_ms=500, max_records=None):
        """Heartbeats when due, then one ShareFetch per partition leader (waiting at most max_wait_ms, and
        never past the next heartbeat) carrying the acknowledgements queued for that leader; returns the
        records acquired for this member, at most max_records. Raises a RunnelError that retrying cannot
        help (unknown topic, corrupt batch, a broker that refuses the request)."""
        self._assert_open()
        if max_records is not None and not (isinstance(max_records, int) and max_records >= 1):
            raise ValueError("max_records must be an integer >= 1, got %r" % (max_records,))
        max_wait_ms = int(max(0, min(max_wait_ms, max_share_fetch_wait_ms)))
        start_ms = rc._monotonic_ms()
        if not self._topics_checked:
            for t in self.topics:
                self.cluster.partitions(t)   # UNKNOWN_TOPIC_OR_PARTITION for a typo, after a bounded wait
            self._topics_checked = True
        if start_ms >= self._next_heartbeat_ms:
            self._heartbeat()
        self._raise_pending_error()
        limit = self.max_in_flight_records if max_records is None else max_records
        if self._buffer:
            return self._take_buffer(limit)
        wait_ms = int(max(0, min(max_wait_ms, self._next_heartbeat_ms - rc._monotonic_ms())))
        room = min(limit, self.max_in_flight_records - len(self._held))
        by_leader, retry_at_ms = self._partitions_by_leader()
        if self.member_id == "" or room <= 0 or not by_leader:
            # Not joined yet, every record we may hold is out, or every partition is backing off: nothing
            # to fetch, but acknowledgements still go out.
            self._send_acks(force=False)
            until_ms = start_ms + wait_ms if self.member_id != "" and room <= 0 else min(start_ms + wait_ms, retry_at_ms)
            time.sleep(max(0.0, until_ms - rc._monotonic_ms()) / 1000)
            return []
        self._fetch_round(by_leader, room, wait_ms)
        self._send_acks(force=False)   # what could not ride a fetch (another leader, an older member id)
        self._raise_pending_error()
        return self._take_buffer(limit)

    def _take_buffer(self, limit):
        out, self._buffer = self._buffer[:limit], self._buffer[limit:]
        return out

    def _partitions_by_leader(self):
        """{address: {topic: [(partition, leader epoch)]}} for partitions not backing off, and the
        monotonic time at which the next backed-off one may be tried."""
        now = rc._monotonic_ms()
        retry_at_ms = float("inf")
        by_leader = collections.defaultdict(lambda: collections.defaultdict(list))
        for topic in self.topics:
            for p in self.cluster.partitions(topic):
                tp = (topic, p.partition)
                b = self._backoff.get(tp)
                if b is not None and b[1] > now:
                    retry_at_ms = min(retry_at_ms, b[1])
                    continue
                try:
                    _, address, epoch = self.cluster.leader(topic, p.partition)
                except RunnelError:
                    self._back_off(tp)
                    self._refresh([topic])
                    retry_at_ms = min(retry_at_ms, self._backoff[tp][1])
                    continue
                by_leader[address][topic].append((p.partition, epoch))
        return by_leader, retry_at_ms

    def _fetch_round(self, by_leader, room, wait_ms):
        # The first leaders get the remainder of the budget, so the order turns every round: with fewer
        # records to ask for than leaders, a fixed order would never ask the last ones (their jobs starve).
        addresses = sorted(by_leader)
        turn = self._fetch_rounds % len(addresses)
        self._fetch_rounds += 1
        addresses = addresses[turn:] + addresses[:turn]
        budgets = split_record_budget(room, len(addresses))
        calls = []
        for address, budget in zip(addresses, budgets):
            budget = min(budget, max_records_per_share_fetch)
            if budget <= 0:
                continue
            piggybacked = self._take_pending(lambda e, a=address: e.member_id == self.member_id and self._leader_address(e.topic, e.partition) == a)
            for e in piggybacked:
                e.attempts += 1
            topics = by_leader[address]
            req = share_pb2.ShareFetchRequest(
                group_id=self.group_id, member_id=self.member_id, max_records=budget, max_wait_ms=wait_ms,
                lock_duration_ms=self.lock_duration_ms, acknowledgements=self._ack_topics(piggybacked),
                # Only the acquired records' bytes: a member often takes a few records of a large batch.
                acquired_records_only=True,
                topics=[share_pb2.ShareFetchTopic(topic=t, partitions=[
                    share_pb2.ShareFetchPartition(partition=p, current_leader_epoch=epoch) for p, epoch in ps]) for t, ps in sorted(topics.items())])
            self.stats["share_fetches"] += 1
            self.stats["acks_piggybacked"] += len(piggybacked)
            future = self.cluster.broker_stub(address).ShareFetch.future(req, timeout=wait_ms / 1000 + rc.request_timeout_s)
            calls.append((address, topics, self.member_id, piggybacked, future))
        for address, topics, member_id, piggybacked, future in calls:
            fetched = {(t, p) for t, ps in topics.items() for p, _ in ps}
            try:
                res = future.result()
            except grpc.RpcError as err:
                e = rc._grpc_error(err, "ShareFetch to %s" % address)
                self._requeue(piggybacked, e)
                for tp in fetched:
                    self._back_off(tp)
                self._refresh(list(topics))
                continue
            self._apply_answer(address, res.topics, piggybacked, lambda p: p.acknowledge_results, fetched,
                               lambda topic, p, member_id=member_id, address=address: self._on_fetched(topic, p, member_id, address))

    def _on_fetched(self, topic, p, member_id, address):
        tp = (topic, p.partition)
        if p.error_code != E.ERROR_CODE_NONE:
            err = RunnelError(p.error_code, "from %s: %s" % (address, p.error_message), topic, p.partition)
            self._follow_error(topic, p.partition, p.error_code, p.current_leader if p.HasField("current_leader") else None)
            self._back_off(tp)
            if not err.retriable and not any(str(x) == str(err) for x in self._errors):
                self._errors.append(err)
            return
        self._backoff.pop(tp, None)
        if not p.acquired:
            return
        records, missing, batch_error = acquired_from_batches(topic, p.partition, p.batches, p.acquired, p.lock_deadline_ms)
        for r in records:
            key = (topic, p.partition, r.offset)
            if key in self._held:
                continue   # a repeated answer must not hand a record out twice
            self._held[key] = (r, member_id)
            self._buffer.append(r)
        self.stats["acquired"] += len(records)
        if missing:
            # Locked to us but unreadable: give them back now rather than let the locks run out.
            reason = "corrupt batch: %s" % batch_error if batch_error else "record missing from the share fetch answer"
            for offset in missing:
                self._queue(topic, p.partition, offset, member_id, PendingAck(offset, "release", 0, truncate_reason(reason)))
            if batch_error:
                self._errors.append(RunnelError(E.CORRUPT_BATCH, "from %s: %s" % (address, batch_error), topic, p.partition))

    # --- acknowledging

    def accept(self, record):
        """Done: the record is settled and never delivered again (sent with the next poll or flush)."""
        self._acknowledge(record, "accept", 0, "")

    def release(self, record, delay_ms=0, reason=""):
        """Give it back for another delivery, not before delay_ms; dead-lettered instead when it has been
        delivered max.delivery.attempts times."""
        self._acknowledge(record, "release", delay_ms, reason)

    def reject(self, record, reason):
        """Poison: the leader dead-letters it now, with `reason` as runnel.dlq.reason."""
        self._acknowledge(record, "reject", 0, reason)

    def _acknowledge(self, record, ack_type, delay_ms, reason):
        key = (record.topic, record.partition, record.offset)
        if not (isinstance(delay_ms, int) and 0 <= delay_ms <= max_release_delay_ms):
            raise ValueError("release delay_ms must be an integer 0..%d, got %r" % (max_release_delay_ms, delay_ms))
        held = self._held.pop(key, None)
        if held is None:
            raise ValueError("topic %s partition %d offset %d is not held by this share consumer (already acknowledged, "
                             "or acquired by another consumer)" % key)
        if self._buffer:
            self._buffer = [r for r in self._buffer if (r.topic, r.partition, r.offset) != key]
        self._queue(record.topic, record.partition, record.offset, held[1], PendingAck(record.offset, ack_type, delay_ms, truncate_reason(reason)))

    def _queue(self, topic, partition, offset, member_id, ack):
        self._pending.append(_AckEntry(topic, partition, ack, member_id, rc._monotonic_ms()))

    def take_results(self):
        """The AckResults answered so far (on a ShareFetch or a ShareAcknowledge), without sending
        anything; they are not returned again by flush()."""
        results, self._results = self._results, []
        return results

    def flush(self, raise_on_error=False):
        """Sends every queued acknowledgement (retrying leader changes and lost answers within the retry
        budget) and returns one AckResult per record acknowledged since the last flush(), in the order
        the answers came; with raise_on_error, raises the first failed one's error instead."""
        deadline = rc._Deadline()
        while self._pending:
            self._send_acks(force=True)
            if self._pending:
                self.stats["ack_retries"] += 1
                try:
                    deadline.backoff(RunnelError(E.REQUEST_TIMED_OUT, "acknowledgements not answered within %d ms" % rc.retry_budget_ms))
                except RunnelError as err:
                    self._requeue(self._take_pending(lambda e: True), err, give_up=True)
        results, self._results = self._results, []
        if raise_on_error:
            failed = [r for r in results if r.error is not None]
            if failed:
                raise failed[0].error
        return results

    def _send_acks(self, force):
        """Queued acknowledgements in ShareAcknowledge requests, one per (leader, member id), in parallel.
        Without force, ones that failed before wait for their partition's backoff."""
        now = rc._monotonic_ms()

        def due(e):
            b = self._backoff.get((e.topic, e.partition))
            return force or e.attempts == 0 or b is None or b[1] <= now

        groups = collections.defaultdict(list)
        for e in self._take_pending(due):
            address = self._leader_address(e.topic, e.partition)
            if address is None:
                self._refresh([e.topic])
                self._requeue([e], RunnelError(E.LEADER_NOT_AVAILABLE, "no known leader", e.topic, e.partition))
                continue
            groups[(address, e.member_id)].append(e)
        calls = []
        for (address, member_id), entries in sorted(groups.items()):
            for e in entries:
                e.attempts += 1
            req = share_pb2.ShareAcknowledgeRequest(group_id=self.group_id, member_id=member_id, topics=self._ack_topics(entries))
            self.stats["ack_requests"] += 1
            calls.append((address, entries, self.cluster.broker_stub(address).ShareAcknowledge.future(req, timeout=rc.request_timeout_s)))
        for address, entries, future in calls:
            try:
                res = future.result()
            except grpc.RpcError as err:
                self._requeue(entries, rc._grpc_error(err, "ShareAcknowledge to %s" % address))
                self._refresh(sorted({e.topic for e in entries}))
                continue
            self._apply_answer(address, res.topics, entries, lambda p: p.results)

    def _apply_answer(self, address, answer_topics, entries, results_of, fetched=frozenset(), on_fetched=None):
        """One ShareFetch or ShareAcknowledge answer: each partition's acknowledgement outcomes go to the
        entries sent for it (`results_of` picks the field: the two answers name it differently), entries
        the answer left out are queued again, and fetched partitions go to `on_fetched`, which also
        follows their errors (hint, backoff) once."""
        answered = set()
        for t in answer_topics:
            for p in t.partitions:
                mine = [e for e in entries if e.topic == t.topic and e.partition == p.partition]
                hint = p.current_leader if p.HasField("current_leader") else None
                was_fetched = (t.topic, p.partition) in fetched
                self._on_ack_results(t.topic, p.partition, mine, p.error_code, p.error_message, results_of(p), hint,
                                     follow=not was_fetched)
                answered.update(id(e) for e in mine)
                if was_fetched:
                    on_fetched(t.topic, p)
        unanswered = [e for e in entries if id(e) not in answered]
        if unanswered:
            self._requeue(unanswered, RunnelError(E.UNKNOWN_SERVER_ERROR, "broker %s did not answer for some acknowledged partitions" % address))

    def _take_pending(self, want):
        """Removes and returns the queued entries `want` picks, at most one per record (a record acquired
        again after its lock expired may have an older acknowledgement still queued: runs must not overlap)."""
        taken, kept, seen = [], [], set()
        for e in self._pending:
            k = (e.topic, e.partition, e.ack.offset)
            if k not in seen and want(e):
                seen.add(k)
                taken.append(e)
            else:
                kept.append(e)
        self._pending = kept
        return taken

    def _ack_topics(self, entries):
        by_tp = collections.defaultdict(list)
        for e in entries:
            by_tp[(e.topic, e.partition)].append(e.ack)
        by_topic = collections.defaultdict(list)
        for (topic, partition), acks in sorted(by_tp.items()):
            part = share_pb2.ShareAcknowledgePartition(partition=partition, acknowledgements=coalesce_acks(acks))
            parts = self.cluster.topics.get(topic)
            if parts and 0 <= partition < len(parts):
                part.current_leader_epoch = parts[partition].leader_epoch
            by_topic[topic].append(part)
        return [share_pb2.ShareAcknowledgeTopic(topic=t, partitions=ps) for t, ps in by_topic.items()]

    def _on_ack_results(self, topic, partition, entries, error_code, error_message, results, hint, follow=True):
        """A partition's answer to acknowledgements: a partition error sends them again (to the new leader
        after NOT_LEADER); otherwise each record gets its run's outcome."""
        if not entries:
            return
        if error_code != E.ERROR_CODE_NONE:
            if follow:
                self._follow_error(topic, partition, error_code, hint)
                self._back_off((topic, partition))
            self._requeue(entries, RunnelError(error_code, error_message, topic, partition))
            return
        for e in entries:
            run = next((r for r in results if r.first_offset <= e.ack.offset <= r.last_offset), None)
            if run is None:
                error = RunnelError(E.UNKNOWN_SERVER_ERROR, "no outcome for offset %d" % e.ack.offset, topic, partition)
            elif run.error_code != E.ERROR_CODE_NONE:
                error = RunnelError(run.error_code, "offset %d: %s" % (e.ack.offset, run.error_message), topic, partition)
            else:
                error = None
            self._keep_result(AckResult(topic, partition, e.ack.offset, e.ack.type, error))
        self.stats["acks_answered"] += len(entries)

    def _requeue(self, entries, err, give_up=False):
        """Queues entries again for another try, or gives them their final (failed) outcome once retrying
        cannot help or their retry budget is spent."""
        now = rc._monotonic_ms()
        for e in entries:
            if give_up or not err.retriable or now - e.first_queued_ms > rc.retry_budget_ms:
                self._keep_result(AckResult(e.topic, e.partition, e.ack.offset, e.ack.type, err))
            else:
                self._pending.append(e)

    def _keep_result(self, result):
        self._results.append(result)
        if len(self._results) >= 2 * max_unreported_ack_results:
            # Trimmed in steps, not on every append, so that keeping results stays cheap.
            self._results = self._results[-max_unreported_ack_results:]

    # --- routing

    def _leader_address(self, topic, partition):
        try:
            return self.cluster.leader(topic, partition)[1]
        except RunnelError:
            return None

    def _refresh(self, topics=()):
        try:
            self.cluster.refresh(topics)
        except RunnelError:
            pass   # no broker answers now; the next round tries again

    def _follow_error(self, topic, partition, code, hint):
        try:
            if code in (E.NOT_LEADER, E.FENCED_LEADER_EPOCH):
                self.cluster.follow_hint(topic, partition, hint)
            elif code in rc.REFRESH_METADATA:
                self.cluster.refresh([topic])
        except RunnelError:
            pass

    def _back_off(self, tp):
        b = self._backoff.setdefault(tp, [0, 0])
        b[0] += 1
        b[1] = rc._monotonic_ms() + min(rc.max_backoff_ms, rc.initial_backoff_ms * 2 ** min(b[0] - 1, 16))

    # --- membership

    def _heartbeat_call(self, epoch):
        req = share_pb2.ShareGroupHeartbeatRequest(
            group_id=self.group_id, member_id=self.member_id, member_epoch=epoch,
            subscribed_topic_names=self.topics if epoch == 0 else [], client_id=self.client_id)
        return self.cluster.controller_stub().ShareGroupHeartbeat(req, timeout=share_heartbeat_timeout_s)

    def _heartbeat(self):
        self.stats["heartbeats"] += 1
        self._next_heartbeat_ms = rc._monotonic_ms() + self.heartbeat_interval_ms
        try:
            res = self._heartbeat_call(self.member_epoch)
        except (grpc.RpcError, RunnelError):
            # Controller unreachable or moving: keep working with the locks we hold, try next interval.
            self._refresh()
            return
        if res.error_code in (E.UNKNOWN_MEMBER_ID, E.FENCED_MEMBER_EPOCH):
            # Rejoin at once. Records acquired under the old id keep it for their acknowledgements.
            self.stats["rejoins"] += 1
            self.member_id, self.member_epoch = "", 0
            self._next_heartbeat_ms = 0
            return
        if res.error_code != E.ERROR_CODE_NONE:
            err = RunnelError(res.error_code, res.error_message)
            if err.retriable:
                return
            raise err
        self.member_id, self.member_epoch = res.member_id, res.member_epoch
        if res.heartbeat_interval_ms > 0:
            self.heartbeat_interval_ms = res.heartbeat_interval_ms
            self._next_heartbeat_ms = rc._monotonic_ms() + self.heartbeat_interval_ms

    def close(self):
        """Releases every record still held (reason "share consumer closed"), flushes, and leaves the group
        (member epoch -1). Returns the flush's AckResults. Calling it again does nothing."""
        if self._closed:
            return []
        self._closed = True
        for key, (record, member_id) in sorted(self._held.items()):
            self._queue(record.topic, record.partition, record.offset, member_id, PendingAck(record.offset, "release", 0, closed_release_reason))
        self.stats["released_on_close"] += len(self._held)
        self._held.clear()
        self._buffer = []
        results = self.flush()
        if self.member_id:
            try:
                self._heartbeat_call(-1)
            except (grpc.RpcError, RunnelError):
                pass   # the controller drops us after its session timeout instead
        self.member_id, self.member_epoch = "", 0
        return results

    def _assert_open(self):
        if self._closed:
            raise ValueError("the share consumer is closed")

    def _raise_pending_error(self):
        if self._errors:
            raise self._errors.pop(0)
