#include "virtio/qos.h"

#include <algorithm>

namespace nestor::virtio {

uint64_t VolumeQos::CostFp(uint64_t per_second) {
  if (per_second == 0) return 0;
  unsigned __int128 fp = (static_cast<unsigned __int128>(1'000'000'000) << 32) / per_second;
  return fp == 0 ? 1 : static_cast<uint64_t>(std::min<unsigned __int128>(fp, UINT64_MAX));
}

uint64_t VolumeQos::CostNs(uint64_t cost_fp, uint64_t units) {
  unsigned __int128 ns = (static_cast<unsigned __int128>(cost_fp) * units + (uint64_t{1} << 31)) >> 32;
  constexpr uint64_t kMax = uint64_t{1} << 62;  // far future, no overflow when added to a TAT
  return ns > kMax ? kMax : static_cast<uint64_t>(ns);
}

bool VolumeQos::Charge(Limit& l, uint64_t cost, uint64_t now_ns) {
  uint64_t tat = l.tat.load(std::memory_order_relaxed);
  for (;;) {
    if (tat > now_ns + kBurstNs) return false;
    uint64_t next = std::max(tat, now_ns) + cost;
    if (l.tat.compare_exchange_weak(tat, next, std::memory_order_relaxed)) return true;
  }
}

bool VolumeQos::TryAdmit(bool write, uint64_t bytes, uint64_t now_ns) {
  Limit& ops = limits_[write ? kWriteIops : kReadIops];
  Limit& bw = limits_[write ? kWriteBps : kReadBps];
  uint64_t ops_fp = ops.cost_fp.load(std::memory_order_relaxed);
  uint64_t bw_fp = bw.cost_fp.load(std::memory_order_relaxed);
  // Check both before charging either, so a refusal by the second limit
  // rarely needs the undo below.
  if (ops_fp && ops.tat.load(std::memory_order_relaxed) > now_ns + kBurstNs) return false;
  if (bw_fp && bytes && bw.tat.load(std::memory_order_relaxed) > now_ns + kBurstNs) return false;
  uint64_t ops_cost = ops_fp ? CostNs(ops_fp, 1) : 0;
  if (ops_fp && !Charge(ops, ops_cost, now_ns)) return false;
  if (bw_fp && bytes && !Charge(bw, CostNs(bw_fp, bytes), now_ns)) {
    // Lost a race on the bandwidth bucket: give the op back. (If the op
    // bucket was empty, this leaves its TAT at now instead of earlier: the
    // same thing for GCRA.)
    if (ops_fp) {
      uint64_t tat = ops.tat.load(std::memory_order_relaxed);
      // Never below 0: Set may have reset the TAT meanwhile.
      while (!ops.tat.compare_exchange_weak(tat, tat > ops_cost ? tat - ops_cost : 0, std::memory_order_relaxed)) {
      }
    }
    return false;
  }
  return true;
}

void VolumeQos::Set(const QosLimits& l) {
  MutexLock lock(&mu_);
  const uint64_t rates[kLimits] = {l.read_iops, l.write_iops, l.read_bps, l.write_bps};
  const uint64_t old[kLimits] = {current_.read_iops, current_.write_iops, current_.read_bps, current_.write_bps};
  for (int i = 0; i < kLimits; ++i) {
    if (rates[i] == old[i]) continue;
    limits_[i].cost_fp.store(CostFp(rates[i]), std::memory_order_relaxed);
    limits_[i].tat.store(0, std::memory_order_relaxed);
  }
  current_ = l;
  active_.store(!l.unlimited(), std::memory_order_release);
}

QosLimits VolumeQos::Get() const {
  MutexLock lock(&mu_);
  return current_;
}

}  // namespace nestor::virtio
