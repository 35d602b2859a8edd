// QueueImpl against the in-process FakeBlk device: request building,
// status mapping, polled and blocking completion, synchronous helpers,
// and robustness against a device that misbehaves or never answers.
#include <gtest/gtest.h>

#include <cstring>
#include <numeric>

#include "client/fake_blk_device_test.h"
#include "client/queue_impl.h"

namespace nestor::client {
namespace {

using testing::FakeBlk;
using testing::TestDevice;

constexpr uint64_t kCapacity = 4 << 20;

// Params: polled, EVENT_IDX, INDIRECT_DESC.
class QueueTest : public ::testing::TestWithParam<std::tuple<bool, bool, bool>> {
 protected:
  void SetUp() override { Build(32); }
  void Build(uint32_t size) {
    const auto [polled, event_idx, indirect] = GetParam();
    fake_.reset();
    q_.reset();
    shared_ = std::make_unique<DeviceShared>();
    auto r = SharedRegion::Create(QueueImpl::SharedBytes(size) + (8 << 20), false);
    ASSERT_TRUE(r.ok());
    shared_->region = std::move(*r);
    size_t rings = (QueueImpl::SharedBytes(size) + 4095) & ~size_t{4095};
    shared_->buffers.Init(shared_->region.base() + rings, shared_->region.size() - rings);
    shared_->timeout_ms = 300;
    DeviceInfo& info = shared_->info;
    info.capacity_bytes = kCapacity;
    info.seg_max = size - 2;
    info.size_max = 4096;
    info.flush = info.discard = info.write_zeroes = true;
    q_ = std::make_unique<QueueImpl>(shared_.get(), 0, size, shared_->region.base(), event_idx, indirect, polled);
    ASSERT_TRUE(q_->OpenEventFds(true).ok());
    auto& v = q_->vring();
    fake_ =
        std::make_unique<FakeBlk>(TestDevice(v.desc(), v.avail(), v.used(), size, event_idx), kCapacity, q_->call_fd());
    fake_->Start();
  }
  void TearDown() override { fake_.reset(); }
  void* Buf(size_t len) { return shared_->buffers.Alloc(len, 4096); }

  std::unique_ptr<DeviceShared> shared_;
  std::unique_ptr<QueueImpl> q_;
  std::unique_ptr<FakeBlk> fake_;
};

TEST_P(QueueTest, AsyncWriteReadRoundTrip) {
  auto* w = static_cast<uint8_t*>(Buf(16384));
  auto* r = static_cast<uint8_t*>(Buf(16384));
  std::iota(w, w + 16384, 0);
  Request wr;
  wr.op = Op::kWrite;
  wr.offset = 8192;
  wr.len = 16384;  // split into 4 segments by size_max
  wr.buf = w;
  wr.user_data = w;
  ASSERT_EQ(q_->Submit(wr), 1);
  Completion c[4];
  ASSERT_EQ(q_->Wait(c, 1, 4, 2000), 1);
  EXPECT_EQ(c[0].user_data, w);
  EXPECT_EQ(c[0].result, 0);
  iovec iov[2] = {{r, 4096}, {r + 4096, 12288}};
  Request rd;
  rd.op = Op::kRead;
  rd.offset = 8192;
  rd.iov = iov;
  rd.iovcnt = 2;
  ASSERT_EQ(q_->Submit(rd), 1);
  ASSERT_EQ(q_->Wait(c, 1, 4, 2000), 1);
  EXPECT_EQ(c[0].result, 0);
  EXPECT_EQ(std::memcmp(w, r, 16384), 0);
  EXPECT_EQ(q_->inflight(), 0u);
}

TEST_P(QueueTest, BatchSubmitAndFullQueue) {
  auto* b = static_cast<uint8_t*>(Buf(4096));
  fake_->paused = true;
  std::vector<Request> reqs(40);
  for (size_t i = 0; i < reqs.size(); ++i) {
    reqs[i].op = Op::kRead;
    reqs[i].offset = i * 512;
    reqs[i].len = 512;
    reqs[i].buf = b;
    reqs[i].user_data = reinterpret_cast<void*>(i);
  }
  // 32 descriptors: 3 per direct request (10 fit), 1 per indirect one (32).
  const int fit = std::get<2>(GetParam()) ? 32 : 10;
  EXPECT_EQ(q_->Submit(reqs), fit);
  EXPECT_EQ(q_->Submit(reqs[fit]), -EAGAIN);
  fake_->paused = false;
  std::vector<Completion> c(16);
  int got = 0;
  while (got < fit) {
    int n = q_->Wait(c.data(), 1, 16, 2000);
    ASSERT_GT(n, 0);
    got += n;
  }
  EXPECT_EQ(q_->Poll(c.data(), 16), 0);
}

TEST_P(QueueTest, RejectsBadRequests) {
  auto* b = static_cast<uint8_t*>(Buf(4096));
  std::vector<uint8_t> outside(4096);
  Request r;
  r.op = Op::kRead;
  r.len = 4096;
  r.buf = outside.data();
  EXPECT_EQ(q_->Submit(r), -EFAULT);
  r.buf = b;
  r.offset = 100;
  EXPECT_EQ(q_->Submit(r), -EINVAL);
  r.offset = 0;
  r.len = 100;
  EXPECT_EQ(q_->Submit(r), -EINVAL);
  r.len = 0;
  EXPECT_EQ(q_->Submit(r), -EINVAL);
  r.op = Op::kGetId;
  r.len = 10;
  EXPECT_EQ(q_->Submit(r), -EINVAL);
  EXPECT_EQ(q_->inflight(), 0u);
}

TEST_P(QueueTest, StatusMapsToErrno) {
  auto* b = Buf(4096);
  Request r;
  r.op = Op::kRead;
  r.offset = kCapacity;  // past the end: the device says IOERR
  r.len = 4096;
  r.buf = b;
  ASSERT_EQ(q_->Submit(r), 1);
  Completion c;
  ASSERT_EQ(q_->Wait(&c, 1, 1, 2000), 1);
  EXPECT_EQ(c.result, -EIO);
  EXPECT_EQ(q_->Read(kCapacity - 512, b, 1024).err(), EIO);
}

TEST_P(QueueTest, SyncHelpersBounceAndSplit) {
  std::vector<uint8_t> data(3 << 20), back(3 << 20);  // outside the region, > 1 MiB chunk
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7 + 3);
  ASSERT_TRUE(q_->Write(512, data.data(), data.size()).ok());  // 1 MiB pieces: 256 segments, direct
  ASSERT_TRUE(q_->Flush().ok());
  ASSERT_TRUE(q_->Read(512, back.data(), back.size()).ok());
  EXPECT_EQ(data, back);
  ASSERT_TRUE(q_->WriteZeroes(4096, 8192, true).ok());
  ASSERT_TRUE(q_->Discard(65536, 4096).ok());
  ASSERT_TRUE(q_->Read(512, back.data(), back.size()).ok());
  for (size_t i = 4096 - 512; i < 4096 - 512 + 8192; ++i) ASSERT_EQ(back[i], 0) << i;
  std::string id;
  ASSERT_TRUE(q_->GetId(&id).ok());
  EXPECT_EQ(id, "fake-serial");
}

TEST_P(QueueTest, SyncHelperKeepsOtherCompletions) {
  auto* b = Buf(4096);
  Request r;
  r.op = Op::kRead;
  r.len = 4096;
  r.buf = b;
  r.user_data = b;
  ASSERT_EQ(q_->Submit(r), 1);
  ASSERT_TRUE(q_->Flush().ok());  // may reap the async read meanwhile
  Completion c;
  ASSERT_EQ(q_->Wait(&c, 1, 1, 2000), 1);
  EXPECT_EQ(c.user_data, b);
  EXPECT_EQ(c.result, 0);
}

TEST_P(QueueTest, MissingStatusIsProtocolError) {
  fake_->tamper = [](uint16_t, uint32_t*, bool* write_status) { *write_status = false; };
  EXPECT_EQ(q_->Flush().err(), EPROTO);
}

TEST_P(QueueTest, BogusUsedIdBreaksQueueWithoutCrash) {
  auto* b = Buf(4096);
  fake_->tamper = [](uint16_t, uint32_t* id, bool*) { *id = 31; };  // a head we never used
  Request r;
  r.op = Op::kRead;
  r.len = 4096;
  r.buf = b;
  r.user_data = b;
  ASSERT_EQ(q_->Submit(r), 1);
  Completion c;
  ASSERT_EQ(q_->Wait(&c, 1, 1, 2000), 1);
  EXPECT_EQ(c.result, -EPROTO);
  EXPECT_EQ(c.user_data, b);
  EXPECT_EQ(q_->Submit(r), -EPROTO);
  EXPECT_EQ(q_->Poll(&c, 1), -EPROTO);
}

TEST_P(QueueTest, SilentDeviceTimesOut) {
  fake_->paused = true;
  auto* b = Buf(4096);
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(q_->Read(0, b, 4096).err(), ETIMEDOUT);
  Request r;
  r.op = Op::kRead;
  r.len = 4096;
  r.buf = b;
  ASSERT_EQ(q_->Submit(r), 1);
  Completion c;
  EXPECT_EQ(q_->Wait(&c, 1, 1, 100), -ETIMEDOUT);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
  fake_->paused = false;  // late completions: the abandoned one is dropped
  ASSERT_EQ(q_->Wait(&c, 1, 1, 2000), 1);
  EXPECT_EQ(c.result, 0);
  EXPECT_EQ(q_->Wait(&c, 1, 1, 50), 0);  // nothing in flight
}

TEST_P(QueueTest, DisconnectFailsInflight) {
  fake_->paused = true;
  auto* b = Buf(4096);
  Request r;
  r.op = Op::kRead;
  r.len = 4096;
  r.buf = b;
  ASSERT_EQ(q_->Submit(r), 1);
  shared_->dead = true;
  Completion c;
  ASSERT_EQ(q_->Wait(&c, 1, 1, 2000), 1);
  EXPECT_EQ(c.result, -ENOTCONN);
  EXPECT_EQ(q_->Submit(r), -ENOTCONN);
}

TEST_P(QueueTest, ManyRandomAsyncIos) {
  std::vector<uint8_t*> bufs(8);
  for (auto& p : bufs) p = static_cast<uint8_t*>(Buf(4096));
  uint64_t done = 0, submitted = 0;
  std::vector<Completion> c(8);
  std::vector<uint32_t> free_slots{0, 1, 2, 3, 4, 5, 6, 7};
  while (done < 5000) {
    while (!free_slots.empty() && submitted < 5000) {
      uint32_t s = free_slots.back();
      Request r;
      r.op = submitted % 2 ? Op::kRead : Op::kWrite;
      r.offset = (submitted * 4096) % kCapacity;
      r.len = 4096;
      r.buf = bufs[s];
      r.user_data = reinterpret_cast<void*>(uintptr_t(s));
      int rc = q_->Submit(r);
      if (rc == -EAGAIN) break;
      ASSERT_EQ(rc, 1);
      free_slots.pop_back();
      ++submitted;
    }
    int n = q_->Wait(c.data(), 1, 8, 2000);
    ASSERT_GT(n, 0);
    for (int i = 0; i < n; ++i) {
      ASSERT_EQ(c[i].result, 0);
      free_slots.push_back(static_cast<uint32_t>(reinterpret_cast<uintptr_t>(c[i].user_data)));
    }
    done += n;
  }
  if (!std::get<0>(GetParam())) {
    EXPECT_GT(fake_->calls.load(), 0u);
  }
  EXPECT_EQ(fake_->indirect_seen() > 0, std::get<2>(GetParam()));
}

INSTANTIATE_TEST_SUITE_P(Modes, QueueTest, ::testing::Combine(::testing::Bool(), ::testing::Bool(), ::testing::Bool()),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param) ? "Polled" : "Blocking") +
                                  (std::get<1>(info.param) ? "EventIdx" : "Flags") +
                                  (std::get<2>(info.param) ? "Indirect" : "Direct");
                         });

}  // namespace
}  // namespace nestor::client
