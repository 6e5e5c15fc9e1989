"""Offline tests of the pieces a Runnel client must get bit-exact: CRC32C, Kafka's murmur2 partitioner,
the proto3-optional rewrite, and record batches (build, decode, CRC check, null vs empty).
Run: /usr/bin/python3 -m unittest discover -s examples/python -p 'test_*.py'"""
import unittest

import runnel_stubs
from runnel_codec import crc32c, murmur2, partition_for_key


class Crc32cTest(unittest.TestCase):
    def test_standard_check_value(self):
        # The CRC-32C catalogue's check value, and RFC 3720 (iSCSI) appendix B.4 vectors.
        self.assertEqual(crc32c(b"123456789"), 0xE3069283)
        self.assertEqual(crc32c(bytes(32)), 0x8A9136AA)
        self.assertEqual(crc32c(b"\xff" * 32), 0x62A8AB43)
        self.assertEqual(crc32c(bytes(range(32))), 0x46DD794E)
        self.assertEqual(crc32c(b""), 0)

    def test_incremental_equals_whole(self):
        data = bytes(range(256)) * 3
        self.assertEqual(crc32c(data[100:], crc32c(data[:100])), crc32c(data))


class Murmur2Test(unittest.TestCase):
    # Values computed by the TypeScript client's murmur2/partitionForKey (client/src/producer/partitioner.ts).
    vectors = [("", 275646681, 0), ("a", -1563381124, 1), ("ab", 316155434, 2), ("abc", 479470107, 0),
               ("abcd", -1323649548, 2), ("customer-42", -542987495, 0), ("k17", -1539665167, 1), ("hello world", 1221641059, 1)]

    def test_matches_the_typescript_client(self):
        for key, hashed, partition in self.vectors:
            self.assertEqual(murmur2(key.encode()), hashed, key)
            self.assertEqual(partition_for_key(key.encode(), 3), partition, key)

    def test_rejects_zero_partitions(self):
        with self.assertRaises(ValueError):
            partition_for_key(b"k", 0)


class ProtoRewriteTest(unittest.TestCase):
    def test_optional_becomes_a_synthetic_oneof(self):
        src = "message R {\n  optional bytes key = 3;\n  int32 other = 4;\n  optional int32 current_leader_epoch = 5;\n}\n"
        out = runnel_stubs.rewrite_proto3_optional(src)
        self.assertIn("  oneof _key { bytes key = 3; }", out)
        self.assertIn("  oneof _current_leader_epoch { int32 current_leader_epoch = 5; }", out)
        self.assertIn("  int32 other = 4;", out)
        self.assertNotIn("optional", out)


class BatchTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        import runnel_client
        cls.rc = runnel_client

    def test_round_trip_keeps_null_empty_headers_and_timestamps(self):
        rc = self.rc
        records = [rc.Record(key=b"k", value=b"v", headers=(("h", b"1"), ("h", b"2")), timestamp=1_000),
                   rc.Record(key=b"", value=None, timestamp=1_005),
                   rc.Record(key=None, value=b"", timestamp=999)]
        batch = rc.build_batch(records, producer_id=7, producer_epoch=1, base_sequence=40)
        h = batch.header
        self.assertEqual((h.record_count, h.first_timestamp, h.max_timestamp), (3, 999, 1_005))
        self.assertEqual((h.producer_id, h.producer_epoch, h.base_sequence, h.base_offset, h.attributes), (7, 1, 40, 0, 0))
        self.assertEqual(h.crc, crc32c(batch.records))
        batch.header.base_offset = 100
        out = rc.decode_batch("t", 0, batch)
        self.assertEqual([r.offset for r in out], [100, 101, 102])
        self.assertEqual([r.timestamp for r in out], [1_000, 1_005, 999])
        self.assertEqual([(r.key, r.value) for r in out], [(b"k", b"v"), (b"", None), (None, b"")])
        self.assertEqual(out[0].headers, [("h", b"1"), ("h", b"2")])

    def test_crc_mismatch_is_a_corrupt_batch(self):
        rc = self.rc
        batch = rc.build_batch([rc.Record(value=b"x")], now=1)
        batch.header.crc ^= 1
        with self.assertRaises(rc.RunnelError) as ctx:
            rc.decode_batch("t", 2, batch)
        self.assertEqual(ctx.exception.code, rc.E.CORRUPT_BATCH)
        self.assertIn("partition 2", str(ctx.exception))

    def test_empty_batch_is_refused(self):
        with self.assertRaises(ValueError):
            self.rc.build_batch([])


if __name__ == "__main__":
    unittest.main()
