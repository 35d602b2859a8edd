// libnestor against nestord, in each poll mode: data integrity on every
// queue at once, flush, discard and write-zeroes reading back zeros,
// out-of-range and read-only errors, GET_ID, bytes landing in a backing
// file, and a clean SIGTERM shutdown. Clients alternate between polled and
// blocking completions so both driver paths meet every server mode.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <thread>

#include "nestor/client.hpp"
#include "nestord_process.h"

namespace nestor::testing {
namespace {

using client::Device;
using client::Options;

constexpr uint64_t kVolBytes = 64ull << 20;

void Fill(std::vector<uint8_t>* buf, uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i + 8 <= buf->size(); i += 8) {
    uint64_t v = rng();
    std::memcpy(buf->data() + i, &v, 8);
  }
}

bool AllZero(const std::vector<uint8_t>& b) {
  return std::all_of(b.begin(), b.end(), [](uint8_t c) { return c == 0; });
}

struct ModeParam {
  const char* mode;
  bool polled_client;
};

class NestordClient : public ::testing::TestWithParam<ModeParam> {
 protected:
  void SetUp() override {
    file_ = d_.dir() + "/disk.img";  // ext4 here: the io_uring path
    // tmpfs: the inline (synchronous) path for memory file systems.
    shm_file_ = "/dev/shm/nestord-test-" + std::to_string(getpid()) + ".img";
    std::string err;
    ASSERT_TRUE(d_.Start(
        {"--volume", "data,size=64M,backend=mem,queues=4", "--volume", "ro,size=8M,backend=mem,readonly", "--volume",
         "disk,size=16M,backend=file:" + file_ + ",queues=2", "--volume",
         "shm,size=16M,backend=file:" + shm_file_ + ",queues=2", "--reactors", "2", "--poll-mode", GetParam().mode},
        {"data", "ro", "disk", "shm"}, &err))
        << err;
  }
  void TearDown() override {
    unlink(shm_file_.c_str());
    if (!::testing::Test::HasFailure()) {
      EXPECT_TRUE(d_.Stop()) << "nestord did not exit cleanly on SIGTERM:\n" << d_.Log();
    } else {
      std::cerr << "---- nestord log ----\n" << d_.Log();
    }
  }

  std::unique_ptr<Device> Connect(const std::string& volume, uint32_t queues) {
    Options o;
    o.socket_path = d_.Socket(volume);
    o.num_queues = queues;
    o.polled = GetParam().polled_client;
    o.buffer_bytes = 8ull << 20;
    auto dev = Device::Connect(o);
    EXPECT_TRUE(dev.ok()) << dev.status().message();
    return dev.ok() ? std::move(dev.value()) : nullptr;
  }

  void CheckFileBacking(const std::string& volume, const std::string& path);

  NestordProcess d_;
  std::string file_;
  std::string shm_file_;
};

TEST_P(NestordClient, WriteReadVerifyOnEveryQueueAtOnce) {
  auto dev = Connect("data", 4);
  ASSERT_TRUE(dev);
  EXPECT_EQ(dev->info().capacity_bytes, kVolBytes);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (uint32_t q = 0; q < 4; ++q) {
    threads.emplace_back([&, q] {
      // Each queue owns a 16 MiB slice; mixed request sizes.
      uint64_t base = q * (16ull << 20);
      for (int round = 0; round < 8; ++round) {
        size_t len = (round % 4 + 1) * 32768;
        uint64_t off = base + round * (1ull << 20);
        std::vector<uint8_t> w(len), r(len);
        Fill(&w, q * 100 + round);
        if (!dev->queue(q).Write(off, w.data(), len).ok() || !dev->queue(q).Read(off, r.data(), len).ok() || w != r) {
          failures++;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  // Cross-check from another queue: data written via queue 3 is visible on queue 0.
  std::vector<uint8_t> w(4096), r(4096);
  Fill(&w, 3 * 100 + 0);
  ASSERT_TRUE(dev->queue(0).Read(3 * (16ull << 20), r.data(), r.size()).ok());
  EXPECT_TRUE(std::equal(r.begin(), r.end(), w.begin()));
}

TEST_P(NestordClient, FlushDiscardWriteZeroes) {
  auto dev = Connect("data", 1);
  ASSERT_TRUE(dev);
  auto& q = dev->queue(0);
  EXPECT_TRUE(dev->info().flush && dev->info().discard && dev->info().write_zeroes);
  std::vector<uint8_t> w(1 << 20), r(1 << 20);
  for (int i = 0; i < 3; ++i) {
    Fill(&w, 7 + i);
    ASSERT_TRUE(q.Write(i * (1ull << 20), w.data(), w.size()).ok());
  }
  ASSERT_TRUE(q.Flush().ok());
  ASSERT_TRUE(q.Discard(0, 1 << 20).ok());
  ASSERT_TRUE(q.WriteZeroes(1 << 20, 1 << 20, /*unmap=*/false).ok());
  ASSERT_TRUE(q.WriteZeroes(2 << 20, 1 << 20, /*unmap=*/true).ok());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(q.Read(i * (1ull << 20), r.data(), r.size()).ok());
    EXPECT_TRUE(AllZero(r)) << "MiB " << i << " not zero";
  }
  // An unaligned (sub-page) write-zeroes leaves the neighbours intact.
  Fill(&w, 99);
  ASSERT_TRUE(q.Write(0, w.data(), 8192).ok());
  ASSERT_TRUE(q.WriteZeroes(512, 1024, false).ok());
  ASSERT_TRUE(q.Read(0, r.data(), 8192).ok());
  EXPECT_EQ(0, std::memcmp(r.data(), w.data(), 512));
  EXPECT_TRUE(std::all_of(r.begin() + 512, r.begin() + 1536, [](uint8_t c) { return c == 0; }));
  EXPECT_EQ(0, std::memcmp(r.data() + 1536, w.data() + 1536, 8192 - 1536));
}

TEST_P(NestordClient, OutOfRangeFailsThatRequestOnly) {
  auto dev = Connect("data", 1);
  ASSERT_TRUE(dev);
  auto& q = dev->queue(0);
  std::vector<uint8_t> buf(8192);
  EXPECT_FALSE(q.Read(kVolBytes, buf.data(), 4096).ok());
  EXPECT_FALSE(q.Write(kVolBytes - 4096, buf.data(), 8192).ok());
  EXPECT_FALSE(q.Discard(kVolBytes - 512, 1024).ok());
  EXPECT_FALSE(q.WriteZeroes(kVolBytes, 512, false).ok());
  // The last sector is in range, and the queue still works.
  Fill(&buf, 5);
  EXPECT_TRUE(q.Write(kVolBytes - 4096, buf.data(), 4096).ok());
  std::vector<uint8_t> r(4096);
  EXPECT_TRUE(q.Read(kVolBytes - 4096, r.data(), 4096).ok());
  EXPECT_EQ(0, std::memcmp(r.data(), buf.data(), 4096));
}

TEST_P(NestordClient, ReadOnlyVolume) {
  auto dev = Connect("ro", 1);
  ASSERT_TRUE(dev);
  EXPECT_TRUE(dev->info().read_only);
  auto& q = dev->queue(0);
  std::vector<uint8_t> buf(4096, 0xab);
  Status w = q.Write(0, buf.data(), buf.size());
  EXPECT_FALSE(w.ok());
  EXPECT_FALSE(q.Discard(0, 4096).ok());
  EXPECT_FALSE(q.WriteZeroes(0, 4096, false).ok());
  EXPECT_TRUE(q.Read(0, buf.data(), buf.size()).ok());
  EXPECT_TRUE(AllZero(buf));
  EXPECT_TRUE(q.Flush().ok());
}

void NestordClient::CheckFileBacking(const std::string& volume, const std::string& path) {
  auto dev = Connect(volume, 2);
  ASSERT_TRUE(dev);
  std::string id;
  ASSERT_TRUE(dev->queue(0).GetId(&id).ok());
  EXPECT_EQ(id.substr(0, volume.size()), volume);
  std::vector<uint8_t> w(256 << 10);
  Fill(&w, 42);
  ASSERT_TRUE(dev->queue(1).Write(3 << 20, w.data(), w.size()).ok());
  ASSERT_TRUE(dev->queue(0).Write(5 << 20, w.data(), w.size()).ok());
  ASSERT_TRUE(dev->queue(0).WriteZeroes((5 << 20) + 4096, 8192, false).ok());
  ASSERT_TRUE(dev->queue(1).Flush().ok());
  dev.reset();
  int fd = open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  std::vector<uint8_t> r(w.size());
  ASSERT_EQ(pread(fd, r.data(), r.size(), 3 << 20), static_cast<ssize_t>(r.size()));
  EXPECT_TRUE(w == r);
  ASSERT_EQ(pread(fd, r.data(), r.size(), 5 << 20), static_cast<ssize_t>(r.size()));
  close(fd);
  EXPECT_EQ(0, std::memcmp(r.data(), w.data(), 4096));
  EXPECT_TRUE(std::all_of(r.begin() + 4096, r.begin() + 12288, [](uint8_t c) { return c == 0; }));
  EXPECT_EQ(0, std::memcmp(r.data() + 12288, w.data() + 12288, r.size() - 12288));
}

TEST_P(NestordClient, GetIdAndFileBackingHoldsTheBytes) { CheckFileBacking("disk", file_); }

TEST_P(NestordClient, MemoryFileSystemBackingHoldsTheBytes) { CheckFileBacking("shm", shm_file_); }

TEST_P(NestordClient, ReconnectSeesEarlierData) {
  std::vector<uint8_t> w(64 << 10), r(64 << 10);
  Fill(&w, 77);
  {
    auto dev = Connect("data", 2);
    ASSERT_TRUE(dev);
    ASSERT_TRUE(dev->queue(1).Write(5 << 20, w.data(), w.size()).ok());
  }
  auto dev = Connect("data", 4);
  ASSERT_TRUE(dev);
  ASSERT_TRUE(dev->queue(2).Read(5 << 20, r.data(), r.size()).ok());
  EXPECT_TRUE(w == r);
}

INSTANTIATE_TEST_SUITE_P(Modes, NestordClient,
                         ::testing::Values(ModeParam{"adaptive", true}, ModeParam{"interrupt", false},
                                           ModeParam{"poll", false}, ModeParam{"adaptive", false},
                                           ModeParam{"interrupt", true}),
                         [](const auto& info) {
                           return std::string(info.param.mode) + (info.param.polled_client ? "_polled" : "_blocking");
                         });

}  // namespace
}  // namespace nestor::testing
