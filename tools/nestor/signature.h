// Foreign on-disk signatures (file systems, partition tables, RAID and LVM
// members, swap, ...) on a device that `nestor pool create` is about to
// format, found and erased with libblkid. A nestor pool itself is not a
// signature libblkid knows; Pool::Format recognises that one.
//
// Thread: any (every call has its own probe). Errors: Status with errno
// when the device cannot be opened or probed; finding nothing is not an
// error.
#pragma once

#include <string>

#include "base/status.h"

namespace nestor::tool {

// A description of the signature on `path` ("ext4 (filesystem)", "gpt
// partition table", ...), or "" when libblkid finds none.
Result<std::string> FindSignature(const std::string& path);

// Erases the magic bytes of every signature libblkid finds (as wipefs
// does) and syncs the device. Returns how many it erased.
Result<int> WipeSignatures(const std::string& path);

}  // namespace nestor::tool
