/* C API smoke test: compiled as C11 against libnestor.so.
 *   c_api_smoke SOCKET
 * Connects with two queues, runs async writes/reads with user_data cookies,
 * the synchronous helpers, and checks the error conventions. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nestor/nestor.h"

#define CHECK(cond)                                                           \
  do {                                                                        \
    if (!(cond)) {                                                            \
      fprintf(stderr, "c_api_smoke: %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      exit(1);                                                                \
    }                                                                         \
  } while (0)

enum { kQd = 16, kBlock = 4096 };

static int run_queue(nestor_dev* dev, nestor_queue* q, uint64_t base, int blocking) {
  struct nestor_req reqs[kQd];
  struct nestor_completion done[kQd];
  unsigned char* bufs[kQd];
  for (int i = 0; i < kQd; i++) {
    bufs[i] = nestor_buf_alloc(dev, kBlock, 4096);
    CHECK(bufs[i] != NULL);
    memset(bufs[i], 'a' + i, kBlock);
    memset(&reqs[i], 0, sizeof(reqs[i]));
    reqs[i].op = NESTOR_OP_WRITE;
    reqs[i].offset = base + (uint64_t)i * kBlock;
    reqs[i].len = kBlock;
    reqs[i].buf = bufs[i];
    reqs[i].user_data = &bufs[i];
  }
  CHECK(nestor_queue_submit(q, reqs, kQd) == kQd);
  int got = 0;
  while (got < kQd) {
    int n = blocking ? nestor_queue_wait(q, done, 1, kQd, 5000) : nestor_queue_poll(q, done, kQd);
    CHECK(n >= 0);
    for (int i = 0; i < n; i++) {
      CHECK(done[i].result == 0);
      CHECK(done[i].user_data >= (void*)&bufs[0] && done[i].user_data <= (void*)&bufs[kQd - 1]);
    }
    got += n;
  }
  CHECK(nestor_queue_inflight(q) == 0);
  CHECK(nestor_queue_poll(q, done, kQd) == 0);
  for (int i = 0; i < kQd; i++) {
    memset(bufs[i], 0, kBlock);
    reqs[i].op = NESTOR_OP_READ;
  }
  CHECK(nestor_queue_submit(q, reqs, kQd) == kQd);
  CHECK(nestor_queue_wait(q, done, kQd, kQd, 5000) == kQd);
  for (int i = 0; i < kQd; i++) {
    CHECK(done[i].result == 0);
    CHECK(bufs[i][0] == 'a' + i && bufs[i][kBlock - 1] == 'a' + i);
    nestor_buf_free(dev, bufs[i]);
  }
  return 0;
}

int main(int argc, char** argv) {
  CHECK(argc == 2);
  struct nestor_options o;
  nestor_options_init(&o);
  o.socket_path = argv[1];
  o.num_queues = 2;
  o.buffer_bytes = 8u << 20;
  nestor_dev* dev = NULL;
  int rc = nestor_connect(&o, &dev);
  if (rc != 0) {
    fprintf(stderr, "c_api_smoke: connect: %d %s\n", rc, nestor_last_error());
    return 1;
  }
  struct nestor_info info;
  CHECK(nestor_get_info(dev, &info) == 0);
  CHECK(info.capacity == nestor_capacity(dev) && info.capacity > 0);
  CHECK(info.num_queues == 2 && nestor_num_queues(dev) == 2);
  CHECK(nestor_get_queue(dev, 2) == NULL);
  CHECK(nestor_connected(dev) == 0);
  printf("c_api_smoke: capacity %llu, %u/%u queues, features %#llx\n", (unsigned long long)info.capacity,
         info.num_queues, info.max_queues, (unsigned long long)info.features);
  run_queue(dev, nestor_get_queue(dev, 0), 0, 1);
  run_queue(dev, nestor_get_queue(dev, 1), 1 << 20, 0);

  /* Synchronous helpers accept ordinary memory. */
  nestor_queue* q = nestor_get_queue(dev, 1);
  char *mem = malloc(65536), *back = malloc(65536);
  memset(mem, 0x5a, 65536);
  CHECK(nestor_write(q, 2 << 20, mem, 65536) == 0);
  CHECK(nestor_flush(q) == 0);
  CHECK(nestor_read(q, 2 << 20, back, 65536) == 0);
  CHECK(memcmp(mem, back, 65536) == 0);
  if (info.write_zeroes) {
    CHECK(nestor_write_zeroes(q, 2 << 20, 4096, 0) == 0);
    CHECK(nestor_read(q, 2 << 20, back, 4096) == 0);
    CHECK(back[0] == 0 && back[4095] == 0);
  }
  CHECK(nestor_read(q, info.capacity, back, 4096) == -EIO);

  /* Error conventions. */
  struct nestor_req bad;
  memset(&bad, 0, sizeof(bad));
  bad.op = NESTOR_OP_READ;
  bad.len = 4096;
  bad.buf = mem; /* not in the shared region */
  CHECK(nestor_queue_submit(q, &bad, 1) == -EFAULT);
  bad.op = 99;
  CHECK(nestor_queue_submit(q, &bad, 1) == -EINVAL);
  free(mem);
  free(back);
  nestor_close(dev);

  o.socket_path = "/nonexistent.sock";
  CHECK(nestor_connect(&o, &dev) == -ENOENT);
  CHECK(strlen(nestor_last_error()) > 0);
  printf("c_api_smoke: OK\n");
  return 0;
}
