#include "util/atomic_file.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

namespace fieldfm {
namespace {

std::string TempPath(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("fieldfm_test_" + std::to_string(::getpid()) + "_" + name)).string();
}

TEST(AtomicFile, CommitReplacesContent) {
  std::string p = TempPath("commit");
  ASSERT_TRUE(WriteFileAtomically(p, "old").ok());
  ASSERT_TRUE(WriteFileAtomically(p, "new content").ok());
  auto r = ReadSmallFile(p);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, "new content");
  std::filesystem::remove(p);
}

TEST(AtomicFile, AbandonKeepsOldContentAndLeavesNoTemp) {
  std::string p = TempPath("abandon");
  ASSERT_TRUE(WriteFileAtomically(p, "keep me").ok());
  {
    AtomicFile f;
    ASSERT_TRUE(f.Open(p).ok());
    ASSERT_TRUE(f.Write("half").ok());
    // destroyed without Commit: simulates an error half way through
  }
  EXPECT_EQ(*ReadSmallFile(p), "keep me");
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(std::filesystem::path(p).parent_path()))
    if (e.path().string().rfind(p + ".tmp", 0) == 0) ++files;
  EXPECT_EQ(files, 0);
  std::filesystem::remove(p);
}

TEST(AtomicFile, UnwritableDirectoryIsAnIOError) {
  Status st = WriteFileAtomically("/nonexistent_dir_fieldfm/x", "a");
  EXPECT_EQ(st.code(), StatusCode::kIOError);
  EXPECT_NE(st.message().find("/nonexistent_dir_fieldfm/x"), std::string::npos);
}

// `-o /dev/null` or a pipe: written in place. A rename onto the path would
// replace the device with a regular file (it did, for root, with /dev/null).
TEST(AtomicFile, WritesAPipeInPlace) {
  const std::string p = TempPath("fifo");
  std::filesystem::remove(p);
  ASSERT_EQ(::mkfifo(p.c_str(), 0600), 0);
  const int reader = ::open(p.c_str(), O_RDONLY | O_NONBLOCK);  // so the writer's open does not block
  ASSERT_GE(reader, 0);
  ASSERT_TRUE(WriteFileAtomically(p, "through the pipe").ok());
  char buf[64] = {};
  const ssize_t n = ::read(reader, buf, sizeof(buf) - 1);
  ::close(reader);
  struct stat st;
  ASSERT_EQ(::stat(p.c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  EXPECT_EQ(std::string(buf, n > 0 ? size_t(n) : 0), "through the pipe");
  std::filesystem::remove(p);
}

// Through a symbolic link the file it names is replaced and the link stays
// (a rename onto the link's path would have replaced the link itself).
TEST(AtomicFile, WritesThroughASymlink) {
  const std::string target = TempPath("link_target"), link = TempPath("link");
  std::filesystem::remove(link);
  ASSERT_TRUE(WriteFileAtomically(target, "old").ok());
  std::filesystem::create_symlink(target, link);
  ASSERT_TRUE(WriteFileAtomically(link, "new").ok());
  EXPECT_TRUE(std::filesystem::is_symlink(link));
  EXPECT_EQ(*ReadSmallFile(target), "new");
  std::filesystem::remove(link);
  std::filesystem::remove(target);
}

// "-" is standard output, written through fd 1 as the shell opened it: a file
// opened for appending keeps what it had.
TEST(AtomicFile, DashAppendsToStandardOutput) {
  const std::string p = TempPath("stdout");
  ASSERT_TRUE(WriteFileAtomically(p, "before\n").ok());
  std::fflush(stdout);
  const int saved = ::dup(STDOUT_FILENO);
  const int fd = ::open(p.c_str(), O_WRONLY | O_APPEND);
  ASSERT_GE(fd, 0);
  ::dup2(fd, STDOUT_FILENO);
  ::close(fd);
  const Status st = WriteFileAtomically("-", "predictions\n");
  ::dup2(saved, STDOUT_FILENO);
  ::close(saved);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(*ReadSmallFile(p), "before\npredictions\n");
  std::filesystem::remove(p);
}

TEST(Status, ResultCarriesValueOrError) {
  Result<int> good = 3;
  Result<int> bad = Status::DataError("f:1: bad");
  EXPECT_TRUE(good.ok());
  EXPECT_EQ(*good, 3);
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "f:1: bad");
}

}  // namespace
}  // namespace fieldfm
