#include "volume/committed_view.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <thread>
#include <vector>

#include "base/log.h"
#include "volume/aligned_buffer.h"

namespace nestor::volume {
namespace {

// Both checkpoint header blocks (seal included), as they are now.
Result<std::string> ReadHeaders(PoolDevice* dev, const Superblock& sb) {
  AlignedBuffer block(kBlock);
  std::string out;
  for (int slot = 0; slot < 2; ++slot) {
    NESTOR_RETURN_IF_ERROR(dev->ReadAt(sb.ckpt_offset[slot], block.data(), kBlock));
    out.append(reinterpret_cast<const char*>(block.data()), kBlock);
  }
  return out;
}

// What one load reported; two loads agree when these are equal.
struct Outcome {
  int err = 0;
  std::string message;
  std::vector<std::string> problems;
  std::vector<std::string> notices;
  bool clean() const { return err == 0 && problems.empty() && notices.empty(); }
  bool operator==(const Outcome&) const = default;
};

}  // namespace

Result<CommittedView> LoadCommittedView(const std::string& path, bool check, int max_loads) {
  // The headers are read through a device of their own: the pool owns the
  // one it loads from.
  auto probe = OpenFilePoolDeviceUnlocked(path);
  if (!probe.ok()) return probe.status();
  std::string damage;
  auto sb = Pool::ReadSuperblock(probe->get(), &damage);  // written only while nobody serves the pool
  if (!sb.ok()) return sb.status();
  PoolOptions opts;
  opts.read_only = true;
  opts.check_mode = check;  // and no journal_dir: the journal is the holder's
  opts.live = true;
  std::optional<Outcome> previous;
  std::string previous_headers;
  for (int load = 1; load <= max_loads; ++load) {
    if (load > 1) std::this_thread::sleep_for(std::chrono::milliseconds(std::min(10 * (load - 1), 50)));
    auto before = ReadHeaders(probe->get(), *sb);
    if (!before.ok()) return before.status();
    auto dev = OpenFilePoolDeviceUnlocked(path);
    if (!dev.ok()) return dev.status();
    auto pool = Pool::Open(std::move(dev.value()), opts);
    Outcome now;
    CheckReport report;
    if (!pool.ok()) {
      now.err = pool.status().err();
      now.message = pool.status().message();
    } else if (check) {
      report = (*pool)->Check();
      now.problems = report.problems;
      now.notices = report.notices;
    }
    auto after = ReadHeaders(probe->get(), *sb);
    if (!after.ok()) return after.status();
    if (*after != *before) {  // a checkpoint was written meanwhile: start over
      NLOG_DEBUG("{}: load {} overlapped a checkpoint; loading again", path, load);
      previous.reset();
      continue;
    }
    if (now.clean() || (previous && previous_headers == *after && *previous == now)) {
      if (!pool.ok()) return pool.status();
      return CommittedView{std::move(pool.value()), std::move(report), load};
    }
    NLOG_DEBUG("{}: load {} reported {}; loading again to tell damage from a race with the writer", path, load,
               now.err != 0 ? now.message : "problems or notices");
    previous = std::move(now);
    previous_headers = std::move(after.value());
  }
  return Status::Error(EAGAIN, path + ": its metadata changed during each of " + std::to_string(max_loads) +
                                   " reads of its last commit; try again");
}

}  // namespace nestor::volume
