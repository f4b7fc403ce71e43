#include "util/float_text.h"

#include <gtest/gtest.h>

#include <bit>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>

namespace fieldfm {
namespace {

std::string Reference(float v) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::general, 7);
  return std::string(buf, r.ptr);
}

std::string Fast(float v) {
  char buf[kMaxG7Chars + 8];
  std::memset(buf, 'X', sizeof buf);
  char* end = FormatG7(v, buf);
  EXPECT_LE(size_t(end - buf), kMaxG7Chars) << Reference(v);
  return std::string(buf, end);
}

TEST(FormatG7, SpecialValuesAndFallbackRange) {
  for (float v : {0.0f, -0.0f, 1.0f, -1.0f, 0.5f, 1e-20f, 9.99e-21f, 1e7f, 9999999.0f, 9999999.5f, 1e30f, -3e38f,
                  std::numeric_limits<float>::denorm_min(), std::numeric_limits<float>::min(),
                  std::numeric_limits<float>::max(), std::numeric_limits<float>::infinity(),
                  -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()})
    EXPECT_EQ(Fast(v), Reference(v)) << std::bit_cast<uint32_t>(v);
}

// Next to every power of ten the decimal exponent changes (and 9.9999995e-X
// rounds up into the next one); the switch between fixed and exponent style
// sits at 1e-4 and 1e7.
TEST(FormatG7, AroundPowersOfTen) {
  for (int e = -22; e <= 8; ++e) {
    float c = std::pow(10.0f, float(e));
    for (int i = 0; i < 200; ++i) c = std::nextafter(c, 0.0f);
    for (int i = 0; i < 400; ++i, c = std::nextafter(c, 1e30f)) {
      ASSERT_EQ(Fast(c), Reference(c)) << std::bit_cast<uint32_t>(c);
      ASSERT_EQ(Fast(-c), Reference(-c)) << std::bit_cast<uint32_t>(c);
    }
  }
}

// In [2^20, 2^23) floats step by 1/8, so many sit exactly half way between
// two 7-digit decimals: round half to even must decide.
TEST(FormatG7, ExactTiesInOneBinadeExhaustively) {
  for (uint32_t b = std::bit_cast<uint32_t>(1048576.0f); b < std::bit_cast<uint32_t>(1048576.0f) + (1u << 23);
       b += 1) {
    const float v = std::bit_cast<float>(b);
    ASSERT_EQ(Fast(v), Reference(v)) << b;
  }
}

// Probabilities: every float in [0.25, 1) (two whole binades), then a random
// sample of all bit patterns.
TEST(FormatG7, ProbabilityRangeExhaustivelyAndRandomBits) {
  for (uint32_t b = std::bit_cast<uint32_t>(0.25f); b < std::bit_cast<uint32_t>(1.0f); ++b) {
    const float v = std::bit_cast<float>(b);
    ASSERT_EQ(Fast(v), Reference(v)) << b;
  }
  std::mt19937 rng(7);
  for (int i = 0; i < 3000000; ++i) {
    const float v = std::bit_cast<float>(uint32_t(rng()));
    ASSERT_EQ(Fast(v), Reference(v)) << std::bit_cast<uint32_t>(v);
  }
}

}  // namespace
}  // namespace fieldfm
