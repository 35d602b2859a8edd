#include "base/file_lock.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

namespace nestor {
namespace {

TEST(FileLock, ExclusiveAgainstAnyOtherOpenSharedAmongReaders) {
  std::string path = "/tmp/nestor-file-lock-test.XXXXXX";
  int tmp = mkstemp(path.data());
  ASSERT_GE(tmp, 0);
  close(tmp);
  int a = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  int b = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_TRUE(LockFile(a, true, "f").ok());
  EXPECT_TRUE(LockFile(b, true, "f").ok());
  close(b);
  b = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  Status st = LockFile(b, false, path);
  EXPECT_EQ(st.err(), EBUSY) << st.ToString();
  // The holder is this very process, through another open of the file.
  EXPECT_NE(st.message().find(path + " is in use by this process"), std::string::npos) << st.ToString();
  close(a);
  EXPECT_TRUE(LockFile(b, false, "f").ok());
  close(b);
  unlink(path.c_str());
}

TEST(FileLock, NamesTheHoldingProcess) {
  std::string path = "/tmp/nestor-file-lock-test.XXXXXX";
  int tmp = mkstemp(path.data());
  ASSERT_GE(tmp, 0);
  close(tmp);
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    int fd = open(path.c_str(), O_RDONLY);
    if (flock(fd, LOCK_EX) == 0 && write(ready[1], "x", 1) == 1) pause();
    _exit(1);
  }
  close(ready[1]);
  char c;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  close(ready[0]);
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  Status st = LockFile(fd, true, path);
  EXPECT_EQ(st.err(), EBUSY);
  EXPECT_NE(st.message().find(path + " is in use by pid " + std::to_string(child)), std::string::npos) << st.ToString();
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  EXPECT_TRUE(LockFile(fd, true, path).ok());  // the lock went with its holder
  close(fd);
  unlink(path.c_str());
}

}  // namespace
}  // namespace nestor
