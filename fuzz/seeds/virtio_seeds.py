#!/usr/bin/env python3
"""Writes the seed corpora of the virtio_chain and inflight fuzz targets
(fuzz/corpus/<name>/), in the input formats of fuzz/fake_guest.h and
fuzz/inflight.cc. Usage: fuzz/seeds/virtio_seeds.py [corpus-dir]"""
import os
import struct
import sys

R0 = 0x10000            # region 0 gpa (fake_guest.h)
R1 = R0 + 0x10000       # region 1, gpa-adjacent to region 0
R2 = 0xFFFFFFFFFFFFE000  # region 2, ends one page below 2^64
NEXT, WRITE, INDIRECT = 1, 2, 4
EVENT_IDX, INDIRECT_DESC, READ_ONLY, NO_RANGES = 1, 2, 4, 8

DESC, AVAIL, USED, TABLE, HDRS, STATUS, DATA = 0x0, 0x100, 0x200, 0x300, 0x400, 0x500, 0x600


class Ring:
    """A queue of size n at R0 + DESC/AVAIL/USED; image covers R0 (and R1
    when a buffer lives there)."""

    def __init__(self, n=16, flags=0, base=0, image=0xE00):
        self.n, self.flags, self.base = n, flags, base
        self.img = bytearray(image)
        self.heads = 0
        self.bumps = [0, 0, 0, 0]

    def put(self, off, data):
        if off + len(data) > len(self.img):
            self.img.extend(bytes(off + len(data) - len(self.img)))
        self.img[off:off + len(data)] = data

    def desc(self, i, addr, length, flags=0, nxt=0, table=DESC):
        self.put(table + 16 * i, struct.pack("<QIHH", addr, length, flags, nxt))

    def blk_header(self, slot, type_, sector):
        off = HDRS + 16 * slot
        self.put(off, struct.pack("<IIQ", type_, 0, sector))
        return R0 + off

    def publish(self, head, visible=True):
        idx = (self.base + self.heads) & 0xFFFF
        self.put(AVAIL + 4 + 2 * (idx % self.n), struct.pack("<H", head))
        self.heads += 1
        if visible:
            self.put(AVAIL + 2, struct.pack("<H", (self.base + self.heads) & 0xFFFF))

    def header(self):
        log2 = self.n.bit_length() - 1
        return struct.pack("<BBHHHH4BH", log2, self.flags, self.base, DESC // 16, AVAIL // 2,
                           USED // 4, *self.bumps, 0)

    def used_idx(self, v):
        self.put(USED + 2, struct.pack("<H", v & 0xFFFF))

    def bytes(self):
        return self.header() + bytes(self.img)


def read_write(r, head, slot, type_, sector, data_len, data_off, status_slot):
    """head -> header -> data -> status (a read's data is writable)."""
    r.desc(head, r.blk_header(slot, type_, sector), 16, NEXT, head + 1)
    r.desc(head + 1, R0 + data_off, data_len, NEXT | (WRITE if type_ == 0 else 0), head + 2)
    r.desc(head + 2, R0 + STATUS + status_slot, 1, WRITE)
    r.publish(head)


def seeds_chain():
    s = {}
    r = Ring()
    read_write(r, 0, 0, 0, 8, 1024, DATA, 0)
    s["read"] = r.bytes()

    r = Ring()
    r.put(DATA, bytes(range(256)) * 2)
    read_write(r, 0, 0, 1, 16, 512, DATA, 0)
    s["write"] = r.bytes()

    r = Ring()
    r.desc(0, r.blk_header(0, 4, 0), 16, NEXT, 1)
    r.desc(1, R0 + STATUS, 1, WRITE)
    r.publish(0)
    s["flush"] = r.bytes()

    r = Ring()
    r.desc(0, r.blk_header(0, 8, 0), 16, NEXT, 1)
    r.desc(1, R0 + DATA, 20, NEXT | WRITE, 2)
    r.desc(2, R0 + STATUS, 1, WRITE)
    r.publish(0)
    s["get_id"] = r.bytes()

    r = Ring()  # discard, then write-zeroes with unmap: one segment each
    r.put(DATA, struct.pack("<QII", 64, 8, 0))
    r.put(DATA + 16, struct.pack("<QII", 128, 16, 1))
    for head, type_, seg in ((0, 11, DATA), (3, 13, DATA + 16)):
        r.desc(head, r.blk_header(head, type_, 0), 16, NEXT, head + 1)
        r.desc(head + 1, R0 + seg, 16, NEXT, head + 2)
        r.desc(head + 2, R0 + STATUS + head, 1, WRITE)
        r.publish(head)
    s["discard_write_zeroes"] = r.bytes()

    r = Ring(flags=INDIRECT_DESC)  # an indirect read: header, 2 data, status
    r.desc(0, R0 + TABLE, 4 * 16, INDIRECT)
    r.desc(0, r.blk_header(0, 0, 2), 16, NEXT, 1, table=TABLE)
    r.desc(1, R0 + DATA, 512, NEXT | WRITE, 2, table=TABLE)
    r.desc(2, R0 + DATA + 512, 512, NEXT | WRITE, 3, table=TABLE)
    r.desc(3, R0 + STATUS, 1, WRITE, table=TABLE)
    r.publish(0)
    s["indirect_read"] = r.bytes()

    # EVENT_IDX, indices about to wrap, heads made visible between rounds.
    r = Ring(n=8, flags=EVENT_IDX | INDIRECT_DESC, base=0xFFFE)
    read_write(r, 0, 0, 0, 0, 512, DATA, 0)
    read_write(r, 3, 1, 1, 4, 512, DATA + 512, 1)
    r.desc(6, r.blk_header(2, 4, 0), 16, NEXT, 7)
    r.desc(7, R0 + STATUS + 2, 1, WRITE)
    r.publish(6, visible=False)
    r.bumps = [1, 0, 0, 0]
    s["event_idx_wrap"] = r.bytes()

    # Buffers split across R0/R1 (gpa-adjacent) and at the top of R2.
    r = Ring()
    r.desc(0, r.blk_header(0, 0, 0), 16, NEXT, 1)
    r.desc(1, R1 - 256, 512, NEXT | WRITE, 2)
    r.desc(2, R2 + 0x1000 - 512, 512, NEXT | WRITE, 3)
    r.desc(3, R2 + 0x1000 - 1, 1, WRITE)
    r.publish(0)
    s["regions"] = r.bytes()

    # Broken chains: a loop and an out-of-range next, then a good flush.
    r = Ring(flags=INDIRECT_DESC)
    r.desc(0, r.blk_header(0, 4, 0), 16, NEXT, 1)
    r.desc(1, R0 + STATUS, 1, NEXT | WRITE, 0)
    r.publish(0)
    r.desc(2, r.blk_header(1, 4, 0), 16, NEXT, 200)
    r.publish(2)
    r.desc(3, R0 + TABLE, 2 * 16, INDIRECT)
    r.desc(0, r.blk_header(2, 4, 0), 16, NEXT, 1, table=TABLE)
    r.desc(1, R0 + STATUS + 2, 1, WRITE, table=TABLE)
    r.publish(3)
    s["bad_chains"] = r.bytes()
    return s


def inflight_region(n, version=1, used_idx=0, last_batch_head=0, flagged=(), desc_num=None):
    """InflightQueue (virtio/inflight.h) of n entries, 64-byte rounded."""
    size = (16 + 16 * n + 63) & ~63
    b = bytearray(size)
    b[0:16] = struct.pack("<QHHHH", 0, version, n if desc_num is None else desc_num, last_batch_head,
                          used_idx)
    for counter, head in flagged:
        b[16 + 16 * head:32 + 16 * head] = struct.pack("<B5xHQ", 1, 0, counter)
    return bytes(b)


def seeds_inflight():
    s = {}
    # A fresh region (version 0): recovery initialises it, then a read runs.
    r = Ring()
    read_write(r, 0, 0, 0, 8, 512, DATA, 0)
    s["fresh"] = r.header() + inflight_region(16, version=0) + bytes(r.img)

    # Two heads were in flight (popped in order 3 then 0) when the old
    # backend died: both are resubmitted, in counter order.
    r = Ring(base=2)
    read_write(r, 0, 0, 0, 8, 512, DATA, 0)
    read_write(r, 3, 1, 1, 16, 512, DATA + 512, 1)
    r.used_idx(2)
    s["resubmit"] = r.header() + inflight_region(16, used_idx=2, flagged=((7, 3), (9, 0))) + bytes(r.img)

    # The last completion was published (used.idx 3) but head 3 not yet
    # cleared: recovery clears it and resubmits only head 0.
    r = Ring(base=2)
    read_write(r, 0, 0, 0, 8, 512, DATA, 0)
    read_write(r, 3, 1, 1, 16, 512, DATA + 512, 1)
    r.used_idx(3)
    s["last_batch"] = r.header() + inflight_region(16, used_idx=2, last_batch_head=3,
                                                   flagged=((7, 3), (9, 0))) + bytes(r.img)

    # Resized queue (desc_num 8 != 16): the region is reset, new heads run.
    r = Ring(flags=EVENT_IDX)
    r.desc(0, r.blk_header(0, 4, 0), 16, NEXT, 1)
    r.desc(1, R0 + STATUS, 1, WRITE)
    r.publish(0)
    s["resized"] = r.header() + inflight_region(16, flagged=((1, 5),), desc_num=8) + bytes(r.img)
    return s


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "corpus")
    for name, seeds in (("virtio_chain", seeds_chain()), ("inflight", seeds_inflight())):
        d = os.path.join(root, name)
        os.makedirs(d, exist_ok=True)
        for k, v in seeds.items():
            with open(os.path.join(d, k), "wb") as f:
                f.write(v)


if __name__ == "__main__":
    main()
