// libnestor against Debian's qemu-storage-daemon 7.2 (a real, independent
// vhost-user-blk backend). Each test starts its own daemon (timeout 60).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "nestor/client.hpp"
#include "qsd_process.h"

namespace nestor::client {
namespace {

using testing::Qsd;

constexpr uint64_t kImageBytes = 64ull << 20;

uint64_t Pattern(uint64_t off, uint64_t seed) {
  uint64_t x = (off + 1) * 0x9e3779b97f4a7c15ull ^ seed;
  return x ^ (x >> 29);
}
void Fill(uint8_t* p, uint64_t off, size_t len, uint64_t seed) {
  for (size_t i = 0; i < len; i += 8) {
    uint64_t v = Pattern(off + i, seed);
    std::memcpy(p + i, &v, 8);
  }
}
bool Check(const uint8_t* p, uint64_t off, size_t len, uint64_t seed) {
  for (size_t i = 0; i < len; i += 8) {
    uint64_t v;
    std::memcpy(&v, p + i, 8);
    if (v != Pattern(off + i, seed)) return false;
  }
  return true;
}

std::unique_ptr<Device> MustConnect(const std::string& sock, bool polled, uint32_t queues = 2) {
  Options o;
  o.socket_path = sock;
  o.num_queues = queues;
  o.polled = polled;
  o.timeout_ms = 5000;
  o.buffer_bytes = 16 << 20;
  auto d = Device::Connect(o);
  EXPECT_TRUE(d.ok()) << d.status().ToString();
  return d.ok() ? std::move(*d) : nullptr;
}

// Async write-then-verify of [start, start + len) on one queue at depth qd.
void WriteVerify(Device& dev, Queue& q, uint64_t start, uint64_t len, uint64_t seed, int* errors) {
  constexpr uint32_t kQd = 16, kBlock = 16384;
  std::vector<uint8_t*> bufs(kQd);
  for (auto& b : bufs) b = static_cast<uint8_t*>(dev.AllocBuffer(kBlock));
  for (bool write : {true, false}) {
    uint64_t next = start, inflight = 0;
    std::vector<uint32_t> free_slots;
    std::vector<uint64_t> offs(kQd);
    for (uint32_t i = 0; i < kQd; ++i) free_slots.push_back(i);
    Completion c[kQd];
    while (next < start + len || inflight > 0) {
      while (next < start + len && !free_slots.empty()) {
        uint32_t s = free_slots.back();
        if (write) Fill(bufs[s], next, kBlock, seed);
        Request r;
        r.op = write ? Op::kWrite : Op::kRead;
        r.offset = next;
        r.len = kBlock;
        r.buf = bufs[s];
        r.user_data = reinterpret_cast<void*>(uintptr_t(s));
        int rc = q.Submit(r);
        if (rc == -EAGAIN) break;
        if (rc != 1) {
          ++*errors;
          return;
        }
        offs[s] = next;
        free_slots.pop_back();
        next += kBlock;
        ++inflight;
      }
      int n = q.Wait(c, 1, kQd, 10000);
      if (n <= 0) {
        ++*errors;
        return;
      }
      for (int i = 0; i < n; ++i) {
        auto s = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(c[i].user_data));
        if (c[i].result != 0 || (!write && !Check(bufs[s], offs[s], kBlock, seed))) ++*errors;
        free_slots.push_back(s);
        --inflight;
      }
    }
  }
  for (auto* b : bufs) dev.FreeBuffer(b);
}

class QsdFile : public ::testing::TestWithParam<bool> {  // param: polled
 protected:
  void SetUp() override {
    std::string err;
    qsd_ = Qsd::Create(&err);
    ASSERT_TRUE(qsd_) << err;
    image_path_ = qsd_->dir() + "/img";
    int fd = open(image_path_.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(ftruncate(fd, kImageBytes), 0);
    close(fd);
    ASSERT_TRUE(qsd_->Start("driver=file,node-name=n0,filename={DIR}/img,cache.direct=off", 2, &err)) << err;
    dev_ = MustConnect(qsd_->socket(), GetParam());
    ASSERT_TRUE(dev_);
  }
  void TearDown() override {
    dev_.reset();
    if (qsd_) qsd_->Stop();
  }
  std::string image_path_;
  std::unique_ptr<Qsd> qsd_;
  std::unique_ptr<Device> dev_;
};

TEST_P(QsdFile, NegotiatesAndReportsGeometry) {
  const DeviceInfo& i = dev_->info();
  EXPECT_EQ(i.capacity_bytes, kImageBytes);
  EXPECT_EQ(i.max_queues, 2u);
  EXPECT_EQ(dev_->num_queues(), 2u);
  EXPECT_TRUE(i.flush);
  EXPECT_FALSE(i.read_only);
  EXPECT_EQ(i.block_size, 512u);
  std::printf(
      "qsd: features %#llx protocol %#llx seg_max %u size_max %u discard %d (max %u sectors) "
      "write_zeroes %d (max %u sectors, may_unmap %d) event_idx %d\n",
      (unsigned long long)i.features, (unsigned long long)i.protocol_features, i.seg_max, i.size_max, i.discard,
      i.max_discard_sectors, i.write_zeroes, i.max_write_zeroes_sectors, i.write_zeroes_may_unmap, i.event_idx);
}

TEST_P(QsdFile, BothQueuesAtOnceWriteReadVerify) {
  int errors[2] = {0, 0};
  std::thread t0(WriteVerify, std::ref(*dev_), std::ref(dev_->queue(0)), 0, 8 << 20, 11, &errors[0]);
  std::thread t1(WriteVerify, std::ref(*dev_), std::ref(dev_->queue(1)), 8 << 20, 8 << 20, 22, &errors[1]);
  t0.join();
  t1.join();
  EXPECT_EQ(errors[0], 0);
  EXPECT_EQ(errors[1], 0);
}

TEST_P(QsdFile, FlushSucceeds) {
  ASSERT_TRUE(dev_->queue(0).Flush().ok());
  ASSERT_TRUE(dev_->queue(1).Flush().ok());
}

TEST_P(QsdFile, OutOfRangeIoFails) {
  std::vector<uint8_t> buf(8192);
  Status st = dev_->queue(0).Read(kImageBytes, buf.data(), 4096);
  EXPECT_EQ(st.err(), EIO) << st.ToString();
  st = dev_->queue(1).Read(kImageBytes - 4096, buf.data(), 8192);  // straddles the end
  EXPECT_EQ(st.err(), EIO) << st.ToString();
  st = dev_->queue(0).Write(kImageBytes + (1 << 20), buf.data(), 4096);
  EXPECT_EQ(st.err(), EIO) << st.ToString();
  // The queue still works afterwards.
  EXPECT_TRUE(dev_->queue(0).Read(0, buf.data(), 4096).ok());
}

TEST_P(QsdFile, BytesLandInImage) {
  std::vector<uint8_t> data(1 << 20);
  Fill(data.data(), 3 << 20, data.size(), 33);
  ASSERT_TRUE(dev_->queue(1).Write(3 << 20, data.data(), data.size()).ok());
  ASSERT_TRUE(dev_->queue(1).Flush().ok());
  std::vector<uint8_t> file(data.size());
  int fd = open(image_path_.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pread(fd, file.data(), file.size(), 3 << 20), ssize_t(file.size()));
  close(fd);
  EXPECT_EQ(file, data);
}

TEST_P(QsdFile, ImageBytesAreReadBack) {
  std::vector<uint8_t> data(65536), back(65536);
  Fill(data.data(), 5 << 20, data.size(), 44);
  int fd = open(image_path_.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pwrite(fd, data.data(), data.size(), 5 << 20), ssize_t(data.size()));
  close(fd);
  ASSERT_TRUE(dev_->queue(0).Read(5 << 20, back.data(), back.size()).ok());
  EXPECT_EQ(back, data);
}

TEST_P(QsdFile, WriteZeroesAndDiscard) {
  const DeviceInfo& i = dev_->info();
  std::vector<uint8_t> data(65536, 0xa5), back(65536);
  ASSERT_TRUE(dev_->queue(0).Write(1 << 20, data.data(), data.size()).ok());
  if (i.write_zeroes) {
    for (bool unmap : {false, true}) {
      ASSERT_TRUE(dev_->queue(0).Write(1 << 20, data.data(), data.size()).ok());
      Status st = dev_->queue(0).WriteZeroes((1 << 20) + 4096, 32768, unmap);
      ASSERT_TRUE(st.ok()) << "unmap " << unmap << ": " << st.ToString();
      ASSERT_TRUE(dev_->queue(0).Read(1 << 20, back.data(), back.size()).ok());
      for (size_t k = 0; k < back.size(); ++k) {
        bool zero = k >= 4096 && k < 4096 + 32768;
        ASSERT_EQ(back[k], zero ? 0 : 0xa5) << "unmap " << unmap << " byte " << k;
      }
    }
  }
  if (i.discard) {
    Status st = dev_->queue(1).Discard(1 << 20, 65536);
    EXPECT_TRUE(st.ok()) << st.ToString();
  }
  std::printf("qsd: write_zeroes %s, discard %s\n", i.write_zeroes ? "works" : "not offered",
              i.discard ? "accepted" : "not offered");
}

TEST_P(QsdFile, GetId) {
  std::string id;
  Status st = dev_->queue(0).GetId(&id);
  std::printf("qsd: GET_ID -> %s '%s'\n", st.ToString().c_str(), id.c_str());
  EXPECT_TRUE(st.ok() || st.err() == ENOTSUP) << st.ToString();
}

TEST_P(QsdFile, DeviceRejectsUnalignedRequestsLocally) {
  void* b = dev_->AllocBuffer(4096);
  Request r;
  r.op = Op::kRead;
  r.offset = 100;
  r.len = 4096;
  r.buf = b;
  EXPECT_EQ(dev_->queue(0).Submit(r), -EINVAL);
  dev_->FreeBuffer(b);
}

INSTANTIATE_TEST_SUITE_P(Modes, QsdFile, ::testing::Bool(),
                         [](const auto& info) { return std::string(info.param ? "Polled" : "Blocking"); });

// null-co: a quick read of zeros through both completion modes.
TEST(QsdNull, ReadsZeros) {
  std::string err;
  auto qsd = Qsd::Launch("driver=null-co,node-name=n0,size=1073741824,read-zeroes=on", 1, &err);
  ASSERT_TRUE(qsd) << err;
  for (bool polled : {true, false}) {
    auto dev = MustConnect(qsd->socket(), polled, 1);
    ASSERT_TRUE(dev);
    EXPECT_EQ(dev->info().capacity_bytes, 1ull << 30);
    std::vector<uint8_t> buf(1 << 20, 0xff);
    ASSERT_TRUE(dev->queue(0).Read(512ull << 20, buf.data(), buf.size()).ok());
    EXPECT_EQ(std::count(buf.begin(), buf.end(), 0), long(buf.size()));
    // QD1 round trips, for the record.
    void* b = dev->AllocBuffer(4096);
    Request r;
    r.op = Op::kRead;
    r.len = 4096;
    r.buf = b;
    Completion c;
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 2000; ++i) {
      ASSERT_EQ(dev->queue(0).Submit(r), 1);
      ASSERT_EQ(dev->queue(0).Wait(&c, 1, 1, 5000), 1);
      ASSERT_EQ(c.result, 0);
    }
    double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / 2000;
    std::printf("qsd null-co: %s QD1 4K read mean %.1f us\n", polled ? "polled" : "blocking", us);
    dev->FreeBuffer(b);
  }
}

}  // namespace
}  // namespace nestor::client
