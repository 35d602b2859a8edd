#!/usr/bin/env python3
"""Writes the seed corpus of the vhost_session fuzz target
(fuzz/corpus/vhost_session/), in the input format of fuzz/vhost_session.cc:
u16 image length, the image (what every memfd starts with), then records
(u8 nfds, one spec byte per fd, vhost-user header, payload).
Usage: fuzz/seeds/vhost_seeds.py [corpus-dir]"""
import os
import struct
import sys

(GET_FEATURES, SET_FEATURES, SET_OWNER, RESET_OWNER, SET_MEM_TABLE, SET_LOG_BASE, SET_LOG_FD,
 SET_VRING_NUM, SET_VRING_ADDR, SET_VRING_BASE, GET_VRING_BASE, SET_VRING_KICK, SET_VRING_CALL,
 SET_VRING_ERR, GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES, GET_QUEUE_NUM, SET_VRING_ENABLE) = range(1, 19)
GET_CONFIG, SET_CONFIG = 24, 25
GET_INFLIGHT_FD, SET_INFLIGHT_FD = 31, 32
GET_MAX_MEM_SLOTS, ADD_MEM_REG, REM_MEM_REG = 36, 37, 38
VERSION, NEED_REPLY = 1, 8
NO_FD = 1 << 8

FEATURES = (1 << 32) | (1 << 30) | (1 << 28) | (1 << 29) | (1 << 2) | (1 << 6) | (1 << 9) | (1 << 12) | \
    (1 << 13) | (1 << 14) | (1 << 10)
PROTOCOL = (1 << 0) | (1 << 3) | (1 << 9) | (1 << 12) | (1 << 15)

# fd specs (vhost_session.cc)
MEMFD_64K = 0 | (15 << 2)
EVENTFD = 1
EVENTFD_KICKED = 1 | (1 << 2)
DEVNULL = 2
PIPE = 3

UVA = 0x7F0000000000
NEXT, WRITE, INDIRECT = 1, 2, 4
QN = 16  # queue size
# The image stays small (fuzzer mutations should mostly hit the messages):
# [0, 0x280) an inflight region (2 queues of 16), then per queue its desc
# table, avail and used rings, then request headers and status bytes. Data
# buffers lie past the image (the memfd's zeros).
RINGS = ((0x280, 0x380, 0x3C0), (0x480, 0x580, 0x5C0))  # desc, avail, used per queue
HDRS = 0x680


class Image:
    def __init__(self, size=0x740):
        self.b = bytearray(size)

    def put(self, off, data):
        self.b[off:off + len(data)] = data

    def desc(self, q, i, addr, length, flags=0, nxt=0):
        self.put(RINGS[q][0] + 16 * i, struct.pack("<QIHH", addr, length, flags, nxt))

    def publish(self, q, heads, base=0):
        avail = RINGS[q][1]
        for k, h in enumerate(heads):
            self.put(avail + 4 + 2 * ((base + k) % QN), struct.pack("<H", h))
        self.put(avail + 2, struct.pack("<H", (base + len(heads)) & 0xFFFF))

    def request(self, q, head, type_, sector, data_len=0, slot=0):
        """header -> [data] -> status at per-queue, per-slot offsets"""
        hdr = HDRS + 0x60 * q + 32 * slot
        status = hdr + 16
        data = 0x2000 + 0x1000 * q + 0x400 * slot
        self.put(hdr, struct.pack("<IIQ", type_, 0, sector))
        self.desc(q, head, hdr, 16, NEXT, head + 1)
        nxt = head + 1
        if data_len:
            self.desc(q, nxt, data, data_len, NEXT | (WRITE if type_ == 0 else 0), nxt + 1)
            nxt += 1
        self.desc(q, nxt, status, 1, WRITE)


def rec(request, payload=b"", fds=(), flags=VERSION, size=None):
    return bytes([len(fds)]) + bytes(fds) + struct.pack("<III", request, flags, len(payload) if size is None else size) + payload


def u64(v):
    return struct.pack("<Q", v)


def state(index, num):
    return struct.pack("<II", index, num)


def vring_addr(q):
    d, a, u = RINGS[q]
    return struct.pack("<IIQQQQ", q, 0, UVA + d, UVA + u, UVA + a, 0)


def mem_region(gpa=0, size=0x10000, uva=UVA, offset=0):
    return struct.pack("<QQQQ", gpa, size, uva, offset)


def mem_table(*regions):
    return struct.pack("<II", len(regions), 0) + b"".join(regions)


def inflight_desc(mmap_size, offset, nq, qs):
    return struct.pack("<QQHHI", mmap_size, offset, nq, qs, 0)


def handshake(features=FEATURES, protocol=PROTOCOL):
    out = rec(GET_FEATURES) + rec(SET_FEATURES, u64(features)) + rec(SET_OWNER)
    if features & (1 << 30):
        out += rec(GET_PROTOCOL_FEATURES) + rec(SET_PROTOCOL_FEATURES, u64(protocol))
    return out


def start_queue(q, base=0, kick=EVENTFD_KICKED, enable=True):
    out = rec(SET_VRING_NUM, state(q, QN)) + rec(SET_VRING_BASE, state(q, base)) + rec(SET_VRING_ADDR, vring_addr(q))
    out += rec(SET_VRING_CALL, u64(q), fds=[EVENTFD])
    out += rec(SET_VRING_KICK, u64(q), fds=[kick]) if kick is not None else rec(SET_VRING_KICK, u64(q | NO_FD))
    if enable:
        out += rec(SET_VRING_ENABLE, state(q, 1))
    return out


def seed(image, records):
    img = bytes(image.b) if image is not None else b""
    return struct.pack("<H", len(img)) + img + records


def inflight_region(n, flagged=(), version=1):
    size = (16 + 16 * n + 63) & ~63
    b = bytearray(size)
    b[0:16] = struct.pack("<QHHHH", 0, version, n, 0, 0)
    for counter, head in flagged:
        b[16 + 16 * head:32 + 16 * head] = struct.pack("<B5xHQ", 1, 0, counter)
    return bytes(b)


def seeds():
    s = {}
    s["handshake"] = seed(None, handshake() + rec(GET_QUEUE_NUM) + rec(GET_MAX_MEM_SLOTS) +
                          rec(GET_CONFIG, struct.pack("<III", 0, 96, 0) + bytes(96)) +
                          rec(GET_CONFIG, struct.pack("<III", 20, 4, 0) + bytes(4)))

    img = Image()
    img.request(0, 0, 0, 8, 1024, slot=0)   # read
    img.request(0, 3, 1, 16, 512, slot=1)   # write
    img.request(0, 6, 4, 0, slot=2)         # flush
    img.publish(0, [0, 3, 6])
    s["start_read_write_flush"] = seed(img, handshake() + rec(SET_MEM_TABLE, mem_table(mem_region()), fds=[MEMFD_64K]) +
                                       start_queue(0) + rec(GET_VRING_BASE, state(0, 0)))

    img = Image()
    img.request(0, 0, 0, 8, 512)
    img.publish(0, [0])
    img.request(1, 0, 4, 0)
    img.publish(1, [0])
    stride = (16 + 16 * QN + 63) & ~63
    s["two_queues_inflight"] = seed(img, handshake() + rec(GET_INFLIGHT_FD, inflight_desc(0, 0, 2, QN)) +
                                    rec(SET_INFLIGHT_FD, inflight_desc(2 * stride, 0, 2, QN), fds=[MEMFD_64K]) +
                                    rec(SET_MEM_TABLE, mem_table(mem_region()), fds=[MEMFD_64K]) +
                                    start_queue(0) + start_queue(1) +
                                    rec(GET_VRING_BASE, state(1, 0)) + rec(GET_VRING_BASE, state(0, 0)))

    # A restarted backend: head 0 was popped (counter 1) but not completed.
    img = Image()
    img.put(0, inflight_region(QN, flagged=((1, 0),)))
    img.request(0, 0, 1, 0, 512)
    img.publish(0, [0])
    s["inflight_restart"] = seed(img, handshake() +
                                 rec(SET_INFLIGHT_FD, inflight_desc(stride, 0, 1, QN), fds=[MEMFD_64K]) +
                                 rec(SET_MEM_TABLE, mem_table(mem_region()), fds=[MEMFD_64K]) +
                                 start_queue(0, base=1) + rec(GET_VRING_BASE, state(0, 0)))

    # Memory slots with REPLY_ACK; changes while the queue runs (stop,
    # remap, restart); a call fd swap; RESET_OWNER.
    img = Image()
    img.request(0, 0, 4, 0)
    img.publish(0, [0])
    ack = VERSION | NEED_REPLY
    s["mem_slots_and_changes"] = seed(img, handshake() +
                                      rec(ADD_MEM_REG, u64(0) + mem_region(0, 0x8000), fds=[MEMFD_64K], flags=ack) +
                                      rec(ADD_MEM_REG, u64(0) + mem_region(0x8000, 0x8000, UVA + 0x8000, 0x8000),
                                          fds=[MEMFD_64K], flags=ack) +
                                      start_queue(0) +
                                      rec(SET_VRING_CALL, u64(0), fds=[EVENTFD], flags=ack) +
                                      rec(REM_MEM_REG, u64(0) + mem_region(0x8000, 0x8000, UVA + 0x8000, 0x8000), flags=ack) +
                                      rec(SET_MEM_TABLE, mem_table(mem_region()), fds=[MEMFD_64K], flags=ack) +
                                      rec(SET_VRING_ENABLE, state(0, 0), flags=ack) +
                                      rec(SET_VRING_ENABLE, state(0, 1), flags=ack) +
                                      rec(RESET_OWNER, flags=ack) + rec(GET_VRING_BASE, state(0, 0)))

    # Failures answered by REPLY_ACK (the session goes on), then a frame
    # with a bad version (the session ends).
    s["reply_ack_errors"] = seed(None, handshake() +
                                 rec(SET_VRING_NUM, state(0, 3), flags=ack) +
                                 rec(SET_VRING_NUM, state(7, 16), flags=ack) +
                                 rec(SET_VRING_KICK, u64(0), fds=[DEVNULL], flags=ack) +
                                 rec(SET_VRING_CALL, u64(1), fds=[PIPE], flags=ack) +
                                 rec(SET_MEM_TABLE, mem_table(mem_region()), fds=[PIPE], flags=ack) +
                                 rec(SET_MEM_TABLE, mem_table(mem_region(size=0x20000)), fds=[MEMFD_64K], flags=ack) +
                                 rec(SET_MEM_TABLE, mem_table(mem_region(), mem_region(0x8000)),
                                     fds=[MEMFD_64K, MEMFD_64K], flags=ack) +
                                 rec(SET_LOG_BASE, u64(0), flags=ack) +
                                 rec(SET_CONFIG, struct.pack("<III", 0, 4, 0) + bytes(4), flags=ack) +
                                 rec(GET_CONFIG, struct.pack("<III", 90, 16, 0) + bytes(16)) +
                                 rec(SET_INFLIGHT_FD, inflight_desc(100, 0, 1, QN), fds=[MEMFD_64K], flags=ack) +
                                 rec(GET_QUEUE_NUM, flags=0))

    # No VHOST_USER_F_PROTOCOL_FEATURES: rings start without ENABLE; a
    # poll-only queue (kick with the no-fd flag).
    img = Image()
    img.request(0, 0, 8, 0, 20)  # GET_ID
    img.publish(0, [0])
    s["legacy_poll_queue"] = seed(img, handshake(features=(1 << 32) | (1 << 28)) +
                                  rec(SET_MEM_TABLE, mem_table(mem_region()), fds=[MEMFD_64K]) +
                                  start_queue(0, kick=None, enable=False) + rec(GET_VRING_BASE, state(0, 0)))
    return s


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "corpus")
    d = os.path.join(root, "vhost_session")
    os.makedirs(d, exist_ok=True)
    for k, v in seeds().items():
        with open(os.path.join(d, k), "wb") as f:
            f.write(v)


if __name__ == "__main__":
    main()
