#include "vhost/mem_table.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "reactor/guest_fault.h"

namespace nestor::vhost {
namespace {

UniqueFd Memfd(size_t size) {
  int fd = memfd_create("mem_table_test", MFD_CLOEXEC);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(ftruncate(fd, static_cast<off_t>(size)), 0);
  return UniqueFd(fd);
}

std::vector<UniqueFd> Fds(UniqueFd a) {
  std::vector<UniqueFd> v;
  v.push_back(std::move(a));
  return v;
}

TEST(MemTable, MapsAndTranslatesBothAddressKinds) {
  UniqueFd fd = Memfd(2 << 20);
  // Write a marker through our own mapping to check the translation.
  void* own = mmap(nullptr, 2 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  ASSERT_NE(own, MAP_FAILED);
  std::memcpy(static_cast<char*>(own) + (1 << 20) + 100, "nestor", 6);
  MemTable t;
  MemRegion r{0x100000, 1 << 20, 0x7f0000000000, 1 << 20};  // second MiB of the file
  ASSERT_TRUE(t.SetAll({r}, Fds(std::move(fd))).ok());
  EXPECT_EQ(t.size(), 1u);
  auto* p = static_cast<char*>(t.map().TranslateContiguous(0x100000 + 100, 6));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(std::memcmp(p, "nestor", 6), 0);
  EXPECT_EQ(t.map().TranslateUserAddr(0x7f0000000000 + 100, 6), p);
  EXPECT_EQ(t.map().TranslateContiguous(0x100000 + (1 << 20) - 2, 6), nullptr);  // runs off the end
  EXPECT_EQ(t.map().TranslateContiguous(0xfffff, 1), nullptr);                   // below the region
  munmap(own, 2 << 20);
}

// A frontend shrinks the memory it shared while a thread that cannot
// unwind (librbd's, copying read data into the guest's buffer) writes to
// it: that thread gets a zero page and goes on, the daemon lives.
TEST(MemTable, FaultOnShrunkMemoryOutsideReactorsIsPatched) {
  reactor::InstallGuestFaultHandler();
  UniqueFd fd = Memfd(2 << 20);
  UniqueFd frontend(dup(fd.get()));  // the frontend keeps its own
  MemTable t;
  ASSERT_TRUE(t.SetAll({MemRegion{0, 2 << 20, 0x7f0000000000, 0}}, Fds(std::move(fd))).ok());
  auto* p = static_cast<char*>(t.map().TranslateContiguous(4096 * 3 + 10, 6));
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(ftruncate(frontend.get(), 0), 0);  // what a hostile frontend does
  uint64_t before = reactor::GuestFaultsPatched();
  char back[7] = {};
  std::thread([&] {
    std::memcpy(p, "nestor", 6);  // SIGBUS without the patch
    std::memcpy(back, p, 6);
  }).join();
  EXPECT_EQ(reactor::GuestFaultsPatched(), before + 1);
  EXPECT_STREQ(back, "nestor");
  t.Clear();  // unmaps the patched region as a whole
  EXPECT_EQ(MemTable::TotalMappedBytes(), 0u);
}

// A reactor thread (a recovery point set, a poller at work) inside a
// library call that touches guest memory (librbd's rbd_aio_writev):
// under NoUnwindScope the fault is patched like a library thread's, not
// unwound out of the library; the recovery point is back afterwards.
TEST(MemTable, FaultInsideNoUnwindScopeIsPatchedNotUnwound) {
  reactor::InstallGuestFaultHandler();
  UniqueFd fd = Memfd(2 << 20);
  UniqueFd frontend(dup(fd.get()));
  MemTable t;
  ASSERT_TRUE(t.SetAll({MemRegion{0, 2 << 20, 0x7f0000000000, 0}}, Fds(std::move(fd))).ok());
  auto* p = static_cast<char*>(t.map().TranslateContiguous(4096 * 5, 4096));
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(ftruncate(frontend.get(), 0), 0);
  uint64_t before = reactor::GuestFaultsPatched();
  bool unwound = false, restored = false;
  char back[7] = {};
  std::thread([&] {
    sigjmp_buf recovery;
    reactor::tls_fault_jmp = &recovery;
    reactor::tls_active_poller = reinterpret_cast<reactor::Poller*>(&recovery);  // "a poller is running"
    if (sigsetjmp(recovery, 0) != 0) {
      unwound = true;
      reactor::UnblockGuestFaults();
    } else {
      reactor::NoUnwindScope no_unwind;
      std::memcpy(p, "nestor", 6);  // the library's copy
      std::memcpy(back, p, 6);
    }
    restored = reactor::tls_fault_jmp == &recovery;
    reactor::tls_active_poller = nullptr;
    reactor::tls_fault_jmp = nullptr;
  }).join();
  EXPECT_FALSE(unwound) << "the fault unwound out of the NoUnwindScope";
  EXPECT_TRUE(restored) << "the recovery point was not restored after the scope";
  EXPECT_EQ(reactor::GuestFaultsPatched(), before + 1);
  EXPECT_STREQ(back, "nestor");
  t.Clear();
}

TEST(MemTable, RejectsRegionLargerThanItsFile) {
  // Mapping it would SIGBUS the daemon on first access past the file end.
  MemTable t;
  MemRegion r{0, 4 << 20, 0x1000000, 0};
  Status st = t.SetAll({r}, Fds(Memfd(1 << 20)));
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("larger than its fd"), std::string::npos) << st.message();
  MemRegion off{0, 1 << 20, 0x1000000, 4096};  // offset pushes it past the end
  EXPECT_FALSE(t.SetAll({off}, Fds(Memfd(1 << 20))).ok());
  EXPECT_EQ(t.size(), 0u);
}

TEST(MemTable, RejectsZeroSizeWrapAndOverlap) {
  MemTable t;
  EXPECT_FALSE(t.SetAll({MemRegion{0, 0, 0, 0}}, Fds(Memfd(4096))).ok());
  EXPECT_FALSE(t.SetAll({MemRegion{~0ull - 10, 4096, 0, 0}}, Fds(Memfd(4096))).ok());
  EXPECT_FALSE(t.SetAll({MemRegion{0, 4096, ~0ull - 10, 0}}, Fds(Memfd(4096))).ok());
  EXPECT_FALSE(t.SetAll({MemRegion{0, 4096, 0, ~0ull - 10}}, Fds(Memfd(4096))).ok());
  std::vector<UniqueFd> two;
  two.push_back(Memfd(8192));
  two.push_back(Memfd(8192));
  EXPECT_FALSE(t.SetAll({MemRegion{0, 8192, 0x10000, 0}, MemRegion{4096, 8192, 0x40000, 0}}, std::move(two)).ok());
  std::vector<UniqueFd> uva;
  uva.push_back(Memfd(8192));
  uva.push_back(Memfd(8192));
  EXPECT_FALSE(t.SetAll({MemRegion{0, 8192, 0x10000, 0}, MemRegion{0x10000, 8192, 0x11000, 0}}, std::move(uva)).ok());
  EXPECT_FALSE(t.SetAll({MemRegion{0, 4096, 0, 0}}, {}).ok());  // fd count mismatch
}

TEST(MemTable, FailedReplaceKeepsTheOldTable) {
  MemTable t;
  ASSERT_TRUE(t.SetAll({MemRegion{0, 4096, 0x10000, 0}}, Fds(Memfd(4096))).ok());
  EXPECT_FALSE(t.SetAll({MemRegion{0, 1 << 20, 0x10000, 0}}, Fds(Memfd(4096))).ok());
  EXPECT_EQ(t.size(), 1u);
  EXPECT_NE(t.map().TranslateContiguous(0, 4096), nullptr);
}

TEST(MemTable, AddAndRemoveRegions) {
  MemTable t;
  ASSERT_TRUE(t.Add(MemRegion{0, 4096, 0x10000, 0}, Memfd(4096), 2).ok());
  ASSERT_TRUE(t.Add(MemRegion{0x100000, 4096, 0x20000, 0}, Memfd(4096), 2).ok());
  EXPECT_FALSE(t.Add(MemRegion{0x200000, 4096, 0x30000, 0}, Memfd(4096), 2).ok());  // no free slot
  EXPECT_FALSE(t.Add(MemRegion{0x800, 4096, 0x90000, 0}, Memfd(4096), 8).ok());     // overlaps
  // A buffer crossing from one region into an unmapped gap is rejected.
  iovec iov[4];
  EXPECT_EQ(t.map().Translate(4000, 200, iov, 4), virtio::GuestMemoryMap::kUnmapped);
  EXPECT_FALSE(t.Remove(MemRegion{0x300000, 4096, 0, 0}).ok());
  ASSERT_TRUE(t.Remove(MemRegion{0, 4096, 0x10000, 0}).ok());
  EXPECT_EQ(t.size(), 1u);
  EXPECT_EQ(t.map().TranslateContiguous(0, 1), nullptr);
  EXPECT_NE(t.map().TranslateContiguous(0x100000, 1), nullptr);
}

}  // namespace
}  // namespace nestor::vhost
