#include "model/gemm.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace fieldfm {
namespace {

// C = alpha·op(A)·op(B) + beta·C by the definition, in double.
std::vector<float> Naive(bool ta, bool tb, int m, int n, int k, float alpha, const std::vector<float>& a, int lda,
                         const std::vector<float>& b, int ldb, float beta, std::vector<float> c, int ldc) {
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      double s = 0;
      for (int p = 0; p < k; ++p) {
        const double x = ta ? a[size_t(p) * lda + i] : a[size_t(i) * lda + p];
        const double y = tb ? b[size_t(j) * ldb + p] : b[size_t(p) * ldb + j];
        s += x * y;
      }
      float& out = c[size_t(i) * ldc + j];
      out = float(alpha * s + beta * double(out));
    }
  }
  return c;
}

std::vector<float> Random(size_t n, std::mt19937* rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = u(*rng);
  return v;
}

// Every transpose combination, row strides wider than the rows, and the
// (alpha, beta) pairs the dense layers use plus a general one. Padding
// columns of C must come back untouched.
TEST(Gemm, BothImplementationsMatchTheDefinition) {
  std::mt19937 rng(7);
  const int m = 5, n = 7, k = 300, pad = 3;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      for (auto [alpha, beta] : {std::pair{1.0f, 0.0f}, {1.0f, 1.0f}, {0.5f, -2.0f}}) {
        const int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
        const auto a = Random(size_t(ta ? k : m) * lda, &rng);
        const auto b = Random(size_t(tb ? n : k) * ldb, &rng);
        const auto c0 = Random(size_t(m) * ldc, &rng);
        const auto want = Naive(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c0, ldc);
        auto fast = c0, eigen = c0;
        Sgemm(ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, fast.data(), ldc);
        SgemmEigen(ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, eigen.data(), ldc);
        for (int i = 0; i < m; ++i) {
          for (int j = 0; j < ldc; ++j) {
            const size_t at = size_t(i) * ldc + j;
            SCOPED_TRACE(testing::Message() << "ta=" << ta << " tb=" << tb << " alpha=" << alpha << " beta=" << beta
                                            << " at " << i << "," << j);
            if (j >= n) {
              EXPECT_EQ(fast[at], c0[at]);
              EXPECT_EQ(eigen[at], c0[at]);
            } else {
              EXPECT_NEAR(fast[at], want[at], 1e-4f);
              EXPECT_NEAR(eigen[at], want[at], 1e-4f);
            }
          }
        }
      }
    }
  }
}

TEST(Gemm, EmptyProductsLeaveCAsBetaSays) {
  std::vector<float> c{1.0f, 2.0f};
  Sgemm(false, false, 0, 2, 4, 1.0f, nullptr, 4, nullptr, 2, 0.0f, c.data(), 2);  // no rows: nothing to do
  EXPECT_EQ(c, (std::vector<float>{1.0f, 2.0f}));
  Sgemm(false, false, 1, 2, 0, 1.0f, nullptr, 1, nullptr, 2, 1.0f, c.data(), 2);  // k = 0: C = beta·C
  EXPECT_EQ(c, (std::vector<float>{1.0f, 2.0f}));
}

}  // namespace
}  // namespace fieldfm
