#include "train/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace fieldfm {
namespace {

// O(n^2) reference: fraction of (pos, neg) pairs ranked right, ties count 1/2.
double NaiveAuc(const std::vector<float>& p, const std::vector<float>& y, const std::vector<float>& w) {
  double num = 0, den = 0;
  for (size_t i = 0; i < p.size(); ++i)
    for (size_t j = 0; j < p.size(); ++j) {
      double pair = w[i] * y[i] * w[j] * (1 - y[j]);
      if (pair == 0) continue;
      den += pair;
      num += pair * (p[i] > p[j] ? 1.0 : p[i] == p[j] ? 0.5 : 0.0);
    }
  return num / den;
}

TEST(Metrics, AucMatchesPairCountingWithTiesAndWeights) {
  std::mt19937 rng(3);
  std::vector<float> p, y, w;
  for (int i = 0; i < 300; ++i) {
    p.push_back(static_cast<float>(rng() % 20) / 20.0f);  // many ties
    y.push_back(rng() % 3 == 0 ? 1.0f : 0.0f);
    w.push_back(1.0f + static_cast<float>(rng() % 4));
  }
  EXPECT_NEAR(WeightedAuc(p, y, w), NaiveAuc(p, y, w), 1e-12);
  std::vector<float> ones(p.size(), 1.0f);
  EXPECT_NEAR(WeightedAuc(p, y, {}), NaiveAuc(p, y, ones), 1e-12);
}

TEST(Metrics, AucOfPerfectAndReversedRanking) {
  std::vector<float> y = {0, 0, 1, 1};
  EXPECT_DOUBLE_EQ(WeightedAuc(std::vector<float>{0.1f, 0.2f, 0.8f, 0.9f}, y, {}), 1.0);
  EXPECT_DOUBLE_EQ(WeightedAuc(std::vector<float>{0.9f, 0.8f, 0.2f, 0.1f}, y, {}), 0.0);
  EXPECT_DOUBLE_EQ(WeightedAuc(std::vector<float>{0.5f, 0.5f, 0.5f, 0.5f}, y, {}), 0.5);
  EXPECT_TRUE(std::isnan(WeightedAuc(std::vector<float>{0.1f, 0.2f}, std::vector<float>{1, 1}, {})));
}

// A diverged model's NaN scores give a NaN AUC, not a hang in the tie walk.
TEST(Metrics, AucOfNanScoresIsNan) {
  const std::vector<float> pred{0.2f, std::nanf(""), 0.7f, 0.4f}, label{0, 1, 1, 0};
  EXPECT_TRUE(std::isnan(WeightedAuc(pred, label, {})));
  const std::vector<float> all_nan(4, std::nanf(""));
  EXPECT_TRUE(std::isnan(ComputeMetrics(all_nan, label, {}, Task::kClassification).auc));
}

TEST(Metrics, LoglossNeCalibrationByHand) {
  std::vector<float> p = {0.8f, 0.3f, 0.6f};
  std::vector<float> y = {1, 0, 0};
  std::vector<float> w = {2, 1, 1};
  Metrics m = ComputeMetrics(p, y, w, Task::kClassification);
  double ll = -(2 * std::log(0.8) + std::log(0.7) + std::log(0.4)) / 4;
  EXPECT_NEAR(m.logloss, ll, 1e-6);
  double base = 0.5;  // Σwy/Σw = 2/4
  double h = -(base * std::log(base) + (1 - base) * std::log(1 - base));
  EXPECT_NEAR(m.ne, ll / h, 1e-6);
  EXPECT_NEAR(m.calibration, (2 * 0.8 + 0.3 + 0.6) / 2.0, 1e-6);
  EXPECT_EQ(m.rows, 3u);
  EXPECT_DOUBLE_EQ(m.weight_sum, 4.0);
}

TEST(Metrics, LoglossClipsCertainWrongPredictions) {
  Metrics m = ComputeMetrics(std::vector<float>{0.0f}, std::vector<float>{1.0f}, {}, Task::kClassification);
  EXPECT_NEAR(m.logloss, -std::log(1e-15), 1e-6);
}

TEST(Metrics, WeightedRmseWeighsRows) {
  std::vector<float> p = {0.5f, 0.0f};
  std::vector<float> y = {0.0f, 0.0f};
  std::vector<float> w = {3.0f, 1.0f};
  Metrics m = ComputeMetrics(p, y, w, Task::kRegression);
  EXPECT_NEAR(m.weighted_rmse, std::sqrt(3 * 0.25 / 4), 1e-7);
  EXPECT_NEAR(m.rmse, std::sqrt(0.25 / 2), 1e-7);
  EXPECT_TRUE(std::isnan(m.logloss));
}

}  // namespace
}  // namespace fieldfm
