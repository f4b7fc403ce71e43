// `fieldfm inspect-data` end to end through the built binary.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include <cstdio>

#include "cli/cli_util.h"
#include "data_test_util.h"

namespace fieldfm {
namespace {

using testing::CliRun;
using testing::RunCli;
using testing::TempDir;

CliRun Inspect(const std::string& args) { return RunCli("inspect-data " + args); }

TEST(InspectDataCli, JsonSummaryPerFileAndField) {
  TempDir dir;
  auto path = dir.File("a.ffm", "1 0:1:1 1:5:1\n0 0:2:1\n-1 0:1:1 1:6:1\n");
  CliRun r = Inspect(path + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["format"], "libffm");
  EXPECT_EQ(j["files"][0]["rows"], 3);
  EXPECT_EQ(j["files"][0]["bytes"], 37);
  EXPECT_EQ(j["files"][0]["labels"]["ones"], 1);
  EXPECT_EQ(j["files"][0]["labels"]["zeros"], 2);
  ASSERT_EQ(j["fields"].size(), 2u);
  EXPECT_EQ(j["fields"][0]["distinct"], 2);
  EXPECT_EQ(j["fields"][1]["rows"], 2);
  EXPECT_EQ(j["fields"][1]["missing"], 1);
  EXPECT_EQ(j["fields"][1]["positive_rate"], 0.5);
}

TEST(InspectDataCli, BadDataExitsOneWithFileLine) {
  TempDir dir;
  auto path = dir.File("a.ffm", "1 0:1:1\n1 0:1\n");
  CliRun r = Inspect(path);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find(path + ":2: missing ':' in feature (token '0:1')"), std::string::npos) << r.out;
  r = Inspect(path + " --skip-bad-lines --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(nlohmann::json::parse(r.out)["files"][0]["bad_lines"], 1);
}

TEST(InspectDataCli, UsageErrorsExitTwo) {
  TempDir dir;
  auto path = dir.File("a.ffm", "1 0:1:1\n");
  EXPECT_EQ(Inspect("").exit_code, 2);
  EXPECT_EQ(Inspect(path + " --format parquet").exit_code, 2);
  EXPECT_EQ(Inspect(path + " --preset nope").exit_code, 2);
  EXPECT_EQ(Inspect(path + " --hash-bits 40").exit_code, 2);
}

TEST(InspectDataCli, PresetOnRealData) {
  CliRun r = Inspect(testing::Shared("avazu_deepctr_sample/avazu_sample.txt") + " --preset avazu --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["files"][0]["rows"], 100);
  EXPECT_EQ(j["fields"][0]["name"], "hour_of_day");
  EXPECT_EQ(j["fields"][0]["rows"], 100);
}

}  // namespace
}  // namespace fieldfm
