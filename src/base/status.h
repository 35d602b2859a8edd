// Status and Result<T>: the error convention of every nestor library.
//
// Thread: any. A Status is an errno value (0 = ok) plus a short message.
// Functions that can fail return [[nodiscard]] Status or Result<T>; reactor
// threads never throw. The errno mapping is 1:1 so that each edge (virtio
// status byte, vhost-user reply, CLI exit code) translates mechanically.
#pragma once

#include <cerrno>
#include <string>
#include <utility>
#include <variant>

namespace nestor {

class [[nodiscard]] Status {
 public:
  Status() = default;
  static Status Ok() { return Status(); }
  static Status Error(int err, std::string msg) { return Status(err, std::move(msg)); }
  static Status Invalid(std::string msg) { return Status(EINVAL, std::move(msg)); }
  static Status IoError(std::string msg) { return Status(EIO, std::move(msg)); }
  static Status FromErrno(std::string what);  // uses the current errno

  bool ok() const { return err_ == 0; }
  int err() const { return err_; }
  const std::string& message() const { return msg_; }
  std::string ToString() const;

 private:
  Status(int err, std::string msg) : err_(err), msg_(std::move(msg)) {}
  int err_ = 0;
  std::string msg_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}         // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}  // NOLINT: must be an error
  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() { return std::get<T>(v_); }
  const T& value() const { return std::get<T>(v_); }
  T& operator*() { return value(); }
  T* operator->() { return &value(); }

 private:
  std::variant<T, Status> v_;
};

#define NESTOR_RETURN_IF_ERROR(expr) \
  do {                               \
    ::nestor::Status _st = (expr);   \
    if (!_st.ok()) return _st;       \
  } while (0)

}  // namespace nestor
