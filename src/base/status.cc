#include "base/status.h"

#include <cstring>

namespace nestor {

Status Status::FromErrno(std::string what) {
  int e = errno;
  if (e == 0) e = EIO;
  return Status(e, what + ": " + std::strerror(e));
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  return msg_.empty() ? std::string(std::strerror(err_)) : msg_;
}

}  // namespace nestor
