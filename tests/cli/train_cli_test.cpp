// train / eval / predict / inspect / export end to end through the built binary.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli/cli_util.h"

namespace fieldfm {
namespace {

using testing::CliTempDir;
using testing::RunCli;

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class TrainCli : public ::testing::Test {
 protected:
  void SetUp() override {
    prefix_ = dir_.Path("syn");
    auto r = RunCli("synth -o " + prefix_ + " --rows 4000 --test-rows 1000 --fields 6 --numeric 2 "
                    "--max-cardinality 50 --seed 5");
    ASSERT_EQ(r.exit_code, 0) << r.out;
    train_ = prefix_ + ".train.ffm";
    test_ = prefix_ + ".test.ffm";
  }
  CliTempDir dir_;
  std::string prefix_, train_, test_;
};

TEST_F(TrainCli, AutoStopReturnsTheBestEpochAndLeavesNoSnapshot) {
  // A large step without regularisation: validation soon gets worse.
  std::string model = dir_.Path("best.model");
  auto r = RunCli("train -q -s 1 --seed 3 -r 1 -l 0 -k 4 -t 20 -p " + test_ + " --auto-stop " + train_ + " " + model);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  std::vector<nlohmann::json> epochs;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);)
    if (!line.empty() && line[0] == '{') epochs.push_back(nlohmann::json::parse(line));
  ASSERT_GE(epochs.size(), 2u);
  ASSERT_FALSE(epochs.back()["best"].get<bool>()) << r.out;  // stopped after a worse epoch
  double best = 1e9;
  for (const auto& e : epochs) best = std::min(best, e["va_logloss"].get<double>());
  // The snapshot beside the model is gone; the model is the best epoch's.
  EXPECT_FALSE(std::filesystem::exists(model + ".best"));
  EXPECT_TRUE(std::filesystem::exists(model + ".ckpt"));
  r = RunCli("eval --json " + model + " " + test_);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NEAR(nlohmann::json::parse(r.out)["logloss"].get<double>(), best, 1e-9);
}

TEST_F(TrainCli, TrainEvalPredictAgree) {
  std::string model = dir_.Path("ffm.model");
  auto r = RunCli("train -q -k 4 -t 3 -p " + test_ + " --auto-stop " + train_ + " " + model);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  // One JSON line per epoch with the validation metrics.
  int epochs = 0;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] != '{') continue;
    auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j["epoch"].get<int>(), ++epochs);
    EXPECT_TRUE(j.contains("va_logloss"));
  }
  EXPECT_GE(epochs, 1);

  r = RunCli("eval --json " + model + " " + test_);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto ev = nlohmann::json::parse(r.out);
  EXPECT_EQ(ev["rows"].get<int>(), 1000);
  const auto sidecar = nlohmann::json::parse(Slurp(prefix_ + ".json"));
  // Better than always predicting the base rate, never better than the Bayes floor.
  EXPECT_LT(ev["logloss"].get<double>(), sidecar["test"]["base_rate_logloss"].get<double>());
  EXPECT_GT(ev["logloss"].get<double>(), sidecar["test"]["bayes_logloss"].get<double>() - 0.02);

  std::string pred = dir_.Path("pred.txt");
  r = RunCli("predict -s 2 " + model + " " + test_ + " -o " + pred);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  // The summary on stderr counts the rows it wrote.
  EXPECT_NE(r.out.find("predicted 1000 rows in "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(" rows/s, 2 threads; model loaded in "), std::string::npos) << r.out;
  std::ifstream in(pred);
  std::ifstream labels(test_);
  double ll = 0;
  int n = 0;
  for (std::string p, row; std::getline(in, p) && std::getline(labels, row); ++n) {
    double v = std::stod(p);
    ASSERT_GT(v, 0.0);
    ASSERT_LT(v, 1.0);
    double y = std::stod(row.substr(0, row.find(' ')));
    ll -= y * std::log(v) + (1 - y) * std::log(1 - v);
  }
  EXPECT_EQ(n, 1000);
  // The predictions file, scored by hand, gives eval's logloss (same rows, same order).
  EXPECT_NEAR(ll / n, ev["logloss"].get<double>(), 1e-5);
  // One thread writes the same file (each thread formats its share of a block, in order).
  const std::string pred1 = dir_.Path("pred1.txt");
  r = RunCli("predict -q -s 1 " + model + " " + test_ + " -o " + pred1);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out, "");  // --quiet: no summary
  EXPECT_EQ(Slurp(pred1), Slurp(pred));
}

TEST_F(TrainCli, OneThreadWithSeedIsByteDeterministicAndResumeMatches) {
  std::string a = dir_.Path("a.model"), b = dir_.Path("b.model"), c = dir_.Path("c.model");
  ASSERT_EQ(RunCli("train -q -s 1 --seed 9 -t 3 --no-checkpoint " + train_ + " " + a).exit_code, 0);
  ASSERT_EQ(RunCli("train -q -s 1 --seed 9 -t 3 --no-checkpoint " + train_ + " " + b).exit_code, 0);
  EXPECT_EQ(Slurp(a), Slurp(b));
  // Stop after one epoch, resume to three: the same bytes as the uninterrupted run.
  std::string ckpt = dir_.Path("c.ckpt");
  ASSERT_EQ(RunCli("train -q -s 1 --seed 9 -t 1 --checkpoint " + ckpt + " " + train_ + " " + c).exit_code, 0);
  auto r = RunCli("train -q -s 1 --seed 9 -t 3 --resume " + ckpt + " --no-checkpoint " + train_ + " " + c);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(Slurp(a), Slurp(c));
}

TEST_F(TrainCli, EveryModelTrainsAndExports) {
  for (const char* m : {"lr", "fm", "ffm", "deepfm", "nfm", "deepffm", "nffm"}) {
    std::string model = dir_.Path(std::string(m) + ".model");
    auto r = RunCli(std::string("train -q -t 1 --no-checkpoint --hidden 8 -k 4 --model ") + m + " " + train_ + " " +
                    model);
    ASSERT_EQ(r.exit_code, 0) << m << ": " << r.out;
    r = RunCli("inspect " + model);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_NE(r.out.find(m), std::string::npos) << r.out;
    if (std::string(m) == "lr") continue;  // no latent vectors
    std::string tsv = dir_.Path(std::string(m) + ".tsv");
    r = RunCli("export " + model + " -o " + tsv);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_GT(Slurp(tsv).size(), 100u) << m;
  }
}

TEST_F(TrainCli, BadDataFailsWithLocationAndWritesNoModel) {
  std::string bad = dir_.File("bad.ffm", "1 0:1:1 1:2:1\n0 0:1:1 1:x:1\n");
  std::string model = dir_.Path("bad.model");
  auto r = RunCli("train -q --no-checkpoint " + bad + " " + model);
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find(bad + ":2:"), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(model));
}

TEST_F(TrainCli, UsageErrorsExitTwo) {
  EXPECT_EQ(RunCli("train -q --model xgb " + train_).exit_code, 2);
  EXPECT_EQ(RunCli("train -q --auto-stop " + train_).exit_code, 2);
  EXPECT_EQ(RunCli("predict").exit_code, 2);
}

TEST_F(TrainCli, CorruptOrForeignModelFileIsAClearError) {
  std::string model = dir_.Path("m.model");
  ASSERT_EQ(RunCli("train -q -t 1 --no-checkpoint " + train_ + " " + model).exit_code, 0);
  std::string bytes = Slurp(model);
  std::string truncated = dir_.File("t.model", bytes.substr(0, bytes.size() / 2));
  auto r = RunCli("eval " + truncated + " " + test_);
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find(truncated), std::string::npos) << r.out;
  r = RunCli("predict " + train_ + " " + test_ + " -o " + dir_.Path("p.txt"));  // a data file, not a model
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_FALSE(std::filesystem::exists(dir_.Path("p.txt")));
}

}  // namespace
}  // namespace fieldfm
