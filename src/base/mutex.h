// Mutex, MutexLock, CondVar: std::mutex and std::condition_variable with
// clang's thread-safety annotations (leveldb's port::Mutex is the model).
// Members a mutex guards say so with ABSL_GUARDED_BY(mu_); functions that
// expect it held with ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_). With
// -DNESTOR_THREAD_SAFETY=ON (clang; `make test-tsan`) the compiler checks
// every access; on gcc the macros are empty.
//
// Why not absl::Mutex: Debian's prebuilt libabsl is not built with
// -fsanitize=thread, so TSan would not see its synchronization and would
// report false races on everything it guards. A std::mutex is intercepted
// by TSan (pthread_mutex_*), so this wrapper keeps the TSan build exact.
//
// Thread: any. Errors: none (a failing pthread call aborts, as in std).
#pragma once

#include <absl/base/thread_annotations.h>

#include <chrono>
#include <condition_variable>
#include <mutex>

namespace nestor {

class CondVar;

class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
  bool TryLock() ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true) { return mu_.try_lock(); }
  // Tells the analysis the lock is held where it cannot see it (no check
  // at run time: std::mutex does not know its owner).
  void AssertHeld() const ABSL_ASSERT_EXCLUSIVE_LOCK() {}

 private:
  friend class CondVar;
  std::mutex mu_;
};

// Holds `mu` for its scope.
class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

// A condition variable over a Mutex. Waits release the mutex while they
// sleep and hold it again when they return; they may wake spuriously, so
// callers loop on their condition (a predicate lambda would be analyzed
// without the lock, hence none here).
class CondVar {
 public:
  CondVar() = default;
  CondVar(const CondVar&) = delete;
  CondVar& operator=(const CondVar&) = delete;

  void Wait(Mutex* mu) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    cv_.wait(lock);
    lock.release();  // still held: the caller's
  }
  // False if `deadline` passed.
  template <typename Clock, typename Duration>
  bool WaitUntil(Mutex* mu, const std::chrono::time_point<Clock, Duration>& deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    bool woken = cv_.wait_until(lock, deadline) == std::cv_status::no_timeout;
    lock.release();
    return woken;
  }
  void Signal() { cv_.notify_one(); }
  void SignalAll() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

}  // namespace nestor
