#include "vhost/mem_table.h"

#include <sys/mman.h>
#include <sys/stat.h>

#include <atomic>
#include <string>

#include "base/log.h"
#include "reactor/guest_fault.h"

namespace nestor::vhost {
namespace {

bool Overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen) { return a < b + blen && b < a + alen; }

std::atomic<uint64_t> g_mapped_bytes{0};

void Unmap(void* base, size_t len) {
  reactor::UnregisterGuestRange(base);
  if (munmap(base, len) != 0) {
    NLOG_ERROR("munmap of a frontend region ({} bytes) failed: {}", len, errno);
    return;
  }
  g_mapped_bytes.fetch_sub(len, std::memory_order_relaxed);
}

}  // namespace

uint64_t MemTable::TotalMappedBytes() { return g_mapped_bytes.load(std::memory_order_relaxed); }

MemTable::~MemTable() { Clear(); }

void MemTable::Clear() {
  for (Mapped& m : mapped_) Unmap(m.base, m.map_len);
  mapped_.clear();
  Rebuild();
}

Status MemTable::Validate(const MemRegion& r) {
  if (r.memory_size == 0) return Status::Invalid("memory region of size 0");
  if (r.guest_phys_addr + r.memory_size < r.guest_phys_addr || r.userspace_addr + r.memory_size < r.userspace_addr ||
      r.mmap_offset + r.memory_size < r.mmap_offset) {
    return Status::Invalid("memory region wraps around the address space");
  }
  if (r.memory_size + r.mmap_offset > (1ull << 47)) return Status::Invalid("memory region too large");
  return Status::Ok();
}

Status MemTable::CheckOverlap(const MemRegion& r, const std::vector<Mapped>& others) const {
  for (const Mapped& m : others) {
    if (Overlaps(r.guest_phys_addr, r.memory_size, m.region.guest_phys_addr, m.region.memory_size)) {
      return Status::Invalid("memory regions overlap in guest physical space");
    }
    if (Overlaps(r.userspace_addr, r.memory_size, m.region.userspace_addr, m.region.memory_size)) {
      return Status::Invalid("memory regions overlap in frontend virtual space");
    }
  }
  return Status::Ok();
}

Result<MemTable::Mapped> MemTable::MapOne(const MemRegion& r, int fd) {
  NESTOR_RETURN_IF_ERROR(Validate(r));
  struct stat st {};
  if (fstat(fd, &st) != 0) return Status::FromErrno("fstat memory fd");
  uint64_t need = r.mmap_offset + r.memory_size;
  // A region larger than its file would SIGBUS the whole daemon on access.
  if (S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) < need) {
    return Status::Invalid("memory region (" + std::to_string(need) + " bytes) larger than its fd (" +
                           std::to_string(st.st_size) + " bytes)");
  }
  if (!S_ISREG(st.st_mode)) return Status::Invalid("memory fd is not a regular/memfd file");
  // The kernel rounds hugetlbfs mappings up to the huge page (st_blksize);
  // map and unmap that length, or munmap would fail and leak the mapping.
  uint64_t page = st.st_blksize > 0 ? static_cast<uint64_t>(st.st_blksize) : 4096;
  uint64_t len = (need + page - 1) / page * page;
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
  if (p == MAP_FAILED) return Status::FromErrno("mmap memory region");
  g_mapped_bytes.fetch_add(len, std::memory_order_relaxed);
  // Faults on it from threads that cannot unwind (librbd's) get a zero page.
  if (!reactor::RegisterGuestRange(p, len, page)) {
    NLOG_WARN("more than {} guest memory regions mapped: a fault on this one outside the reactors ends nestord",
              reactor::kMaxGuestRanges);
  }
  return Mapped{r, p, len};
}

Status MemTable::SetAll(const std::vector<MemRegion>& regions, std::vector<UniqueFd> fds) {
  if (regions.size() != fds.size()) return Status::Invalid("memory region count != fd count");
  if (regions.size() > kMaxMemRegions) return Status::Invalid("too many memory regions");
  std::vector<Mapped> fresh;
  for (size_t i = 0; i < regions.size(); ++i) {
    Status st = CheckOverlap(regions[i], fresh);
    auto m = st.ok() ? MapOne(regions[i], fds[i].get()) : Result<Mapped>(st);
    if (!m.ok()) {
      for (Mapped& f : fresh) Unmap(f.base, f.map_len);
      return m.status();
    }
    fresh.push_back(m.value());
  }
  Clear();
  mapped_ = std::move(fresh);
  Rebuild();
  return Status::Ok();
}

Status MemTable::Add(const MemRegion& region, UniqueFd fd, uint32_t max_regions) {
  if (mapped_.size() >= max_regions) return Status::Invalid("no free memory slot");
  NESTOR_RETURN_IF_ERROR(CheckOverlap(region, mapped_));
  auto m = MapOne(region, fd.get());
  if (!m.ok()) return m.status();
  mapped_.push_back(m.value());
  Rebuild();
  return Status::Ok();
}

Status MemTable::Remove(const MemRegion& region) {
  for (auto it = mapped_.begin(); it != mapped_.end(); ++it) {
    if (it->region.guest_phys_addr == region.guest_phys_addr && it->region.memory_size == region.memory_size) {
      Unmap(it->base, it->map_len);
      mapped_.erase(it);
      Rebuild();
      return Status::Ok();
    }
  }
  return Status::Invalid("REM_MEM_REG of a region that is not mapped");
}

void MemTable::Rebuild() {
  std::vector<virtio::GuestRegion> regions;
  for (const Mapped& m : mapped_) {
    regions.push_back({m.region.guest_phys_addr, m.region.memory_size, m.region.userspace_addr,
                       static_cast<uint8_t*>(m.base) + m.region.mmap_offset});
  }
  map_ = virtio::GuestMemoryMap(std::move(regions));
}

}  // namespace nestor::vhost
