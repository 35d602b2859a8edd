// MemTable: the frontend's memory regions mapped into nestord, built from
// SET_MEM_TABLE or ADD/REM_MEM_REG, validated before anything is mapped.
//
// Thread: owned by one session's control thread. Reactors read only the
// GuestMemoryMap snapshot, which the session keeps alive (and unchanged)
// while any of its queues is started: the session stops queues before
// changing the table. Errors: a Status naming the bad region; on error the
// table is left unchanged and every received fd is closed.
#pragma once

#include <memory>
#include <vector>

#include "base/fd.h"
#include "base/status.h"
#include "vhost/wire.h"
#include "virtio/guest_memory.h"

namespace nestor::vhost {

class MemTable {
 public:
  MemTable() = default;
  ~MemTable();
  MemTable(const MemTable&) = delete;
  MemTable& operator=(const MemTable&) = delete;

  // Replaces every region (SET_MEM_TABLE). fds[i] belongs to regions[i].
  Status SetAll(const std::vector<MemRegion>& regions, std::vector<UniqueFd> fds);
  // ADD_MEM_REG / REM_MEM_REG.
  Status Add(const MemRegion& region, UniqueFd fd, uint32_t max_regions);
  Status Remove(const MemRegion& region);
  void Clear();

  const virtio::GuestMemoryMap& map() const { return map_; }
  // Bytes of frontend memory mapped by all sessions of this process: shows
  // that a departed frontend's memory was released.
  static uint64_t TotalMappedBytes();
  size_t size() const { return mapped_.size(); }

 private:
  struct Mapped {
    MemRegion region;
    void* base;      // mmap result
    size_t map_len;  // memory_size + mmap_offset
  };
  static Result<Mapped> MapOne(const MemRegion& r, int fd);
  static Status Validate(const MemRegion& r);
  Status CheckOverlap(const MemRegion& r, const std::vector<Mapped>& others) const;
  void Rebuild();

  std::vector<Mapped> mapped_;
  virtio::GuestMemoryMap map_;
};

}  // namespace nestor::vhost
