// `fieldfm cache` end to end through the built binary.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "cli/cli_util.h"
#include "fieldfm/cache.h"

namespace fieldfm {
namespace {

using testing::CliTempDir;
using testing::RunCli;

TEST(CacheCli, BuildsThenReportsUpToDateThenRebuildsOnChange) {
  CliTempDir dir;
  std::string in = dir.File("a.ffm", "1 0:1:1 1:5:1\n0 0:2:1 1:7:0.5\n");
  std::string out = dir.Path("a.bin");
  auto r = RunCli("cache " + in + " -o " + out);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("wrote"), std::string::npos) << r.out;
  auto cache = OpenCache(out);
  ASSERT_TRUE(cache.ok()) << cache.status().message();
  EXPECT_EQ((*cache)->info().rows, 2u);
  ExampleBlock b;
  ASSERT_EQ(*(*cache)->Next(&b, 10), 2u);
  EXPECT_EQ(b.row(1)[1], (Feature{1, 7, 0.5f}));

  r = RunCli("cache " + in + " -o " + out);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("up to date"), std::string::npos) << r.out;

  dir.File("a.ffm", "1 0:1:1 1:5:1\n0 0:2:1 1:7:0.5\n1 0:3:1\n");  // source changed
  r = RunCli("cache " + in + " -o " + out);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ((*OpenCache(out))->info().rows, 3u);
}

TEST(CacheCli, BadLineFailsWithLocationAndWritesNothing) {
  CliTempDir dir;
  std::string in = dir.File("bad.ffm", "1 0:1:1\n0 0:2\n");
  std::string out = dir.Path("bad.bin");
  auto r = RunCli("cache " + in + " -o " + out);
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find(in + ":2:"), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(out));
  for (auto& e : std::filesystem::directory_iterator(dir.Path("")))
    EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << e.path();
}

TEST(CacheCli, SkipBadLinesKeepsTheGoodRows) {
  CliTempDir dir;
  std::string in = dir.File("bad.ffm", "1 0:1:1\n0 0:2\n0 0:3:1\n");
  std::string out = dir.Path("bad.bin");
  auto r = RunCli("cache --skip-bad-lines " + in + " -o " + out);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ((*OpenCache(out))->info().rows, 2u);
}

TEST(CacheCli, UsageErrorsExitTwo) {
  EXPECT_EQ(RunCli("cache").exit_code, 2);
  EXPECT_EQ(RunCli("cache x.ffm -o y.bin --format parquet").exit_code, 2);
}

}  // namespace
TEST(CacheCli, TrainLeavesAReadOnlyDataDirectoryAlone) {
  // The shared data sets sit in r-x directories; even root must not write a cache there.
  CliTempDir dir;
  const std::string data_dir = dir.Path("ro");
  std::filesystem::create_directories(data_dir);
  const std::string input = data_dir + "/t.ffm";
  std::ofstream(input) << "1 0:1:1 1:3:1\n0 0:2:1 1:4:1\n1 0:1:1 1:4:1\n";
  std::filesystem::permissions(data_dir, std::filesystem::perms::owner_read | std::filesystem::perms::owner_exec);
  auto r = RunCli("train -q --no-checkpoint -t 1 " + input + " " + dir.Path("m.model"));
  std::filesystem::permissions(data_dir, std::filesystem::perms::owner_all);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("not writable"), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(input + ".fieldfm-cache"));
  EXPECT_TRUE(std::filesystem::exists(dir.Path("m.model")));
}

}  // namespace fieldfm
