/*
 * iopoll_io: static helper for the nestor VM tests. The same binary runs in
 * the guest (busybox initramfs) and on the host.
 *
 *   iopoll_io gen    --seed S --offset O --length L          pattern -> stdout
 *   iopoll_io gen    --seed S --offset O --bytes N           only the first N
 *                    bytes (any N >= 0) of the pattern at O -> stdout (the
 *                    content of the files of the VM filesystem test)
 *   iopoll_io verify --seed S --offset O --length L FILE     FILE (or -) holds
 *                    the pattern at [O, O+L) (FILE is read at offset O; for
 *                    "-" stdin is expected to start at O)
 *   iopoll_io uring  --seed S --offset O --length L --dev DEV
 *                    [--iopoll] [--bs N] [--qd N]
 *                    O_DIRECT io_uring writes of the pattern, fdatasync,
 *                    O_DIRECT reads (sequential at --bs, then every 4 KiB
 *                    block in a scrambled order) verified against the
 *                    pattern. With --iopoll the ring is created with
 *                    IORING_SETUP_IOPOLL (polled completions, no
 *                    interrupts); setup refusal is a failure, never a
 *                    silent fallback.
 *   iopoll_io loop   --seed S --offset O --length L --dev DEV
 *                    [--iopoll] [--bs N] [--qd N] [--seconds T] [--gens N]
 *                    [--no-sync] [--check] [--discard]
 *                    generation g = 1, 2, ...: O_DIRECT writes of the
 *                    pattern with seed S+g over [O, O+L) in --bs requests,
 *                    --qd of them in flight (io_uring, interrupt-driven;
 *                    --qd 1: plain pwrite), then fdatasync (--no-sync:
 *                    none; nothing asks the device to make the writes
 *                    durable, so no FLUSH reaches it). With --check, each
 *                    generation g >= 2 first reads [O, O+L) back (O_DIRECT,
 *                    --bs requests, one at a time) and counts the 4 KiB
 *                    blocks that do not hold generation g-1, the one the
 *                    device last acknowledged there: "loop: generation g:
 *                    check of generation g-1, seed S: N of M blocks differ" (and
 *                    the first one) is reported and counted. With
 *                    --discard, each generation (after the check) first
 *                    discards [O, O+L) (BLKDISCARD), so on a thin volume
 *                    its writes allocate anew. The range is
 *                    cut into --qd stripes, each written in order by one
 *                    request at a time, so the requests in flight are never
 *                    adjacent and reach the device unmerged. With --iopoll
 *                    the writes (any --qd) go through a ring set up as in
 *                    "uring --iopoll": completions are reaped by polling
 *                    (io_uring_enter polls the device's poll queue), never
 *                    by interrupts. With --qd > 1
 *                    request sizes cycle through bs, 4K, bs/4, 8K, so that
 *                    small writes can complete before the large ones
 *                    issued before them (out-of-order completions). A
 *                    failed write or fdatasync is reported, counted and
 *                    skipped; one slower than 0.5 s (SLOW_S: stalled by a
 *                    backend restart, as QEMU reconnects after 1 s) is
 *                    reported (as is a --check read or a discard slower
 *                    than that; a failed discard counts as a write error).
 *                    Stops after the generation during which T
 *                    seconds (default 10) passed, or after N generations.
 *                    Then O_DIRECT reads verify that [O, O+L) holds the last
 *                    generation. Prints "loop: started", one line per
 *                    generation and "loop: generations G last-seed X
 *                    write-errors E check-failures C". Exit 0 only if
 *                    E == 0, C == 0 and the verify passes.
 *   iopoll_io inflight [--kill PID [--queue Q] [--min N] [--seconds T]]
 *                    REGION
 *                    (host side) counts the requests a vhost-user
 *                    INFLIGHT_SHMFD region (e.g. /proc/QEMU/fd/N) marks in
 *                    flight, per queue. With --kill: polls the region until
 *                    it marks >= N (default 1) requests in flight (on queue
 *                    Q, default: on all queues together; for at most T s,
 *                    default 10, then goes on anyway), sends PID SIGKILL,
 *                    waits until PID is gone and counts what the region
 *                    then holds: the requests the killed backend had popped
 *                    and not completed. Prints "inflight: queue Q: N" for
 *                    every initialised queue, "inflight: total N" and (with
 *                    --kill) "inflight: killed PID after S s".
 *
 * Pattern: the device is divided into 4 KiB blocks; block b (absolute byte
 * offset b*4096) starts with a 64-byte text header naming b and the seed,
 * followed by xorshift64 words seeded from (seed, b). Offsets and lengths
 * must be multiples of 4096. Exit status 0 = success, 1 = mismatch or I/O
 * error, 2 = usage / setup error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <liburing.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BLK 4096u
#define HDR 64u
#define SLOW_S 0.5 /* loop: report requests slower than this (seconds) */

static uint64_t splitmix64(uint64_t* x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Fill one 4 KiB block of the pattern for absolute block number b. */
static void fill_block(unsigned char* p, uint64_t b, uint32_t seed) {
  char hdr[HDR + 1];
  memset(hdr, '.', HDR);
  int n = snprintf(hdr, sizeof hdr, "NESTOR-VM blk=%012" PRIx64 " seed=%08" PRIx32, b, seed);
  if (n < (int)HDR) hdr[n] = ' ';
  hdr[HDR - 1] = '\n';
  memcpy(p, hdr, HDR);
  uint64_t st = ((uint64_t)seed << 32) ^ (b * 0x2545f4914f6cdd1dull) ^ 0x6e6573746f72ull;
  uint64_t x = splitmix64(&st) | 1;
  for (unsigned i = HDR; i < BLK; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    memcpy(p + i, &x, 8);
  }
}

static void fill_range(unsigned char* p, uint64_t off, size_t len, uint32_t seed) {
  for (size_t i = 0; i < len; i += BLK) fill_block(p + i, (off + i) / BLK, seed);
}

/* Compare buf (holding [off, off+len)) with the pattern; report the first
 * bad block. Returns 0 if equal. */
static int check_range(const unsigned char* buf, uint64_t off, size_t len, uint32_t seed, const char* what) {
  unsigned char exp[BLK];
  for (size_t i = 0; i < len; i += BLK) {
    uint64_t b = (off + i) / BLK;
    fill_block(exp, b, seed);
    if (memcmp(exp, buf + i, BLK) != 0) {
      size_t j = 0;
      while (exp[j] == buf[i + j]) j++;
      char got[HDR];
      for (unsigned k = 0; k < HDR - 1; k++) {
        unsigned char c = buf[i + k];
        got[k] = (c >= 32 && c < 127) ? (char)c : '?';
      }
      got[HDR - 1] = 0;
      int zero = 1;
      for (unsigned k = 0; k < BLK && zero; k++) zero = buf[i + k] == 0;
      fprintf(stderr,
              "iopoll_io: %s: mismatch in block %" PRIu64 " (byte offset %" PRIu64
              "), first differing byte +%zu; block starts with \"%s\"%s\n",
              what, b, off + i + j, j, got, zero ? " (all zeros)" : "");
      return 1;
    }
  }
  return 0;
}

/* The number of 4 KiB blocks of buf (holding [off, off+len)) that differ
 * from the pattern. */
static unsigned count_bad(const unsigned char* buf, uint64_t off, size_t len, uint32_t seed) {
  unsigned char exp[BLK];
  unsigned n = 0;
  for (size_t i = 0; i < len; i += BLK) {
    fill_block(exp, (off + i) / BLK, seed);
    n += memcmp(exp, buf + i, BLK) != 0;
  }
  return n;
}

struct opts {
  uint32_t seed;
  uint64_t offset, length;
  uint64_t bytes; /* gen --bytes; UINT64_MAX = not given */
  double seconds;
  uint64_t gens;
  const char* dev;
  const char* file;
  int iopoll;
  int nosync, check, discard; /* loop --no-sync, --check, --discard */
  unsigned bs, qd;
  long kill_pid;   /* inflight --kill */
  long queue, min; /* inflight --queue (-1: all), --min */
};

static void usage(void) {
  fprintf(stderr,
          "usage: iopoll_io gen|verify|uring --seed S --offset O --length L\n"
          "                 [--dev DEV] [--iopoll] [--bs N] [--qd N] [FILE]\n"
          "       iopoll_io gen --seed S --offset O --bytes N\n"
          "       iopoll_io loop --seed S --offset O --length L --dev DEV [--iopoll]\n"
          "                 [--bs N] [--qd N] [--seconds T] [--gens N] [--no-sync] [--check]\n"
          "                 [--discard]\n"
          "       iopoll_io inflight [--kill PID [--queue Q] [--min N] [--seconds T]] REGION\n");
  exit(2);
}

static uint64_t num(const char* s) {
  char* end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 0);
  if (errno || end == s) usage();
  switch (*end) {
    case 'k':
    case 'K':
      v <<= 10;
      end++;
      break;
    case 'm':
    case 'M':
      v <<= 20;
      end++;
      break;
    case 'g':
    case 'G':
      v <<= 30;
      end++;
      break;
  }
  if (*end) usage();
  return v;
}

static void parse(int argc, char** argv, struct opts* o) {
  memset(o, 0, sizeof *o);
  o->seed = 0x6e657374;
  o->offset = 1 << 20;
  o->length = 8 << 20;
  o->bs = 65536;
  o->qd = 8;
  o->bytes = UINT64_MAX;
  o->seconds = 10;
  o->queue = -1;
  o->min = 1;
  for (int i = 2; i < argc; i++) {
    const char* a = argv[i];
    const char* v = (i + 1 < argc) ? argv[i + 1] : NULL;
    if (!strcmp(a, "--iopoll")) {
      o->iopoll = 1;
      continue;
    }
    if (!strcmp(a, "--no-sync")) {
      o->nosync = 1;
      continue;
    }
    if (!strcmp(a, "--check")) {
      o->check = 1;
      continue;
    }
    if (!strcmp(a, "--discard")) {
      o->discard = 1;
      continue;
    }
    if (a[0] == '-' && a[1] == '-') {
      if (!v) usage();
      i++;
      if (!strcmp(a, "--seed"))
        o->seed = (uint32_t)num(v);
      else if (!strcmp(a, "--offset"))
        o->offset = num(v);
      else if (!strcmp(a, "--length"))
        o->length = num(v);
      else if (!strcmp(a, "--dev"))
        o->dev = v;
      else if (!strcmp(a, "--bs"))
        o->bs = (unsigned)num(v);
      else if (!strcmp(a, "--qd"))
        o->qd = (unsigned)num(v);
      else if (!strcmp(a, "--bytes"))
        o->bytes = num(v);
      else if (!strcmp(a, "--seconds"))
        o->seconds = (double)num(v);
      else if (!strcmp(a, "--gens"))
        o->gens = num(v);
      else if (!strcmp(a, "--kill"))
        o->kill_pid = (long)num(v);
      else if (!strcmp(a, "--queue"))
        o->queue = (long)num(v);
      else if (!strcmp(a, "--min"))
        o->min = (long)num(v);
      else
        usage();
      continue;
    }
    if (o->file) usage();
    o->file = a;
  }
  if (o->bytes != UINT64_MAX) /* whole blocks covering the first --bytes bytes */
    o->length = o->bytes ? (o->bytes + BLK - 1) / BLK * BLK : BLK;
  if (o->offset % BLK || o->length % BLK || o->length == 0 || o->bs % BLK || o->bs == 0 || o->qd == 0 || o->qd > 256) {
    fprintf(stderr, "iopoll_io: offset/length/bs must be non-zero multiples of 4096, qd 1..256\n");
    exit(2);
  }
}

static int do_gen(const struct opts* o) {
  unsigned char* buf = malloc(1 << 20);
  if (!buf) return 2;
  uint64_t total = o->bytes != UINT64_MAX ? o->bytes : o->length;
  for (uint64_t done = 0; done < total;) {
    size_t n = o->length - done < (1u << 20) ? (size_t)(o->length - done) : (1u << 20);
    fill_range(buf, o->offset + done, n, o->seed);
    if (n > total - done) n = (size_t)(total - done);
    for (size_t w = 0; w < n;) {
      ssize_t r = write(1, buf + w, n - w);
      if (r < 0) {
        if (errno == EINTR) continue;
        perror("iopoll_io: write");
        return 1;
      }
      w += (size_t)r;
    }
    done += n;
  }
  free(buf);
  return 0;
}

static int do_verify(const struct opts* o) {
  if (!o->file) usage();
  int is_stdin = !strcmp(o->file, "-");
  int fd = is_stdin ? 0 : open(o->file, O_RDONLY);
  if (fd < 0) {
    fprintf(stderr, "iopoll_io: open %s: %s\n", o->file, strerror(errno));
    return 1;
  }
  unsigned char* buf = malloc(1 << 20);
  if (!buf) return 2;
  for (uint64_t done = 0; done < o->length;) {
    size_t n = o->length - done < (1u << 20) ? (size_t)(o->length - done) : (1u << 20);
    size_t got = 0;
    while (got < n) {
      ssize_t r =
          is_stdin ? read(fd, buf + got, n - got) : pread(fd, buf + got, n - got, (off_t)(o->offset + done + got));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) {
        fprintf(stderr, "iopoll_io: read %s: %s\n", o->file, strerror(errno));
        return 1;
      }
      if (r == 0) {
        fprintf(stderr, "iopoll_io: %s: short (EOF at byte %" PRIu64 ", want up to %" PRIu64 ")\n", o->file,
                o->offset + done + got, o->offset + o->length);
        return 1;
      }
      got += (size_t)r;
    }
    if (check_range(buf, o->offset + done, n, o->seed, o->file)) return 1;
    done += n;
  }
  printf("iopoll_io: verify %s: %" PRIu64 " bytes at %" PRIu64 " OK (seed %08" PRIx32 ")\n", o->file, o->length,
         o->offset, o->seed);
  return 0;
}

/* ---- io_uring ---- */

/*
 * A ring for qd requests in flight. With iopoll: IORING_SETUP_IOPOLL, so
 * io_uring_enter(GETEVENTS) reaps completions by polling the device queue
 * (no interrupts); refusal is a failure, never a silent fallback.
 * Returns 0, or 2 after reporting the error.
 */
static int ring_init(struct io_uring* ring, unsigned qd, int iopoll) {
  int r = io_uring_queue_init(qd * 2, ring, iopoll ? IORING_SETUP_IOPOLL : 0);
  if (r < 0) {
    fprintf(stderr, "iopoll_io: io_uring_queue_init(%s): %s\n", iopoll ? "IORING_SETUP_IOPOLL" : "0", strerror(-r));
    return 2;
  }
  if (iopoll && !(ring->flags & IORING_SETUP_IOPOLL)) {
    fprintf(stderr, "iopoll_io: IOPOLL requested but ring lacks it\n");
    return 2;
  }
  return 0;
}

struct slot {
  unsigned char* buf;
  uint64_t off;
  unsigned len;
  int busy;
};

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * Run one pass: for i in [0, count) issue op on (offsets[i], len) with up to
 * qd in flight. Writes carry the pattern; reads are verified.
 */
static int uring_pass(struct io_uring* ring, int fd, int write, const uint64_t* offsets, size_t count, unsigned len,
                      struct slot* slots, unsigned qd, uint32_t seed, const char* name) {
  size_t next = 0, done = 0;
  unsigned inflight = 0;
  double t0 = now();
  while (done < count) {
    while (next < count && inflight < qd) {
      unsigned s = 0;
      while (slots[s].busy) s++;
      struct slot* sl = &slots[s];
      sl->off = offsets[next++];
      sl->len = len;
      sl->busy = 1;
      struct io_uring_sqe* sqe = io_uring_get_sqe(ring);
      if (!sqe) {
        fprintf(stderr, "iopoll_io: no sqe\n");
        return 1;
      }
      if (write) {
        fill_range(sl->buf, sl->off, len, seed);
        io_uring_prep_write(sqe, fd, sl->buf, len, sl->off);
      } else {
        memset(sl->buf, 0xa5, len);
        io_uring_prep_read(sqe, fd, sl->buf, len, sl->off);
      }
      io_uring_sqe_set_data(sqe, sl);
      inflight++;
    }
    int r = io_uring_submit(ring);
    if (r < 0) {
      fprintf(stderr, "iopoll_io: io_uring_submit: %s\n", strerror(-r));
      return 1;
    }
    struct io_uring_cqe* cqe;
    r = io_uring_wait_cqe(ring, &cqe);
    if (r < 0) {
      fprintf(stderr, "iopoll_io: io_uring_wait_cqe: %s\n", strerror(-r));
      return 1;
    }
    unsigned head, seen = 0;
    int bad = 0;
    io_uring_for_each_cqe(ring, head, cqe) {
      struct slot* sl = io_uring_cqe_get_data(cqe);
      seen++;
      if (cqe->res != (int)sl->len) {
        fprintf(stderr, "iopoll_io: %s at %" PRIu64 " len %u: res %d (%s)\n", name, sl->off, sl->len, cqe->res,
                cqe->res < 0 ? strerror(-cqe->res) : "short");
        bad = 1;
      } else if (!write && check_range(sl->buf, sl->off, sl->len, seed, name)) {
        bad = 1;
      }
      sl->busy = 0;
    }
    io_uring_cq_advance(ring, seen);
    inflight -= seen;
    done += seen;
    if (bad) return 1;
  }
  double dt = now() - t0;
  printf("iopoll_io: %s: %zu x %u bytes OK in %.3f s\n", name, count, len, dt);
  return 0;
}

static size_t gcd(size_t a, size_t b) {
  while (b) {
    size_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}

static int do_uring(const struct opts* o) {
  if (!o->dev) usage();
  if (o->length % o->bs) {
    fprintf(stderr, "iopoll_io: length must be a multiple of bs\n");
    return 2;
  }
  int fd = open(o->dev, O_RDWR | O_DIRECT);
  if (fd < 0) {
    fprintf(stderr, "iopoll_io: open %s O_DIRECT: %s\n", o->dev, strerror(errno));
    return 2;
  }
  struct io_uring ring;
  if (ring_init(&ring, o->qd, o->iopoll)) return 2;
  printf("iopoll_io: ring ready (flags=%#x%s), dev %s, %" PRIu64 " bytes at %" PRIu64 ", bs %u, qd %u, seed %08" PRIx32
         "\n",
         ring.flags, (ring.flags & IORING_SETUP_IOPOLL) ? " IOPOLL" : "", o->dev, o->length, o->offset, o->bs, o->qd,
         o->seed);
  struct slot* slots = calloc(o->qd, sizeof *slots);
  for (unsigned i = 0; i < o->qd; i++)
    if (posix_memalign((void**)&slots[i].buf, BLK, o->bs)) {
      fprintf(stderr, "iopoll_io: out of memory\n");
      return 2;
    }
  size_t nbig = (size_t)(o->length / o->bs), nsmall = (size_t)(o->length / BLK);
  uint64_t *big = malloc(nbig * sizeof *big), *small = malloc(nsmall * sizeof *small);
  for (size_t i = 0; i < nbig; i++) big[i] = o->offset + (uint64_t)i * o->bs;
  /* Scrambled 4 KiB order: a stride coprime with nsmall visits every block once. */
  size_t stride = 7919 % (nsmall ? nsmall : 1);
  if (stride == 0) stride = 1;
  while (gcd(stride, nsmall) != 1) stride++;
  for (size_t i = 0, k = 0; i < nsmall; i++, k = (k + stride) % nsmall) small[i] = o->offset + (uint64_t)k * BLK;

  int rc = uring_pass(&ring, fd, 1, big, nbig, o->bs, slots, o->qd, o->seed, "write");
  if (!rc) {
    if (fdatasync(fd) < 0) {
      fprintf(stderr, "iopoll_io: fdatasync: %s\n", strerror(errno));
      rc = 1;
    }
  }
  if (!rc) rc = uring_pass(&ring, fd, 0, big, nbig, o->bs, slots, o->qd, o->seed, "read-seq");
  if (!rc) rc = uring_pass(&ring, fd, 0, small, nsmall, BLK, slots, o->qd, o->seed, "read-4k-scrambled");
  io_uring_queue_exit(&ring);
  close(fd);
  return rc;
}

/* ---- loop: generations of O_DIRECT writes ---- */

static int do_loop(const struct opts* o) {
  if (!o->dev) usage();
  if (o->length % o->bs) {
    fprintf(stderr, "iopoll_io: length must be a multiple of bs\n");
    return 2;
  }
  int fd = open(o->dev, O_RDWR | O_DIRECT);
  if (fd < 0) {
    fprintf(stderr, "iopoll_io: open %s O_DIRECT: %s\n", o->dev, strerror(errno));
    return 2;
  }
  unsigned char* buf;
  struct slot* slots = calloc(o->qd, sizeof *slots);
  double* issued = calloc(o->qd, sizeof *issued);
  if (!slots || !issued || posix_memalign((void**)&buf, BLK, o->bs)) {
    fprintf(stderr, "iopoll_io: out of memory\n");
    return 2;
  }
  for (unsigned i = 0; i < o->qd; i++)
    if (posix_memalign((void**)&slots[i].buf, BLK, o->bs)) {
      fprintf(stderr, "iopoll_io: out of memory\n");
      return 2;
    }
  struct io_uring ring;
  int use_ring = o->qd > 1 || o->iopoll; /* else: synchronous pwrite */
  if (use_ring && ring_init(&ring, o->qd, o->iopoll)) return 2;
  printf("iopoll_io: loop: started, dev %s, %" PRIu64 " bytes at %" PRIu64 ", bs %u, qd %u%s, seed %08" PRIx32
         " + generation, for %.0f %s%s%s%s\n",
         o->dev, o->length, o->offset, o->bs, o->qd,
         !use_ring                            ? " (pwrite)"
         : (ring.flags & IORING_SETUP_IOPOLL) ? " (io_uring IOPOLL)"
                                              : " (io_uring)",
         o->seed, o->gens ? (double)o->gens : o->seconds, o->gens ? "generations" : "s",
         o->nosync ? ", no fdatasync" : ", fdatasync after each",
         o->check ? ", each generation checked before it is overwritten" : "",
         o->discard ? ", the range discarded before each generation" : "");
  double t0 = now();
  uint64_t errors = 0, gen = 0, check_failures = 0;
  uint32_t seed = o->seed;
  for (;;) {
    gen++;
    double slowest = 0;
    uint64_t gerr = 0;
    if (o->check && gen > 1) {
      /* seed: still generation gen-1's. */
      uint64_t nbad = 0, nblk = o->length / BLK;
      for (uint64_t off = o->offset; off < o->offset + o->length; off += o->bs) {
        memset(buf, 0xa5, o->bs);
        double r0 = now();
        ssize_t r = pread(fd, buf, o->bs, (off_t)off);
        if (now() - r0 > SLOW_S)
          printf("iopoll_io: loop: generation %" PRIu64 ": read at %" PRIu64 " took %.2f s\n", gen, off, now() - r0);
        if (r != (ssize_t)o->bs) {
          fprintf(stderr, "iopoll_io: loop: generation %" PRIu64 ": check read at %" PRIu64 ": %s\n", gen, off,
                  r < 0 ? strerror(errno) : "short");
          nbad += o->bs / BLK;
          continue;
        }
        unsigned n = count_bad(buf, off, o->bs, seed);
        if (n && !nbad) {
          char what[96];
          snprintf(what, sizeof what, "loop: generation %" PRIu64 ": check of generation %" PRIu64, gen, gen - 1);
          check_range(buf, off, o->bs, seed, what);
        }
        nbad += n;
      }
      if (nbad) {
        fprintf(stderr,
                "iopoll_io: loop: generation %" PRIu64 ": check of generation %" PRIu64 ", seed %08" PRIx32 ": %" PRIu64
                " of %" PRIu64 " blocks differ\n",
                gen, gen - 1, seed, nbad, nblk);
        check_failures++;
      }
    }
    seed = o->seed + (uint32_t)gen;
    double g0 = now();
    if (o->discard) {
      uint64_t range[2] = {o->offset, o->length};
      if (ioctl(fd, BLKDISCARD, range) != 0) {
        fprintf(stderr, "iopoll_io: loop: generation %" PRIu64 ": discard: %s\n", gen, strerror(errno));
        gerr++;
      } else if (now() - g0 > SLOW_S) {
        printf("iopoll_io: loop: generation %" PRIu64 ": discard took %.2f s\n", gen, now() - g0);
      }
    }
    /* Slot i writes stripe i of the range, one request at a time: the
     * qd requests in flight are never adjacent, so the guest's block
     * layer cannot merge them into fewer device requests. */
    uint64_t cur[256], lim[256], nblk = o->length / BLK;
    unsigned left = 0; /* stripes not fully issued */
    for (unsigned i = 0; i < o->qd; i++) {
      cur[i] = o->offset + nblk * i / o->qd * BLK;
      lim[i] = o->offset + nblk * (i + 1) / o->qd * BLK;
      left += cur[i] < lim[i];
    }
    unsigned inflight = 0;
    int sync_res = 0; /* !use_ring: result of the pwrite */
    unsigned nreq = 0;
    while (left || inflight) {
      /* Issue (!use_ring: one synchronous pwrite). */
      for (unsigned i = 0; i < o->qd; i++) {
        struct slot* sl = &slots[i];
        if (sl->busy || cur[i] >= lim[i]) continue;
        static const unsigned div[4] = {1, 0, 4, 0};
        unsigned len = o->bs;
        if (o->qd > 1) {
          len = div[nreq % 4] ? o->bs / div[nreq % 4] : (nreq % 4 == 1 ? BLK : 2 * BLK);
          len = len < BLK ? BLK : len / BLK * BLK;
          if (len > o->bs) len = o->bs;
        }
        nreq++;
        if (len > lim[i] - cur[i]) len = (unsigned)(lim[i] - cur[i]);
        sl->off = cur[i];
        sl->len = len;
        sl->busy = 1;
        cur[i] += len;
        left -= cur[i] >= lim[i];
        inflight++;
        fill_range(sl->buf, sl->off, sl->len, seed);
        issued[i] = now();
        if (!use_ring) {
          ssize_t r = pwrite(fd, sl->buf, sl->len, (off_t)sl->off);
          sync_res = r < 0 ? -errno : (int)r;
          break;
        }
        struct io_uring_sqe* sqe = io_uring_get_sqe(&ring);
        io_uring_prep_write(sqe, fd, sl->buf, sl->len, sl->off);
        io_uring_sqe_set_data(sqe, sl);
        /* Submit each write once filled: the backend works on it
         * while the next buffer is filled (filling is slow on
         * an emulated CPU), so it rarely holds nothing. */
        int r = io_uring_submit(&ring);
        if (r < 0 && r != -EINTR) {
          fprintf(stderr, "iopoll_io: io_uring_submit: %s\n", strerror(-r));
          return 1;
        }
      }
      /* Reap one or more. */
      struct slot* done[256];
      int res[256];
      unsigned ndone = 0;
      if (!use_ring) {
        res[0] = sync_res;
        done[ndone++] = &slots[0];
      } else {
        /* IOPOLL: this polls for the completions. */
        int r = io_uring_submit_and_wait(&ring, 1);
        if (r < 0 && r != -EINTR) {
          fprintf(stderr, "iopoll_io: io_uring_submit_and_wait: %s\n", strerror(-r));
          return 1;
        }
        unsigned head;
        struct io_uring_cqe* cqe;
        io_uring_for_each_cqe(&ring, head, cqe) {
          res[ndone] = cqe->res;
          done[ndone++] = io_uring_cqe_get_data(cqe);
        }
        io_uring_cq_advance(&ring, ndone);
      }
      for (unsigned k = 0; k < ndone; k++) {
        struct slot* sl = done[k];
        double dt = now() - issued[sl - slots];
        if (dt > slowest) slowest = dt;
        if (res[k] != (int)sl->len) {
          fprintf(stderr, "iopoll_io: loop: generation %" PRIu64 ": write at %" PRIu64 ": %s\n", gen, sl->off,
                  res[k] < 0 ? strerror(-res[k]) : "short");
          gerr++;
        } else if (dt > SLOW_S) {
          printf("iopoll_io: loop: generation %" PRIu64 ": write at %" PRIu64 " took %.2f s\n", gen, sl->off, dt);
        }
        sl->busy = 0;
        inflight--;
      }
    }
    double s0 = now();
    if (!o->nosync && fdatasync(fd) < 0) {
      fprintf(stderr, "iopoll_io: loop: generation %" PRIu64 ": fdatasync: %s\n", gen, strerror(errno));
      gerr++;
    }
    if (!o->nosync && now() - s0 > SLOW_S)
      printf("iopoll_io: loop: generation %" PRIu64 ": fdatasync took %.2f s\n", gen, now() - s0);
    errors += gerr;
    printf("iopoll_io: loop: generation %" PRIu64 " (seed %08" PRIx32
           ") written in %.2f s, slowest write %.3f s, %" PRIu64 " errors\n",
           gen, seed, now() - g0, slowest, gerr);
    if (o->gens ? gen >= o->gens : now() - t0 >= o->seconds) break;
  }
  int bad = 0;
  for (uint64_t off = o->offset; off < o->offset + o->length && !bad; off += o->bs) {
    memset(buf, 0xa5, o->bs);
    ssize_t r = pread(fd, buf, o->bs, (off_t)off);
    if (r != (ssize_t)o->bs) {
      fprintf(stderr, "iopoll_io: loop: read-back at %" PRIu64 ": %s\n", off, r < 0 ? strerror(errno) : "short");
      bad = 1;
    } else if (check_range(buf, off, o->bs, seed, "loop read-back")) {
      bad = 1;
    }
  }
  if (use_ring) io_uring_queue_exit(&ring);
  close(fd);
  printf("iopoll_io: loop: generations %" PRIu64 " last-seed %#" PRIx32 " write-errors %" PRIu64
         " check-failures %" PRIu64 " read-back %s (%.1f s)\n",
         gen, seed, errors, check_failures, bad ? "MISMATCH" : "OK", now() - t0);
  return (errors || check_failures || bad) ? 1 : 0;
}

/* ---- inflight: a vhost-user INFLIGHT_SHMFD region, read on the host ---- */

/*
 * Split-ring layout (QEMU, libvhost-user, nestord): for each queue a
 * 16-byte header (u64 features, u16 version, u16 desc_num, u16
 * last_batch_head, u16 used_idx) and desc_num 16-byte entries (u8
 * inflight, 5 bytes padding, u16 next, u64 counter), the queue's part
 * rounded up to 64 bytes. Fills counts[q] for the initialised (version 1)
 * queues, -1 for the others; returns the number of queues (0 while queue 0
 * is not initialised), -1 on a read error.
 */
static int inflight_count(int fd, unsigned char* buf, size_t size, long* counts, unsigned maxq, long* total) {
  ssize_t n = pread(fd, buf, size, 0);
  if (n < 16) return -1;
  uint16_t version, desc_num;
  memcpy(&version, buf + 8, 2);
  memcpy(&desc_num, buf + 10, 2);
  *total = 0;
  if (version != 1 || desc_num == 0) return 0;
  size_t stride = (16 + 16 * (size_t)desc_num + 63) & ~(size_t)63;
  unsigned nq = (unsigned)((size_t)n / stride);
  if (nq > maxq) nq = maxq;
  for (unsigned q = 0; q < nq; q++) {
    const unsigned char* b = buf + q * stride;
    uint16_t v, dn;
    memcpy(&v, b + 8, 2);
    memcpy(&dn, b + 10, 2);
    counts[q] = -1;
    if (v != 1 || dn != desc_num) continue;
    counts[q] = 0;
    for (unsigned i = 0; i < desc_num; i++) counts[q] += b[16 + 16 * i] != 0;
    *total += counts[q];
  }
  return (int)nq;
}

/* 1 while PID exists and is not a zombie. */
static int alive(long pid) {
  char path[64], stat[256];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  int fd = open(path, O_RDONLY);
  if (fd < 0) return 0;
  ssize_t n = read(fd, stat, sizeof stat - 1);
  close(fd);
  if (n <= 0) return 0;
  stat[n] = 0;
  const char* p = strrchr(stat, ')');
  return !(p && p[1] == ' ' && p[2] == 'Z');
}

static int do_inflight(const struct opts* o) {
  if (!o->file) usage();
  int fd = open(o->file, O_RDONLY);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    fprintf(stderr, "iopoll_io: inflight: %s: %s\n", o->file, strerror(errno));
    return 2;
  }
  size_t size = (size_t)st.st_size;
  unsigned char* buf = malloc(size ? size : 1);
  long counts[256], total = 0;
  int nq;
  double waited = -1;
  if (!buf) return 2;
  if (o->kill_pid > 0) {
    double t0 = now();
    while ((nq = inflight_count(fd, buf, size, counts, 256, &total)) >= 0) {
      long held = o->queue < 0 ? total : o->queue < nq ? counts[o->queue] : -1;
      if (held >= o->min) break;
      if (now() - t0 >= o->seconds) {
        fprintf(stderr, "iopoll_io: inflight: not %ld in flight within %.0f s; killing anyway\n", o->min, o->seconds);
        break;
      }
      usleep(100);
    }
    waited = now() - t0;
    if (kill((pid_t)o->kill_pid, SIGKILL) != 0) {
      fprintf(stderr, "iopoll_io: inflight: kill %ld: %s\n", o->kill_pid, strerror(errno));
      return 1;
    }
    for (int i = 0; i < 20000 && alive(o->kill_pid); i++) usleep(100);
    if (alive(o->kill_pid)) {
      fprintf(stderr, "iopoll_io: inflight: %ld still alive 2 s after SIGKILL\n", o->kill_pid);
      return 1;
    }
  }
  nq = inflight_count(fd, buf, size, counts, 256, &total);
  if (nq <= 0) {
    fprintf(stderr, "iopoll_io: inflight: %s: %s\n", o->file, nq < 0 ? "unreadable" : "queue 0 not initialised");
    return 1;
  }
  for (int q = 0; q < nq; q++)
    if (counts[q] >= 0) printf("inflight: queue %d: %ld\n", q, counts[q]);
  printf("inflight: total %ld\n", total);
  if (waited >= 0) printf("inflight: killed %ld after %.3f s\n", o->kill_pid, waited);
  free(buf);
  close(fd);
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 2) usage();
  struct opts o;
  parse(argc, argv, &o);
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (!strcmp(argv[1], "gen")) return do_gen(&o);
  if (!strcmp(argv[1], "verify")) return do_verify(&o);
  if (!strcmp(argv[1], "uring")) return do_uring(&o);
  if (!strcmp(argv[1], "loop")) return do_loop(&o);
  if (!strcmp(argv[1], "inflight")) return do_inflight(&o);
  usage();
  return 2;
}
