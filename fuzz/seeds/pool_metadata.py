#!/usr/bin/env python3
"""Writes the seed corpus of the pool_metadata fuzz target.

Usage: fuzz/seeds/pool_metadata.py [OUT_DIR]   (default fuzz/corpus/pool_metadata)

The input format is described at the top of fuzz/pool_metadata.cc. The
harness's seed pool (fixed uuid) holds volumes 1 alpha (1 MiB), 2 beta
(64 KiB, preallocated, exported) and 3 delta (128 KiB); its active
checkpoint is slot 1 (written by Repair at seq 8), its log ends after entry
13 at ring offset 49152, and its last NoteMark is 11. Run the target with
NESTOR_FUZZ_LOG=1 to see these figures.
"""
import os
import struct
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "corpus", "pool_metadata")

# modes and flags
PATCH, CKPT, LOG, JOURNAL, DECODE = range(5)
RO, CHECK, REPAIR, EXERCISE = 1, 2, 4, 8
FIX_SB, FIX_CKPT, FIX_LOG, FIX_SEAL = 0x10, 0x20, 0x40, 0x80
# patch regions
SB, SLOT0, SLOT1, RING, DATA = range(5)


def head(t, vol):
    return struct.pack("<BI", t, vol)


def create(vol, name, size, reserved=0):
    n = name.encode()
    return head(1, vol) + struct.pack("<QQB", size, reserved, len(n)) + n


def delete(vol):
    return head(2, vol)


def resize(vol, size):
    return head(3, vol) + struct.pack("<Q", size)


def map_(vol, v, p, n):
    return head(4, vol) + struct.pack("<QQI", v, p, n)


def unmap(vol, v, n):
    return head(5, vol) + struct.pack("<QI", v, n)


def reserve(vol, clusters):
    return head(6, vol) + struct.pack("<Q", clusters)


def export(vol, queues, ro=False, qos=(0, 0, 0, 0)):
    return head(7, vol) + struct.pack("<QQQQQ", queues | (int(ro) << 16), *qos)


def export_clear(vol):
    return head(8, vol)


def snapshot(vol, source, name):
    n = name.encode()
    return head(11, vol) + struct.pack("<IB", source, len(n)) + n


def clone(vol, parent, size, name):
    n = name.encode()
    return head(12, vol) + struct.pack("<IQB", parent, size, len(n)) + n


def link(vol, parent, flags):
    return head(13, vol) + struct.pack("<IB", parent, flags)


def note_mark(n):
    return head(9, 0) + struct.pack("<Q", n)


def patch(region, off, data):
    return struct.pack("<B", region) + struct.pack("<I", off)[:3] + struct.pack("<B", len(data)) + data


def log_entry(records, flags=0):
    return struct.pack("<BH", flags, len(records)) + records


def journal_entry(records, count, flags=0):
    return struct.pack("<BBH", count, flags, len(records)) + records


SEEDS = {
    # The seed pool as it is, each way of opening it.
    "open-rw": bytes([PATCH, 0]),
    "open-ro": bytes([PATCH, RO]),
    "open-check": bytes([PATCH, CHECK]),
    "repair": bytes([PATCH, REPAIR]),
    "open-exercise": bytes([PATCH, EXERCISE]),
    # Superblock damage: a bad CRC (falls back to the copy in slot 0), an
    # inconsistent layout with a good CRC, another version.
    "sb-bad-crc": bytes([PATCH, CHECK]) + patch(SB, 16, b"\x00\x20"),
    "sb-cluster-size": bytes([PATCH, FIX_SB]) + patch(SB, 16, struct.pack("<I", 8192)),
    "sb-log-bytes": bytes([PATCH, FIX_SB | FIX_CKPT]) + patch(SB, 80, struct.pack("<Q", 1 << 40)),
    "sb-version": bytes([PATCH, FIX_SB]) + patch(SB, 8, struct.pack("<I", 3)),
    # A version 1 pool: opens; snapshot records in it are refused.
    "sb-version-1": bytes([PATCH, FIX_SB | FIX_CKPT | EXERCISE]) + patch(SB, 8, struct.pack("<I", 1)),
    "sb-both-gone": bytes([PATCH, CHECK]) + patch(SB, 0, b"X") + patch(SLOT0, 0, b"X"),
    # Checkpoint damage: a payload byte (falls back to slot 0), a payload
    # length past the slot, a record changed with every CRC fixed.
    "ckpt-payload": bytes([PATCH, CHECK]) + patch(SLOT1, 4096 + 3, b"\xff"),
    "ckpt-length": bytes([PATCH, FIX_CKPT]) + patch(SLOT1, 24, struct.pack("<Q", 1 << 30)),
    "ckpt-record-fixed": bytes([PATCH, FIX_CKPT]) + patch(SLOT1, 4096, b"\x04"),
    "ckpt-seq-swap": bytes([PATCH, FIX_CKPT]) + patch(SLOT0, 8, struct.pack("<Q", 100)),
    # Log damage: an entry in the middle (later commits follow: EUCLEAN),
    # the last one (sealed: EUCLEAN), the seal itself, salvage by Repair.
    "log-middle": bytes([PATCH, 0]) + patch(RING, 40960 + 40, b"\x01\x02\x03"),
    "log-middle-check": bytes([PATCH, CHECK]) + patch(RING, 40960 + 40, b"\x01\x02\x03"),
    "log-middle-repair": bytes([PATCH, REPAIR]) + patch(RING, 40960 + 40, b"\x01\x02\x03"),
    "log-last": bytes([PATCH, 0]) + patch(RING, 49152 - 4096 + 40, b"\xee"),
    "log-fixed-record": bytes([PATCH, FIX_LOG | EXERCISE]) + patch(RING, 49152 - 4096 + 32, b"\x05"),
    "seal-fixed": bytes([PATCH, FIX_SEAL]) + patch(SLOT1, 2048 + 8, struct.pack("<Q", 20)),
    "data-area": bytes([PATCH, EXERCISE]) + patch(DATA, 0, b"\xff" * 16),
    # A whole checkpoint of the fuzzer's records.
    "ckpt-state": bytes([CKPT, EXERCISE])
    + create(1, "v", 1 << 20)
    + create(7, "w", 256 << 10, 4)
    + map_(1, 0, 0, 4)
    + map_(7, 2, 10, 2)
    + export(7, 2, True, (100, 200, 300, 400))
    + resize(1, 2 << 20)
    + unmap(1, 1, 2)
    + reserve(7, 8)
    + note_mark(3),
    "ckpt-conflict": bytes([CKPT, CHECK])
    + create(1, "v", 64 << 10)
    + create(1, "v", 64 << 10)
    + map_(1, 0, 0, 1)
    + map_(2, 0, 0, 1)
    + map_(1, 100, 1, 1)
    + export(1, 0),
    "ckpt-delete": bytes([CKPT, 0]) + create(5, "x", 1 << 20) + map_(5, 0, 400, 5) + delete(5) + export_clear(5),
    # Snapshots and clones (format v2): a chain written as a checkpoint
    # (links after the images, parents first), and the broken ones: a link
    # to a non-snapshot, a loop, a snapshot turned writable, a clone of a
    # volume, a snapshot deleted under its clone.
    "ckpt-chain": bytes([CKPT, EXERCISE])
    + create(1, "g", 256 << 10)
    + map_(1, 0, 0, 2)
    + create(2, "g-s", 256 << 10)
    + map_(2, 2, 20, 2)
    + create(3, "c", 512 << 10)
    + map_(3, 1, 30, 1)
    + create(4, "c2", 256 << 10)
    + link(2, 0, 1)
    + link(1, 2, 0)
    + link(3, 2, 0)
    + link(4, 2, 0)
    + note_mark(1),
    "ckpt-link-bad": bytes([CKPT, CHECK])
    + create(1, "a", 64 << 10)
    + create(2, "b", 64 << 10)
    + link(2, 1, 0)
    + link(1, 1, 1)
    + link(1, 0, 0)
    + link(2, 9, 0)
    + link(2, 1, 2),
    "ckpt-loop": bytes([CKPT, CHECK])
    + create(1, "a", 64 << 10)
    + create(2, "b", 64 << 10)
    + link(1, 0, 1)
    + link(2, 1, 1)
    + link(1, 2, 1),
    "ckpt-snap-records": bytes([CKPT, EXERCISE])
    + create(1, "v", 1 << 20)
    + map_(1, 0, 0, 4)
    + snapshot(2, 1, "v-s1")
    + clone(3, 2, 1 << 20, "c1")
    + clone(4, 1, 1 << 20, "bad")
    + snapshot(5, 2, "bad2")
    + delete(2)
    + note_mark(2),
    # Log entries behind the seed's: plain, one damaged before a later
    # commit, one of the same commit (torn tail), a wrap to offset 0.
    "log-append": bytes([LOG, EXERCISE])
    + log_entry(map_(3, 5, 300, 2) + note_mark(13))
    + log_entry(unmap(1, 0, 1) + resize(3, 1 << 20))
    + log_entry(create(9, "n", 4096) + export(9, 1)),
    "log-damaged-later": bytes([LOG, 0]) + log_entry(map_(3, 5, 300, 1), 0x80) + log_entry(map_(3, 6, 301, 1)),
    "log-torn-same": bytes([LOG, 0]) + log_entry(map_(3, 5, 300, 1), 0x80) + log_entry(map_(3, 6, 301, 1), 0x01),
    "log-damaged-repair": bytes([LOG, REPAIR]) + log_entry(delete(2), 0x80) + log_entry(map_(3, 6, 301, 1)),
    "log-wrap": bytes([LOG, 0]) + log_entry(map_(3, 5, 300, 1), 0x20) + log_entry(delete(1)),
    "log-gap": bytes([LOG, CHECK]) + log_entry(map_(3, 5, 300, 1), 0x40),
    "log-snapshot": bytes([LOG, EXERCISE])
    + log_entry(snapshot(10, 1, "alpha-s"))
    + log_entry(clone(11, 10, 1 << 20, "alpha-c") + map_(11, 3, 310, 1))
    + log_entry(link(11, 0, 0) + delete(10)),
    # Journal files of this boot: notes after the pool's NoteMark (11).
    "journal": bytes([JOURNAL, 0]) + journal_entry(map_(3, 7, 350, 1) + unmap(1, 0, 1), 2),
    "journal-ro": bytes([JOURNAL, RO]) + journal_entry(map_(3, 7, 350, 1), 1) + journal_entry(map_(3, 8, 351, 1), 1),
    "journal-gap": bytes([JOURNAL, 0]) + journal_entry(map_(3, 7, 350, 1), 1) + journal_entry(map_(3, 8, 351, 1), 1, 2),
    "journal-bad-crc": bytes([JOURNAL, 0]) + journal_entry(map_(3, 7, 350, 1), 1, 1),
    "journal-newer": bytes([JOURNAL, 0]) + journal_entry(map_(3, 7, 350, 1), 1, 8),
    "journal-two-files": bytes([JOURNAL, CHECK])
    + journal_entry(map_(3, 7, 350, 1), 1)
    + journal_entry(map_(3, 7, 351, 1), 1, 0x10 | 4),
    # The decoders on their own.
    "decode-records": bytes([DECODE, 0, 2])
    + create(1, "abc", 4096, 1)
    + map_(1, 0, 0, 1)
    + unmap(1, 0, 1)
    + export(1, 4)
    + export_clear(1)
    + resize(1, 8192)
    + reserve(1, 2)
    + note_mark(1)
    + delete(1)
    + snapshot(2, 1, "s")
    + clone(3, 2, 4096, "c")
    + link(3, 0, 1),
    "decode-log": bytes([DECODE, 0, 3])
    + struct.pack("<IIQIIQ", 0x474F4C4E, 0, 1, 17, 1, 0)
    + unmap(1, 0, 1),
    "decode-ckpt": bytes([DECODE, 0, 1]) + struct.pack("<IIQQQIQ", 0x504B434E, 0, 1, 0, 0, 0, 0),
    "decode-sb": bytes([DECODE, 0, 0]) + struct.pack("<QII", 0x4C504F5453454E4E, 1, 0),
}

os.makedirs(OUT, exist_ok=True)
for name, data in SEEDS.items():
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
print(f"{len(SEEDS)} seeds in {OUT}")
