#include "model/params.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace fieldfm
