"""Offline tests of the share consumer's pure rules (runnel_share.py): acknowledgements coalesced into
runs as docs/protocol.md §9 asks, only acquired offsets kept from a ShareFetch answer (whole batches and
acquired_records_only cut-down batches), record budgets split across leaders, reasons cut to 1024 bytes.
Run: /usr/bin/python3 -m unittest discover -s examples/python -p 'test_*.py'"""
import unittest

import runnel_client as rc
import runnel_share as rs

share_pb2 = rs.share_pb2


def acquired(first, last, delivery_count=1):
    return share_pb2.AcquiredRecords(first_offset=first, last_offset=last, delivery_count=delivery_count)


def batch_at(base_offset, values, keep=None):
    """A stored batch of `values` at base_offset; with `keep` (offset deltas), cut down to those records
    the way a leader answers acquired_records_only (header kept, offset_delta kept, CRC recomputed)."""
    b = rc.build_batch([rc.Record(value=v.encode()) for v in values], now=1_700_000_000_000)
    b.header.base_offset = base_offset
    if keep is not None:
        whole = rc.records_pb2.RecordSet.FromString(b.records)
        cut = rc.records_pb2.RecordSet(records=[r for r in whole.records if r.offset_delta in keep])
        b.records = cut.SerializeToString()
        b.header.record_count = len(cut.records)
        b.header.crc = rc.crc32c(b.records)
    return b


class CoalesceAcksTest(unittest.TestCase):
    def test_consecutive_offsets_of_one_type_become_one_run_in_offset_order(self):
        runs = rs.coalesce_acks([rs.PendingAck(o, "accept") for o in (7, 5, 6, 9)])
        self.assertEqual([(r.first_offset, r.last_offset, r.type) for r in runs],
                         [(5, 7, share_pb2.SHARE_ACKNOWLEDGE_ACCEPT), (9, 9, share_pb2.SHARE_ACKNOWLEDGE_ACCEPT)])

    def test_type_delay_or_reason_changes_start_a_new_run(self):
        runs = rs.coalesce_acks([
            rs.PendingAck(1, "accept"), rs.PendingAck(2, "reject", 0, "bad"), rs.PendingAck(3, "reject", 0, "bad"),
            rs.PendingAck(4, "reject", 0, "worse"), rs.PendingAck(5, "release", 100, "later"), rs.PendingAck(6, "release", 200, "later")])
        self.assertEqual([(r.first_offset, r.last_offset, r.type, r.release_delay_ms, r.reason) for r in runs], [
            (1, 1, share_pb2.SHARE_ACKNOWLEDGE_ACCEPT, 0, ""),
            (2, 3, share_pb2.SHARE_ACKNOWLEDGE_REJECT, 0, "bad"),
            (4, 4, share_pb2.SHARE_ACKNOWLEDGE_REJECT, 0, "worse"),
            (5, 5, share_pb2.SHARE_ACKNOWLEDGE_RELEASE, 100, "later"),
            (6, 6, share_pb2.SHARE_ACKNOWLEDGE_RELEASE, 200, "later")])

    def test_accept_carries_no_delay_or_reason(self):
        (run,) = rs.coalesce_acks([rs.PendingAck(3, "accept", 500, "ignored")])
        self.assertEqual((run.release_delay_ms, run.reason), (0, ""))

    def test_an_offset_acknowledged_twice_is_refused(self):
        with self.assertRaises(ValueError):
            rs.coalesce_acks([rs.PendingAck(4, "accept"), rs.PendingAck(4, "reject", 0, "x")])


class AcquiredFromBatchesTest(unittest.TestCase):
    def test_keeps_only_acquired_offsets_of_whole_batches_with_their_delivery_counts(self):
        batches = [batch_at(10, ["a", "b", "c", "d"]), batch_at(14, ["e", "f"])]
        records, missing, err = rs.acquired_from_batches("t", 2, batches, [acquired(11, 12, 1), acquired(15, 15, 3)], 99)
        self.assertEqual([(r.topic, r.partition, r.offset, r.value, r.delivery_count, r.lock_deadline_ms) for r in records],
                         [("t", 2, 11, b"b", 1, 99), ("t", 2, 12, b"c", 1, 99), ("t", 2, 15, b"f", 3, 99)])
        self.assertEqual((missing, err), ([], None))

    def test_reads_cut_down_batches_whose_offset_deltas_skip(self):
        batches = [batch_at(20, ["a", "b", "c", "d", "e"], keep={1, 3, 4})]
        records, missing, err = rs.acquired_from_batches("t", 0, batches, [acquired(21, 21), acquired(23, 24, 2)])
        self.assertEqual([(r.offset, r.value, r.delivery_count) for r in records], [(21, b"b", 1), (23, b"d", 2), (24, b"e", 2)])
        self.assertEqual((missing, err), ([], None))

    def test_acquired_offsets_no_batch_holds_are_missing(self):
        records, missing, err = rs.acquired_from_batches("t", 0, [batch_at(0, ["a"])], [acquired(0, 2)])
        self.assertEqual([r.offset for r in records], [0])
        self.assertEqual((missing, err), ([1, 2], None))

    def test_a_corrupt_batch_makes_its_offsets_missing_and_says_why(self):
        bad = batch_at(5, ["x", "y"])
        bad.header.crc ^= 1
        records, missing, err = rs.acquired_from_batches("t", 0, [bad], [acquired(5, 6)])
        self.assertEqual((records, missing), ([], [5, 6]))
        self.assertIn("CORRUPT_BATCH", err)

    def test_an_offset_in_two_runs_is_handed_out_once(self):
        records, _, _ = rs.acquired_from_batches("t", 0, [batch_at(0, ["a", "b", "c"])], [acquired(0, 1), acquired(1, 2)])
        self.assertEqual([r.offset for r in records], [0, 1, 2])


class SmallRulesTest(unittest.TestCase):
    def test_split_record_budget_never_exceeds_the_total(self):
        self.assertEqual(rs.split_record_budget(10, 3), [4, 3, 3])
        self.assertEqual(rs.split_record_budget(2, 3), [1, 1, 0])
        self.assertEqual(rs.split_record_budget(-1, 2), [0, 0])
        self.assertEqual(rs.split_record_budget(5, 0), [])

    def test_reason_is_cut_to_1024_utf8_bytes_without_splitting_a_character(self):
        self.assertEqual(rs.truncate_reason("short"), "short")
        cut = rs.truncate_reason("a" + "é" * 600)   # 1 + 1200 bytes
        self.assertLessEqual(len(cut.encode("utf-8")), rs.max_reason_bytes)
        self.assertEqual(cut, "a" + "é" * 511)

    def test_constructor_refuses_out_of_range_settings(self):
        cluster = rc.Cluster("127.0.0.1:1")   # never contacted
        with self.assertRaises(ValueError):
            rs.ShareConsumer(cluster, "", ["t"])
        with self.assertRaises(ValueError):
            rs.ShareConsumer(cluster, "g", [])
        with self.assertRaises(ValueError):
            rs.ShareConsumer(cluster, "g", ["t"], lock_duration_ms=999)
        with self.assertRaises(ValueError):
            rs.ShareConsumer(cluster, "g", ["t"], max_in_flight_records=0)


if __name__ == "__main__":
    unittest.main()
