// Fast Zipf sampling over ranks [1, n] with P(k) ∝ k^-s, for n up to billions.
// The head (ranks <= kHead, where most of the mass is) comes from an exact
// cumulative table shared by all n with a guide table for O(1) look-up; the
// tail from inverting the continuous power law on [kHead + 0.5, n + 0.5],
// which is accurate to well under 1e-3 relative at such ranks.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace fieldfm {

class ZipfTable {
 public:
  static constexpr uint32_t kHead = 1024;

  explicit ZipfTable(double s) : s_(s), cum_(kHead + 1, 0.0), guide_(kGuide + 1, 0) {
    for (uint32_t k = 1; k <= kHead; ++k) cum_[k] = cum_[k - 1] + std::pow(double(k), -s);
    // guide_[j] = first rank k with cum_[k] > j * cum_[kHead] / kGuide.
    uint32_t k = 1;
    for (uint32_t j = 0; j <= kGuide; ++j) {
      double t = cum_[kHead] * j / kGuide;
      while (k < kHead && cum_[k] <= t) ++k;
      guide_[j] = k;
    }
  }
  double s() const { return s_; }
  // Unnormalised mass of ranks [1, min(n, kHead)].
  double HeadMass(uint64_t n) const { return cum_[std::min<uint64_t>(n, kHead)]; }
  // Rank k in [1, kHead] with cum_[k-1] <= t < cum_[k]; t < cum_[kHead].
  uint32_t HeadRank(double t) const {
    uint32_t k = guide_[static_cast<uint32_t>(t / cum_[kHead] * kGuide)];
    while (k < kHead && cum_[k] <= t) ++k;
    return k;
  }

 private:
  static constexpr uint32_t kGuide = 2048;
  double s_;
  std::vector<double> cum_;
  std::vector<uint32_t> guide_;
};

// Sampler for one n; cheap to build, shares a ZipfTable.
class ZipfSampler {
 public:
  ZipfSampler(const ZipfTable* table, uint64_t n) : table_(table), n_(n) {
    head_ = table->HeadMass(n);
    if (n > ZipfTable::kHead) {
      const double a = ZipfTable::kHead + 0.5, b = double(n) + 0.5, s = table->s();
      one_minus_s_ = 1.0 - s;
      log_case_ = std::abs(one_minus_s_) < 1e-9;
      a_pow_ = log_case_ ? std::log(a) : std::pow(a, one_minus_s_);
      tail_ = log_case_ ? std::log(b) - a_pow_ : (std::pow(b, one_minus_s_) - a_pow_) / one_minus_s_;
    }
  }
  // u uniform in [0, 1); returns a rank in [1, n].
  uint64_t Sample(double u) const {
    double t = u * (head_ + tail_);
    if (t < head_) return std::min<uint64_t>(table_->HeadRank(t), n_);
    t -= head_;
    double x = log_case_ ? std::exp(a_pow_ + t) : std::pow(a_pow_ + t * one_minus_s_, 1.0 / one_minus_s_);
    uint64_t k = static_cast<uint64_t>(x + 0.5);
    return std::clamp<uint64_t>(k, ZipfTable::kHead + 1, n_);
  }

 private:
  const ZipfTable* table_;
  uint64_t n_;
  double head_ = 0, tail_ = 0, one_minus_s_ = 0, a_pow_ = 0;
  bool log_case_ = false;
};

}  // namespace fieldfm
