// Small deterministic random tools shared by the cache shuffler and the
// synthetic generator. Everything is a pure function of its seed so results
// are identical across runs and machines.
#pragma once

#include <cstddef>
#include <cstdint>
#include <numeric>
#include <vector>

#include "util/mix.h"

namespace fieldfm {


inline uint64_t HashCombine(uint64_t a, uint64_t b) { return Mix64(a ^ (Mix64(b) + 0x632be59bd9b4e019ULL)); }

// Counter-based generator: the n-th output depends only on (seed, n).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(Mix64(seed)) {}
  uint64_t Next() {
    state_ += 0x9e3779b97f4a7c15ULL;
    uint64_t z = state_;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1) with 53 random bits; never exactly 1.
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  // Uniform in (0, 1]: safe for log().
  double UniformPositive() { return static_cast<double>((Next() >> 11) + 1) * 0x1.0p-53; }
  // Uniform integer in [0, n) (Lemire's multiply-shift; bias < 2^-32 for n < 2^32).
  uint64_t Below(uint64_t n) { return static_cast<uint64_t>((static_cast<unsigned __int128>(Next()) * n) >> 64); }

 private:
  uint64_t state_;
};

// Fisher-Yates permutation of [0, n), a pure function of seed.
inline void Permutation(size_t n, uint64_t seed, std::vector<uint32_t>* out) {
  out->resize(n);
  std::iota(out->begin(), out->end(), 0u);
  Rng rng(seed);
  for (size_t i = n; i > 1; --i) {
    size_t j = rng.Below(i);
    std::swap((*out)[i - 1], (*out)[j]);
  }
}

}  // namespace fieldfm
