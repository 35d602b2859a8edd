/*
 * net_ping: static UDP round-trip helper for the nestor VM network test
 * (tests/nestor-vm/04-net.sh). The same binary runs in the guest (busybox
 * initramfs) and on the host.
 *
 *   net_ping echo --port P [--seconds S]
 *       UDP echo server on 0.0.0.0:P: every datagram goes back to its
 *       sender unchanged. Exits 0 after S seconds (default 60) or on
 *       SIGTERM/SIGINT; prints "net_ping: echo: N datagrams" on exit.
 *   net_ping ping --peer IPV4 --port P [--count N] [--warmup W]
 *                 [--timeout-ms T] [--size B]
 *       UDP request/response (netperf UDP_RR style: one datagram in
 *       flight, the next sent as soon as the reply arrives) over a connected
 *       socket: W unmeasured exchanges (default 20; they resolve ARP), then
 *       N measured ones (default 1000) of B bytes (default 64, >= 16). A
 *       reply not back within T ms (default 1000) is lost; a late reply to
 *       an earlier request is skipped. Round-trip times come from
 *       CLOCK_MONOTONIC around send and the matching receive (a blocking
 *       recv: the socket busy-polls for net.core.busy_read us if set).
 *       Prints the socket's SO_BUSY_POLL (= busy_read when the socket was
 *       created), then
 *       "net_ping: sent N received R lost L rtt_us min A p50 B p90 C p99 D
 *       max E mean F". Exit 0 only if L == 0.
 * Exit status 2 for a bad command line, 1 for any failure.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAGIC 0x6e657470u /* "netp" */
#define MAX_SIZE 9000

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void usage(void) {
  fprintf(stderr,
          "usage: net_ping echo --port P [--seconds S]\n"
          "       net_ping ping --peer IPV4 --port P [--count N] [--warmup W] "
          "[--timeout-ms T] [--size B]\n");
  exit(2);
}

static long num(const char* s) {
  char* end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *end || v < 0) {
    fprintf(stderr, "net_ping: bad number '%s'\n", s);
    exit(2);
  }
  return v;
}

static void set_rcvtimeo(int fd, long ms) {
  struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
  if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0) {
    perror("net_ping: SO_RCVTIMEO");
    exit(1);
  }
}

static volatile sig_atomic_t stop;
static void on_stop(int sig) {
  (void)sig;
  stop = 1;
}

static int run_echo(long port, long seconds) {
  struct sigaction sa = {.sa_handler = on_stop}; /* no SA_RESTART: recvfrom returns EINTR */
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) {
    perror("net_ping: socket");
    return 1;
  }
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  if (bind(fd, (struct sockaddr*)&a, sizeof(a)) != 0) {
    fprintf(stderr, "net_ping: bind port %ld: %s\n", port, strerror(errno));
    return 1;
  }
  set_rcvtimeo(fd, 200);
  printf("net_ping: echo: listening on UDP port %ld for %ld s\n", port, seconds);
  fflush(stdout);
  uint64_t end = now_ns() + (uint64_t)seconds * 1000000000ull;
  unsigned long n = 0;
  static char buf[MAX_SIZE];
  while (!stop && now_ns() < end) {
    struct sockaddr_in from;
    socklen_t fl = sizeof(from);
    ssize_t r = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr*)&from, &fl);
    if (r < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
      perror("net_ping: recvfrom");
      return 1;
    }
    if (sendto(fd, buf, (size_t)r, 0, (struct sockaddr*)&from, fl) == r) n++;
  }
  printf("net_ping: echo: %lu datagrams\n", n);
  return 0;
}

static int cmp_u64(const void* a, const void* b) {
  uint64_t x = *(const uint64_t*)a, y = *(const uint64_t*)b;
  return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of the sorted v[0..n). */
static double pct(const uint64_t* v, long n, double p) {
  long k = (long)(p / 100.0 * (double)n + 0.999999);
  if (k < 1) k = 1;
  if (k > n) k = n;
  return (double)v[k - 1] / 1000.0;
}

/* One exchange: send request SEQ, wait for its reply. RTT in ns, or 0 if lost. */
static uint64_t exchange(int fd, char* buf, long size, uint32_t seq, long timeout_ms) {
  uint32_t hdr[2] = {MAGIC, seq};
  memcpy(buf, hdr, sizeof(hdr));
  uint64_t t0 = now_ns();
  if (send(fd, buf, (size_t)size, 0) != size) {
    fprintf(stderr, "net_ping: send: %s\n", strerror(errno));
    return 0;
  }
  uint64_t deadline = t0 + (uint64_t)timeout_ms * 1000000ull;
  static char rb[MAX_SIZE];
  for (;;) {
    ssize_t r = recv(fd, rb, sizeof(rb), 0);
    uint64_t t1 = now_ns();
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) fprintf(stderr, "net_ping: recv: %s\n", strerror(errno));
      return 0;
    }
    uint32_t got[2];
    if (r == size && (memcpy(got, rb, sizeof(got)), got[0] == MAGIC && got[1] == seq)) return t1 - t0 ? t1 - t0 : 1;
    if (t1 >= deadline) return 0; /* only stale replies until the deadline */
  }
}

static int run_ping(const char* peer, long port, long count, long warmup, long timeout_ms, long size) {
  if (size < 16 || size > MAX_SIZE || count < 1) usage();
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) {
    perror("net_ping: socket");
    return 1;
  }
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, peer, &a.sin_addr) != 1) {
    fprintf(stderr, "net_ping: bad IPv4 address '%s'\n", peer);
    return 2;
  }
  if (connect(fd, (struct sockaddr*)&a, sizeof(a)) != 0) {
    fprintf(stderr, "net_ping: connect %s:%ld: %s\n", peer, port, strerror(errno));
    return 1;
  }
  set_rcvtimeo(fd, timeout_ms);
  int busy = -1;
  socklen_t bl = sizeof(busy);
  if (getsockopt(fd, SOL_SOCKET, SO_BUSY_POLL, &busy, &bl) != 0) busy = -1;
  printf("net_ping: peer %s:%ld size %ld warmup %ld count %ld; socket SO_BUSY_POLL=%d us\n", peer, port, size, warmup,
         count, busy);
  fflush(stdout);
  static char buf[MAX_SIZE];
  memset(buf, 0x5a, sizeof(buf));
  long warm_ok = 0;
  uint32_t seq = 1;
  for (long i = 0; i < warmup; i++) warm_ok += exchange(fd, buf, size, seq++, timeout_ms) != 0;
  if (warmup > 0 && warm_ok == 0) {
    fprintf(stderr, "net_ping: no reply from %s:%ld to any of %ld warm-up requests\n", peer, port, warmup);
    printf("net_ping: sent 0 received 0 lost %ld (peer unreachable)\n", count);
    return 1;
  }
  uint64_t* rtt = calloc((size_t)count, sizeof(uint64_t));
  if (!rtt) return 1;
  long got = 0;
  for (long i = 0; i < count; i++) {
    uint64_t t = exchange(fd, buf, size, seq++, timeout_ms);
    if (t) rtt[got++] = t;
  }
  long lost = count - got;
  if (got == 0) {
    printf("net_ping: sent %ld received 0 lost %ld\n", count, lost);
    return 1;
  }
  qsort(rtt, (size_t)got, sizeof(uint64_t), cmp_u64);
  double sum = 0;
  for (long i = 0; i < got; i++) sum += (double)rtt[i] / 1000.0;
  printf("net_ping: sent %ld received %ld lost %ld rtt_us min %.1f p50 %.1f p90 %.1f p99 %.1f max %.1f mean %.1f\n",
         count, got, lost, (double)rtt[0] / 1000.0, pct(rtt, got, 50), pct(rtt, got, 90), pct(rtt, got, 99),
         (double)rtt[got - 1] / 1000.0, sum / (double)got);
  free(rtt);
  return lost == 0 ? 0 : 1;
}

int main(int argc, char** argv) {
  if (argc < 2) usage();
  const char *mode = argv[1], *peer = NULL;
  long port = -1, seconds = 60, count = 1000, warmup = 20, timeout_ms = 1000, size = 64;
  for (int i = 2; i < argc; i++) {
    if (i + 1 >= argc) usage();
    const char *k = argv[i], *v = argv[++i];
    if (!strcmp(k, "--port"))
      port = num(v);
    else if (!strcmp(k, "--seconds"))
      seconds = num(v);
    else if (!strcmp(k, "--peer"))
      peer = v;
    else if (!strcmp(k, "--count"))
      count = num(v);
    else if (!strcmp(k, "--warmup"))
      warmup = num(v);
    else if (!strcmp(k, "--timeout-ms"))
      timeout_ms = num(v);
    else if (!strcmp(k, "--size"))
      size = num(v);
    else
      usage();
  }
  if (port < 1 || port > 65535) usage();
  if (!strcmp(mode, "echo")) return run_echo(port, seconds);
  if (!strcmp(mode, "ping") && peer) return run_ping(peer, port, count, warmup, timeout_ms, size);
  usage();
  return 2;
}
