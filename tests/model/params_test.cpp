#include "model/params.h"

#include <gtest/gtest.h>

#include <cmath>

namespace fieldfm {
namespace {

// DropState keeps exactly the weights Weights() reports, in place, for every
// optimizer's state width.
TEST(SparseTable, DropStateKeepsTheWeightsInPlace) {
  for (uint32_t state : {0u, 1u, 2u}) {
    SparseTable t;
    t.rows = 37;
    t.slots = 3;
    t.k = 4;
    t.state = state;
    t.data.resize(t.rows * t.row_stride());
    for (size_t i = 0; i < t.data.size(); ++i) t.data[i] = float(i) * 0.5f + 1.0f;
    const std::vector<float> want = t.Weights();
    const float* before = t.data.data();
    t.DropState();
    EXPECT_EQ(t.state, 0u);
    EXPECT_EQ(t.data.data(), before) << "state " << state << ": moved, not copied";
    ASSERT_EQ(t.data.size(), want.size()) << "state " << state;
    EXPECT_TRUE(std::equal(want.begin(), want.end(), t.data.begin())) << "state " << state;
    EXPECT_EQ(t.Weights(), want);
  }
}

// Row-wise AdaGrad's layout: a row is its slots' weights (stride k), then one
// accumulator per slot; Weights, CopyWeights/SetWeights and DropState see
// the weights only.
TEST(SparseTable, PerSlotStateAfterTheRowsWeights) {
  SparseTable t;
  t.rows = 5;
  t.slots = 3;
  t.k = 4;
  t.slot_state = 1;
  ASSERT_EQ(t.slot_stride(), 4u);
  ASSERT_EQ(t.row_stride(), 15u);
  t.data.resize(t.rows * t.row_stride());
  for (size_t i = 0; i < t.data.size(); ++i) t.data[i] = float(i);
  // Global slot 4 = row 1, slot 1: floats 15 + 4 .. 15 + 7.
  float w[4];
  t.CopyWeights(4, 1, w);
  EXPECT_EQ(w[0], 19.0f);
  EXPECT_EQ(w[3], 22.0f);
  EXPECT_EQ(t.slot_states(t.row(1)), t.data.data() + 15 + 12);
  const float set[4] = {-1, -2, -3, -4};
  t.SetWeights(4, 1, set);
  EXPECT_EQ(t.data[19], -1.0f);
  EXPECT_EQ(t.data[27], 27.0f);  // row 1's first accumulator untouched
  const std::vector<float> want = t.Weights();
  ASSERT_EQ(want.size(), 60u);
  EXPECT_EQ(want[16], -1.0f);
  EXPECT_EQ(want[12], 15.0f);  // row 1, slot 0 follows row 0's 3 slots: row 0's accumulators skipped
  t.DropState();
  EXPECT_EQ(t.slot_state, 0u);
  EXPECT_EQ(std::vector<float>(t.data.begin(), t.data.end()), want);
}

TEST(UpdateRow, RowWiseAdaGradSharesOneAccumulatorPerSlot) {
  OptimizerConfig c;
  c.type = OptimizerType::kRowAdaGrad;
  c.lr = 0.5f;
  for (uint32_t k : {4u, 3u, 1u}) {
    SCOPED_TRACE(k);
    const uint32_t slots = 2;
    std::vector<float> row(slots * k + slots), grad(slots * k);
    for (uint32_t i = 0; i < slots * k; ++i) row[i] = 0.1f * float(i + 1), grad[i] = 0.3f - 0.2f * float(i);
    row[slots * k] = 1.0f, row[slots * k + 1] = 2.0f;
    const std::vector<float> before = row;
    const float lambda = 0.01f;
    UpdateRow(c, lambda, 1, row.data(), grad.data(), slots, k, k, row.data() + slots * k);
    for (uint32_t s = 0; s < slots; ++s) {
      double mean = 0;
      for (uint32_t d = 0; d < k; ++d) {
        const double g = grad[s * k + d] + lambda * before[s * k + d];
        mean += g * g / k;
      }
      const double acc = before[slots * k + s] + mean;
      EXPECT_NEAR(row[slots * k + s], acc, 1e-6);
      for (uint32_t d = 0; d < k; ++d) {
        const double g = grad[s * k + d] + lambda * before[s * k + d];
        // k = 4 takes the hardware 1/sqrt estimate (relative error < 2^-11).
        EXPECT_NEAR(row[s * k + d], before[s * k + d] - c.lr * g / std::sqrt(acc), 1e-3 * std::fabs(c.lr * g) + 1e-7);
      }
    }
  }
}

}  // namespace
}  // namespace fieldfm
