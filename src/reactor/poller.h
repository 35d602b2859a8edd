// Poller: the contract between a reactor and the work sources it owns
// (virtqueues). Modelled on seastar's pollers and SPDK's poller contract.
//
// Thread: every method runs on the owning reactor's thread only.
#pragma once

#include "io/backend.h"

namespace nestor::reactor {

class Poller {
 public:
  virtual ~Poller() = default;
  // Takes new work (e.g. pops and submits requests). Returns how much.
  virtual int Poll() = 0;
  // End of an iteration: publish completions and notify, at most once.
  virtual void Flush() = 0;
  // Before the reactor sleeps: re-enable notifications (kicks), fence and
  // re-check. Returns true if work raced in (the reactor keeps polling).
  virtual bool PrepareToSleep() = 0;
  // After waking (or when polling resumes): suppress notifications again.
  virtual void ResumePolling() = 0;
  // The eventfd that wakes the reactor for this poller, or -1 when the
  // poller can only be polled (the reactor then never sleeps).
  virtual int wake_fd() const = 0;
  // Touching this poller's guest memory faulted (see guest_fault.h): stop
  // using that memory for good and get the frontend disconnected.
  // `completing` is the backend request whose completion callback was cut
  // short (nullptr if the fault came from the poller's own work).
  virtual void OnGuestFault(io::IoRequest* completing) = 0;
  // The reactor woke up because wake_fd() fired (a kick).
  virtual void OnWake() {}
};

}  // namespace nestor::reactor
