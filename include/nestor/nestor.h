/*
 * libnestor C API: a user-space vhost-user-blk frontend (driver).
 *
 * Purpose: connect to a vhost-user-blk backend (nestord,
 * qemu-storage-daemon, ...) over its unix socket, share one memory region
 * with it (rings and I/O buffers) and drive its queues without a VM. Made
 * for C programs such as a fio external ioengine.
 *
 * Threads: nestor_connect/nestor_close belong to one thread; close only
 * when no queue is in use. Each nestor_queue is driven by one thread at a
 * time; different queues may be used from different threads at once.
 * nestor_buf_alloc/nestor_buf_free and the info getters are thread-safe.
 *
 * Errors: functions returning int return 0 (or a count >= 0) on success
 * and -errno on failure. Completion results are 0, -EIO (device I/O
 * error), -ENOTSUP (device does not support the request), -EPROTO (backend
 * broke the protocol), -ENOTCONN (backend disconnected) or -ETIMEDOUT.
 * nestor_last_error() describes the calling thread's last setup failure.
 *
 * Buffers for asynchronous requests come from nestor_buf_alloc (they must
 * lie in the shared region, else -EFAULT). The synchronous helpers accept
 * any memory. Offsets and lengths are bytes, multiples of 512.
 */
#ifndef NESTOR_NESTOR_H_
#define NESTOR_NESTOR_H_

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nestor_dev nestor_dev;
typedef struct nestor_queue nestor_queue;

/* nestor_options.flags */
#define NESTOR_OPT_BLOCKING 0x1u     /* sleep on the call eventfd instead of busy-polling */
#define NESTOR_OPT_NO_EVENT_IDX 0x2u /* do not negotiate VIRTIO_RING_F_EVENT_IDX */
#define NESTOR_OPT_NO_CALL_FD 0x4u   /* polled queues get no call eventfd (SET_VRING_CALL no-fd bit) */
#define NESTOR_OPT_NO_INDIRECT 0x8u  /* do not negotiate VIRTIO_RING_F_INDIRECT_DESC */

struct nestor_options {
  const char* socket_path; /* required */
  uint32_t num_queues;     /* default 1 */
  uint32_t queue_size;     /* power of two, default 128 */
  uint32_t flags;          /* NESTOR_OPT_* */
  int32_t timeout_ms;      /* control messages, sync helpers; default 10000 */
  uint64_t buffer_bytes;   /* I/O buffer arena; default 64 MiB */
};

/* Fills defaults; socket_path stays NULL. */
void nestor_options_init(struct nestor_options* opts);

struct nestor_info {
  uint64_t capacity;   /* bytes */
  uint32_t block_size; /* logical block size */
  uint32_t num_queues; /* queues in use */
  uint32_t max_queues; /* offered by the backend */
  uint32_t queue_size;
  uint32_t seg_max;  /* data segments per request */
  uint32_t size_max; /* bytes per segment, 0 = unlimited */
  uint32_t max_discard_sectors;
  uint32_t max_write_zeroes_sectors;
  uint8_t read_only, flush, discard, write_zeroes;
  uint64_t features;          /* negotiated virtio features */
  uint64_t protocol_features; /* negotiated vhost-user protocol features */
};

enum nestor_op {
  NESTOR_OP_READ = 0,
  NESTOR_OP_WRITE = 1,
  NESTOR_OP_FLUSH = 2,
  NESTOR_OP_DISCARD = 3,
  NESTOR_OP_WRITE_ZEROES = 4,
  NESTOR_OP_GET_ID = 5 /* buf of >= 20 bytes receives the serial */
};

#define NESTOR_REQ_UNMAP 0x1u /* write-zeroes: the device may unmap */

struct nestor_req {
  uint32_t op;     /* enum nestor_op */
  uint32_t flags;  /* NESTOR_REQ_* */
  uint64_t offset; /* bytes */
  uint64_t len;    /* bytes: length of buf, or discard/write-zeroes range */
  void* buf;       /* used when iovcnt == 0 */
  const struct iovec* iov;
  uint32_t iovcnt;
  void* user_data; /* returned in the completion */
};

struct nestor_completion {
  void* user_data;
  int32_t result; /* 0 or -errno */
  uint32_t reserved;
};

/* Connects and starts every queue. *out is set only on success. */
int nestor_connect(const struct nestor_options* opts, nestor_dev** out);
/* Stops the rings and frees everything; outstanding buffers become invalid. */
void nestor_close(nestor_dev* dev);
/* Last setup error of the calling thread ("" if none). */
const char* nestor_last_error(void);

int nestor_get_info(nestor_dev* dev, struct nestor_info* info);
uint64_t nestor_capacity(nestor_dev* dev);
uint32_t nestor_num_queues(nestor_dev* dev);
/* NULL if index >= nestor_num_queues(). */
nestor_queue* nestor_get_queue(nestor_dev* dev, uint32_t index);
/* 0 while the backend is connected, -ENOTCONN after it went away. */
int nestor_connected(nestor_dev* dev);

/* Buffers in the shared region; align is a power of two <= 4096. */
void* nestor_buf_alloc(nestor_dev* dev, size_t len, size_t align);
void nestor_buf_free(nestor_dev* dev, void* buf);

/* Queues up to n requests, publishes them together and kicks at most
 * once. Returns the number accepted (a prefix of reqs), or -errno if the
 * first failed: -EAGAIN (ring full: reap first), -EINVAL, -EFAULT,
 * -ENOTSUP (feature not negotiated), -ENOTCONN. */
int nestor_queue_submit(nestor_queue* q, const struct nestor_req* reqs, int n);
/* Reaps up to max completions without blocking; returns the count or -errno. */
int nestor_queue_poll(nestor_queue* q, struct nestor_completion* out, int max);
/* Reaps at least min completions (fewer if fewer are in flight), waiting
 * up to timeout_ms (< 0: no limit). Returns the count (may be < min on
 * timeout), or -ETIMEDOUT / -ENOTCONN / -EPROTO when none. */
int nestor_queue_wait(nestor_queue* q, struct nestor_completion* out, int min, int max, int timeout_ms);
/* Requests submitted and not yet reaped. */
uint32_t nestor_queue_inflight(nestor_queue* q);

/* Synchronous helpers (bounded by timeout_ms); any memory accepted. */
int nestor_read(nestor_queue* q, uint64_t offset, void* buf, size_t len);
int nestor_write(nestor_queue* q, uint64_t offset, const void* buf, size_t len);
int nestor_flush(nestor_queue* q);
int nestor_discard(nestor_queue* q, uint64_t offset, uint64_t len);
int nestor_write_zeroes(nestor_queue* q, uint64_t offset, uint64_t len, int unmap);

#ifdef __cplusplus
}
#endif

#endif /* NESTOR_NESTOR_H_ */
