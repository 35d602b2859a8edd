#include "nestor/signature.h"

#include <blkid/blkid.h>
#include <fcntl.h>
#include <unistd.h>

#include "base/fd.h"

namespace nestor::tool {
namespace {

// Owns a blkid_probe.
struct Probe {
  blkid_probe p = nullptr;
  ~Probe() {
    if (p != nullptr) blkid_free_probe(p);
  }
};

std::string Value(blkid_probe pr, const char* name) {
  const char* data = nullptr;
  if (blkid_probe_lookup_value(pr, name, &data, nullptr) != 0 || data == nullptr) return "";
  return data;
}

}  // namespace

Result<std::string> FindSignature(const std::string& path) {
  Probe probe;
  errno = 0;
  probe.p = blkid_new_probe_from_filename(path.c_str());
  if (probe.p == nullptr) return Status::FromErrno("probing " + path + " for signatures");
  blkid_probe_enable_superblocks(probe.p, 1);
  blkid_probe_set_superblocks_flags(probe.p, BLKID_SUBLKS_TYPE | BLKID_SUBLKS_USAGE);
  blkid_probe_enable_partitions(probe.p, 1);
  int rc = blkid_do_safeprobe(probe.p);
  if (rc == 1) return std::string();
  if (rc == -2) return std::string("more than one signature (ambiguous probe result)");
  if (rc != 0) return Status::Error(EIO, "probing " + path + " for signatures failed");
  std::string type = Value(probe.p, "TYPE");
  if (!type.empty()) {
    std::string usage = Value(probe.p, "USAGE");
    return usage.empty() ? type : type + " (" + usage + ")";
  }
  std::string pt = Value(probe.p, "PTTYPE");
  if (!pt.empty()) return pt + " partition table";
  return std::string("an unnamed signature");
}

Result<int> WipeSignatures(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("open " + path);
  Probe probe;
  probe.p = blkid_new_probe();
  if (probe.p == nullptr) return Status::Error(ENOMEM, "blkid_new_probe");
  if (blkid_probe_set_device(probe.p, fd.get(), 0, 0) != 0) {
    return Status::Error(EIO, "probing " + path + " for signatures failed");
  }
  blkid_probe_enable_superblocks(probe.p, 1);
  blkid_probe_set_superblocks_flags(probe.p, BLKID_SUBLKS_MAGIC);
  blkid_probe_enable_partitions(probe.p, 1);
  blkid_probe_set_partitions_flags(probe.p, BLKID_PARTS_MAGIC);
  int wiped = 0;
  // blkid_do_wipe steps the probe back, so the loop sees every signature
  // once; the bound only guards against a wipe that does not take.
  while (wiped < 64 && blkid_do_probe(probe.p) == 0) {
    if (blkid_do_wipe(probe.p, 0) != 0) return Status::FromErrno("erasing a signature on " + path);
    ++wiped;
  }
  if (fsync(fd.get()) != 0) return Status::FromErrno("fsync " + path);
  return wiped;
}

}  // namespace nestor::tool
