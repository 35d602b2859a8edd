#include "daemon/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"

namespace nestor::daemon {

MetricsServer::~MetricsServer() { Stop(); }

Status MetricsServer::Start() {
  listen_fd_.Reset(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listen_fd_.valid()) return Status::FromErrno("socket");
  int one = 1;
  setsockopt(listen_fd_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port_);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(listen_fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return Status::FromErrno("metrics: bind 127.0.0.1:" + std::to_string(port_));
  }
  if (listen(listen_fd_.get(), 8) != 0) return Status::FromErrno("metrics: listen");
  stop_fd_.Reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  thread_ = std::thread([this] { Run(); });
  NLOG_INFO("metrics: http://127.0.0.1:{}/metrics", port_);
  return Status::Ok();
}

void MetricsServer::Stop() {
  if (!thread_.joinable()) return;
  uint64_t one = 1;
  ssize_t unused = write(stop_fd_.get(), &one, sizeof(one));
  (void)unused;
  thread_.join();
}

void MetricsServer::Run() {
  pthread_setname_np(pthread_self(), "metrics");
  for (;;) {
    pollfd pfds[2] = {{stop_fd_.get(), POLLIN, 0}, {listen_fd_.get(), POLLIN, 0}};
    if (poll(pfds, 2, -1) < 0) continue;
    if (pfds[0].revents) return;
    UniqueFd c(accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (c.valid()) Serve(c.get());
  }
}

void MetricsServer::Serve(int fd) {
  std::string req;
  char buf[4096];
  while (req.find("\r\n\r\n") == std::string::npos && req.size() < 8192) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 2000) <= 0) return;
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) return;
    req.append(buf, static_cast<size_t>(n));
  }
  std::string status = "200 OK", body;
  if (req.rfind("GET /metrics ", 0) == 0 || req.rfind("GET /metrics?", 0) == 0) {
    body = render_();
  } else if (req.rfind("GET ", 0) == 0) {
    status = "404 Not Found";
    body = "try /metrics\n";
  } else {
    status = "400 Bad Request";
  }
  std::string resp = "HTTP/1.1 " + status +
                     "\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: " + std::to_string(body.size()) +
                     "\r\nConnection: close\r\n\r\n" + body;
  size_t off = 0;
  while (off < resp.size()) {
    pollfd p{fd, POLLOUT, 0};
    if (poll(&p, 1, 2000) <= 0) return;
    ssize_t n = send(fd, resp.data() + off, resp.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

}  // namespace nestor::daemon
