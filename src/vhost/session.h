// Session: one connected vhost-user frontend (a QEMU VM, libnestor, ...)
// of a BlkExport. Implements the backend side of the protocol: feature
// negotiation, memory table, vring setup, start/stop, call-fd swaps,
// config space, with every message validated; online resize (the
// capacity this session offers, raised on a grow and announced on the
// backend channel, see NotifyCapacity).
//
// Thread: Run() is the session's own control thread; Shutdown(),
// NotifyCapacity() and seen_capacity_sectors() may be called from any
// thread. The queues it starts run on reactors; the
// session reaches them only through Reactor::Post/Call and waits for their
// acknowledgement before it changes anything they use (memory table, ring
// addresses) or replies to GET_VRING_BASE. Errors: a bad message gets a
// failure reply when the frontend asked for one (REPLY_ACK), otherwise it
// ends this session with a logged reason; nothing else is affected.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/status.h"
#include "vhost/backend_channel.h"
#include "vhost/blk_export.h"
#include "vhost/mem_table.h"
#include "vhost/message.h"
#include "virtio/blk_queue.h"

namespace nestor::vhost {

class Session {
 public:
  // Queues whose stop timed out and were handed to their reactor
  // (process-wide): ever, and still waiting for their I/O.
  static uint64_t StopTimeouts();
  static uint64_t OrphanedQueues();

  Session(UniqueFd sock, BlkExport* exp);
  ~Session();

  void Run();
  void Shutdown();
  // False once the frontend hung up or the session shut its socket down.
  // Any thread, while the session exists (the socket fd stays open until
  // the export reaps the session).
  bool PeerConnected() const;

  // The volume may have grown: wakes the session thread, which raises the
  // capacity its queues accept to the backend's size and then sends
  // CONFIG_CHANGE_MSG on the backend channel (if the frontend gave one;
  // else it logs once that the guest sees the new size when it reconnects).
  // Never blocks (an eventfd write).
  void NotifyCapacity();
  // The largest capacity (512-byte sectors) this session has offered its
  // frontend: the volume's size when it connected (a frontend reconnecting
  // after a nestord restart asks nothing and keeps what it was told), raised
  // by every GET_CONFIG answer and every grow it was notified of. Its
  // queues accept requests up to it; a shrink below it is refused.
  uint64_t seen_capacity_sectors() const { return seen_sectors_.load(std::memory_order_acquire); }

 private:
  // An mmap'ed INFLIGHT_SHMFD region, unmapped when the last owner lets go.
  struct Mapping {
    void* base = nullptr;
    uint64_t len = 0;
    ~Mapping();
  };

  struct Vring {
    uint32_t num = 0;
    bool addr_set = false;
    VringAddr addr{};
    uint16_t base = 0;      // next avail index to use when starting
    bool kick_set = false;  // SET_VRING_KICK seen since the last stop
    UniqueFd kick;          // invalid with kick_set: no fd, poll only
    UniqueFd call;
    bool enabled = false;
    std::unique_ptr<virtio::BlkQueue> queue;  // non-null while started
    reactor::Reactor* reactor = nullptr;
    // What the started queue points into: handed to the reactor with the
    // queue if its stop times out (see Orphan).
    std::shared_ptr<MemTable> mem;
    std::shared_ptr<Mapping> inflight;
  };

  // Returns the reply payload size written into reply (0: no reply), or
  // an error.
  Status Dispatch(Message& msg, bool* replied);
  Status HandleMemTable(Message& msg);
  Status HandleAddMemReg(Message& msg);
  Status HandleRemMemReg(Message& msg);
  Status HandleVringNum(Message& msg);
  Status HandleVringAddr(Message& msg);
  Status HandleVringBase(Message& msg);
  Status HandleGetVringBase(Message& msg);
  Status HandleVringFd(Message& msg);
  Status HandleVringEnable(Message& msg);
  Status HandleGetConfig(Message& msg);
  Status HandleGetInflightFd(Message& msg);
  Status HandleSetInflightFd(Message& msg);
  void UnmapInflight();
  Status HandleSetFeatures(Message& msg);
  Status HandleSetProtocolFeatures(Message& msg);
  Status HandleSetBackendReqFd(Message& msg);
  // Waits until the main socket is readable, meanwhile serving capacity
  // wake-ups and the backend channel's replies and ack deadline.
  Status WaitForMessage();
  Status OnCapacityWake();
  // Makes every started queue accept requests up to `sectors` (each on its
  // reactor, bounded like a call-fd swap) and records it as offered.
  Status RaiseCapacity(uint64_t sectors);

  Result<Vring*> VringAt(uint32_t index);
  Status TryStart(uint32_t index);
  // Stops a started queue, waiting for its in-flight I/O at most
  // export_->config().stop_timeout; then orphans it and fails (the session
  // must end: it may not change or reuse what the queue still touches).
  [[nodiscard]] Status Stop(uint32_t index);
  [[nodiscard]] Status StopAll(std::vector<uint32_t>* stopped);
  // Hands v's queue (started or starting) to its reactor with a stop
  // queued, for when a wait on that reactor timed out.
  void Orphan(Vring& v);
  // Moves v's queue, fds and memory into one parcel for its reactor to
  // release; the session gets fresh (empty) memory and must end.
  std::shared_ptr<void> Orphaned(Vring& v);
  Status RestartAll(const std::vector<uint32_t>& indices);
  Result<virtio::VringSetup> TranslateRing(const Vring& v) const;
  bool Negotiated(int protocol_feature) const;
  static Status CheckEventFd(int fd);

  UniqueFd sock_;
  BlkExport* export_;
  std::string name_;
  std::vector<Vring> vrings_;
  // Replaced (never changed) once a queue that uses it was orphaned.
  std::shared_ptr<MemTable> mem_ = std::make_shared<MemTable>();
  // INFLIGHT_SHMFD region (shared with the frontend, which keeps it across
  // our restarts). Only reactors touch its contents.
  std::shared_ptr<Mapping> inflight_;
  void* inflight_base_ = nullptr;
  uint64_t inflight_stride_ = 0;
  uint16_t inflight_queues_ = 0;
  uint16_t inflight_queue_size_ = 0;
  uint64_t features_ = 0;
  uint64_t protocol_features_ = 0;
  bool features_set_ = false;
  std::atomic<bool> shutdown_{false};
  bool orphaned_ = false;  // a queue did not stop in time: end the session
  // Online resize: capacity_sectors_ is what the queues accept and the
  // frontend was offered (session thread); seen_sectors_ mirrors it for
  // other threads. wake_ (an eventfd) carries NotifyCapacity.
  uint64_t capacity_sectors_ = 0;
  std::atomic<uint64_t> seen_sectors_{0};
  UniqueFd wake_;
  BackendChannel backend_;
  bool told_no_channel_ = false;  // "reconnect to see it" logged once
  Message msg_;
};

}  // namespace nestor::vhost
