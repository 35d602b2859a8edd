// RpcServer::Run: the control thread's connection loop (rpc_server.h has
// the contract). Every client socket is non-blocking; each turn reads what
// a client sent, serves at most one of its complete requests (round
// robin) and writes what it can of its reply. A client with an unsent
// reply is neither read from nor served (back-pressure: it holds at most
// one reply and 64 KiB + one line of input); one whose request line passes
// kMaxRequest, or that sends no complete request (or reads no reply) for
// `idle`, is closed.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "base/log.h"
#include "control/rpc_server.h"

namespace nestor::control {
namespace {

using Clock = std::chrono::steady_clock;

struct Client {
  UniqueFd fd;
  std::string in;          // received, not yet served
  std::string out;         // replies not yet sent
  Clock::time_point last;  // accept, last complete request, or last reply progress
  bool eof = false;        // the client shut down its sending side

  bool HasRequest() const { return in.find('\n') != std::string::npos; }
  bool Idle() const { return !HasRequest() && out.empty(); }
};

// Best effort, never blocking: the client may not be reading.
void SendAndClose(Client* c, const std::string& line) {
  ssize_t unused = send(c->fd.get(), line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  (void)unused;
  c->fd.Reset();
}

std::string ErrorLine(int code, const std::string& msg) { return RpcError(nullptr, code, msg).dump() + "\n"; }

void ReadSome(Client* c) {
  char buf[65536];
  ssize_t n = read(c->fd.get(), buf, sizeof(buf));
  if (n == 0) {
    c->eof = true;
    // A last request without its newline is still a request.
    if (!c->in.empty() && c->in.back() != '\n') c->in += '\n';
  }
  if (n < 0 && errno != EAGAIN && errno != EINTR) c->fd.Reset();
  if (n > 0) c->in.append(buf, static_cast<size_t>(n));
}

void WriteSome(Client* c) {
  ssize_t n = send(c->fd.get(), c->out.data(), c->out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n < 0 && errno != EAGAIN && errno != EINTR) c->fd.Reset();
  if (n > 0) {
    c->out.erase(0, static_cast<size_t>(n));
    c->last = Clock::now();
  }
}

// The line limit is exact: a line of kMaxRequest bytes (newline excluded)
// is served, one byte more is refused, complete or not.
bool TooLong(const Client& c) {
  size_t nl = c.in.find('\n');
  return (nl == std::string::npos ? c.in.size() : nl) > RpcServer::kMaxRequest;
}

// At the limit, the longest-idle client makes room if it has been idle a
// while; otherwise the newcomer is told and closed.
void Admit(std::vector<Client>* clients, UniqueFd fd, const RpcLimits& limits) {
  Client fresh{std::move(fd), {}, {}, Clock::now()};
  auto now = fresh.last;
  if (clients->size() >= limits.max_clients) {
    Client* oldest = nullptr;
    for (Client& c : *clients) {
      if (c.Idle() && (oldest == nullptr || c.last < oldest->last)) oldest = &c;
    }
    if (oldest != nullptr && now - oldest->last >= limits.evict_idle) {
      NLOG_WARN("control: {} connections open; closing the longest idle to make room", clients->size());
      SendAndClose(oldest, ErrorLine(-32000, "closed: idle while the connection limit was reached"));
      std::erase_if(*clients, [](const Client& c) { return !c.fd.valid(); });
    }
  }
  if (clients->size() < limits.max_clients) {
    clients->push_back(std::move(fresh));
    return;
  }
  NLOG_WARN("control: refusing a connection: {} already open", limits.max_clients);
  SendAndClose(&fresh, ErrorLine(-32000, "too many connections (" + std::to_string(limits.max_clients) + " open)"));
}

}  // namespace

void RpcServer::Run() {
  pthread_setname_np(pthread_self(), "control");
  fcntl(listener_.fd(), F_SETFL, fcntl(listener_.fd(), F_GETFL) | O_NONBLOCK);
  std::vector<Client> clients;
  size_t turn = 0;  // round robin start
  Clock::time_point accept_paused_until{};
  for (;;) {
    // 1. Wait: readable clients without a pending request and without
    // unsent replies; writable clients with replies; the first deadline.
    auto now = Clock::now();
    // Out of fds (EMFILE): the pending connection stays queued and the
    // listener readable; stop polling it for a while instead of spinning.
    short accept_events = now >= accept_paused_until ? POLLIN : 0;
    std::vector<pollfd> pfds = {{stop_fd_.get(), POLLIN, 0}, {listener_.fd(), accept_events, 0}};
    int timeout = -1;
    bool ready = false;  // a request waits to be served: do not sleep
    for (auto& c : clients) {
      short ev = 0;
      if (c.out.empty() && !c.HasRequest() && !c.eof) ev |= POLLIN;
      if (!c.out.empty()) ev |= POLLOUT;
      if (c.out.empty() && c.HasRequest()) ready = true;
      pfds.push_back({c.fd.get(), ev, 0});
      auto left = std::chrono::ceil<std::chrono::milliseconds>(c.last + limits_.idle - now).count();
      int ms = static_cast<int>(std::max<int64_t>(left, 0));
      timeout = timeout < 0 ? ms : std::min(timeout, ms);
    }
    if (ready) timeout = 0;
    if (accept_events == 0) {
      int ms = static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(accept_paused_until - now).count());
      timeout = timeout < 0 ? ms : std::min(timeout, ms);
    }
    if (poll(pfds.data(), pfds.size(), timeout) < 0) continue;
    if (pfds[0].revents) break;
    // 2. I/O for each client.
    for (size_t i = 0; i < clients.size(); ++i) {
      Client& c = clients[i];
      short re = pfds[i + 2].revents;
      if ((re & POLLOUT) && c.fd.valid()) WriteSome(&c);
      if ((re & (POLLIN | POLLHUP | POLLERR)) && c.fd.valid() && c.out.empty() && !c.HasRequest()) ReadSome(&c);
    }
    // 3. Serve one request per client, starting one further each turn.
    for (size_t k = 0; k < clients.size(); ++k) {
      Client& c = clients[(turn + k) % clients.size()];
      if (!c.fd.valid()) continue;
      if (TooLong(c)) {
        NLOG_WARN("control: request over {} bytes, closing the connection", kMaxRequest);
        SendAndClose(&c, ErrorLine(-32600, "request over " + std::to_string(kMaxRequest) + " bytes"));
        continue;
      }
      if (!c.out.empty() || !c.HasRequest()) continue;
      size_t nl = c.in.find('\n');
      c.last = Clock::now();
      std::string reply = Handle(c.in.substr(0, nl));
      c.in.erase(0, nl + 1);
      if (!reply.empty()) c.out = reply + "\n";
      if (!c.out.empty()) WriteSome(&c);
    }
    if (!clients.empty()) turn = (turn + 1) % clients.size();
    // 4. Close the idle and the finished. A handler may have kept this
    // thread busy past a client's deadline while its request waited in the
    // socket: read what is there before judging it idle.
    now = Clock::now();
    for (Client& c : clients) {
      if (!c.fd.valid()) continue;
      if (now - c.last >= limits_.idle && c.Idle() && !c.eof) ReadSome(&c);
      if (!c.fd.valid() || c.HasRequest()) continue;
      if (c.eof && c.Idle()) {
        c.fd.Reset();
      } else if (now - c.last >= limits_.idle) {
        NLOG_INFO("control: closing a connection with no complete request for {} ms", limits_.idle.count());
        c.fd.Reset();
      }
    }
    std::erase_if(clients, [](const Client& c) { return !c.fd.valid(); });
    // 5. Accept (a few per turn, the listener is non-blocking).
    if (pfds[1].revents & POLLIN) {
      for (int k = 0; k < 16; ++k) {
        UniqueFd fd(accept4(listener_.fd(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
        if (!fd.valid() && (errno == EMFILE || errno == ENFILE)) {
          NLOG_ERROR("control: cannot accept a connection: {}; retrying in 100 ms", strerror(errno));
          accept_paused_until = Clock::now() + std::chrono::milliseconds(100);
        }
        if (!fd.valid()) break;
        Admit(&clients, std::move(fd), limits_);
      }
    }
  }
}

}  // namespace nestor::control
