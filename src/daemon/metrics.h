// MetricsServer: the Prometheus text endpoint, GET /metrics on
// 127.0.0.1:PORT (loopback only; off unless --metrics-port).
//
// Thread: one thread of its own; `render` is called on it for each scrape.
// Errors: Start returns a Status (port taken...); a bad request gets 404 or
// 400 and the connection is closed; a slow client is cut off after 2 s.
#pragma once

#include <functional>
#include <string>
#include <thread>

#include "base/fd.h"
#include "base/status.h"

namespace nestor::daemon {

class MetricsServer {
 public:
  MetricsServer(uint16_t port, std::function<std::string()> render) : port_(port), render_(std::move(render)) {}
  ~MetricsServer();
  Status Start();
  void Stop();

 private:
  void Run();
  void Serve(int fd);

  uint16_t port_;
  std::function<std::string()> render_;
  UniqueFd listen_fd_;
  UniqueFd stop_fd_;
  std::thread thread_;
};

}  // namespace nestor::daemon
