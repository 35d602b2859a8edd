#include "base/unix_listener.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>

namespace nestor {
namespace {

class TempDir {
 public:
  TempDir() {
    std::string t = "/tmp/nestor-base-test.XXXXXX";
    if (mkdtemp(t.data()) != nullptr) dir_ = t;
  }
  ~TempDir() {
    std::string cmd = "rm -rf '" + dir_ + "'";
    int unused = system(cmd.c_str());
    (void)unused;
  }
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

 private:
  std::string dir_;
};

bool IsSocket(const std::string& p) {
  struct stat st {};
  return lstat(p.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

bool Exists(const std::string& p) {
  struct stat st {};
  return lstat(p.c_str(), &st) == 0;
}

void WriteFile(const std::string& p, const char* text) { std::ofstream(p) << text; }

std::string ReadFile(const std::string& p) {
  std::ifstream f(p);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

TEST(UnixListener, BindsAndRemovesItsOwnSocket) {
  TempDir d;
  UnixListener l;
  ASSERT_TRUE(l.Listen(d.Path("a.sock"), 4, 0600).ok());
  struct stat st {};
  ASSERT_EQ(lstat(d.Path("a.sock").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  l.Close();
  EXPECT_FALSE(Exists(d.Path("a.sock")));
}

TEST(UnixListener, ReplacesAStaleSocketOnly) {
  TempDir d;
  {
    UnixListener first;
    ASSERT_TRUE(first.Listen(d.Path("a.sock"), 4).ok());
    UnixListener second;  // the first one still listens
    Status st = second.Listen(d.Path("a.sock"), 4);
    EXPECT_EQ(st.err(), EBUSY) << st.ToString();
    EXPECT_NE(st.message().find(d.Path("a.sock")), std::string::npos) << st.ToString();
    EXPECT_NE(st.message().find("in use"), std::string::npos) << st.ToString();
    EXPECT_TRUE(IsSocket(d.Path("a.sock")));
  }
  // A socket whose listener went away without removing it.
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, d.Path("b.sock").c_str(), sizeof(a.sun_path) - 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  close(fd);
  UnixListener l;
  EXPECT_TRUE(l.Listen(d.Path("b.sock"), 4).ok());
}

TEST(UnixListener, NeverRemovesAFile) {
  TempDir d;
  WriteFile(d.Path("a.sock"), "keep");
  UnixListener l;
  Status st = l.Listen(d.Path("a.sock"), 4);
  EXPECT_EQ(st.err(), EEXIST) << st.ToString();
  EXPECT_NE(st.message().find("not a socket"), std::string::npos) << st.ToString();
  l.Close();
  EXPECT_EQ(ReadFile(d.Path("a.sock")), "keep");

  // A file that took the place of the bound socket survives Close.
  ASSERT_TRUE(l.Listen(d.Path("b.sock"), 4).ok());
  ASSERT_EQ(unlink(d.Path("b.sock").c_str()), 0);
  WriteFile(d.Path("b.sock"), "mine now");
  l.Close();
  EXPECT_EQ(ReadFile(d.Path("b.sock")), "mine now");
}

// Issue #11: owner, group and mode are the socket's before it listens;
// the mode is exact whatever the umask (the umask itself is untouched).
TEST(UnixListener, AppliesOwnerGroupAndMode) {
  TempDir d;
  mode_t old = umask(027);
  UnixListener l;
  SocketPerms p;
  p.mode = 0666;
  ASSERT_TRUE(l.Listen(d.Path("a.sock"), 4, p).ok());
  struct stat st {};
  ASSERT_EQ(lstat(d.Path("a.sock").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0666u);
  EXPECT_EQ(st.st_uid, geteuid());
  l.Close();
  // Group only: the mode is the umask's default.
  p = SocketPerms{};
  p.group = getegid();
  ASSERT_TRUE(l.Listen(d.Path("b.sock"), 4, p).ok());
  ASSERT_EQ(lstat(d.Path("b.sock").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  EXPECT_EQ(st.st_gid, getegid());
  l.Close();
  EXPECT_EQ(umask(old), 027u);
  if (geteuid() == 0) {  // chown to another user needs root
    p = SocketPerms{};
    p.owner = 65534;
    p.group = 65534;
    p.mode = 0600;
    ASSERT_TRUE(l.Listen(d.Path("c.sock"), 4, p).ok());
    ASSERT_EQ(lstat(d.Path("c.sock").c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 65534u);
    EXPECT_EQ(st.st_gid, 65534u);
    EXPECT_EQ(st.st_mode & 07777, 0600u);
  }
  p = SocketPerms{};
  p.mode = 01777;
  EXPECT_EQ(l.Listen(d.Path("d.sock"), 4, p).err(), EINVAL);
  EXPECT_FALSE(Exists(d.Path("d.sock")));
}

}  // namespace
}  // namespace nestor
