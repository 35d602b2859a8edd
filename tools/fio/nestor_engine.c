/*
 * nestor-fio: a fio external ioengine over libnestor's C API
 * (include/nestor/nestor.h). fio drives a vhost-user-blk backend (nestord,
 * qemu-storage-daemon, SPDK, ...) through its unix socket, with no VM.
 *
 *   fio --ioengine=external:/path/nestor-fio.so --socket=/path/vol.sock \
 *       --filename=nestor --thread --rw=randread --bs=4k --iodepth=32 ...
 *
 * Built against the headers of the exact fio release that loads it (see
 * build-engine.sh); written in C because fio's headers are C.
 *
 * Design (see README.md for the user-facing version):
 * - One connection per socket path per process. With `thread`, every job
 *   of the process that names the same socket shares it; job k (the k-th
 *   job for that socket since the last stonewall, in fio's job order)
 *   drives queue k mod nestor_queues. The default nestor_queues is the
 *   number of those jobs (capped at what the backend offers), so by default
 *   every job owns a queue and the hot path takes no lock. Sharing one
 *   connection is what lets several jobs reach backends that accept one
 *   client at a time (qemu-storage-daemon). The connection closes when its
 *   last job ends and reopens for the next stonewalled group.
 * - Without `thread` (fio's default process model) each job process opens
 *   its own connection and still drives queue k mod nestor_queues, so the
 *   load spreads over the backend's per-queue threads the same way; the
 *   backend must accept several clients (nestord does, qsd does not).
 * - When jobs outnumber queues (thread model), the jobs of a queue share it
 *   under a mutex; whichever reaps a completion hands it to its owner's
 *   inbox. Shared queues always busy-poll.
 * - io_u buffers come from libnestor's shared region (iomem_alloc), so data
 *   moves between fio and the backend with no copy.
 * - Requests larger than the device's limits are split; an io_u completes
 *   when its last part does, with the first error seen.
 * - setup() runs in fio's main process before jobs start: it registers the
 *   job and learns the capacity with a short probe connection, which it
 *   closes (a forked job must not inherit a live connection).
 *
 * Threads: the registry (g_devs) is guarded by g_lock; a job's own state is
 * touched only by its thread, except its inbox and outstanding count on a
 * shared queue, which the queue's mutex guards.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fio.h"
#include "optgroup.h"

#include "nestor/nestor.h"

#define NF_SECTOR 512u
#define NF_MAX_AUTO_QUEUE_SIZE 1024u
#define NF_MIN_AUTO_QUEUE_SIZE 128u
#define NF_DRAIN_MS 5000
#define NF_PROBE_BUFFER (64u * 1024u)

/* ---- options ------------------------------------------------------------ */

struct nf_options {
  void* pad; /* fio: off1 must not be 0 */
  char* socket;
  unsigned int queues;
  unsigned int poll;
  unsigned int queue_size;
};

static struct fio_option options[] = {
    {
        .name = "socket",
        .lname = "vhost-user-blk socket",
        .type = FIO_OPT_STR_STORE,
        .off1 = offsetof(struct nf_options, socket),
        .help = "Path of the backend's vhost-user-blk unix socket (required)",
        .category = FIO_OPT_C_ENGINE,
        .group = FIO_OPT_G_INVALID,
    },
    {
        .name = "nestor_queues",
        .lname = "nestor queues",
        .type = FIO_OPT_INT,
        .off1 = offsetof(struct nf_options, queues),
        .def = "0",
        .minval = 0,
        .maxval = 1024,
        .help = "Queues per connection; job k drives queue k mod N (0: one per job, capped by the backend)",
        .category = FIO_OPT_C_ENGINE,
        .group = FIO_OPT_G_INVALID,
    },
    {
        .name = "nestor_poll",
        .lname = "nestor busy-poll",
        .type = FIO_OPT_BOOL,
        .off1 = offsetof(struct nf_options, poll),
        .def = "1",
        .help = "1: busy-poll completions; 0: sleep on the call eventfd",
        .category = FIO_OPT_C_ENGINE,
        .group = FIO_OPT_G_INVALID,
    },
    {
        .name = "nestor_queue_size",
        .lname = "nestor queue size",
        .type = FIO_OPT_INT,
        .off1 = offsetof(struct nf_options, queue_size),
        .def = "0",
        .minval = 0,
        .maxval = 32768,
        .help = "Ring size, a power of two (0: fits iodepth, 128..1024)",
        .category = FIO_OPT_C_ENGINE,
        .group = FIO_OPT_G_INVALID,
    },
    {
        .name = NULL,
    },
};

/* ---- state -------------------------------------------------------------- */

struct nf_job;

/* One ring of a connection. */
struct nf_queue {
  pthread_mutex_t lock;  /* taken only when shared */
  unsigned int planned;  /* registered jobs mapped here (thread model) */
  unsigned int attached; /* jobs using it now */
  int shared;
};

/* Jobs of one socket that may run at the same time: those between two
 * stonewalls (a stonewalled job starts after all earlier jobs exited). */
struct nf_epoch {
  unsigned int id;
  unsigned int njobs;
  unsigned int max_iodepth;
  uint64_t buf_need; /* sum over its jobs */
};

/* One backend socket as seen by this process. */
struct nf_dev {
  struct nf_dev* next;
  char* path;
  /* registration (setup), in fio's job order */
  struct nf_epoch* epochs;
  unsigned int nepochs;
  int have_info;
  struct nestor_info info;
  /* live connection */
  nestor_dev* dev;
  unsigned int refs;
  unsigned int nq;
  struct nf_queue* queues;
};

/* Per io_u. */
struct nf_io {
  struct io_u* io_u;
  struct nf_job* owner;
  unsigned int parts; /* requests not yet completed */
  int err;
};

/* Per fio job (td->io_ops_data). */
struct nf_job {
  struct nf_dev* d;
  unsigned int epoch;   /* index into d->epochs */
  unsigned int ordinal; /* k-th job of its epoch registered for d */
  uint64_t buf_need;
  int registered;
  int attached;
  unsigned int qidx;
  nestor_queue* q;
  struct nf_queue* qs;
  int shared;
  int drained;
  uint64_t max_rw;      /* bytes per read/write request */
  uint64_t max_discard; /* bytes per discard request */
  unsigned int depth;
  /* queued by ->queue, submitted by ->commit */
  struct nestor_req* pend;
  unsigned int npend, pend_cap;
  /* completed io_us not yet handed to fio */
  struct io_u** backlog;
  unsigned int nbacklog;
  /* handed to fio by the last ->getevents, read by ->event */
  struct io_u** ev;
  /* completions reaped for us by other jobs of a shared queue (qs->lock) */
  struct io_u** inbox;
  unsigned int ninbox;
  unsigned long outstanding; /* parts in flight (qs->lock if shared) */
  struct nestor_completion* cqe;
  unsigned int cqe_cap;
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static struct nf_dev* g_devs; /* guarded by g_lock */
static unsigned int g_epoch;  /* guarded by g_lock */

/* ---- helpers ------------------------------------------------------------ */

static uint64_t nf_now_ns(void) {
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void nf_relax(unsigned int* spins) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
  if (++*spins >= 256) {
    *spins = 0;
    sched_yield();
  }
}

static unsigned int nf_pow2_ceil(unsigned int v) {
  unsigned int p = 1;

  while (p < v && p < (1u << 31)) p <<= 1;
  return p;
}

/* libnestor's message for the calling thread's last setup error. */
static const char* nf_errmsg(int r) {
  const char* m = nestor_last_error();

  return m && m[0] ? m : strerror(-r);
}

static struct nf_options* nf_opts(struct thread_data* td) { return td->eo; }

/* Buffer bytes fio will ask iomem_alloc for, with room for alignment. */
static uint64_t nf_job_buf_need(struct thread_data* td) {
  uint64_t need = td_max_bs(td) * (uint64_t)td->o.iodepth;

  need += (uint64_t)page_size * 2 + td->o.mem_align + 64 * 1024;
  return need;
}

/* REQUIRES g_lock. */
static struct nf_dev* nf_dev_get(const char* path) {
  struct nf_dev* d;

  for (d = g_devs; d; d = d->next)
    if (!strcmp(d->path, path)) return d;
  d = calloc(1, sizeof(*d));
  if (!d) return NULL;
  d->path = strdup(path);
  if (!d->path) {
    free(d);
    return NULL;
  }
  d->next = g_devs;
  g_devs = d;
  return d;
}

/* Short connection to learn the geometry. REQUIRES g_lock. */
static int nf_probe(struct thread_data* td, struct nf_dev* d) {
  struct nestor_options o;
  nestor_dev* dev;
  int r;

  if (d->have_info) return 0;
  if (d->dev) {
    r = nestor_get_info(d->dev, &d->info);
  } else {
    nestor_options_init(&o);
    o.socket_path = d->path;
    o.num_queues = 1;
    o.queue_size = 8;
    o.buffer_bytes = NF_PROBE_BUFFER;
    o.flags = NESTOR_OPT_BLOCKING;
    r = nestor_connect(&o, &dev);
    if (r < 0) {
      log_err("nestor: %s: connect failed: %s\n", d->path, nf_errmsg(r));
      return r;
    }
    r = nestor_get_info(dev, &d->info);
    nestor_close(dev);
  }
  if (r < 0) {
    log_err("nestor: %s: get_info failed: %s\n", d->path, strerror(-r));
    return r;
  }
  d->have_info = 1;
  return 0;
}

/* Registers td with its socket (once). REQUIRES g_lock. */
static int nf_register(struct thread_data* td, struct nf_job* j) {
  struct nf_options* o = nf_opts(td);
  struct nf_epoch* e;
  struct nf_dev* d;

  if (j->registered) return 0;
  if (!o->socket || !o->socket[0]) {
    log_err("nestor: job %s: the socket=PATH option is required\n", td->o.name);
    return -EINVAL;
  }
  if (o->queue_size && (o->queue_size & (o->queue_size - 1))) {
    log_err("nestor: nestor_queue_size=%u is not a power of two\n", o->queue_size);
    return -EINVAL;
  }
  d = nf_dev_get(o->socket);
  if (!d) return -ENOMEM;
  if (td->o.stonewall) g_epoch++;
  if (!d->nepochs || d->epochs[d->nepochs - 1].id != g_epoch) {
    struct nf_epoch* ne = realloc(d->epochs, (d->nepochs + 1) * sizeof(*ne));

    if (!ne) return -ENOMEM;
    d->epochs = ne;
    memset(&ne[d->nepochs], 0, sizeof(*ne));
    ne[d->nepochs++].id = g_epoch;
  }
  e = &d->epochs[d->nepochs - 1];
  j->d = d;
  j->epoch = d->nepochs - 1;
  j->ordinal = e->njobs++;
  j->buf_need = nf_job_buf_need(td);
  e->buf_need += j->buf_need;
  if (td->o.iodepth > e->max_iodepth) e->max_iodepth = td->o.iodepth;
  j->registered = 1;
  return 0;
}

static struct nf_job* nf_job_get(struct thread_data* td) {
  struct nf_job* j = td->io_ops_data;

  if (!j) {
    j = calloc(1, sizeof(*j));
    td->io_ops_data = j;
  }
  return j;
}

/* ---- files -------------------------------------------------------------- */

static int nf_get_file_size(struct thread_data* td, struct fio_file* f) {
  struct nf_job* j = td->io_ops_data;
  int r;

  if (!j || !j->d) return 1;
  pthread_mutex_lock(&g_lock);
  r = nf_probe(td, j->d);
  pthread_mutex_unlock(&g_lock);
  if (r < 0) {
    td_verror(td, -r, "nestor probe");
    return 1;
  }
  f->real_file_size = j->d->info.capacity;
  fio_file_set_size_known(f);
  return 0;
}

static int nf_open_file(struct thread_data* td, struct fio_file* f) { return 0; }

static int nf_close_file(struct thread_data* td, struct fio_file* f) { return 0; }

/* Main process (before jobs start): register, learn the capacity. */
static int nf_setup(struct thread_data* td) {
  struct nf_job* j = nf_job_get(td);
  struct fio_file* f;
  unsigned int i;
  int r;

  if (!j) {
    td_verror(td, ENOMEM, "calloc");
    return 1;
  }
  pthread_mutex_lock(&g_lock);
  r = nf_register(td, j);
  pthread_mutex_unlock(&g_lock);
  if (r < 0) {
    td_verror(td, -r, "nestor setup");
    return 1;
  }
  /* The file name is only a label: the device is the socket. */
  if (!td->files_index) {
    add_file(td, "nestor", 0, 0);
    td->o.nr_files = td->o.nr_files ?: 1;
    td->o.open_files++;
  }
  for_each_file(td, f, i) {
    if (nf_get_file_size(td, f)) return 1;
  }
  return 0;
}

/* ---- connection --------------------------------------------------------- */

/* REQUIRES g_lock. */
static int nf_connect(struct thread_data* td, struct nf_job* j) {
  struct nf_options* o = nf_opts(td);
  struct nf_dev* d = j->d;
  const struct nf_epoch* e = &d->epochs[j->epoch];
  struct nestor_options no;
  unsigned int nq, qsize, users = 1, k;
  int r;

  r = nf_probe(td, d);
  if (r < 0) return r;
  nq = o->queues ? o->queues : e->njobs;
  if (!nq) nq = 1;
  if (nq > d->info.max_queues) {
    if (o->queues) {
      log_err("nestor: nestor_queues=%u but %s offers %u queue(s)\n", o->queues, d->path, d->info.max_queues);
      return -EINVAL;
    }
    nq = d->info.max_queues ? d->info.max_queues : 1;
    if (td->o.use_thread)
      log_info("nestor: %s offers %u queue(s) for %u jobs: jobs share queues\n", d->path, nq, e->njobs);
  }
  if (td->o.use_thread) users = (e->njobs + nq - 1) / nq;
  qsize = o->queue_size;
  if (!qsize) {
    qsize = nf_pow2_ceil(e->max_iodepth * users);
    if (qsize < NF_MIN_AUTO_QUEUE_SIZE) qsize = NF_MIN_AUTO_QUEUE_SIZE;
    if (qsize > NF_MAX_AUTO_QUEUE_SIZE) qsize = NF_MAX_AUTO_QUEUE_SIZE;
  }

  nestor_options_init(&no);
  no.socket_path = d->path;
  no.num_queues = nq;
  no.queue_size = qsize;
  no.flags = o->poll ? 0 : NESTOR_OPT_BLOCKING;
  /* Thread model: the arena holds every job's buffers; process: ours. */
  no.buffer_bytes = (td->o.use_thread ? e->buf_need : j->buf_need) + 4 * 1024 * 1024;
  r = nestor_connect(&no, &d->dev);
  if (r < 0) {
    log_err("nestor: %s: connect (%u queues of %u) failed: %s\n", d->path, nq, qsize, nf_errmsg(r));
    d->dev = NULL;
    return r;
  }
  d->nq = nq;
  d->queues = calloc(nq, sizeof(*d->queues));
  if (!d->queues) {
    nestor_close(d->dev);
    d->dev = NULL;
    return -ENOMEM;
  }
  for (k = 0; k < nq; k++) pthread_mutex_init(&d->queues[k].lock, NULL);
  if (td->o.use_thread) {
    for (k = 0; k < e->njobs; k++) d->queues[k % nq].planned++;
    for (k = 0; k < nq; k++) d->queues[k].shared = d->queues[k].planned > 1;
  }
  nestor_get_info(d->dev, &d->info);
  return 0;
}

/* REQUIRES g_lock. */
static void nf_disconnect_if_unused(struct nf_dev* d) {
  unsigned int k;

  if (!d->dev || d->refs) return;
  nestor_close(d->dev);
  d->dev = NULL;
  for (k = 0; k < d->nq; k++) pthread_mutex_destroy(&d->queues[k].lock);
  free(d->queues);
  d->queues = NULL;
  d->nq = 0;
}

static uint64_t nf_round_down(uint64_t v) { return v / NF_SECTOR * NF_SECTOR; }

/* Job thread: connect (or join the process's connection), pick a queue. */
static int nf_init(struct thread_data* td) {
  struct nf_job* j = nf_job_get(td);
  struct nf_dev* d;
  uint64_t segs;
  int r = 0;

  if (!j) {
    td_verror(td, ENOMEM, "calloc");
    return 1;
  }
  pthread_mutex_lock(&g_lock);
  r = nf_register(td, j); /* no-op unless create_serialize=0 */
  d = j->d;
  if (!r && !d->dev) r = nf_connect(td, j);
  if (!r) {
    j->qidx = j->ordinal % d->nq;
    j->qs = &d->queues[j->qidx];
    if (j->qs->attached && !j->qs->shared) {
      log_err(
          "nestor: job %s would share queue %u, which was planned unshared; "
          "set nestor_queues or keep create_serialize=1\n",
          td->o.name, j->qidx);
      r = -EBUSY;
    }
  }
  if (!r) {
    j->q = nestor_get_queue(d->dev, j->qidx);
    j->shared = j->qs->shared;
    j->qs->attached++;
    d->refs++;
    j->attached = 1;
  }
  pthread_mutex_unlock(&g_lock);
  if (r < 0) {
    td_verror(td, -r, "nestor init");
    return 1;
  }

  /* Largest request: seg_max segments of at most size_max bytes. */
  segs = d->info.seg_max ? d->info.seg_max : 1;
  if (segs > d->info.queue_size - 2) segs = d->info.queue_size - 2;
  j->max_rw = d->info.size_max ? segs * d->info.size_max : UINT32_MAX;
  if (j->max_rw > UINT32_MAX) j->max_rw = UINT32_MAX;
  j->max_rw = nf_round_down(j->max_rw);
  j->max_discard = d->info.max_discard_sectors ? (uint64_t)d->info.max_discard_sectors * NF_SECTOR
                                               : (uint64_t)UINT32_MAX * NF_SECTOR;
  j->max_discard = nf_round_down(j->max_discard);
  if (j->max_rw < NF_SECTOR) j->max_rw = NF_SECTOR;
  if (j->max_discard < NF_SECTOR) j->max_discard = NF_SECTOR;

  j->depth = td->o.iodepth ? td->o.iodepth : 1;
  j->pend_cap = j->depth;
  j->pend = calloc(j->pend_cap, sizeof(*j->pend));
  j->backlog = calloc(j->depth, sizeof(*j->backlog));
  j->ev = calloc(j->depth, sizeof(*j->ev));
  j->inbox = calloc(j->depth, sizeof(*j->inbox));
  j->cqe_cap = j->depth < 64 ? 64 : j->depth;
  j->cqe = calloc(j->cqe_cap, sizeof(*j->cqe));
  if (!j->pend || !j->backlog || !j->ev || !j->inbox || !j->cqe) {
    td_verror(td, ENOMEM, "calloc");
    return 1;
  }
  dprint(FD_IO, "nestor: job %s: %s queue %u/%u%s%s\n", td->o.name, d->path, j->qidx, d->nq,
         j->shared ? " (shared)" : "", nf_opts(td)->poll ? " polled" : " blocking");
  return 0;
}

/* ---- completions -------------------------------------------------------- */

/* One part of x finished with result (0 or -errno). REQUIRES qs->lock if shared. */
static void nf_part_done(struct nf_job* self, struct nf_io* x, int result) {
  struct nf_job* owner = x->owner;

  if (result < 0 && !x->err) x->err = -result;
  if (--x->parts) return;
  x->io_u->error = x->err;
  if (owner == self)
    self->backlog[self->nbacklog++] = x->io_u;
  else
    owner->inbox[owner->ninbox++] = x->io_u;
}

/* REQUIRES qs->lock if shared. */
static void nf_deliver(struct nf_job* j, int n) {
  int i;

  for (i = 0; i < n; i++) {
    struct nf_io* x = j->cqe[i].user_data;

    x->owner->outstanding--;
    nf_part_done(j, x, j->cqe[i].result);
  }
}

/* Reaps what is ready without waiting; returns completions or -errno. */
static int nf_reap_nowait(struct nf_job* j) {
  int n;

  if (j->shared && j->ninbox) {
    memcpy(j->backlog + j->nbacklog, j->inbox, j->ninbox * sizeof(*j->inbox));
    j->nbacklog += j->ninbox;
    j->ninbox = 0;
  }
  n = nestor_queue_poll(j->q, j->cqe, (int)j->cqe_cap);
  if (n > 0) nf_deliver(j, n);
  return n;
}

static int nf_getevents(struct thread_data* td, unsigned int min, unsigned int max, const struct timespec* t) {
  struct nf_job* j = td->io_ops_data;
  uint64_t deadline = UINT64_MAX;
  unsigned int spins = 0, n;
  int r;

  if (t) deadline = nf_now_ns() + (uint64_t)t->tv_sec * 1000000000ull + (uint64_t)t->tv_nsec;
  for (;;) {
    unsigned long outstanding;

    if (j->shared) {
      pthread_mutex_lock(&j->qs->lock);
      r = nf_reap_nowait(j);
      outstanding = j->outstanding;
      pthread_mutex_unlock(&j->qs->lock);
    } else if (j->nbacklog < min && j->outstanding) {
      int timeout_ms = -1;

      if (t) {
        uint64_t now = nf_now_ns();

        timeout_ms = now >= deadline ? 0 : (int)((deadline - now + 999999) / 1000000);
      }
      r = nestor_queue_wait(j->q, j->cqe, (int)(min - j->nbacklog), (int)j->cqe_cap, timeout_ms);
      if (r > 0)
        nf_deliver(j, r);
      else if (r == -ETIMEDOUT)
        r = 0;
      outstanding = j->outstanding;
    } else {
      r = nf_reap_nowait(j);
      outstanding = j->outstanding;
    }
    /* libnestor fails in-flight requests itself when the backend goes
     * away, so an error here means nothing more will complete. */
    if (r < 0 && !j->nbacklog) {
      td_verror(td, -r, "nestor getevents");
      return r;
    }
    if (j->nbacklog >= min || !outstanding) break;
    if (t && nf_now_ns() >= deadline) break;
    if (j->shared) nf_relax(&spins);
  }
  n = j->nbacklog < max ? j->nbacklog : max;
  memcpy(j->ev, j->backlog, n * sizeof(*j->ev));
  if (n < j->nbacklog) memmove(j->backlog, j->backlog + n, (j->nbacklog - n) * sizeof(*j->backlog));
  j->nbacklog -= n;
  return (int)n;
}

static struct io_u* nf_event(struct thread_data* td, int event) {
  struct nf_job* j = td->io_ops_data;

  return j->ev[event];
}

/* ---- submission --------------------------------------------------------- */

static int nf_pend_grow(struct nf_job* j, unsigned int extra) {
  unsigned int cap = j->pend_cap;
  struct nestor_req* p;

  if (j->npend + extra <= cap) return 0;
  while (cap < j->npend + extra) cap *= 2;
  p = realloc(j->pend, cap * sizeof(*p));
  if (!p) return -ENOMEM;
  j->pend = p;
  j->pend_cap = cap;
  return 0;
}

/* Appends io_u as parts of at most max bytes each. */
static int nf_add_parts(struct nf_job* j, struct io_u* io_u, uint32_t op, uint64_t max) {
  struct nf_io* x = io_u->engine_data;
  uint64_t off = io_u->offset, left = io_u->xfer_buflen;
  char* buf = io_u->xfer_buf;
  unsigned int parts = left ? (unsigned int)((left + max - 1) / max) : 1;

  if (nf_pend_grow(j, parts)) return -ENOMEM;
  x->parts = parts;
  do {
    struct nestor_req* r = &j->pend[j->npend++];
    uint64_t len = left < max ? left : max;

    memset(r, 0, sizeof(*r));
    r->op = op;
    r->offset = off;
    r->len = len;
    if (op == NESTOR_OP_READ || op == NESTOR_OP_WRITE) r->buf = buf;
    r->user_data = x;
    off += len;
    buf += len;
    left -= len;
  } while (left);
  return 0;
}

static enum fio_q_status nf_queue(struct thread_data* td, struct io_u* io_u) {
  struct nf_job* j = td->io_ops_data;
  const struct nestor_info* info = &j->d->info;
  struct nf_io* x = io_u->engine_data;
  int r = 0;

  fio_ro_check(td, io_u);
  x->err = 0;
  x->parts = 0;
  io_u->error = 0;
  switch (io_u->ddir) {
    case DDIR_READ:
    case DDIR_WRITE:
    case DDIR_TRIM:
      if (io_u->offset % NF_SECTOR || io_u->xfer_buflen % NF_SECTOR || !io_u->xfer_buflen) {
        io_u->error = EINVAL;
        return FIO_Q_COMPLETED;
      }
      if (io_u->ddir == DDIR_TRIM) {
        if (!info->discard) {
          io_u->error = EOPNOTSUPP;
          return FIO_Q_COMPLETED;
        }
        r = nf_add_parts(j, io_u, NESTOR_OP_DISCARD, j->max_discard);
      } else {
        r = nf_add_parts(j, io_u, io_u->ddir == DDIR_READ ? NESTOR_OP_READ : NESTOR_OP_WRITE, j->max_rw);
      }
      break;
    case DDIR_SYNC:
    case DDIR_DATASYNC:
    case DDIR_SYNC_FILE_RANGE:
      /* No flush feature: the device has no volatile cache. */
      if (!info->flush) return FIO_Q_COMPLETED;
      r = nf_pend_grow(j, 1);
      if (!r) {
        struct nestor_req* q = &j->pend[j->npend++];

        memset(q, 0, sizeof(*q));
        q->op = NESTOR_OP_FLUSH;
        q->user_data = x;
        x->parts = 1;
      }
      break;
    default: io_u->error = EINVAL; return FIO_Q_COMPLETED;
  }
  if (r < 0) {
    io_u->error = -r;
    return FIO_Q_COMPLETED;
  }
  return FIO_Q_QUEUED;
}

/* Submits everything queued; an io_u whose request the ring refuses for
 * good completes with that error through getevents. */
static int nf_commit(struct thread_data* td) {
  struct nf_job* j = td->io_ops_data;
  unsigned int off = 0, spins = 0;

  if (!j->npend) return 0;
  if (j->shared) pthread_mutex_lock(&j->qs->lock);
  while (off < j->npend) {
    int r = nestor_queue_submit(j->q, j->pend + off, (int)(j->npend - off));

    if (r > 0) {
      off += (unsigned int)r;
      j->outstanding += (unsigned long)r;
      continue;
    }
    if (r == -EAGAIN && nestor_queue_inflight(j->q) > 0) {
      /* Ring full: reap, then retry. */
      int n;

      if (j->shared) {
        n = nf_reap_nowait(j);
        if (n == 0) {
          pthread_mutex_unlock(&j->qs->lock);
          nf_relax(&spins);
          pthread_mutex_lock(&j->qs->lock);
        }
      } else {
        n = nestor_queue_wait(j->q, j->cqe, 1, (int)j->cqe_cap, 1000);
        if (n > 0) nf_deliver(j, n);
      }
      if (n >= 0 || n == -ETIMEDOUT) continue;
      r = n;
    }
    /* The request at off cannot be submitted: fail its part. */
    nf_part_done(j, j->pend[off].user_data, r == -EAGAIN ? -EINVAL : r);
    off++;
  }
  j->npend = 0;
  if (j->shared) pthread_mutex_unlock(&j->qs->lock);
  return 0;
}

/* ---- buffers and io_u --------------------------------------------------- */

static int nf_io_u_init(struct thread_data* td, struct io_u* io_u) {
  struct nf_io* x = calloc(1, sizeof(*x));

  if (!x) return 1;
  x->io_u = io_u;
  x->owner = td->io_ops_data;
  io_u->engine_data = x;
  return 0;
}

/* Waits (bounded) until none of this job's requests is in flight, so no
 * completion can name an io_u after fio frees it. */
static void nf_drain(struct thread_data* td, struct nf_job* j) {
  uint64_t deadline = nf_now_ns() + (uint64_t)NF_DRAIN_MS * 1000000;
  unsigned int spins = 0;

  if (!j || !j->q) return;
  for (;;) {
    unsigned long left;
    int r;

    if (j->shared) pthread_mutex_lock(&j->qs->lock);
    r = nf_reap_nowait(j);
    left = j->outstanding;
    if (j->shared) pthread_mutex_unlock(&j->qs->lock);
    j->nbacklog = 0; /* fio no longer wants these */
    if (!left || r < 0) return;
    if (nf_now_ns() >= deadline) {
      log_err("nestor: job %s: %lu request(s) still in flight at exit\n", td->o.name, left);
      return;
    }
    nf_relax(&spins);
  }
}

static void nf_io_u_free(struct thread_data* td, struct io_u* io_u) {
  struct nf_job* j = td->io_ops_data;

  if (j && !j->drained) {
    nf_drain(td, j);
    j->drained = 1;
  }
  free(io_u->engine_data);
  io_u->engine_data = NULL;
}

/* fio's data buffers live in libnestor's shared region: zero copy. */
static int nf_iomem_alloc(struct thread_data* td, size_t total_mem) {
  struct nf_job* j = td->io_ops_data;

  if (!j || !j->d || !j->d->dev) return 1;
  td->orig_buffer = nestor_buf_alloc(j->d->dev, total_mem, 4096);
  if (!td->orig_buffer) {
    log_err("nestor: job %s: no room for %zu buffer bytes in the shared region\n", td->o.name, total_mem);
    return 1;
  }
  return 0;
}

static void nf_iomem_free(struct thread_data* td) {
  struct nf_job* j = td->io_ops_data;

  if (j && j->d && j->d->dev && td->orig_buffer) nestor_buf_free(j->d->dev, td->orig_buffer);
  td->orig_buffer = NULL;
}

static void nf_cleanup(struct thread_data* td) {
  struct nf_job* j = td->io_ops_data;

  if (!j) return;
  if (j->attached) {
    if (!j->drained) nf_drain(td, j);
    pthread_mutex_lock(&g_lock);
    j->qs->attached--;
    j->d->refs--;
    nf_disconnect_if_unused(j->d);
    pthread_mutex_unlock(&g_lock);
  }
  free(j->pend);
  free(j->backlog);
  free(j->ev);
  free(j->inbox);
  free(j->cqe);
  free(j);
  td->io_ops_data = NULL;
}

struct ioengine_ops ioengine = {
    .name = "nestor",
    .version = FIO_IOOPS_VERSION,
    .flags = FIO_DISKLESSIO | FIO_NOEXTEND | FIO_NODISKUTIL | FIO_NO_OFFLOAD,
    .setup = nf_setup,
    .init = nf_init,
    .queue = nf_queue,
    .commit = nf_commit,
    .getevents = nf_getevents,
    .event = nf_event,
    .cleanup = nf_cleanup,
    .open_file = nf_open_file,
    .close_file = nf_close_file,
    .get_file_size = nf_get_file_size,
    .io_u_init = nf_io_u_init,
    .io_u_free = nf_io_u_free,
    .iomem_alloc = nf_iomem_alloc,
    .iomem_free = nf_iomem_free,
    .options = options,
    .option_struct_size = sizeof(struct nf_options),
};
