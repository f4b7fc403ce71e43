#include "util/parallel.h"

#include <gtest/gtest.h>

#include <atomic>
#include <vector>

namespace fieldfm {
namespace {

// Every row in exactly one part, parts contiguous and in order of t, no part
// past the rows (more threads than rows included), part 0 even when n is 0.
TEST(ParallelParts, CoversEveryRowOnceInOrderedParts) {
  for (size_t n : {0u, 1u, 2u, 7u, 1000u})
    for (int threads : {1, 2, 3, 8}) {
      SCOPED_TRACE(::testing::Message() << "n " << n << " threads " << threads);
      std::vector<std::atomic<int>> hits(n);
      std::vector<size_t> begin(threads, SIZE_MAX), end(threads, SIZE_MAX);
      ParallelParts(n, threads, [&](int t, size_t b, size_t e) {
        begin[t] = b;
        end[t] = e;
        for (size_t i = b; i < e; ++i) ++hits[i];
      });
      for (size_t i = 0; i < n; ++i) EXPECT_EQ(hits[i].load(), 1) << i;
      EXPECT_EQ(begin[0], 0u);
      size_t next = 0;
      for (int t = 0; t < threads; ++t) {
        if (begin[t] == SIZE_MAX) continue;  // not called: no rows left for it
        EXPECT_EQ(begin[t], next);
        EXPECT_LE(end[t], n);
        EXPECT_TRUE(t == 0 || end[t] > begin[t]);
        next = end[t];
      }
      EXPECT_EQ(next, n);
    }
}

}  // namespace
}  // namespace fieldfm
