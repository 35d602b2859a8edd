// control-blk-io: writes or checks a seeded pattern on a vhost-user-blk
// export through libnestor (queue 0, synchronous), so the control tests
// can tell which point-in-time content a volume, snapshot or clone shows.
//
//   control-blk-io SOCKET write SEED OFFSET LEN   (then FLUSH)
//   control-blk-io SOCKET check SEED OFFSET LEN
//   control-blk-io SOCKET discard OFFSET LEN
//   control-blk-io SOCKET zeroes OFFSET LEN       (WRITE_ZEROES, unmap allowed)
//
// SEED 0 is all zeros; any other seed a pattern that differs per 8 bytes
// and per seed. OFFSET and LEN are bytes (multiples of 512). Exit codes:
// 0 done (check: the content matches), 1 an I/O error or a mismatch (the
// first mismatching offset on stderr), 2 usage.
#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "nestor/client.hpp"

namespace {

uint64_t Pattern(uint64_t seed, uint64_t off) {
  if (seed == 0) return 0;
  uint64_t x = off * 0x9e3779b97f4a7c15ull ^ seed * 0xbf58476d1ce4e5b9ull;
  x ^= x >> 31;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 29);
}

void Fill(uint8_t* buf, uint64_t off, size_t len, uint64_t seed) {
  for (size_t i = 0; i < len; i += 8) {
    uint64_t v = Pattern(seed, off + i);
    std::memcpy(buf + i, &v, 8);
  }
}

int Usage() {
  std::fprintf(stderr,
               "usage: control-blk-io SOCKET write|check SEED OFFSET LEN\n"
               "       control-blk-io SOCKET discard|zeroes OFFSET LEN\n");
  return 2;
}

bool Num(const char* s, uint64_t* out) {
  char* end = nullptr;
  errno = 0;
  *out = std::strtoull(s, &end, 0);
  return errno == 0 && end != s && *end == '\0';
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return Usage();
  std::string op = argv[2];
  uint64_t seed = 0, off = 0, len = 0;
  bool with_seed = op == "write" || op == "check";
  if (with_seed) {
    if (argc != 6 || !Num(argv[3], &seed) || !Num(argv[4], &off) || !Num(argv[5], &len)) return Usage();
  } else if (op == "discard" || op == "zeroes") {
    if (argc != 5 || !Num(argv[3], &off) || !Num(argv[4], &len)) return Usage();
  } else {
    return Usage();
  }
  if (off % 512 != 0 || len % 512 != 0 || len == 0) return Usage();
  const size_t chunk = 1u << 20;
  nestor::client::Options o;
  o.socket_path = argv[1];
  o.num_queues = 1;
  o.polled = false;
  o.buffer_bytes = 4 * chunk;
  auto dev = nestor::client::Device::Connect(o);
  if (!dev.ok()) {
    std::fprintf(stderr, "control-blk-io: connect %s: %s\n", argv[1], dev.status().message().c_str());
    return 1;
  }
  auto& q = (*dev)->queue(0);
  nestor::Status st;
  if (op == "discard") {
    st = q.Discard(off, len);
  } else if (op == "zeroes") {
    st = q.WriteZeroes(off, len, true);
  }
  if (!st.ok()) {
    std::fprintf(stderr, "control-blk-io: %s %" PRIu64 "+%" PRIu64 ": %s\n", op.c_str(), off, len,
                 st.message().c_str());
    return 1;
  }
  if (!with_seed) {
    st = q.Flush();
    if (!st.ok()) std::fprintf(stderr, "control-blk-io: flush: %s\n", st.message().c_str());
    return st.ok() ? 0 : 1;
  }
  std::vector<uint8_t> buf(chunk), want(chunk);
  for (uint64_t at = off; at < off + len; at += chunk) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(chunk, off + len - at));
    if (op == "write") {
      Fill(buf.data(), at, n, seed);
      st = q.Write(at, buf.data(), n);
    } else {
      st = q.Read(at, buf.data(), n);
    }
    if (!st.ok()) {
      std::fprintf(stderr, "control-blk-io: %s %zu bytes at %" PRIu64 ": %s\n", op == "write" ? "write" : "read", n, at,
                   st.message().c_str());
      return 1;
    }
    if (op == "check") {
      Fill(want.data(), at, n, seed);
      for (size_t i = 0; i < n; i += 8) {
        if (std::memcmp(buf.data() + i, want.data() + i, 8) != 0) {
          uint64_t got = 0;
          std::memcpy(&got, buf.data() + i, 8);
          std::fprintf(stderr,
                       "control-blk-io: mismatch at byte %" PRIu64 ": seed %" PRIu64 " wants %016" PRIx64
                       ", read %016" PRIx64 "\n",
                       at + i, seed, Pattern(seed, at + i), got);
          return 1;
        }
      }
    }
  }
  if (op == "write") {
    st = q.Flush();
    if (!st.ok()) {
      std::fprintf(stderr, "control-blk-io: flush: %s\n", st.message().c_str());
      return 1;
    }
  }
  return 0;
}
