// C API (include/nestor/nestor.h) over the C++ client: opaque handles are
// the C++ objects; errors become -errno plus a thread-local message.
#include <cstring>
#include <string>

#include "nestor/client.hpp"
#include "nestor/nestor.h"

using nestor::Status;
using nestor::client::Completion;
using nestor::client::Device;
using nestor::client::Op;
using nestor::client::Queue;
using nestor::client::Request;

struct nestor_dev {
  std::unique_ptr<Device> dev;
};

static_assert(sizeof(nestor_completion) >= sizeof(Completion));

namespace {

thread_local std::string g_last_error;

Queue* Q(nestor_queue* q) { return reinterpret_cast<Queue*>(q); }

int Fail(const Status& st) {
  g_last_error = st.ToString();
  return st.ok() ? 0 : -st.err();
}

}  // namespace

extern "C" {

void nestor_options_init(struct nestor_options* o) {
  std::memset(o, 0, sizeof(*o));
  nestor::client::Options d;
  o->num_queues = d.num_queues;
  o->queue_size = d.queue_size;
  o->timeout_ms = d.timeout_ms;
  o->buffer_bytes = d.buffer_bytes;
}

int nestor_connect(const struct nestor_options* o, nestor_dev** out) {
  if (o == nullptr || out == nullptr || o->socket_path == nullptr) return Fail(Status::Invalid("missing options"));
  nestor::client::Options opts;
  opts.socket_path = o->socket_path;
  if (o->num_queues) opts.num_queues = o->num_queues;
  if (o->queue_size) opts.queue_size = o->queue_size;
  if (o->timeout_ms > 0) opts.timeout_ms = o->timeout_ms;
  if (o->buffer_bytes) opts.buffer_bytes = o->buffer_bytes;
  opts.polled = !(o->flags & NESTOR_OPT_BLOCKING);
  opts.event_idx = !(o->flags & NESTOR_OPT_NO_EVENT_IDX);
  opts.call_fd_when_polled = !(o->flags & NESTOR_OPT_NO_CALL_FD);
  opts.indirect = !(o->flags & NESTOR_OPT_NO_INDIRECT);
  auto dev = Device::Connect(opts);
  if (!dev.ok()) return Fail(dev.status());
  *out = new nestor_dev{std::move(*dev)};
  g_last_error.clear();
  return 0;
}

void nestor_close(nestor_dev* d) { delete d; }

const char* nestor_last_error(void) { return g_last_error.c_str(); }

int nestor_get_info(nestor_dev* d, struct nestor_info* info) {
  if (!d || !info) return -EINVAL;
  const auto& i = d->dev->info();
  std::memset(info, 0, sizeof(*info));
  info->capacity = i.capacity_bytes;
  info->block_size = i.block_size;
  info->num_queues = d->dev->num_queues();
  info->max_queues = i.max_queues;
  info->queue_size = d->dev->num_queues() ? d->dev->queue(0).size() : 0;
  info->seg_max = i.seg_max;
  info->size_max = i.size_max;
  info->max_discard_sectors = i.max_discard_sectors;
  info->max_write_zeroes_sectors = i.max_write_zeroes_sectors;
  info->read_only = i.read_only;
  info->flush = i.flush;
  info->discard = i.discard;
  info->write_zeroes = i.write_zeroes;
  info->features = i.features;
  info->protocol_features = i.protocol_features;
  return 0;
}

uint64_t nestor_capacity(nestor_dev* d) { return d ? d->dev->info().capacity_bytes : 0; }
uint32_t nestor_num_queues(nestor_dev* d) { return d ? d->dev->num_queues() : 0; }

nestor_queue* nestor_get_queue(nestor_dev* d, uint32_t index) {
  if (!d || index >= d->dev->num_queues()) return nullptr;
  return reinterpret_cast<nestor_queue*>(&d->dev->queue(index));
}

int nestor_connected(nestor_dev* d) { return d && d->dev->connected() ? 0 : -ENOTCONN; }

void* nestor_buf_alloc(nestor_dev* d, size_t len, size_t align) {
  return d ? d->dev->AllocBuffer(len, align) : nullptr;
}
void nestor_buf_free(nestor_dev* d, void* buf) {
  if (d) d->dev->FreeBuffer(buf);
}

int nestor_queue_submit(nestor_queue* q, const struct nestor_req* reqs, int n) {
  if (!q || !reqs || n <= 0) return -EINVAL;
  constexpr int kBatch = 64;
  Request batch[kBatch];
  int done = 0;
  while (done < n) {
    int k = std::min(kBatch, n - done);
    for (int i = 0; i < k; ++i) {
      const nestor_req& c = reqs[done + i];
      if (c.op > NESTOR_OP_GET_ID) return done > 0 ? done : -EINVAL;
      batch[i] = Request{static_cast<Op>(c.op), c.flags, c.offset, c.len, c.buf, c.iov, c.iovcnt, c.user_data};
    }
    int r = Q(q)->Submit(std::span<const Request>(batch, k));
    if (r < 0) return done > 0 ? done : r;
    done += r;
    if (r < k) break;
  }
  return done;
}

static int CopyOut(const Completion* in, int n, struct nestor_completion* out) {
  for (int i = n - 1; i >= 0; --i) out[i] = nestor_completion{in[i].user_data, in[i].result, 0};
  return n;
}

int nestor_queue_poll(nestor_queue* q, struct nestor_completion* out, int max) {
  if (!q || !out || max <= 0) return -EINVAL;
  // nestor_completion is at least as large as Completion: reap in place and
  // widen from the back.
  auto* tmp = reinterpret_cast<Completion*>(out);
  int n = Q(q)->Poll(tmp, max);
  return n <= 0 ? n : CopyOut(tmp, n, out);
}

int nestor_queue_wait(nestor_queue* q, struct nestor_completion* out, int min, int max, int timeout_ms) {
  if (!q || !out || max <= 0 || min < 0 || min > max) return -EINVAL;
  auto* tmp = reinterpret_cast<Completion*>(out);
  int n = Q(q)->Wait(tmp, min, max, timeout_ms);
  return n <= 0 ? n : CopyOut(tmp, n, out);
}

uint32_t nestor_queue_inflight(nestor_queue* q) { return q ? Q(q)->inflight() : 0; }

int nestor_read(nestor_queue* q, uint64_t off, void* buf, size_t len) {
  return q ? Fail(Q(q)->Read(off, buf, len)) : -EINVAL;
}
int nestor_write(nestor_queue* q, uint64_t off, const void* buf, size_t len) {
  return q ? Fail(Q(q)->Write(off, buf, len)) : -EINVAL;
}
int nestor_flush(nestor_queue* q) { return q ? Fail(Q(q)->Flush()) : -EINVAL; }
int nestor_discard(nestor_queue* q, uint64_t off, uint64_t len) { return q ? Fail(Q(q)->Discard(off, len)) : -EINVAL; }
int nestor_write_zeroes(nestor_queue* q, uint64_t off, uint64_t len, int unmap) {
  return q ? Fail(Q(q)->WriteZeroes(off, len, unmap != 0)) : -EINVAL;
}

}  // extern "C"
